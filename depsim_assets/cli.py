"""``depsim``: the command line. Every command has ``--help``; scripts read ``--json``."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depsim_assets import config

# Problems a user can fix: printed as one line, exit code 2, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError)


def _fail(message: str) -> int:
    from depsim_assets.secrets import scrub

    # The last guard: whatever raised, no key reaches the terminal (or a CI log).
    print(f"depsim: error: {scrub(message)}", file=sys.stderr)
    return 2


def _fail_env(message: str) -> int:
    """A failure of the machine, not of the input (disk full, read-only home): exit 1."""
    _fail(message)
    return 1


def _os_error_text(exc: OSError, where: Path | None = None) -> str:
    """One line for an OS error, naming the depsim home when that is what cannot be written.

    ``where`` is the place being written when the error does not name a file (a failed
    ``write`` does not).
    """
    import errno

    home = config.depsim_home()
    where = str(exc.filename) if exc.filename else str(where or home)
    why = exc.strerror or type(exc).__name__
    # The Dagster folder and the warehouse live in the home unless moved (or linked) away.
    places = {str(home), str(config.dagster_home()), str(config.warehouse_path().parent)}
    in_home = any(where == p or where.startswith(p.rstrip(os.sep) + os.sep) for p in places)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and in_home:
        return f"the depsim home {home} is read-only ({why}: {where}); set DEPSIM_HOME"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and in_home:
        return f"the depsim home {home} is not a folder depsim can use ({why}: {where})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({why}) writing {where}"
    if exc.errno == errno.EFBIG:
        return f"a file hit the file size limit ({why}) writing {where}"
    return f"{where}: {why}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


# ---------------------------------------------------------------------------------------- demo
# depsim runs offline and handles private traffic: a new instance does not phone home.
# Runs from the UI, sensors and backfills wait in a queue and at most four run at once;
# every step of a run is its own process (DEPSIM_MAX_CONCURRENT_STEPS per run, see
# definitions.build_executor), and all of them share the warehouse file, waiting their turn
# for its lock (resources.Warehouse).
INSTANCE_YAML = """\
# Written by depsim; yours to edit (depsim rewrites only its own unedited older defaults).
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 2
concurrency:
  runs:
    max_concurrent_runs: 4
"""
# What earlier depsim versions wrote: upgraded in place, since nobody edited it.
_OLD_INSTANCE_YAMLS = ("telemetry:\n  enabled: false\n",)


def _prepare_dagster_home() -> Path:
    home = config.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists() or settings.read_text() in _OLD_INSTANCE_YAMLS:
        settings.write_text(INSTANCE_YAML)
    return home


def _instance():
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(_prepare_dagster_home())
    return dg.DagsterInstance.get()


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the log if absent, register the sim candidates, materialize everything."""
    from tqdm import tqdm

    from depsim_assets import runs
    from depsim_demo import registry as demo
    from depsim_demo.synth import write_demo_log

    if not os.environ.get(config.SALT_ENV):
        # The demo's synthetic log only: a fixed, public salt keeps it reproducible. Every
        # other way to sample refuses to run without a secret one.
        os.environ[config.SALT_ENV] = config.DEMO_SALT
    dates = demo.demo_dates(args.end_date, args.days)
    deploy_day = demo.deployment_date(dates)
    root = config.log_root()
    missing = [d for d in [*dates, deploy_day] if not (root / d).exists()]
    if missing:
        say = sys.stderr if args.json else sys.stdout
        print(f"writing synthetic production log for {', '.join(missing)} under {root}", file=say)
        write_demo_log(
            root,
            missing,
            per_day=args.per_day,
            seed=args.seed,
            production_model_by_date={deploy_day: demo.DEPLOYED_CANDIDATE},
        )
    registry = demo.register_sim_candidates(deployed_on={demo.DEPLOYED_CANDIDATE: [deploy_day]})
    instance = _instance()
    runs.ensure_candidate_partitions(instance, registry.names())
    plan = runs.plan_graph(dates, registry.names(), sample_size=args.sample_size, log_level="ERROR")
    # The deployment day needs only its traffic and the realised (production) rates.
    plan[-1:-1] = [
        run
        for run in runs.plan_graph(
            [deploy_day], [], sample_size=args.sample_size, log_level="ERROR"
        )
        if run.partition_key is not None
    ]
    if not args.no_progress and sys.stderr.isatty():
        # Within each run, the call engine draws a bar of its requests under this one.
        os.environ["DEPSIM_PROGRESS_BAR"] = "1"
    with tqdm(
        total=len(plan), desc="materializing", unit="run", file=sys.stderr, disable=args.no_progress
    ) as bar:

        def advance(run: runs.PlannedRun) -> None:
            bar.set_postfix_str(run.label)
            bar.update(1)

        runs.execute(plan, instance, on_run=advance)
    computed = _comparison_frame(baseline=None, alpha=0.1)  # once, for both reports
    report = _comparison_report(baseline=None, alpha=0.1, computed=computed)
    _write_reports(report)
    html_report = _write_html_report(baseline=None, alpha=0.1, computed=computed)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_comparison(report)
        print()
        print(f"warehouse: {config.warehouse_path()}")
        print(f"report:    {config.reports_dir() / 'comparison.md'}")
        print(f"           {html_report}  (one self-contained HTML file: tables and plots)")
        print(
            f"UI:        depsim ui   (or: DAGSTER_HOME={config.dagster_home()} "
            "dagster dev -w workspace.yaml)"
        )
    return 0


