"""``depsim judge-agreement``: the judge against human labels."""

from __future__ import annotations

import argparse
import json
from typing import Any

from depsim_assets.cli.common import clean, fmt


def cmd_judge_agreement(args: argparse.Namespace) -> int:
    """The judge against a human labels file: per category and overall, with intervals."""
    from depsim_assets import warehouse
    from depsim_assets.judging.assets import run_agreement

    if not warehouse.exists():
        raise FileNotFoundError(
            f"{warehouse.location()}: no warehouse yet (run `depsim demo` first)"
        )
    with warehouse.configured(read_only=True) as conn:
        report, _ = run_agreement(
            conn, args.labels, candidate=args.candidate, reps=args.bootstrap, seed=args.seed
        )
    if args.json:
        print(json.dumps(report, indent=2, default=clean))
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
        bounds = f" [{fmt(low, '.2f')},{fmt(high, '.2f')}]"
        return f"{block[key]:.2f}{bounds}"

    blocks = [*report["per_category"].items(), ("overall", report["overall"])]
    for name, block in blocks:
        print(
            f"{name:<34}{block['n']:>6}{block['n_unmatched']:>7}"
            f"{fmt(block['prevalence'], '>7.2f')}{cell(block, 'precision'):>22}"
            f"{cell(block, 'recall'):>22}{cell(block, 'kappa'):>24}"
        )
    return 0


def add_judge_agreement(sub: argparse._SubParsersAction) -> None:
    """``depsim judge-agreement``."""
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
