"""Whether depsim's numbers are a measurement: who graded the replies, and what traffic.

Two things make a rate something other than a measurement of real behaviour, and every output
(``depsim compare``, the HTML report, the metadata of ``judge_grades``, ``behavior_rates`` and
``candidate_comparison``) says so in the same words:

- the replies were graded by the built-in ``sim-judge``, a lexical test double that matches
  words against the taxonomy; it exists to exercise the pipeline, and cannot read meaning;
- the traffic is depsim's synthetic demo log, whose misbehaviour rates were planted by the
  simulator's personas: a demo of the pipeline, not a model's behaviour on real users.

The demo log's writer leaves a marker in the log root naming, per day, the files it wrote and
their sizes; a day counts as synthetic only while every log file in its folder is one of
those, so real traffic ingested into the same day makes it "mixed", never silently "demo".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from depsim_assets import config

SIM_JUDGE = "sim-judge"  # the simulator's lexical judge (sim.judge.JUDGE_MODEL)
DEMO_MARKER = ".depsim-synthetic.json"

SIM_JUDGE_WARNING = (
    "graded by the built-in lexical sim-judge, a test double: these are not measurements of "
    "real behaviour"
)
DEMO_WARNING = (
    "a demo of the pipeline on depsim's synthetic demo log with planted truth (simulator "
    "personas{judge}): not a measurement of a real model"
)
HOW_TO_MEASURE = "set DEPSIM_JUDGE_BASE_URL and DEPSIM_JUDGE_MODEL to a real judge model"


def _read_marker(log_root: Path) -> dict:
    try:
        days = json.loads((log_root / DEMO_MARKER).read_text()).get("days")
    except (OSError, ValueError, AttributeError):
        return {}
    return days if isinstance(days, dict) else {}


def write_demo_marker(log_root: Path, date: str, files: Iterable[Path]) -> Path:
    """Record that the demo generator wrote ``files`` as the day ``date`` of the log."""
    root = Path(log_root)
    days = _read_marker(root)
    days[date] = {Path(f).name: Path(f).stat().st_size for f in files}
    marker = root / DEMO_MARKER
    tmp = root / f"{DEMO_MARKER}.tmp"
    tmp.write_text(
        json.dumps(
            {
                "generator": "depsim_demo.synth.write_demo_log",
                "note": "synthetic conversations with planted misbehaviour; not real traffic",
                "days": dict(sorted(days.items())),
            },
            indent=2,
        )
    )
    tmp.replace(marker)
    return marker


def day_traffic(date: str, log_root: Path | None = None) -> str:
    """``synthetic`` when the day's log is exactly the files the demo wrote, ``mixed`` when
    the demo's files sit beside others, else ``real`` (not marked, or no folder at all)."""
    root = Path(log_root or config.log_root())
    listed = _read_marker(root).get(date)
    folder = root / date
    if not isinstance(listed, dict) or not folder.is_dir():
        return "real"
    logs = {
        p.name: p.stat().st_size
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and ".jsonl" in p.name
    }
    demo = [listed.get(name) == size for name, size in logs.items()]
    if demo and all(demo):
        return "synthetic"
    return "mixed" if any(demo) else "real"


def traffic_kind(dates: Iterable[str], log_root: Path | None = None) -> str:
    """``synthetic``, ``real`` or ``mixed`` over several days (``real`` when none is given)."""
    kinds = {day_traffic(d, log_root) for d in dates}
    if not kinds:
        return "real"
    return kinds.pop() if len(kinds) == 1 else "mixed"


@dataclass(frozen=True)
class Provenance:
    """Whether a set of grades is a measurement, and the one sentence that says why not."""

    measurement: bool
    warning: str | None
    traffic: str
    judge_models: list[str] = field(default_factory=list)

    @property
    def sim_judge(self) -> bool:
        """Whether any grade came from the lexical sim-judge."""
        return SIM_JUDGE in self.judge_models

    def metadata(self) -> dict[str, object]:
        """Dagster metadata: ``measurement`` always, ``warning`` when it is not one."""
        out: dict[str, object] = {"measurement": self.measurement}
        if self.warning:
            out["warning"] = self.warning
        return out

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: ``measurement``, ``warning``, ``traffic``, ``judge_models``."""
        return {
            "measurement": self.measurement,
            "warning": self.warning,
            "traffic": self.traffic,
            "judge_models": list(self.judge_models),
        }


def assess(
    judge_models: Iterable[str | None], dates: Iterable[str], log_root: Path | None = None
) -> Provenance:
    """What grades by ``judge_models`` of the traffic of ``dates`` are.

    ``judge_models``: the models named on the grade rows (or the configured judge before any
    row exists). Unscored rows carry the model too, so a day that failed to grade still says
    who would have graded it.
    """
    models = sorted({m for m in judge_models if m})
    traffic = traffic_kind(dates, log_root)
    lexical = SIM_JUDGE in models
    if traffic == "synthetic":
        judge = (
            ", graded by the built-in lexical sim-judge"
            if lexical
            else (f", graded by {', '.join(models)}" if models else "")
        )
        return Provenance(False, DEMO_WARNING.format(judge=judge), traffic, models)
    if lexical:
        others = [m for m in models if m != SIM_JUDGE]
        text = (
            SIM_JUDGE_WARNING
            if not others
            else (f"partly {SIM_JUDGE_WARNING} (other judges: {', '.join(others)})")
        )
        if traffic == "mixed":
            text += "; part of the traffic is depsim's synthetic demo log"
        return Provenance(False, f"{text} ({HOW_TO_MEASURE})", traffic, models)
    if traffic == "mixed":
        return Provenance(
            False,
            "part of the traffic is depsim's synthetic demo log with planted truth: these "
            "rates mix a demo with real conversations",
            traffic,
            models,
        )
    return Provenance(True, None, traffic, models)