# ------------------------------------------------------------------------------------- compare
def _comparison_frame(
    *,
    baseline: str | None,
    alpha: float,
    candidates: Sequence[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    bh: bool = False,
    allow_failed: bool = False,
):
    """The comparison computed from the warehouse's judge_grades (read-only), and its guard:
    refused (one line) when a pooled partition failed a blocking check or is mostly unscored,
    unless ``allow_failed`` (then the guard's warnings go into every output)."""
    from depsim_assets import warehouse
    from depsim_assets.estimates.assets import (
        read_all_grades,
        served_by_others,
        taxonomy_categories,
    )
    from depsim_assets.estimates.compute import build_comparison
    from depsim_assets.estimates.guard import guard_comparison
    from depsim_assets.registry import load_registry

    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1) (got {alpha})")
    registry = load_registry()
    base = baseline or registry.baseline_name()
    path = config.warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet (run `depsim demo` first)")
    with warehouse.connection(str(path), read_only=True) as conn:
        grades = read_all_grades(conn)
    if candidates:
        known = set(grades["candidate"])
        unknown = [c for c in candidates if c not in known]
        if unknown:
            raise ValueError(
                f"--candidates: no judge_grades for {', '.join(unknown)} "
                f"(graded: {', '.join(sorted(known)) or 'none'})"
            )
    frame = build_comparison(
        grades,
        taxonomy_categories(),
        baseline=base,
        alpha=alpha,
        candidates=list(candidates) if candidates else None,
        bh=bh,
        date_from=date_from,
        date_to=date_to,
        served_by_others=served_by_others(registry),
    )
    if frame.empty:
        window = f" between {date_from or 'the start'} and {date_to or 'the end'}"
        raise ValueError(
            "no judge_grades in the warehouse"
            + (window if date_from or date_to else "")
            + ": materialize the graph first"
        )
    with warehouse.connection(str(path), read_only=True) as conn:
        guard = guard_comparison(frame, conn, instance=_recorded_instance())
    if guard.issues and not allow_failed:
        raise ValueError(guard.refusal())
    return base, frame, guard


def _recorded_instance():
    """The Dagster instance whose check evaluations to read, if this home has one yet."""
    return _instance() if (config.dagster_home() / "dagster.yaml").exists() else None


