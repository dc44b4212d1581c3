"""Estimates: rates, comparisons, fidelity, forecast validation and the sample-size planner.

The logic modules need no Dagster (``assets.py`` holds the thin wrappers); this is what other
stages and scripts may use.
"""

from depsim_assets.estimates.compute import (
    VersionMixError,
    aggregate_rates,
    build_comparison,
    comparison_from_relation,
    rates_from_grades,
)
from depsim_assets.estimates.forecast import resampling_fidelity, validate_forecast
from depsim_assets.estimates.planner import Design, detectable_ratio, n_per_arm, power_at
from depsim_assets.estimates.stats import (
    bh_qvalues,
    compare,
    jeffreys_interval,
    mcnemar_exact,
    rate_ratio,
)

__all__ = [
    "Design",
    "VersionMixError",
    "aggregate_rates",
    "bh_qvalues",
    "build_comparison",
    "comparison_from_relation",
    "compare",
    "detectable_ratio",
    "jeffreys_interval",
    "mcnemar_exact",
    "n_per_arm",
    "power_at",
    "rate_ratio",
    "rates_from_grades",
    "resampling_fidelity",
    "validate_forecast",
]
