"""The judging stage's Dagster definitions: what it materializes and what guards it.

``judge_agreement`` is listed here like the others; the code location shows it only when a
labels file is configured (``definitions.SHOWN_WHEN_SET``).
"""

import dagster as dg

from depsim_assets.judging.assets import (
    judge_agreement,
    judge_grades,
    judge_grades_unscored_share,
    novel_behaviors,
)
from depsim_assets.judging.checks import judge_grades_single_version

defs = dg.Definitions(
    assets=[judge_grades, novel_behaviors, judge_agreement],
    asset_checks=[judge_grades_unscored_share, judge_grades_single_version],
)
