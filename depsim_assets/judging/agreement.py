"""Agreement of the judge with human labels: n, prevalence, precision, recall, Cohen's kappa.

A labels file is JSONL, one label per line::

    {"conversation_id": "c-17", "category": "fabricated_facts", "label": 1, "annotator": "ana"}

``conversation_id`` is the id in the production log; ``category`` is a taxonomy id or ``any``
(the reply shows at least one category); ``label`` is 0 or 1; ``annotator`` is optional. A
label is about one reply of that conversation: by default the original production reply
(candidate ``production``), as human safety datasets label what was actually said. Each label
row is one (human, judge) pair: two annotators of the same reply give two pairs.

The judge's side of a pair is its flag (severity >= the flag threshold stored on the grade)
for that category on sample 0 of the conversation; for ``any``, whether any category is
flagged, counted only when all categories were scored. Labels whose reply has no scored grade
are reported as unmatched, never as agreement. Point estimates are scikit-learn's; intervals
are scipy's paired bootstrap percentiles over label rows (seeded, so a run is reproducible).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ANY = "any"
DEFAULT_BOOTSTRAP = 1000
_FIELDS = {"conversation_id", "category", "label", "annotator"}


class LabelsError(ValueError):
    """The labels file is malformed; the message names the file and line."""


def read_labels(path: Path, categories: tuple[str, ...]) -> pd.DataFrame:
    """Parse and validate a labels file into ``conversation_id, category, label, annotator``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found")
    known = set(categories) | {ANY}
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelsError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise LabelsError(f"{where}: expected a JSON object")
            extra = sorted(set(rec) - _FIELDS)
            if extra:
                raise LabelsError(f"{where}: unknown field(s) {extra}")
            cid = rec.get("conversation_id")
            if not isinstance(cid, str) or not cid:
                raise LabelsError(f"{where}: 'conversation_id' must be a non-empty string")
            category = rec.get("category")
            if category not in known:
                raise LabelsError(
                    f"{where}: 'category' {category!r} is not a taxonomy id or {ANY!r}"
                )
            label = rec.get("label")
            if isinstance(label, bool) or label not in (0, 1):
                raise LabelsError(f"{where}: 'label' must be 0 or 1, got {label!r}")
            annotator = rec.get("annotator")
            if annotator is not None and not isinstance(annotator, str):
                raise LabelsError(f"{where}: 'annotator' must be a string")
            rows.append((cid, category, int(label), annotator))
    if not rows:
        raise LabelsError(f"{path}: no labels in the file")
    return pd.DataFrame(
        rows, columns=pd.Index(["conversation_id", "category", "label", "annotator"])
    )


def judge_flags(grades: pd.DataFrame, categories: tuple[str, ...]) -> pd.DataFrame:
    """``conversation_id, category, judge`` (0/1) from one candidate's grade rows.

    Only sample 0 and scored rows are used; ``any`` is added for replies with every category
    scored. A conversation graded on several dates keeps its latest date.
    """
    if grades.empty:
        return pd.DataFrame(columns=pd.Index(["conversation_id", "category", "judge"]))
    rows = grades.loc[grades["sample_index"] == 0]
    latest = rows.groupby("conversation_id")["traffic_date"].transform("max")
    rows = rows.loc[rows["traffic_date"] == latest]
    scored = rows.loc[rows["status"] == "scored"]
    per_cat = scored.loc[:, ["conversation_id", "category"]].copy()
    per_cat["judge"] = scored["flagged"].astype(bool).astype(int).to_numpy()
    complete = scored.groupby("conversation_id")["category"].nunique() == len(categories)
    any_flag = scored.groupby("conversation_id")["flagged"].agg(lambda s: int(s.astype(bool).any()))
    any_rows = pd.DataFrame(
        {
            "conversation_id": any_flag.index,
            "category": ANY,
            "judge": any_flag.to_numpy(),
        }
    )
    any_rows = pd.DataFrame(
        any_rows.loc[any_rows["conversation_id"].map(complete).fillna(False).astype(bool)]
    )
    return pd.concat([per_cat, any_rows], ignore_index=True)


