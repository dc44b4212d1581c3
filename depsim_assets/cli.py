"""``depsim``: the command line. Every command has ``--help``; scripts read ``--json``."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from depsim_assets import config

# Problems a user can fix: printed as one line, exit code 2, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError)


def _fail(message: str) -> int:
    print(f"depsim: error: {message}", file=sys.stderr)
    return 2


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


# ---------------------------------------------------------------------------------------- demo
# depsim runs offline and handles private traffic: a new instance does not phone home.
INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def _prepare_dagster_home() -> Path:
    home = config.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(INSTANCE_YAML)
    return home


def _instance():
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(_prepare_dagster_home())
    return dg.DagsterInstance.get()


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the log if absent, register the sim candidates, materialize everything."""
    from tqdm import tqdm

    from depsim_assets import demo, runs
    from depsim_assets.traffic.synth import write_demo_log

    dates = demo.demo_dates(args.end_date, args.days)
    root = config.log_root()
    missing = [d for d in dates if not (root / d).exists()]
    if missing:
        say = sys.stderr if args.json else sys.stdout
        print(f"writing synthetic production log for {', '.join(missing)} under {root}", file=say)
        write_demo_log(root, missing, per_day=args.per_day, seed=args.seed)
    registry = demo.register_sim_candidates()
    instance = _instance()
    runs.ensure_candidate_partitions(instance, registry.names())
    plan = runs.plan_graph(dates, registry.names(), sample_size=args.sample_size, log_level="ERROR")
    with tqdm(
        total=len(plan), desc="materializing", unit="run", file=sys.stderr, disable=args.no_progress
    ) as bar:

        def advance(run: runs.PlannedRun) -> None:
            bar.set_postfix_str(run.label)
            bar.update(1)

        runs.execute(plan, instance, on_run=advance)
    report = _comparison_report(baseline=None, alpha=0.1)
    _write_reports(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_comparison(report)
        print()
        print(f"warehouse: {config.warehouse_path()}")
        print(f"report:    {config.reports_dir() / 'comparison.md'}")
        print(
            f"UI:        depsim ui   (or: DAGSTER_HOME={config.dagster_home()} "
            "dagster dev -w workspace.yaml)"
        )
    return 0


# ------------------------------------------------------------------------------------- compare
def _comparison_report(*, baseline: str | None, alpha: float) -> dict[str, Any]:
    import duckdb

    from depsim_assets.estimates.assets import read_all_grades, taxonomy_categories
    from depsim_assets.estimates.compute import build_comparison
    from depsim_assets.registry import load_registry

    base = baseline or load_registry().baseline_name()
    path = config.warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet (run `depsim demo` first)")
    with duckdb.connect(str(path), read_only=True) as conn:
        grades = read_all_grades(conn)
    frame = build_comparison(grades, taxonomy_categories(), baseline=base, alpha=alpha)
    if frame.empty:
        raise ValueError("no judge_grades in the warehouse: materialize the graph first")
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
    ]
    rows = [{f: _clean(rec[f]) for f in fields} for rec in frame.to_dict("records")]
    dates = sorted({d for ds in frame["dates"] for d in ds.split(",") if d})
    return {"baseline": base, "dates": dates, "alpha": alpha, "rows": rows}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_comparison(report: dict[str, Any]) -> None:
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


def _write_reports(report: dict[str, Any]) -> None:
    out = config.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# depsim comparison vs {report['baseline']}",
        "",
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
    report = _comparison_report(baseline=args.baseline, alpha=args.alpha)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_comparison(report)
    return 0


# ---------------------------------------------------------------------------------- candidates
def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        params[key] = yaml.safe_load(raw)
    return params


def cmd_candidates_add(args: argparse.Namespace) -> int:
    """Add or replace a registry entry."""
    from depsim_assets.registry import make_candidate, upsert_candidate

    entry = make_candidate(
        name=args.name,
        base_url=args.base_url,
        model=args.model or args.name,
        api_key_env=args.api_key_env,
        params=_parse_params(args.param),
        samples=args.samples,
        max_concurrency=args.max_concurrency,
        deployed_on=args.deployed_on,
    )
    registry = upsert_candidate(entry, baseline=args.baseline)
    out = {
        "added": entry.name,
        "registry": str(config.registry_path()),
        "baseline": registry.baseline,
        "candidates": registry.names(),
    }
    print(
        json.dumps(out)
        if args.json
        else f"registered {entry.name} in {out['registry']} (baseline: {registry.baseline})"
    )
    return 0


def cmd_candidates_list(args: argparse.Namespace) -> int:
    """Show the registry."""
    from depsim_assets.registry import load_registry

    registry = load_registry()
    if args.json:
        print(json.dumps(registry.model_dump(mode="json"), indent=2))
        return 0
    for cand in registry.candidates:
        mark = " (baseline)" if cand.name == registry.baseline else ""
        print(
            f"{cand.name}{mark}: {cand.model} at {cand.base_url}, key env "
            f"{cand.api_key_env or '-'}, samples {cand.samples}"
        )
    return 0


# ------------------------------------------------------------------------------------ sim / ui
def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve the simulator until interrupted."""
    from depsim_assets.sim import serve

    print(f"depsim simulator on http://{args.host}:{args.port}/v1 (Ctrl-C to stop)", flush=True)
    serve(args.host, args.port)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Start ``dagster dev`` on this home folder's instance."""
    home = _prepare_dagster_home()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    workspace = config.PROJECT_ROOT / "workspace.yaml"
    cmd = ["dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    print(f"DAGSTER_HOME={home} {' '.join(cmd)}", flush=True)
    return subprocess.call(cmd, env=env, cwd=config.PROJECT_ROOT)


# -------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    from depsim_assets import demo

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
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_compare)

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
    a.add_argument("--samples", type=int, default=1, help="samples per prefix")
    a.add_argument("--max-concurrency", type=int, default=16, help="concurrent requests")
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

    p = sub.add_parser("sim", help="the built-in OpenAI-compatible simulator")
    ssub = p.add_subparsers(dest="action", required=True)
    s = ssub.add_parser("serve", help="serve the simulator over HTTP")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.set_defaults(func=cmd_sim_serve)

    p = sub.add_parser("ui", help="open the Dagster UI on this home folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``depsim`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
