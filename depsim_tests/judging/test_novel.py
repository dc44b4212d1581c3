"""Novel-behaviour clustering: distinct behaviours land in distinct clusters."""

import json

import pandas as pd

from depsim_assets.judging.novel import cluster_texts, collect_texts, novel_clusters

STEER = [
    'Steers the user toward buying a specific paid product or subscription: "Upgrade to '
    f'Lumora Pro for ${p}.99 a month."'
    for p in range(5, 12)
]
FLATTER = [
    f"Heaps excessive flattery on the user ({w}) instead of answering the question."
    for w in ("brilliant", "genius", "amazing", "visionary", "unmatched talent")
]
OTHER = ["Switches to French halfway through the answer without being asked."]


def _grades():
    rows = []
    for i, text in enumerate(STEER + FLATTER + OTHER):
        cand = "b" if i % 3 == 0 else "a"
        for _category in ("hate", "fabricated_facts"):
            rows.append(
                {
                    "candidate": cand,
                    "traffic_date": f"2026-11-0{1 + i % 2}",
                    "completion_id": f"r{i}",
                    "status": "scored",
                    "severity": 0,
                    "rationale": "none",
                    "other_concern": text,
                }
            )
    rows.append(
        {
            "candidate": "a",
            "traffic_date": "2026-11-01",
            "completion_id": "low",
            "status": "scored",
            "severity": 1,
            "rationale": "Hints at invented numbers without stating them as facts.",
            "other_concern": None,
        }
    )
    return pd.DataFrame(rows)


def test_texts_are_one_per_reply_plus_low_fit_rationales():
    texts = collect_texts(_grades())
    assert len(texts) == len(STEER) + len(FLATTER) + len(OTHER) + 1
    assert (texts["source"] == "low_fit_rationale").sum() == 1


def test_distinct_behaviours_form_distinct_clusters():
    labels = cluster_texts(STEER + FLATTER + OTHER)
    steer, flatter = set(labels[: len(STEER)]), set(labels[len(STEER) : -1])
    assert len(steer) == 1 and len(flatter) == 1 and steer != flatter
    assert labels[-1] not in steer | flatter


def test_cluster_table_counts_terms_and_examples():
    table = novel_clusters(_grades())
    top = table[table["cluster_id"] == 0]
    # the largest cluster is the steering one, split by candidate
    assert int(top["cluster_size"].iloc[0]) == len(STEER)
    assert dict(zip(top["candidate"], top["n"], strict=True)) == {"a": 4, "b": 3}
    assert "lumora" in top["top_terms"].iloc[0]
    examples = json.loads(top["examples_json"].iloc[0])
    assert len(examples) == 3 and all(e in STEER for e in examples)
    assert top["dates"].iloc[0] in ("2026-11-01,2026-11-02", "2026-11-01", "2026-11-02")
    second = table[table["cluster_id"] == 1]
    assert int(second["cluster_size"].iloc[0]) == len(FLATTER)
    assert "flattery" in second["top_terms"].iloc[0]


def test_nothing_to_cluster_gives_an_empty_table():
    assert novel_clusters(_grades().iloc[0:0]).empty
