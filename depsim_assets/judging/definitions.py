"""The judging stage's Dagster definitions: what it materializes and what guards it.

``judge_agreement`` is listed here like the others; the code location shows it only when a
labels file is configured (``definitions.SHOWN_WHEN_SET``). Kinds, owner and ``stage`` tag are
set here, once for the stage (``metadata.stage_definitions`` maps the asset specs).
"""

from depsim_assets.judging.assets import (
    judge_agreement,
    judge_grades,
    judge_grades_unscored_share,
    novel_behaviors,
)
from depsim_assets.judging.checks import judge_grades_single_version
from depsim_assets.metadata import stage_definitions

defs = stage_definitions(
    "judging",
    assets=[judge_grades, novel_behaviors, judge_agreement],
    asset_checks=[judge_grades_unscored_share, judge_grades_single_version],
    kinds={
        # The judge model is called through its OpenAI-compatible endpoint.
        "judge_grades": {"openai", "duckdb"},
        # Clustering and agreement read stored grades: no model call.
        "novel_behaviors": {"python", "duckdb"},
        "judge_agreement": {"python", "duckdb"},
    },
)
