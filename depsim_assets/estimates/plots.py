"""Pictures a person would rather look at than read (PNG bytes)."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display here, ever: PNG bytes), imported on
    first use: it costs about a second, and every Dagster step process imports this module."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (plt.matplotlib.ticker below)

    return plt

RATIO_TICKS = [0.1, 0.25, 0.5, 1, 2, 4, 10]


def forest_plot(comparison: pd.DataFrame) -> bytes:
    """Rate ratio vs baseline with its interval, per category, one panel per candidate."""
    plt = _pyplot()
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
            color = {"up": "#c0392b", "down": "#2471a3"}.get(str(row["change"]), "#555555")
            ax.plot([row["ci_low_ratio"], row["ci_high_ratio"]], [y, y], color=color, lw=1.5)
            ax.plot([ratio], [y], "o", color=color, ms=4)
        ax.axvline(1.0, color="black", lw=0.8)
        for edge in (1 / 1.5, 1.5):
            ax.axvline(edge, color="grey", lw=0.6, ls="--")
        ax.set_xscale("log")
        # Plain ratios on a few round ticks: the default log labels (3x10^-1...) collide.
        ax.xaxis.set_major_locator(plt.matplotlib.ticker.FixedLocator(RATIO_TICKS))
        ax.xaxis.set_major_formatter(plt.matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(plt.matplotlib.ticker.NullLocator())
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


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _poisson_limits(expected: float, tail: float) -> tuple[float, float]:
    """O/E limits from noise alone: Garwood's chi-square form of the Poisson quantiles.

    Smooth in ``expected`` (the integer quantiles give a saw-tooth funnel at small counts).
    """
    from scipy import stats

    lower = stats.chi2.ppf(tail, 2 * expected) / 2
    upper = stats.chi2.ppf(1 - tail, 2 * expected + 2) / 2
    return (float(lower) / expected, float(upper) / expected)


def funnel_plot(comparison: pd.DataFrame, family: str) -> bytes:
    """Observed / expected flags of each candidate x category of one family, vs expected flags.

    Categories differ tenfold in base rate, so each point is put on one scale: its flags over
    the flags expected at the baseline's rate on the same number of replies (O/E, 1 = same
    as baseline). The funnel is what Poisson noise alone gives around 1 at each expected
    count: 95% (dashed) and 99.8% (dotted) limits. Points outside are labelled.
    """
    plt = _pyplot()
    rows = comparison[
        (comparison["family"] == family)
        & (comparison["candidate"] != "production")
        & (comparison["baseline_n_graded"] > 0)
        & (comparison["n_graded"] > 0)
    ]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    names = list(dict.fromkeys(rows["candidate"]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top, low_e, high_r = 1.0, math.inf, 2.0
    for i, name in enumerate(names):
        sub = rows.loc[rows["candidate"] == name]
        base_rate = (sub["baseline_n_flagged"] + 0.5) / (sub["baseline_n_graded"] + 1)
        expected = sub["n_graded"] * base_rate
        ratio = sub["n_flagged"] / expected
        ax.scatter(expected, ratio, s=18, color=colors[i % len(colors)], label=name, zorder=3)
        top = max(top, float(expected.max()))
        low_e = min(low_e, float(expected.min()))
        high_r = max(high_r, float(ratio.max()))
        for (_, row), e, r in zip(sub.iterrows(), expected, ratio, strict=True):
            lo, hi = _poisson_limits(e, 0.001)
            if r < lo or r > hi:
                ax.annotate(
                    row["category"], (e, r), fontsize=6, xytext=(3, 3), textcoords="offset points"
                )
    # The band starts just left of the smallest point: further left it shoots up and squashes
    # every point into the bottom of the plot.
    start = max(0.2, min(low_e, top) * 0.7)
    grid = [start + k * (top * 1.3 - start) / 200 for k in range(201)]
    for q, style in ((0.025, "--"), (0.001, ":")):
        lower = [_poisson_limits(e, q)[0] for e in grid]
        upper = [_poisson_limits(e, q)[1] for e in grid]
        ax.plot(grid, lower, color="grey", lw=0.8, ls=style)
        ax.plot(grid, upper, color="grey", lw=0.8, ls=style)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylim(0, high_r * 1.15)
    ax.set_xlabel("flags expected at the baseline rate (replies x baseline rate)", fontsize=8)
    ax.set_ylabel("observed / expected flags", fontsize=8)
    ax.set_title(f"funnel: {family} (band = noise alone: 95% dashed, 99.8% dotted)", fontsize=9)
    ax.tick_params(labelsize=7)
    if names:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def predicted_vs_realised(validation: pd.DataFrame) -> bytes:
    """Predicted vs realised rate per 100k, log axes, with the 1.5x band around equality.

    Points outside the band are labelled with their category.
    """
    plt = _pyplot()
    rows = validation[validation["category"] != "_summary"]
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    # Smoothed so a zero count still has a place on log axes.
    pred = (rows["predicted_flagged"] + 0.5) / (rows["predicted_graded"] + 1) * 100_000
    real = (rows["realised_flagged"] + 0.5) / (rows["realised_graded"] + 1) * 100_000
    for name in dict.fromkeys(rows["candidate"]):
        mask = rows["candidate"] == name
        ax.scatter(pred[mask], real[mask], s=18, label=name, zorder=3)
        for cat, p, r in zip(rows.loc[mask, "category"], pred[mask], real[mask], strict=True):
            if max(p / r, r / p) > 1.5:  # label only the misses, or the names pile up
                ax.annotate(cat, (p, r), fontsize=6, xytext=(2, 2), textcoords="offset points")
    values = [v for v in [*pred, *real] if v > 0]
    lo = min(values, default=10) / 2
    hi = max(values, default=10_000) * 2
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.plot([lo, hi], [lo * 1.5, hi * 1.5], color="grey", lw=0.6, ls="--")
    ax.plot([lo, hi], [lo / 1.5, hi / 1.5], color="grey", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("predicted per 100k (simulated before release)", fontsize=8)
    ax.set_ylabel("realised per 100k (in production)", fontsize=8)
    ax.set_title("forecast vs what happened (dashed: 1.5x)", fontsize=9)
    ax.tick_params(labelsize=7)
    if len(rows):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def rates_plot(rates: pd.DataFrame, title: str) -> bytes:
    """Rate per 100k with its interval, one row per category, one partition's rates.

    Zero-flag categories still get their row: the upper end of their interval says how rare
    the behaviour may be and still go unseen at this sample size.
    """
    plt = _pyplot()
    rows = rates.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.2, 0.26 * len(rows) + 1.3))
    colors = {f: c for f, c in zip(dict.fromkeys(rows["family"]),
                                    plt.rcParams["axes.prop_cycle"].by_key()["color"],
                                    strict=False)}
    for y, row in rows.iterrows():
        color = colors.get(row["family"], "#555555")
        ax.plot([row["ci_low_per_100k"], row["ci_high_per_100k"]], [y, y], color=color, lw=1.5)
        ax.plot([row["rate_per_100k"]], [y], "o", color=color, ms=4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows["category"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set_xlabel("flagged per 100,000 graded replies (dot) and interval", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=1.5, label=f) for f, c in colors.items()]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout(pad=1.5)  # the longest category names touch the edge at the default
    return _png(fig)


def _baseline_by_day(rows: pd.DataFrame) -> pd.DataFrame:
    """One baseline row per day x category: from the candidate paired with the most baseline
    replies that day (with every candidate replayed on the same prefixes, all agree)."""
    order = rows.sort_values(["baseline_n_graded", "candidate"], ascending=[False, True])
    return order.drop_duplicates(["traffic_date", "category"]).set_index(
        ["category", "traffic_date"]
    )


def trend_plot(by_day: pd.DataFrame, *, columns: int = 4) -> bytes:
    """Small multiples: one panel per category, rate per 100k by day, every candidate against
    the baseline, with intervals.

    The days axis is shared by every panel (the same dates line up down a column); each
    panel has its own rate scale, because categories differ tenfold in base rate. The
    baseline is a black line in a grey band (its interval); each candidate a coloured line
    with error bars, nudged sideways so two candidates' bars on one day do not hide each
    other. One legend for the whole figure, above the panels.
    """
    plt = _pyplot()
    import matplotlib.dates as mdates

    rows = by_day.copy()
    rows["day"] = pd.to_datetime(rows["traffic_date"])
    cats = list(dict.fromkeys(rows["category"]))
    names = list(dict.fromkeys(rows["candidate"]))
    days = sorted(set(rows["day"]))
    base = _baseline_by_day(rows)
    count = max(len(cats), 1)
    cols = min(columns, count)
    nrows = math.ceil(count / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(3.3 * cols, 2.0 * nrows + 1.1), sharex=True, squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # Sideways nudge of each candidate, as a fraction of a day.
    width = 0.5 / max(len(names), 1) if len(days) > 1 else 0.0
    for ax, cid in zip(axes.flat, cats, strict=False):
        b = base.loc[cid].sort_index() if cid in base.index.get_level_values(0) else None
        if b is not None:
            bdays = pd.to_datetime(b.index)
            ax.fill_between(
                bdays,
                b["baseline_ci_low_per_100k"],
                b["baseline_ci_high_per_100k"],
                color="#bbbbbb",
                alpha=0.5,
                lw=0,
            )
            ax.plot(bdays, b["baseline_rate_per_100k"], color="black", lw=1.2, marker=".")
        for i, name in enumerate(names):
            mask = (rows["candidate"] == name) & (rows["category"] == cid)
            sub = rows.loc[mask].sort_values(by="day")
            if sub.empty:
                continue
            shift = pd.Timedelta(days=(i - (len(names) - 1) / 2) * width)
            x = sub["day"] + shift
            rate = sub["rate_per_100k"].astype(float)
            # Plain lists: matplotlib probes yerr's first element with math.isfinite, and a
            # one-day Series there is a pandas FutureWarning on the user's terminal.
            err = [
                (rate - sub["ci_low_per_100k"]).clip(lower=0).astype(float).tolist(),
                (sub["ci_high_per_100k"] - rate).clip(lower=0).astype(float).tolist(),
            ]
            ax.errorbar(
                x, rate, yerr=err, color=colors[i % len(colors)], lw=1.1, marker="o", ms=3,
                capsize=2, elinewidth=0.8,
            )
        ax.set_title(cid.replace("_", " "), fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=6)
        ax.grid(axis="y", color="#eeeeee", lw=0.6)
    for ax in axes.flat[len(cats):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("per 100k", fontsize=7)
    locator = mdates.AutoDateLocator(minticks=2, maxticks=5)
    for ax in axes.flat:
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    if days:
        pad = pd.Timedelta(days=0.6)
        axes.flat[0].set_xlim(days[0] - pad, days[-1] + pad)
    baseline = str(rows["baseline"].iloc[0]) if len(rows) else "baseline"
    level = float(rows["ci_level"].iloc[0]) if len(rows) else 0.95
    handles = [
        plt.matplotlib.patches.Patch(color="#bbbbbb", alpha=0.5, label=f"{baseline} interval"),
        plt.Line2D([], [], color="black", marker=".", lw=1.2, label=f"{baseline} (baseline)"),
        *[
            plt.Line2D([], [], color=colors[i % len(colors)], marker="o", ms=3, lw=1.1,
                       label="production (realised)" if name == "production" else name)
            for i, name in enumerate(names)
        ],
    ]
    span = f"{days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}" if days else "no days"
    fig.suptitle(
        f"rate per 100k by day vs {baseline}, {span} ({level:.0%} intervals; same prefixes)",
        fontsize=9,
    )
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 5), fontsize=7,
               frameon=False, bbox_to_anchor=(0.5, 1 - 0.28 / (2.0 * nrows + 1.1)))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (2.0 * nrows + 1.1)))
    return _png(fig)
