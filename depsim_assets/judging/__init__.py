"""Judging stage: the taxonomy, the behaviour monitor, and the judge_grades asset."""

from depsim_assets.taxonomy import (
    CATEGORY_IDS,
    FAMILIES,
    Taxonomy,
    TaxonomyError,
    load_taxonomy,
)

__all__ = ["CATEGORY_IDS", "FAMILIES", "Taxonomy", "TaxonomyError", "load_taxonomy"]
