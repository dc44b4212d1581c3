"""Metadata a person can read: markdown previews and plots as images."""

from __future__ import annotations

import base64
import math
from typing import Any

import dagster as dg
import pandas as pd


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def md_table(frame: pd.DataFrame, *, columns: list[str] | None = None, max_rows: int = 20) -> str:
    """A markdown table of the first ``max_rows`` rows (the UI renders it)."""
    cols = columns or list(frame.columns)
    if frame.empty:
        return "_no rows_"
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "\n".join(
        "| " + " | ".join(_cell(row[c]) for c in cols) + " |"
        for _, row in frame.head(max_rows).iterrows()
    )
    more = f"\n\n_{len(frame) - max_rows} more rows_" if len(frame) > max_rows else ""
    return head + body + more


def png_markdown(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """An image the Dagster UI shows inline, as a markdown data URI."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")