def _metrics(human: np.ndarray, judge: np.ndarray) -> dict[str, float | None]:
    """Point estimates: scikit-learn's confusion matrix and Cohen's kappa."""
    n = len(human)
    if n == 0:
        return {"prevalence": None, "precision": None, "recall": None, "kappa": None}
    # Imported here: scikit-learn takes about a second to import, and only agreement needs it.
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    tn, fp, fn, tp = (int(v) for v in confusion_matrix(human, judge, labels=[0, 1]).ravel())
    with warnings.catch_warnings():
        # Both raters constant and equal: chance agreement is 1 and kappa undefined (NaN);
        # reported as None, no warning needed.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = float(cohen_kappa_score(human, judge, labels=[0, 1]))
    return {
        "prevalence": (tp + fn) / n,
        "judge_positive_rate": (tp + fp) / n,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "kappa": kappa if math.isfinite(kappa) else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


BOOTSTRAPPED = ("precision", "recall", "kappa")


def resampled_metrics(human: np.ndarray, judge: np.ndarray, axis: int = -1) -> np.ndarray:
    """Precision, recall and kappa of every resample at once (NaN where undefined).

    The statistic scipy's bootstrap calls, vectorized over resamples: scikit-learn's
    functions take ~0.6-1.2 ms a call, 3 s per category at 1,000 resamples, so the same
    definitions are written here on the confusion counts (a test checks them against
    scikit-learn on resamples).
    """
    n = human.shape[axis]
    tp = ((human == 1) & (judge == 1)).sum(axis=axis)
    fp = ((human == 0) & (judge == 1)).sum(axis=axis)
    fn = ((human == 1) & (judge == 0)).sum(axis=axis)
    tn = n - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        p_obs = (tp + tn) / n
        p_exp = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
        kappa = np.where(p_exp < 1, (p_obs - p_exp) / (1 - p_exp), np.nan)
    return np.stack([precision, recall, kappa])


def _bootstrap(
    human: np.ndarray, judge: np.ndarray, reps: int, rng: np.random.Generator
) -> dict[str, tuple[float | None, float | None]]:
    """Percentile bounds (2.5%, 97.5%) from scipy's paired bootstrap over label rows.

    Resamples where a metric is undefined (no positive in it) are left out of that metric's
    bounds rather than making them NaN, hence the percentiles of the bootstrap distribution
    rather than scipy's own interval.
    """
    n = len(human)
    if n == 0 or reps <= 0:
        return {k: (None, None) for k in BOOTSTRAPPED}
    if n == 1:  # every resample is the one pair (scipy wants two observations)
        point = _metrics(human, judge)
        return {k: (point[k], point[k]) for k in BOOTSTRAPPED}
    with warnings.catch_warnings():
        # NaN resamples make scipy warn that its own interval is degenerate; it is not used.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (human, judge),
            resampled_metrics,
            paired=True,
            vectorized=True,
            n_resamples=reps,
            method="percentile",
            rng=rng,
        )
    bounds: dict[str, tuple[float | None, float | None]] = {}
    for key, values in zip(BOOTSTRAPPED, result.bootstrap_distribution, strict=True):
        kept = values[~np.isnan(values)]
        if len(kept):
            low, high = np.percentile(kept, [2.5, 97.5])
            bounds[key] = (float(low), float(high))
        else:
            bounds[key] = (None, None)
    return bounds


def _summary(pairs: pd.DataFrame, unmatched: int, reps: int, seed: int) -> dict[str, Any]:
    human = pairs["label"].to_numpy(dtype=int)
    judge = pairs["judge"].to_numpy(dtype=int)
    point = _metrics(human, judge)
    bounds = _bootstrap(human, judge, reps, np.random.default_rng(seed))
    out: dict[str, Any] = {"n": int(len(pairs)), "n_unmatched": int(unmatched)}
    out.update(point)
    for key, (low, high) in bounds.items():
        out[f"{key}_low"] = low
        out[f"{key}_high"] = high
    return out


def agreement(
    labels: pd.DataFrame,
    grades: pd.DataFrame,
    categories: tuple[str, ...],
    *,
    reps: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"overall": {...}, "per_category": {category: {...}}}`` for one candidate's grades.

    Each block has n, n_unmatched, prevalence, judge_positive_rate, precision, recall, kappa,
    the confusion counts, and bootstrap bounds ``<metric>_low`` / ``<metric>_high``.
    """
    flags = judge_flags(grades, categories)
    merged = labels.merge(flags, on=["conversation_id", "category"], how="left")
    matched = merged.loc[merged["judge"].notna()].copy()
    matched["judge"] = matched["judge"].astype(int)
    per_category = {}
    for offset, category in enumerate(sorted(labels["category"].unique())):
        mask_all = merged["category"] == category
        mask = matched["category"] == category
        per_category[category] = _summary(
            pd.DataFrame(matched.loc[mask]),
            int(mask_all.sum() - mask.sum()),
            reps,
            seed + 1 + offset,
        )
    overall = _summary(matched, len(merged) - len(matched), reps, seed)
    return {"overall": overall, "per_category": per_category}


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
