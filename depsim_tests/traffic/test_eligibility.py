"""Eligibility: who may be sampled, and the one reason a record is not."""

from __future__ import annotations

from depsim_assets.traffic.eligibility import EligibilityConfig, ineligible_reason
from depsim_assets.traffic.logs import LogRecord

TEXT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://img.example.net/a.jpg"}},
        ],
    },
    {"role": "assistant", "content": "a cat"},
]


def record(messages=TEXT, *, opted_out=False, source="chat", model="m"):
    return LogRecord("c", None, "u", opted_out, source, model, messages, "f", 1)


def test_plain_text_chat_is_eligible():
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
    ]
    assert ineligible_reason(record()) is None
    assert ineligible_reason(record(parts)) is None


def test_each_reason():
    assert ineligible_reason(record(opted_out=True)) == "opted_out"
    assert ineligible_reason(record(IMAGE)) == "multimodal"
    assert ineligible_reason(record(source="internal_test")) == "excluded_source"
    config = EligibilityConfig(exclude_sources=(), exclude_models=("old-model",))
    assert ineligible_reason(record(model="old-model"), config) == "excluded_model"
    assert ineligible_reason(record(source="internal_test"), config) is None


def test_non_text_parts_anywhere_make_a_conversation_multimodal():
    audio_in_tool = [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "input_audio"}]},
        {"role": "assistant", "content": "ok"},
    ]
    audio_reply = [{"role": "user", "content": "hi"}, {"role": "assistant", "audio": {"id": "a"}}]
    file_part = [{"role": "user", "content": [{"type": "file", "file": {}}]}, TEXT[1]]
    for messages in (audio_in_tool, audio_reply, file_part):
        assert ineligible_reason(record(messages)) == "multimodal"


def test_opt_out_outranks_every_other_reason():
    both = record(IMAGE, opted_out=True, source="internal_test")
    assert ineligible_reason(both) == "opted_out"
