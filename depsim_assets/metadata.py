"""What the Dagster UI shows of an asset: typed tables, rounded numbers, plots, and the kinds,
owners and tags that say which stage an asset belongs to."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

# Significant digits of a float in metadata: rates, ratios and shares read to 4 digits, and
# the UI's sortable tables and metadata plots do not need the 16 a float64 prints.
DIGITS = 4
# Text cells longer than this are cut (a rationale or a conversation can run to pages).
MAX_TEXT = 80
# The kinds a stage may give its assets (each has an icon in the Dagster UI): where the rows
# live (duckdb) and what computes them (openai: a model endpoint; python: plain computation).
KINDS = frozenset({"duckdb", "openai", "python"})
STAGE_TAG = "stage"


def rounded(value: Any, digits: int = DIGITS) -> Any:
    """``value`` with a float kept to ``digits`` significant digits (NaN/inf: None); other
    values as they are, NumPy scalars as Python ones."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar -> Python scalar (a float64 is a float already)
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def rounded_json(value: Any, digits: int = DIGITS) -> Any:
    """``value`` (dicts, lists, numbers) with every float rounded as :func:`rounded` does."""
    if isinstance(value, Mapping):
        return {str(k): rounded_json(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded_json(v, digits) for v in value]
    return rounded(value, digits)


def ordered(
    metadata: Mapping[str, Any], *, first: Sequence[str] = (), last: Sequence[str] = ()
) -> dict[str, Any]:
    """``metadata`` with the keys of ``first`` leading and those of ``last`` trailing (each
    in the order given, when present); the others keep their order in between. The UI lists
    a materialization's metadata in this order."""
    head = [k for k in first if k in metadata]
    tail = [k for k in last if k in metadata and k not in head]
    middle = [k for k in metadata if k not in head and k not in tail]
    return {k: metadata[k] for k in (*head, *middle, *tail)}


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        # A whole-number column read back with NULLs is float64; shown as int when it is one.
        whole = series.dropna()
        return "int" if len(whole) and bool((whole == whole.round()).all()) else "float"
    return "string"


def _table_cell(value: Any, kind: str) -> str | int | float | bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return rounded(float(value))
    if kind == "bool":
        return bool(value)
    text = str(value).replace("\n", " ")
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def table_metadata(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    max_rows: int = 20,
    descriptions: Mapping[str, str] | None = None,
) -> dg.TableMetadataValue:
    """The first ``max_rows`` rows of ``frame`` as a typed, sortable table in the UI (not
    markdown: the UI sorts it, and each column has a type).

    Column types come from the frame's dtypes (int, float, bool, else string); floats keep
    :data:`DIGITS` significant digits, text is cut to :data:`MAX_TEXT` characters, NaN shows
    empty. Emit the full row count next to it when rows may be left out.
    """
    cols = list(columns or frame.columns)
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise KeyError(f"table_metadata: no column {', '.join(missing)} in the frame")
    head = frame.head(max_rows)
    kinds = {c: _column_type(frame.loc[:, c]) for c in cols}
    notes = descriptions or {}
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=c, type=kinds[c], description=notes.get(c)) for c in cols]
    )
    records = [
        dg.TableRecord({c: _table_cell(row[c], kinds[c]) for c in cols})
        for row in head.to_dict("records")
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def png_markdown(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """An image the Dagster UI shows inline, as a markdown data URI."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def stage_presentation(
    stage: str, kinds: Mapping[str, set[str]]
) -> Callable[[dg.AssetSpec], dg.AssetSpec]:
    """The spec mapping a stage's ``definitions.py`` applies to its assets (with
    ``dg.map_asset_specs``): kinds per asset from ``kinds``, owner ``team:depsim-<stage>``, tag
    ``stage: <stage>``. An asset the mapping does not name fails loudly, so a new asset cannot
    reach the catalog without kinds."""
    unknown = {kind for names in kinds.values() for kind in names} - KINDS
    if unknown:
        raise ValueError(f"stage {stage}: unknown kinds {sorted(unknown)}; use {sorted(KINDS)}")

    def present(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        if name not in kinds:
            raise ValueError(f"stage {stage}: asset {name!r} has no kinds in its definitions.py")
        return spec.merge_attributes(
            kinds=set(kinds[name]),
            owners=[f"team:depsim-{stage}"],
            tags={STAGE_TAG: stage},
        )

    return present


def stage_definitions(
    stage: str,
    *,
    assets: Sequence[dg.AssetsDefinition],
    asset_checks: Sequence[dg.AssetsDefinition],
    kinds: Mapping[str, set[str]],
) -> dg.Definitions:
    """A stage's ``defs``: its assets, presented by :func:`stage_presentation`, and checks."""
    declared = {key.to_user_string() for a in assets for key in a.keys}
    stale = set(kinds) - declared
    if stale:
        raise ValueError(f"stage {stage}: kinds name assets it does not have: {sorted(stale)}")
    mapped = dg.map_asset_specs(stage_presentation(stage, kinds), assets)
    return dg.Definitions(assets=mapped, asset_checks=asset_checks)