def _comparison_report(
    *,
    baseline: str | None,
    alpha: float,
    candidates: Sequence[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    bh: bool = False,
    allow_failed: bool = False,
    computed: tuple[str, Any, Any] | None = None,
) -> dict[str, Any]:
    from depsim_assets.estimates.forecast import resampling_fidelity

    base, frame, guard = computed or _comparison_frame(
        baseline=baseline,
        alpha=alpha,
        candidates=candidates,
        date_from=date_from,
        date_to=date_to,
        bh=bh,
        allow_failed=allow_failed,
    )
    fields = [
        "candidate",
        "category",
        "n_graded",
        "n_flagged",
        "rate_per_100k",
        "ci_low_per_100k",
        "ci_high_per_100k",
        "baseline_n_graded",
        "baseline_n_flagged",
        "rate_ratio",
        "ci_low_ratio",
        "ci_high_ratio",
        "p_value",
        "significant",
        "change",
        "n_paired",
        "p_mcnemar",
        "q_value",
        "n_discordant_up",
        "n_discordant_down",
    ]
    rows = [{f: _clean(rec[f]) for f in fields} for rec in frame.to_dict("records")]
    dates = sorted({d for ds in frame["dates"] for d in ds.split(",") if d})
    fidelity = resampling_fidelity(frame)
    return {
        # Not a measurement (sim-judge or the synthetic demo log): said first, in plain words.
        **guard.provenance.as_dict(),
        # Partitions that failed a blocking check or are mostly unscored (--allow-failed).
        "warnings": guard.warnings,
        "failed_partitions": [issue.as_dict() for issue in guard.issues],
        "baseline": base,
        "dates": dates,
        "alpha": alpha,
        "multiple_testing": "bh" if bh else "none",
        "candidates": _spend([base, *sorted(set(frame["candidate"]))], dates),
        "rows": rows,
        "resampling_fidelity": {
            "median_error": _clean(float(fidelity["fidelity_error"].median()))
            if len(fidelity)
            else None,
            "rows": [{k: _clean(v) for k, v in rec.items()} for rec in fidelity.to_dict("records")],
        },
    }


def _spend(names: Sequence[str], dates: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per candidate over ``dates``: replies, tokens in and out, and cost at registry prices."""
    from depsim_assets import warehouse

    out = {name: {"replies": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
           for name in dict.fromkeys(names)}
    if not out or not dates:
        return out
    with warehouse.connection(str(config.warehouse_path()), read_only=True) as conn:
        found = conn.execute(
            "SELECT candidate, count(*), sum(prompt_tokens), sum(completion_tokens), "
            "sum(cost_usd) FROM candidate_completions "
            "WHERE candidate IN (SELECT unnest(?)) AND traffic_date IN (SELECT unnest(?)) "
            "GROUP BY candidate",
            [list(out), list(dates)],
        ).fetchall()
    for name, replies, tokens_in, tokens_out, cost in found:
        out[name] = {"replies": int(replies), "tokens_in": int(tokens_in or 0),
                     "tokens_out": int(tokens_out or 0), "cost_usd": round(float(cost or 0), 6)}
    return out


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _banner(report: dict[str, Any]) -> list[str]:
    """Lines said before and after a comparison table when it is not a clean measurement."""
    lines = []
    if report.get("warning"):
        lines.append(f"!! NOT A MEASUREMENT: {report['warning']}")
    for text in report.get("warnings") or []:
        lines.append(f"!! FAILED PARTITION INCLUDED (--allow-failed): {text}")
    return lines


def _print_comparison(report: dict[str, Any]) -> None:
    banner = _banner(report)
    for line in banner:
        print(line)
    print(
        f"baseline: {report['baseline']}   dates: {', '.join(report['dates'])}   "
        f"alpha: {report['alpha']}"
    )
    header = (
        f"{'candidate':<26}{'category':<34}{'n':>6}{'flag':>6}{'rate/100k':>11}"
        f"{'base/100k':>11}{'ratio':>8}{'p':>10}  change"
    )
    current = None
    for row in report["rows"]:
        if row["candidate"] != current:
            current = row["candidate"]
            print()
            print(header)
        base_rate = (
            row["baseline_n_flagged"] / row["baseline_n_graded"] * 100_000
            if row["baseline_n_graded"]
            else None
        )
        mark = {"up": "UP  ▲", "down": "DOWN ▼"}.get(row["change"], "")
        print(
            f"{row['candidate']:<26}{row['category']:<34}{row['n_graded']:>6}"
            f"{row['n_flagged']:>6}{_fmt(row['rate_per_100k'], '>11.0f')}"
            f"{_fmt(base_rate, '>11.0f')}{_fmt(row['rate_ratio'], '>8.2f')}"
            f"{_fmt(row['p_value'], '>10.2g')}  {mark}"
        )
    median = (report.get("resampling_fidelity") or {}).get("median_error")
    if median is not None:
        print()
        print(
            f"resampling fidelity: median error {median:.2f}x "
            f"({report['baseline']} resampled vs production's real replies, same prefixes)"
        )
    if banner:
        print()
        for line in banner:
            print(line)


def _write_reports(report: dict[str, Any]) -> None:
    out = config.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# depsim comparison vs {report['baseline']}",
        "",
        *[f"> **{line}**\n" for line in _banner(report)],
        f"Dates: {', '.join(report['dates'])}; alpha {report['alpha']}.",
        "",
        "| candidate | category | n | flagged | rate/100k | ratio | p | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['candidate']} | {r['category']} | {r['n_graded']} | "
            f"{r['n_flagged']} | {_fmt(r['rate_per_100k'], '.0f')} | "
            f"{_fmt(r['rate_ratio'], '.2f')} | {_fmt(r['p_value'], '.2g')} | "
            f"{r['change']} |"
        )
    (out / "comparison.md").write_text("\n".join(lines) + "\n")


def cmd_compare(args: argparse.Namespace) -> int:
    """Print every candidate against the baseline (from the warehouse's judge_grades)."""
    report = _comparison_report(
        baseline=args.baseline,
        alpha=args.alpha,
        candidates=args.candidates,
        date_from=args.date_from,
        date_to=args.date_to,
        bh=args.bh,
        allow_failed=args.allow_failed,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_comparison(report)
    return 0


# ---------------------------------------------------------------------------------------- plan
def _baseline_rates(
    date_from: str | None, date_to: str | None
) -> tuple[str, list[tuple[str, int, int]]]:
    """The baseline's (category, flagged, graded), pooled over the window, from the warehouse."""
    from depsim_assets import warehouse
    from depsim_assets.estimates.compute import aggregate_rates
    from depsim_assets.registry import load_registry

    base = load_registry().baseline_name()
    path = config.warehouse_path()
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no warehouse yet: give --base-rate-per-100k, or run `depsim demo` first"
        )
    with warehouse.connection(str(path), read_only=True) as conn:
        rates = conn.execute(
            "SELECT candidate, traffic_date, category, family, n_replies, graded, flagged,"
            " unscored FROM behavior_rates WHERE candidate = ?",
            [base],
        ).df()
    pooled = aggregate_rates(rates, date_from=date_from, date_to=date_to)
    if pooled.empty:
        raise ValueError(f"no behavior_rates of the baseline {base!r}: materialize it first")
    rows = [
        (str(r["category"]), int(r["flagged"]), int(r["graded"])) for r in pooled.to_dict("records")
    ]
    return base, rows


def cmd_plan(args: argparse.Namespace) -> int:
    """Replies per arm for a base rate and ratio, or detectable ratios at a given n."""
    from depsim_assets.estimates.planner import Design, detectable_ratio, n_per_arm, power_at

    test = "exact McNemar on paired prefixes" if args.paired else "Fisher exact, two arms"
    if args.n is None:
        if args.base_rate_per_100k is None or args.ratio is None:
            raise ValueError("give --base-rate-per-100k and --ratio (or --n for detectable ratios)")
        design = Design(args.base_rate_per_100k / 100_000, args.alpha, args.power, args.paired)
        n = n_per_arm(design, args.ratio)
        out = {
            "n_per_arm": n,
            "base_rate_per_100k": args.base_rate_per_100k,
            "ratio": args.ratio,
            "alpha": args.alpha,
            "power": args.power,
            "achieved_power": round(power_at(n, design, args.ratio), 4),
            "paired": args.paired,
            "test": test,
        }
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            unit = "prefixes (pairs)" if args.paired else "graded replies per arm"
            print(
                f"{n:,} {unit} to detect {args.ratio:g}x at {args.base_rate_per_100k:g} per 100k "
                f"with power {args.power:g} at alpha {args.alpha:g} ({test})"
            )
        return 0
    if args.ratio is not None:
        raise ValueError("--ratio goes with the first form; with --n the ratio is the answer")
    if args.base_rate_per_100k is not None:
        baseline = None
        cats = [("(given)", args.base_rate_per_100k / 100_000)]
    else:
        baseline, counts = _baseline_rates(args.date_from, args.date_to)
        # A category never seen gets the Jeffreys-smoothed rate, not zero (zero is undetectable).
        cats = [(cid, (flagged + 0.5) / (graded + 1)) for cid, flagged, graded in counts]
    rows = []
    for cid, rate in cats:
        design = Design(rate, args.alpha, args.power, args.paired)
        up = detectable_ratio(args.n, design, up=True)
        down = detectable_ratio(args.n, design, up=False)
        rows.append(
            {
                "category": cid,
                "base_rate_per_100k": rate * 100_000,
                "min_ratio_up": _clean(up),
                "max_ratio_down": _clean(down) if down > 0 else None,
            }
        )
    out2 = {
        "n": args.n,
        "baseline": baseline,
        "alpha": args.alpha,
        "power": args.power,
        "paired": args.paired,
        "test": test,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(out2, indent=2))
        return 0
    print(
        f"smallest detectable change with {args.n:,} per arm, power {args.power:g}, "
        f"alpha {args.alpha:g} ({test}); baseline {baseline or 'as given'}"
    )
    print(f"{'category':<34}{'base/100k':>11}{'up x':>10}{'down x':>10}")
    for r in rows:
        print(
            f"{r['category']:<34}{r['base_rate_per_100k']:>11.0f}"
            f"{_fmt(r['min_ratio_up'], '>10.2f')}{_fmt(r['max_ratio_down'], '>10.2f')}"
        )
    return 0


# -------------------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML report (tables, plots, versions, summary)."""
    out = _write_html_report(
        baseline=args.baseline,
        alpha=args.alpha,
        bh=args.bh,
        out=Path(args.out) if args.out else None,
        allow_failed=args.allow_failed,
    )
    size = out.stat().st_size
    print(json.dumps({"report": str(out), "bytes": size}) if args.json else f"report: {out}")
    return 0


def _write_html_report(
    *,
    baseline: str | None,
    alpha: float,
    bh: bool = False,
    out: Path | None = None,
    allow_failed: bool = False,
    computed: tuple[str, Any, Any] | None = None,
) -> Path:
    from depsim_assets.estimates.report import build_report

    base, frame, guard = computed or _comparison_frame(
        baseline=baseline, alpha=alpha, bh=bh, allow_failed=allow_failed
    )
    out = out or config.reports_dir() / "report.html"
    html = build_report(frame, baseline=base, warehouse=config.warehouse_path(), guard=guard)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)  # never leave half a report where the reader looks
    return out


# ---------------------------------------------------------------------------------- candidates
def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    from depsim_assets import safe_yaml

    params: dict[str, Any] = {}
    for i, pair in enumerate(pairs, 1):
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            # Not echoed: a pasted key without '=' would land in the terminal's scrollback.
            raise ValueError(f"--param #{i}: expected KEY=VALUE")
        params[key] = safe_yaml.loads(raw, where=f"--param {key}")
    return params


# Fields `candidates add` sets from named arguments or not at all (retire has its command).
_ADD_FIXED_FIELDS = ("name", "base_url", "model", "api_key_env", "params", "deployed_on",
                     "retired")


def _field_flags() -> list[tuple[str, str, dict[str, Any]]]:
    """``(field, --flag, argparse kwargs)`` for every other registry field, read from
    :class:`Candidate` so a field added there gets its flag here without a second list."""
    import types
    import typing

    from depsim_assets.registry import Candidate

    flags = []
    for field, info in Candidate.model_fields.items():
        if field in _ADD_FIXED_FIELDS:
            continue
        kind = info.annotation
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kinds = [a for a in typing.get_args(kind) if a is not type(None)]
            kind = kinds[0] if len(kinds) == 1 else str
        kwargs: dict[str, Any] = {"default": None, "dest": f"field_{field}"}
        if typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        elif kind in (int, float, str):
            kwargs["type"] = kind
            kwargs["metavar"] = {int: "N", float: "X", str: "TEXT"}[kind]
        else:
            continue  # lists and mappings have their own repeatable flags
        default = info.get_default(call_default_factory=True)
        kwargs["help"] = f"{info.description or field} (default: {default})".replace("%", "%%")
        flags.append((field, "--" + field.replace("_", "-"), kwargs))
    return flags


def _register_partitions(names: Sequence[str]) -> list[str]:
    """Add ``production`` and ``names`` as candidate partitions on the CLI's Dagster instance
    (what the registry sensor does on a daemon), so a new candidate can be materialized at
    once. Returns the partitions added."""
    from depsim_assets.partitions import CANDIDATE_DIM, PRODUCTION

    instance = _instance()
    existing = set(instance.get_dynamic_partitions(CANDIDATE_DIM))
    new = [n for n in dict.fromkeys([PRODUCTION, *names]) if n not in existing]
    if new:
        instance.add_dynamic_partitions(CANDIDATE_DIM, new)
    return new


def cmd_candidates_add(args: argparse.Namespace) -> int:
    """Add or replace a registry entry and register its Dagster partition."""
    from depsim_assets.registry import make_candidate, upsert_candidate

    fields = {
        field: getattr(args, f"field_{field}")
        for field, _, _ in _field_flags()
        if getattr(args, f"field_{field}", None) is not None
    }
    entry = make_candidate(
        name=args.name,
        base_url=args.base_url,
        model=args.model or args.name,
        api_key_env=args.api_key_env,
        params=_parse_params(args.param),
        deployed_on=args.deployed_on,
        **fields,
    )
    registry = upsert_candidate(entry, baseline=args.baseline)
    try:
        added = _register_partitions([entry.name])
    except Exception as exc:  # noqa: BLE001 - the entry is saved; say what is left to do
        raise RuntimeError(
            f"registered {entry.name} in {config.registry_path()}, but its Dagster partition "
            f"could not be added ({type(exc).__name__}: {exc}); the candidate_registry_sensor "
            "adds it once a daemon runs (`depsim ui`)"
        ) from None
    out = {
        "added": entry.name,
        "registry": str(config.registry_path()),
        "baseline": registry.baseline,
        "candidates": registry.names(),
        "partitions_added": added,
    }
    print(
        json.dumps(out)
        if args.json
        else f"registered {entry.name} in {out['registry']} (baseline: {registry.baseline}); "
        f"partition {entry.name!r} is ready on {config.dagster_home()}"
    )
    return 0


def cmd_candidates_list(args: argparse.Namespace) -> int:
    """Show the registry (URLs without credentials)."""
    from depsim_assets.endpoints import display_endpoint
    from depsim_assets.registry import load_registry

    registry = load_registry()
    if args.json:
        body = registry.model_dump(mode="json")
        for entry in body["candidates"]:
            entry["base_url"] = display_endpoint(entry["base_url"])
        print(json.dumps(body, indent=2))
        return 0
    for cand in registry.candidates:
        mark = " (baseline)" if cand.name == registry.baseline else ""
        mark += " (retired)" if cand.retired else ""
        print(
            f"{cand.name}{mark}: {cand.model} at {display_endpoint(cand.base_url)}, key env "
            f"{cand.api_key_env or '-'}, samples {cand.samples}, mode {cand.mode}, "
            f"timeout {cand.timeout_s:g}s, retries {cand.max_retries}"
        )
    return 0


def cmd_candidates_retire(args: argparse.Namespace) -> int:
    """Mark a candidate retired (or active again with --undo); its data stays."""
    from depsim_assets.registry import retire_candidate

    changed = retire_candidate(args.name, undo=args.undo)
    state = "active" if args.undo else "retired"
    out = {"candidate": args.name, "state": state, "changed": changed}
    if args.json:
        print(json.dumps(out))
        return 0
    if not changed:
        print(f"{args.name} is already {state}; nothing changed")
    elif args.undo:
        print(f"{args.name} is active again: the candidate_registry_sensor adds its partitions")
    else:
        print(
            f"retired {args.name}: the candidate_registry_sensor removes its partitions on its "
            "next tick; its rows stay in the warehouse"
        )
    return 0


# ----------------------------------------------------------------------------- judge-agreement
def cmd_judge_agreement(args: argparse.Namespace) -> int:
    """The judge against a human labels file: per category and overall, with intervals."""
    from depsim_assets import warehouse
    from depsim_assets.judging.assets import run_agreement

    path = config.warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet (run `depsim demo` first)")
    with warehouse.connection(str(path), read_only=True) as conn:
        report, _ = run_agreement(
            conn, args.labels, candidate=args.candidate, reps=args.bootstrap, seed=args.seed
        )
    if args.json:
        print(json.dumps(report, indent=2, default=_clean))
        return 0
    print(
        f"judge vs {args.labels} on {report['candidate']} replies "
        f"(flag threshold {report['flag_threshold']}, {args.bootstrap} bootstrap resamples)"
    )
    print(
        f"{'category':<34}{'n':>6}{'unmat':>7}{'prev':>7}{'precision':>22}{'recall':>22}"
        f"{'kappa':>24}"
    )

    def cell(block: dict[str, Any], key: str) -> str:
        if block.get(key) is None:
            return "-"
        low, high = block.get(f"{key}_low"), block.get(f"{key}_high")
        bounds = f" [{_fmt(low, '.2f')},{_fmt(high, '.2f')}]"
        return f"{block[key]:.2f}{bounds}"

    blocks = [*report["per_category"].items(), ("overall", report["overall"])]
    for name, block in blocks:
        print(
            f"{name:<34}{block['n']:>6}{block['n_unmatched']:>7}"
            f"{_fmt(block['prevalence'], '>7.2f')}{cell(block, 'precision'):>22}"
            f"{cell(block, 'recall'):>22}{cell(block, 'kappa'):>24}"
        )
    return 0


# ------------------------------------------------------------------------------ ingest / sample
def cmd_ingest(args: argparse.Namespace) -> int:
    """Normalize log files into the production-log layout, one folder per day."""
    from depsim_assets.traffic.ingest import ingest_files

    try:
        result = ingest_files(
            args.files,
            date=args.date,
            fmt=args.format,
            max_record_bytes=args.max_record_bytes,
        ).as_dict()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        # Input files that break are counted inside; what escapes is the log's own disk, and
        # ingest writes to temporary files renamed only at the end, so the log is as it was.
        return _fail_env(_os_error_text(exc, config.log_root()) + ": nothing was ingested")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"ingested {result['records_in']} records from {len(result['files'])} file(s): "
            f"{result['written']} written, {result['quarantined']} quarantined, "
            f"{result['unreadable_files']} unreadable file(s)"
        )
        for reason, n in result["quarantine_reasons"].items():
            print(f"  quarantined {reason}: {n}")
        for entry in result["unreadable"]:
            print(f"  unreadable {entry['file']}: {entry['detail']}")
        for day, n in result["days"].items():
            print(f"  {day}: {n} records")
        print(f"log: {config.log_root()}")
    if result["unreadable"]:
        # The readable files were ingested; the command still fails so a script notices.
        first = result["unreadable"][0]
        more = len(result["unreadable"]) - 1
        return _fail(
            f"{first['file']}: unreadable ({first['detail']})"
            + (f" and {more} more file(s)" if more else "")
            + "; the other files were ingested"
        )
    return 0


def _sample_counts(date: str) -> dict[str, Any]:
    from depsim_assets import warehouse

    with warehouse.connection(str(config.warehouse_path()), read_only=True) as conn:
        funnel = conn.execute(
            "SELECT stage, reason, n FROM sampling_funnel WHERE traffic_date = ?", [date]
        ).fetchall()
        pii_rows = conn.execute(
            "SELECT pii_counts_json FROM sampled_conversations WHERE traffic_date = ?", [date]
        ).fetchall()
        unreadable = conn.execute(
            "SELECT source_file, detail, line_number FROM sampling_quarantine"
            " WHERE traffic_date = ? AND reason = 'unreadable_file' ORDER BY source_file",
            [date],
        ).fetchall()
    by_stage: dict[str, dict[str, int]] = {}
    for stage, reason, n in funnel:
        by_stage.setdefault(stage, {})[reason] = int(n)
    pii: dict[str, int] = {}
    for (raw,) in pii_rows:
        for kind, n in json.loads(raw or "{}").items():
            pii[kind] = pii.get(kind, 0) + int(n)
    quarantine = dict(sorted(by_stage.get("quarantined", {}).items()))
    return {
        "date": date,
        "records_in": by_stage.get("records_in", {}).get("", 0),
        "quarantined": sum(quarantine.values()),
        "quarantine_reasons": quarantine,
        "ineligible": dict(sorted(by_stage.get("ineligible", {}).items())),
        "eligible": by_stage.get("eligible", {}).get("", 0),
        "sampled": by_stage.get("sampled", {}).get("", 0),
        "pii_replaced": dict(sorted(pii.items())),
        "unreadable_files": sum(by_stage.get("unreadable_file", {}).values()),
        "unreadable": [
            {"file": f, "detail": d, "lines_read": int(n)} for f, d, n in unreadable
        ],
        # Drawn conversations quarantined for residual PII before writing (helper B's gate).
        "residual_quarantined": sum(by_stage.get("residual_quarantined", {}).values()),
        "kept": by_stage.get("kept", {}).get("", 0),
    }


def cmd_sample(args: argparse.Namespace) -> int:
    """Materialize sampled_conversations and conversation_prefixes for one day."""
    from depsim_assets import runs, warehouse
    from depsim_assets.traffic.logs import day_folder
    from depsim_assets.traffic.pipeline import check_stratify_field

    config.deid_salt()  # no secret salt, no sampling (exit 2 with how to make one)
    folder = day_folder(None, args.date)
    if not folder.is_dir():
        raise FileNotFoundError(f"no production log for {args.date}: {folder} (run depsim ingest)")
    if args.fraction is not None and not 0.0 < args.fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    if args.size is not None and args.size < 0:
        raise ValueError(f"--size must be >= 0, got {args.size}")
    check_stratify_field(args.stratify_by)
    exclude_metadata: dict[str, list[str]] = {}
    for pair in args.exclude_metadata:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--exclude-metadata {pair!r}: expected KEY=VALUE")
        exclude_metadata.setdefault(key, []).append(value)
    op_config: dict[str, Any] = {"seed": args.seed, "exclude_metadata": exclude_metadata}
    if args.size is not None:
        op_config["sample_size"] = args.size
    if args.fraction is not None:
        op_config["sample_fraction"] = args.fraction
    if args.stratify_by:
        op_config["stratify_by"] = args.stratify_by
    if args.exclude_source is not None:
        op_config["exclude_sources"] = args.exclude_source
    if args.exclude_model is not None:
        op_config["exclude_models"] = args.exclude_model
    run_config = {
        "ops": {"sampled_conversations": {"config": op_config}},
        # Dagster logs a failed step with its stack trace at ERROR; the user gets one line
        # (below) and the full event stays on the instance, for `depsim ui`.
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    plan = [runs.PlannedRun(f"traffic {args.date}", runs.TRAFFIC_ASSETS, args.date, run_config)]
    try:
        runs.execute(plan, _instance())
    except runs.RunFailed as exc:
        # The machine failed, not the input: exit 1 (the message was made one line already).
        cause = getattr(exc.__cause__, "user_exception", None) or exc.__cause__
        if isinstance(cause, warehouse.WarehouseWriteError):
            return _fail_env(str(cause))
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            return _fail_env(_os_error_text(cause))
        raise
    counts = _sample_counts(args.date)
    if args.json:
        print(json.dumps(counts))
        return 0
    print(
        f"{counts['date']}: {counts['records_in']} records in, {counts['quarantined']} "
        f"quarantined, {sum(counts['ineligible'].values())} ineligible, {counts['eligible']} "
        f"eligible, {counts['sampled']} sampled, {counts['unreadable_files']} unreadable file(s)"
    )
    for key in ("quarantine_reasons", "ineligible", "pii_replaced"):
        if counts[key]:
            print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in counts[key].items()))
    for entry in counts["unreadable"]:
        print(f"  unreadable {entry['file']}: {entry['detail']}")
    print(f"warehouse: {config.warehouse_path()}")
    return 0


