"""False positives of the full path (de-identification + residue scan) on real PII-free text.

2,000 conversations made of real files of the installed packages (code, configs, docs, test
data, RECORD hash lists) plus the traps the issue names, written as a production-log day and
sampled through :func:`run_sampling`, the path the asset runs. A PII-free conversation that
the residue layer quarantines is a false positive; issue 11 holds the share to 0.5%.
"""

from __future__ import annotations

import json

import pytest

from depsim_assets.traffic.pipeline import RESIDUAL_PII, run_sampling
from depsim_tests.traffic.real_text_corpus import (
    PERSONAL,
    RealConversation,
    real_corpus,
    trap_conversations,
)

# A measurement over 2,000 conversations (about a minute on a loaded machine): the full suite's.
# The fast tier keeps the de-identifier's own false replacements on 500 of them
# (test_adversarial_deid.py).
pytestmark = pytest.mark.slow

DATE = "2025-05-05"
N_REAL = 2000
MAX_FP_SHARE = 0.005


def _record(conv: RealConversation) -> dict:
    return {
        "conversation_id": conv.conversation_id,
        "created_at": f"{DATE}T12:00:00Z",
        "user_id": "user-1",
        "opted_out": False,
        "source": "chat",
        "model": "prod-model",
        "messages": conv.messages,
    }


@pytest.fixture(scope="module")
def corpus():
    return real_corpus(N_REAL)


@pytest.fixture(scope="module")
def sampled(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("real-logs")
    (root / DATE).mkdir()
    convs = corpus.conversations + trap_conversations()
    with open(root / DATE / "part-00000.jsonl", "w", encoding="utf-8") as f:
        for conv in convs:
            f.write(json.dumps(_record(conv), ensure_ascii=False) + "\n")
    # The whole day is sampled; the threshold is out of the way so every row is judged.
    return run_sampling(
        root, DATE, n=10 * len(convs), seed=3, salt="fp-salt-0123456789abcdef",
        max_residual_share=1.0,
    )  # fmt: skip


def test_the_corpus_is_real_sized_and_says_what_it_left_out(corpus):
    assert len(corpus.conversations) == N_REAL
    assert corpus.files_seen > 1000
    # Every exclusion reason is counted (chunks naming people were met and dropped).
    assert set(PERSONAL) <= set(corpus.excluded)
    assert corpus.excluded["copyright_line"] > 0 and corpus.excluded["email_address"] > 0
    # Deterministic: the same seed gives the same conversations.
    again = real_corpus(50)
    assert [c.messages for c in again.conversations] == [
        c.messages for c in corpus.conversations[:50]
    ]


def test_pii_free_real_text_is_rarely_quarantined(sampled):
    c = sampled.counts
    assert c["sampled"] == N_REAL + len(trap_conversations())
    assert c["kept"] + c["residual_quarantined"] == c["sampled"]
    flagged = [r for r in sampled.quarantine_rows if r["reason"] == RESIDUAL_PII]
    share = len(flagged) / c["sampled"]
    # Named in the failure by place and type only: the README reports the measured share.
    assert share <= MAX_FP_SHARE, [(r["line_number"], r["detail"]) for r in flagged]


def test_no_trap_is_quarantined(sampled):
    traps = trap_conversations()
    kept = {r["conversation_id"] for r in sampled.sampled_rows}
    assert {t.conversation_id for t in traps} <= kept
