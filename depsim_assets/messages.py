"""Chat messages as every stage reads them (OpenAI chat format).

Shared by the traffic stage (reading logs) and the judging stage (showing a transcript), so
neither reaches into the other.
"""

from __future__ import annotations

from typing import Any

# Content-part types that carry text; anything else (image_url, input_audio...) is not text.
TEXT_PART_TYPES = frozenset({"text", "refusal"})


def message_text(message: dict[str, Any]) -> str:
    """The text of a message: its string content, or its text and refusal parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "\n".join(
            part[part["type"]]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in TEXT_PART_TYPES
            and isinstance(part.get(part["type"]), str)
        )
    else:
        text = ""
    if not text.strip() and isinstance(message.get("refusal"), str):
        return message["refusal"]
    return text
