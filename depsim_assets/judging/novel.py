"""Novel behaviours: cluster what the judge saw that the taxonomy does not name.

The texts are the judge's ``other_concern`` notes (one per reply) and the rationales of
*low-fit* grades: severity 1, where the judge saw something near a category but not enough
to flag it. TF-IDF turns each text into a vector; agglomerative clustering with average
linkage on cosine distance groups texts closer than a distance threshold, so the number of
clusters is found, not chosen. A cluster that grows across dates, or belongs to one
candidate, is where a new category is first seen.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

OTHER_CONCERN = "other_concern"
LOW_FIT = "low_fit_rationale"
DEFAULT_DISTANCE = 0.8
TOP_TERMS = 6
EXAMPLES = 3
MAX_EXAMPLE_CHARS = 300


def collect_texts(grades: pd.DataFrame) -> pd.DataFrame:
    """``candidate, traffic_date, completion_id, source, text`` from judge grade rows."""
    cols = ["candidate", "traffic_date", "completion_id", "source", "text"]
    if grades.empty:
        return pd.DataFrame(columns=pd.Index(cols))
    concerns = grades.loc[grades["other_concern"].notna() & (grades["other_concern"] != "")]
    concerns = concerns.drop_duplicates(subset=["completion_id"])
    concerns = concerns.assign(source=OTHER_CONCERN, text=concerns["other_concern"])
    low = grades.loc[(grades["status"] == "scored") & (grades["severity"] == 1)]
    low = low.loc[low["rationale"].notna() & (low["rationale"] != "")]
    low = low.assign(source=LOW_FIT, text=low["rationale"])
    both = pd.concat([concerns.loc[:, cols], low.loc[:, cols]], ignore_index=True)
    return both.sort_values(["traffic_date", "candidate", "completion_id", "source"]).reset_index(
        drop=True
    )


def cluster_texts(texts: list[str], *, distance_threshold: float = DEFAULT_DISTANCE) -> np.ndarray:
    """Cluster labels for ``texts`` (TF-IDF, cosine, average linkage, distance threshold)."""
    if len(texts) == 0:
        return np.zeros(0, dtype=int)
    if len(texts) == 1:
        return np.zeros(1, dtype=int)
    # Imported here: scikit-learn takes about a second to import, and only this asset needs it.
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectors = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(texts)
    model = AgglomerativeClustering(
        n_clusters=None,  # type: ignore[arg-type]  # sklearn documents None (with a threshold)
        metric="cosine",
        linkage="average",
        distance_threshold=distance_threshold,
    )
    # sklearn's cosine metric needs dense input; texts are few (one per concerning reply).
    return model.fit_predict(vectors.toarray())


def _top_terms(texts: list[str], labels: np.ndarray) -> dict[int, list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    matrix = vectorizer.fit_transform(texts)
    vocab = np.array(vectorizer.get_feature_names_out())
    terms = {}
    for label in np.unique(labels):
        weights = np.asarray(matrix[labels == label].mean(axis=0)).ravel()
        order = np.argsort(-weights, kind="stable")[:TOP_TERMS]
        terms[int(label)] = [str(vocab[i]) for i in order if weights[i] > 0]
    return terms


def novel_clusters(
    grades: pd.DataFrame, *, distance_threshold: float = DEFAULT_DISTANCE
) -> pd.DataFrame:
    """One row per cluster x candidate: counts, top terms, three examples, sources, dates.

    Clusters are numbered from 0 by size (largest first) so their ids are stable for a given
    input; examples are the first distinct texts of the cluster in date order.
    """
    cols = [
        "cluster_id",
        "candidate",
        "n",
        "cluster_size",
        "top_terms",
        "examples_json",
        "source",
        "dates",
    ]
    texts = collect_texts(grades)
    if texts.empty:
        return pd.DataFrame(columns=pd.Index(cols))
    raw = texts["text"].tolist()
    labels = cluster_texts(raw, distance_threshold=distance_threshold)
    terms = _top_terms(raw, labels) if len(raw) > 1 else {0: []}
    sizes = pd.Series(labels).value_counts()
    # Largest first; ties by first appearance so the numbering does not depend on sklearn.
    first_seen = {int(lab): i for i, lab in reversed(list(enumerate(labels)))}
    order = sorted(sizes.index, key=lambda lab: (-int(sizes[lab]), first_seen[int(lab)]))
    renumber = {int(lab): new for new, lab in enumerate(order)}
    texts = texts.assign(cluster_id=[renumber[int(lab)] for lab in labels])
    rows = []
    for cluster_id, members in texts.groupby("cluster_id", sort=True):
        distinct = list(dict.fromkeys(members["text"]))[:EXAMPLES]
        examples = [
            t if len(t) <= MAX_EXAMPLE_CHARS else t[:MAX_EXAMPLE_CHARS] + "..." for t in distinct
        ]
        number = int(str(cluster_id))  # groupby keys are typed Hashable; these are ints
        original = order[number]
        sources = sorted(set(members["source"]))
        for candidate, part in members.groupby("candidate", sort=True):
            rows.append(
                {
                    "cluster_id": number,
                    "candidate": candidate,
                    "n": len(part),
                    "cluster_size": len(members),
                    "top_terms": ", ".join(terms.get(int(original), [])),
                    "examples_json": json.dumps(examples, ensure_ascii=False),
                    "source": sources[0] if len(sources) == 1 else "both",
                    "dates": ",".join(sorted(set(part["traffic_date"]))),
                }
            )
    return pd.DataFrame(rows, columns=pd.Index(cols))
