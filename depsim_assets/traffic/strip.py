"""Cut a conversation at its final assistant turn.

Deployment simulation holds the prefix fixed (system prompts, earlier turns, real tool calls
and tool results) and regenerates only the final assistant reply, so the split must keep
every message before that reply and nothing after it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from depsim_assets.messages import message_text


def split_final_turn(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Return ``(prefix, final_reply)``: the messages before the last assistant turn and its text.

    The conversation must end with that assistant turn and it must carry text (a string
    content, or text/refusal parts joined by newlines); otherwise ValueError. The prefix is a
    new list holding the same message objects.
    """
    if not messages:
        raise ValueError("no messages")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise ValueError("the conversation does not end with an assistant turn")
    reply = message_text(last)
    if not reply.strip():
        raise ValueError("the final assistant turn has no text")
    return list(messages[:-1]), reply


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no padding, so equal prefixes serialise to equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prefix_hash(prefix: list[dict[str, Any]]) -> str:
    """SHA-256 (hex) of the prefix's canonical JSON: identifies the fixed context."""
    return hashlib.sha256(canonical_json(prefix).encode("utf-8")).hexdigest()
