"""Stripping: the prefix keeps everything before the final reply, tool traffic included."""

from __future__ import annotations

import hashlib

import pytest

from depsim_assets.traffic.strip import canonical_json, prefix_hash, split_final_turn

CALL = {"id": "c1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}
AGENTIC = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Lisbon?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
    {
        "role": "assistant",
        "content": [{"type": "text", "text": "It is"}, {"type": "text", "text": "21C."}],
    },
]


def test_prefix_holds_tool_calls_and_results():
    prefix, reply = split_final_turn(AGENTIC)
    assert prefix == AGENTIC[:-1]
    assert prefix[-1]["role"] == "tool" and prefix[-2]["tool_calls"] == [CALL]
    assert reply == "It is\n21C."


def test_only_the_last_assistant_turn_is_cut():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "second"},
    ]
    prefix, reply = split_final_turn(messages)
    assert (len(prefix), reply) == (3, "second")
    assert prefix[1]["content"] == "first"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "user", "content": "a"}],
        [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [CALL]}],
    ],
)
def test_no_final_assistant_text_is_an_error(messages):
    with pytest.raises(ValueError):
        split_final_turn(messages)


def test_prefix_hash_is_of_canonical_json():
    prefix, _ = split_final_turn(AGENTIC)
    reordered = [dict(reversed(list(m.items()))) for m in prefix]
    assert prefix_hash(prefix) == prefix_hash(reordered)
    expected = hashlib.sha256(canonical_json(prefix).encode()).hexdigest()
    assert prefix_hash(prefix) == expected
    assert prefix_hash(prefix[:-1]) != expected