# ------------------------------------------------------------------------------------ backfill
def cmd_backfill(args: argparse.Namespace) -> int:
    """Submit days x candidates as one Dagster backfill; the daemon runs it in parallel."""
    from depsim_assets import backfills, runs
    from depsim_assets.registry import load_registry

    dates = backfills.date_range(args.start, args.end)
    registered = load_registry(config.registry_path()).names()
    if args.candidates is None:
        names = backfills.default_candidates(registered)
    else:
        names = [c.strip() for c in args.candidates.split(",") if c.strip()]
        unknown = [c for c in names if c not in registered and c != "production"]
        if unknown:
            raise ValueError(
                f"unknown candidates {', '.join(unknown)}; registered: {', '.join(registered)}"
            )
    instance = _instance()
    runs.ensure_candidate_partitions(instance, [c for c in names if c != "production"])
    backfill_id = backfills.submit_backfill(
        instance, dates, names, traffic=not args.skip_traffic, title=args.title
    )
    say = sys.stderr if args.json else sys.stdout
    print(
        f"backfill {backfill_id}: {len(dates)} days ({dates[0]}..{dates[-1]}) x "
        f"{', '.join(names)}" + ("" if args.skip_traffic else " (+ traffic)"),
        file=say,
    )
    if not backfills.daemon_running(instance):
        print(
            "no Dagster daemon is running on this instance, so nothing runs yet: start "
            f"`depsim ui` (dagster dev runs one) or `DAGSTER_HOME={config.dagster_home()} "
            "dagster-daemon run -w workspace.yaml`",
            file=say,
        )
    if not args.wait:
        if args.json:
            print(json.dumps(backfills.backfill_status(instance, backfill_id).as_dict()))
        return 0

    def show(status: backfills.BackfillStatus) -> None:
        if not args.json:
            print(
                f"  {status.status}: {status.materialized}/{status.target} partitions, "
                f"{status.failed} failed, runs {status.runs}",
                flush=True,
            )

    final = backfills.wait_for_backfill(
        instance, backfill_id, timeout_s=args.timeout, poll_s=5.0, on_poll=show
    )
    if args.json:
        print(json.dumps(final.as_dict()))
    return 0 if final.status == "COMPLETED_SUCCESS" else 1


