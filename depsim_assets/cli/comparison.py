"""The comparison the CLI shows: the materialized ``candidate_comparison`` table.

``depsim compare``, ``depsim report`` and ``depsim demo`` read the rows the asset wrote, so
the terminal, the HTML report and the UI show one computation. Before reading, the CLI asks
its Dagster instance whether those rows answer the question: the asset's latest
materialization must exist, be newer than the newest ``judge_grades`` materialization and than
the candidate registry (baseline, deployed days), and have run with the settings asked for
(``alpha``, ``bh``; the run config is on the instance). Otherwise the CLI materializes the
asset with those settings, as the UI's *Materialize* would, and then reads it.

A baseline other than the registry's and a date window are fields of the asset's config
(``baseline``, ``date_from``, ``date_to``), so they go to the asset like ``alpha``: the stored
table is always the comparison last asked for, made by the asset. ``--candidates`` picks rows
of the stored table (a candidate's rows do not depend on the others). The per-day rows
(``--by-day``, the report's trend plot) come from ``candidate_comparison_by_day``, which the
same run writes in the same transaction.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from depsim_assets import config
from depsim_assets.cli.instance import get_instance

if TYPE_CHECKING:
    import dagster as dg
    import pandas as pd

    from depsim_assets.estimates.guard import Guard

ASSET = "candidate_comparison"


def comparison_frame(
    *,
    baseline: str | None,
    alpha: float,
    candidates: Sequence[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    bh: bool = False,
    allow_failed: bool = False,
) -> tuple[str, pd.DataFrame, Guard]:
    """``(baseline, comparison rows, guard)``; refused (one line) when a compared partition
    failed a blocking check or is mostly unscored, unless ``allow_failed`` (then the guard's
    warnings go into every output)."""
    from depsim_assets import warehouse
    from depsim_assets.definitions import ASSETS
    from depsim_assets.estimates.compute import check_window
    from depsim_assets.estimates.guard import blocking_checks, guard_comparison
    from depsim_assets.registry import load_registry

    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1) (got {alpha})")
    registry = load_registry()
    base = baseline or registry.baseline_name()
    if not warehouse.exists():
        raise FileNotFoundError(
            f"{warehouse.location()}: no warehouse yet (run `depsim demo` first)"
        )
    check_window(date_from, date_to)  # a bad date is one line, before any work
    with warehouse.configured(read_only=True) as conn:
        graded = _graded(conn, date_from, date_to)
    if candidates:
        unknown = [c for c in candidates if c not in graded]
        if unknown:
            raise ValueError(
                f"--candidates: no judge_grades for {', '.join(unknown)} "
                f"(graded: {', '.join(sorted(graded)) or 'none'})"
            )
    others = any(n for name, n in graded.items() if name != base)
    if not any(graded.values()) or not (candidates or others):
        window = f" between {date_from or 'the start'} and {date_to or 'the end'}"
        raise ValueError(
            "no judge_grades in the warehouse"
            + (window if date_from or date_to else "")
            + ": materialize the graph first"
        )
    settings: dict[str, Any] = {"alpha": alpha, "bh": bh}
    # Left out when it is the default, so a stored run with the defaults still answers.
    settings.update(
        {
            k: v
            for k, v in (("baseline", baseline), ("date_from", date_from), ("date_to", date_to))
            if v is not None and not (k == "baseline" and v == registry.baseline_name())
        }
    )
    instance = get_instance()
    frame = _materialized(instance, settings, base, candidates)
    with warehouse.configured(read_only=True) as conn:
        guard = guard_comparison(frame, conn, instance=instance, checks=blocking_checks(ASSETS))
    if guard.issues and not allow_failed:
        raise ValueError(guard.refusal())
    return base, frame, guard


def _graded(conn, date_from: str | None, date_to: str | None) -> dict[str, int]:
    """Per candidate with any grade row: how many of its rows lie in the window."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'judge_grades'"
    ).fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute(
        "SELECT candidate, count(*) FILTER (WHERE traffic_date >= coalesce(?, traffic_date)"
        " AND traffic_date <= coalesce(?, traffic_date)) FROM judge_grades GROUP BY candidate",
        [date_from, date_to],
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def _materialized(
    instance: dg.DagsterInstance,
    settings: dict[str, Any],
    base: str,
    candidates: Sequence[str] | None,
) -> pd.DataFrame:
    """The stored rows, materialized first when they are missing, stale or made otherwise."""
    why = stale_reason(instance, settings)
    if why is not None:
        if sys.stderr.isatty():  # a note for a person; scripts read stdout and the exit code
            print(f"{ASSET} {why}: materializing it", file=sys.stderr, flush=True)
        materialize(instance, settings)
    frame = read_comparison()
    if not frame.empty and set(frame["baseline"]) != {base}:
        raise RuntimeError(
            f"{ASSET} was just materialized against {', '.join(sorted(set(frame['baseline'])))}"
            f", not {base}: the registry changed meanwhile; run the command again"
        )
    return select(frame, base, candidates)


def stale_reason(instance: dg.DagsterInstance, settings: dict[str, Any]) -> str | None:
    """Why the stored comparison does not answer ``settings`` now, or None when it does."""
    import dagster as dg

    from depsim_assets.estimates.assets import ComparisonConfig

    [latest] = instance.fetch_materializations(dg.AssetKey(ASSET), limit=1).records or [None]
    if latest is None:
        return "is not materialized on this instance yet"
    grades = instance.fetch_materializations(dg.AssetKey("judge_grades"), limit=1).records
    if grades and grades[0].storage_id > latest.storage_id:
        return "is older than the newest judge_grades"
    registry = config.registry_path()
    if registry.exists() and registry.stat().st_mtime > latest.timestamp:
        return f"is older than {registry.name}"
    if not _has_by_day():
        return "was made by an older depsim (no candidate_comparison_by_day)"
    run = instance.get_run_by_id(latest.run_id)
    used = _op_config(run.run_config if run else {})
    try:
        same = ComparisonConfig(**used) == ComparisonConfig(**settings)
    except Exception:  # noqa: BLE001 - a config this depsim cannot read is not this one
        same = False
    if not same:
        return f"was materialized with other settings ({used or 'the defaults'})"
    return None


def _has_by_day() -> bool:
    """Whether the warehouse holds the per-day table the same run writes."""
    from depsim_assets import warehouse

    with warehouse.configured(read_only=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_name = 'candidate_comparison_by_day'"
        ).fetchone()
    return bool(found and found[0])


def _op_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The asset's own config in a run config ({} when the run used the defaults)."""
    found: Any = run_config
    for key in ("ops", ASSET, "config"):
        found = found.get(key) if isinstance(found, Mapping) else None
    return dict(found) if isinstance(found, Mapping) else {}


def materialize(instance: dg.DagsterInstance, settings: dict[str, Any]) -> None:
    """Run the asset with ``settings`` on ``instance`` (a run like any other, tagged cli)."""
    from depsim_assets import runs

    run_config = {
        "ops": {ASSET: {"config": settings}},
        # Dagster logs a failed step with its stack trace; the user gets one line (main).
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    try:
        runs.execute([runs.PlannedRun("comparison", (ASSET,), None, run_config)], instance)
    except runs.RunFailed as exc:
        cause = getattr(exc.__cause__, "user_exception", None)
        if isinstance(cause, ValueError | OSError):
            raise cause from None  # the asset's own words: a version mix, a missing baseline
        raise


def read_comparison() -> pd.DataFrame:
    """Every row of the materialized table (read-only)."""
    from depsim_assets import warehouse

    with warehouse.configured(read_only=True) as conn:
        return conn.execute(f"SELECT * FROM {ASSET}").df()


def select(
    frame: pd.DataFrame, base: str, candidates: Sequence[str] | None
) -> pd.DataFrame:
    """The rows of ``candidates`` (all, by name, when None) in taxonomy order, checked as the
    comparison itself checks them."""
    from depsim_assets.estimates.assets import taxonomy_categories

    if candidates and base in candidates:
        raise ValueError(f"candidate {base!r} is the baseline; compare it with another one")
    names = list(candidates) if candidates else sorted(set(frame["candidate"]))
    for name in names:
        if not (frame["candidate"] == name).any():
            raise ValueError(f"candidate {name!r} has no judge_grades")
    order = {cid: i for i, (cid, _) in enumerate(taxonomy_categories())}
    rank = {name: i for i, name in enumerate(names)}
    keys = [
        (rank.get(str(c), -1), order.get(str(k), len(order)))
        for c, k in zip(frame["candidate"], frame["category"], strict=True)
    ]
    rows = sorted((i for i, key in enumerate(keys) if key[0] >= 0), key=keys.__getitem__)
    return frame.iloc[rows].reset_index(drop=True)



def read_by_day(base: str, candidates: Sequence[str] | None) -> pd.DataFrame:
    """The stored per-day rows (``candidate_comparison_by_day``) of ``candidates`` (all when
    None): candidates in the order asked (else by name), then taxonomy order, then day (each
    category's days together: a trend reads down the rows).

    Read after :func:`comparison_frame`, which made the stored run the one asked for (and
    re-materializes a comparison stored by a depsim that wrote no per-day table).
    """
    from depsim_assets import warehouse
    from depsim_assets.estimates.assets import taxonomy_categories

    if not _has_by_day():  # comparison_frame re-materializes first; a race lands here
        raise ValueError(f"no per-day comparison in the warehouse: materialize {ASSET} again")
    with warehouse.configured(read_only=True) as conn:
        frame = conn.execute("SELECT * FROM candidate_comparison_by_day").df()
    if not frame.empty and set(frame["baseline"]) != {base}:
        raise RuntimeError(
            f"candidate_comparison_by_day is against {', '.join(sorted(set(frame['baseline'])))}"
            f", not {base}: run the command again"
        )
    names = list(candidates) if candidates else sorted(set(frame["candidate"]))
    order = {cid: i for i, (cid, _) in enumerate(taxonomy_categories())}
    rank = {name: i for i, name in enumerate(names)}
    keys = [
        (rank.get(str(c), -1), order.get(str(k), len(order)), str(d))
        for c, d, k in zip(frame["candidate"], frame["traffic_date"], frame["category"],
                           strict=True)
    ]
    rows = sorted((i for i, key in enumerate(keys) if key[0] >= 0), key=keys.__getitem__)
    return frame.iloc[rows].reset_index(drop=True)
