"""Pictures a person would rather look at than read (PNG bytes)."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # no display here, ever: render to PNG bytes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def forest_plot(comparison: pd.DataFrame) -> bytes:
    """Rate ratio vs baseline with its interval, per category, one panel per candidate."""
    names = list(dict.fromkeys(comparison["candidate"]))
    cats = list(dict.fromkeys(comparison["category"]))
    fig, axes = plt.subplots(
        1,
        len(names),
        figsize=(3.6 * len(names) + 1.5, 0.28 * len(cats) + 1.4),
        sharey=True,
        squeeze=False,
    )
    for ax, name in zip(axes[0], names, strict=True):
        sub = comparison[comparison["candidate"] == name].set_index("category").reindex(cats)
        for y, (_cid, row) in enumerate(sub.iterrows()):
            ratio = row["rate_ratio"]
            if not isinstance(ratio, float) or math.isnan(ratio):
                continue
            color = {"up": "#c0392b", "down": "#2471a3"}.get(row["change"], "#555555")
            ax.plot([row["ci_low_ratio"], row["ci_high_ratio"]], [y, y], color=color, lw=1.5)
            ax.plot([ratio], [y], "o", color=color, ms=4)
        ax.axvline(1.0, color="black", lw=0.8)
        for edge in (1 / 1.5, 1.5):
            ax.axvline(edge, color="grey", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("rate ratio vs baseline (log)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(cats)))
    axes[0][0].set_yticklabels(cats)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