# ------------------------------------------------------------------------------------ sim / ui
def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve the simulator until interrupted."""
    from depsim_assets.sim import serve
    from depsim_assets.sim.faults import FaultPlan

    faults = FaultPlan.parse(args.faults) if args.faults else None
    print(f"depsim simulator on http://{args.host}:{args.port}/v1 (Ctrl-C to stop)", flush=True)
    serve(args.host, args.port, faults=faults)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Start ``dagster dev`` on this home folder's instance."""
    home = _prepare_dagster_home()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    workspace = config.PROJECT_ROOT / "workspace.yaml"
    cmd = ["dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    print(f"DAGSTER_HOME={home} {' '.join(cmd)}", flush=True)
    return subprocess.call(cmd, env=env, cwd=config.PROJECT_ROOT)


def _fault_help() -> str:
    from depsim_assets.sim.faults import SPEC_HELP

    return SPEC_HELP


# -------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    from depsim_demo import registry as demo

    parser = argparse.ArgumentParser(
        prog="depsim",
        description="Deployment Simulation: replay real traffic through candidate models, "
        "grade every reply, compare behaviour rates. Files live under $DEPSIM_HOME "
        "(default ./.depsim).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="build a synthetic log, register sim candidates, run it all")
    p.add_argument("--days", type=int, default=demo.DEMO_DAYS, help="days of traffic")
    p.add_argument("--end-date", default=demo.DEMO_END_DATE, help="last day (YYYY-MM-DD)")
    p.add_argument(
        "--per-day",
        type=int,
        default=demo.DEMO_PER_DAY,
        help="conversations written to the log per day",
    )
    p.add_argument(
        "--sample-size",
        type=int,
        default=demo.DEMO_SAMPLE_SIZE,
        help="conversations sampled per day",
    )
    p.add_argument("--seed", type=int, default=demo.DEMO_SEED, help="seed of the synthetic log")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compare", help="every candidate vs the baseline, per category")
    p.add_argument("--baseline", help="baseline candidate (default: the registry's)")
    p.add_argument("--alpha", type=float, default=0.1, help="significance level (default 0.1)")
    p.add_argument(
        "--candidates", nargs="+", metavar="NAME", help="only these candidates (default: all)"
    )
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day pooled")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last day pooled")
    p.add_argument(
        "--bh",
        action="store_true",
        help="Benjamini-Hochberg q-values across categories decide significance",
    )
    p.add_argument(
        "--allow-failed",
        action="store_true",
        help="compare partitions that failed a blocking check or are mostly unscored "
        "(refused by default), each named in a warning",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "plan",
        help="replies per arm for a base rate and ratio, or detectable ratios at --n",
        description="Form 1: --base-rate-per-100k R --ratio X gives the replies needed per arm. "
        "Form 2: --n N gives, per category at the baseline's current rates (or at "
        "--base-rate-per-100k), the smallest ratio detectable either way.",
    )
    p.add_argument("--base-rate-per-100k", type=float, help="baseline rate per 100k replies")
    p.add_argument("--ratio", type=float, help="candidate rate / baseline rate to detect")
    p.add_argument("--n", type=int, help="replies per arm available (second form)")
    p.add_argument("--alpha", type=float, default=0.1, help="significance level (default 0.1)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument(
        "--paired", action="store_true", help="plan for the McNemar test on the same prefixes"
    )
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="rates window start")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="rates window end")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("report", help="write one self-contained HTML report")
    p.add_argument("--out", metavar="FILE.html", help="default: $DEPSIM_HOME/reports/report.html")
    p.add_argument("--baseline", help="baseline candidate (default: the registry's)")
    p.add_argument("--alpha", type=float, default=0.1, help="significance level (default 0.1)")
    p.add_argument("--bh", action="store_true", help="Benjamini-Hochberg q-values decide")
    p.add_argument(
        "--allow-failed",
        action="store_true",
        help="include partitions that failed a blocking check, marked (refused by default)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("candidates", help="edit or show the candidate registry")
    csub = p.add_subparsers(dest="action", required=True)
    a = csub.add_parser("add", help="add or replace a candidate")
    a.add_argument("name", help="candidate name (letters, digits, '.', '_', '-')")
    a.add_argument(
        "--base-url",
        required=True,
        help="OpenAI-compatible base URL, or 'sim' for the built-in simulator",
    )
    a.add_argument("--model", help="model name at the endpoint (default: the candidate name)")
    a.add_argument("--api-key-env", help="NAME of the env var holding the API key")
    a.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generation parameter, repeatable (e.g. temperature=0.7)",
    )
    for _, flag, kwargs in _field_flags():
        a.add_argument(flag, **kwargs)
    a.add_argument(
        "--deployed-on",
        action="append",
        default=[],
        metavar="YYYY-MM-DD",
        help="a day this model served production, repeatable",
    )
    a.add_argument("--baseline", action="store_true", help="make it the baseline")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=cmd_candidates_add)
    ls = csub.add_parser("list", help="show registered candidates")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_candidates_list)
    r = csub.add_parser(
        "retire", help="retire a candidate: no more runs or partitions, its data stays"
    )
    r.add_argument("name", help="a registered candidate (not the baseline)")
    r.add_argument("--undo", action="store_true", help="make a retired candidate active again")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(func=cmd_candidates_retire)

    p = sub.add_parser(
        "judge-agreement", help="the judge's precision, recall and kappa against human labels"
    )
    p.add_argument(
        "--labels",
        required=True,
        help="JSONL: conversation_id, category (or 'any'), label 0/1, optional annotator",
    )
    p.add_argument(
        "--candidate",
        default="production",
        help="whose replies were labelled (default: production, the original replies)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_judge_agreement)

    p = sub.add_parser("ingest", help="normalize log files into the production log by day")
    p.add_argument("files", nargs="+", metavar="FILE", help="JSONL, JSON or Parquet log files")
    p.add_argument(
        "--date", required=True, help="day (YYYY-MM-DD) of records that carry no timestamp"
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "openai", "sharegpt", "anthropic", "parquet"],
        help="source format (default: detected per file and record)",
    )
    p.add_argument(
        "--max-record-bytes", type=int, default=1 << 20, help="larger records are quarantined"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("sample", help="sample and de-identify one day (through Dagster)")
    p.add_argument("--date", required=True, help="traffic day (YYYY-MM-DD)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", type=int, help="conversations to sample (default 400)")
    size.add_argument("--fraction", type=float, help="fraction of eligible conversations")
    p.add_argument("--seed", type=int, default=20261126, help="seed of the sample")
    p.add_argument(
        "--stratify-by", help="'source', 'model' or 'metadata.<key>' (proportional allocation)"
    )
    p.add_argument(
        "--exclude-source",
        action="append",
        metavar="SOURCE",
        help="never sample this source, repeatable (default: internal_test)",
    )
    p.add_argument(
        "--exclude-model", action="append", metavar="MODEL", help="never sample this model"
    )
    p.add_argument(
        "--exclude-metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="never sample conversations whose metadata KEY is VALUE, repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the day's counts as JSON")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "backfill",
        help="submit days x candidates as one Dagster backfill (the daemon runs it in parallel)",
        description=(
            "Stores one asset backfill on the instance, as the UI's Materialize > partition "
            "range does: traffic assets per day, then replay, grading and rates per candidate "
            "x day. The Dagster daemon (started by `depsim ui`, or `dagster-daemon run`) "
            "launches its runs, at most max_concurrent_runs at once (dagster.yaml)."
        ),
    )
    p.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    p.add_argument(
        "--candidates",
        metavar="A,B,C",
        help="comma-separated candidates (default: production and every registered one)",
    )
    p.add_argument(
        "--skip-traffic",
        action="store_true",
        help="do not re-sample the days (their traffic partitions are already materialized)",
    )
    p.add_argument("--title", help="backfill title shown in the UI")
    p.add_argument("--wait", action="store_true", help="poll until the backfill is finished")
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)"
    )
    p.add_argument("--json", action="store_true", help="print the backfill status as JSON")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("sim", help="the built-in OpenAI-compatible simulator")
    ssub = p.add_subparsers(dest="action", required=True)
    s = ssub.add_parser("serve", help="serve the simulator over HTTP")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--faults", metavar="SPEC", help="inject faults: " + _fault_help())
    s.set_defaults(func=cmd_sim_serve)

    p = sub.add_parser("ui", help="open the Dagster UI on this home folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``depsim`` console script."""
    args = build_parser().parse_args(argv)
    # Partitioned asset checks are a Dagster preview feature (the README says so); its warning
    # on every command would bury the output a user came for.
    warnings.filterwarnings("ignore", message=r".*is currently in preview")
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except OSError as exc:
        return _fail_env(_os_error_text(exc))


if __name__ == "__main__":
    sys.exit(main())
