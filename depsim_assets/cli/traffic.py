"""``depsim ingest`` and ``depsim sample``: bring logs in, sample and de-identify a day."""

from __future__ import annotations

import argparse
import json
from typing import Any

from depsim_assets import config
from depsim_assets.cli.common import fail, fail_env, os_error_text
from depsim_assets.cli.instance import get_instance


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
        return fail_env(os_error_text(exc, config.log_root()) + ": nothing was ingested")
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
        return fail(
            f"{first['file']}: unreadable ({first['detail']})"
            + (f" and {more} more file(s)" if more else "")
            + "; the other files were ingested"
        )
    return 0


def _sample_counts(date: str) -> dict[str, Any]:
    from depsim_assets import warehouse

    with warehouse.configured(read_only=True) as conn:
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
        runs.execute(plan, get_instance())
    except runs.RunFailed as exc:
        # The machine failed, not the input: exit 1 (the message was made one line already).
        cause = getattr(exc.__cause__, "user_exception", None) or exc.__cause__
        if isinstance(cause, warehouse.WarehouseWriteError):
            return fail_env(str(cause))
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            return fail_env(os_error_text(cause))
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
    print(f"warehouse: {warehouse.location()}")
    return 0


def add_ingest(sub: argparse._SubParsersAction) -> None:
    """``depsim ingest``."""
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


def add_sample(sub: argparse._SubParsersAction) -> None:
    """``depsim sample``."""
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
