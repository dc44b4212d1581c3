"""The wire contract of agentic replay: tool-simulator and realism-discriminator prompts.

Shared by the replay stage (which asks a model to simulate a tool's result), the realism
asset (which asks a model which of two results is the real one) and the built-in simulator
(which answers both). Each prompt is a system message with the instructions and a
``Fence token: <token>`` line, and one user message of fenced sections, as the judge's are:
``<<<BEGIN NAME token>>>`` ... ``<<<END NAME token>>>``. The token is a hash of the sections'
bodies, so the same request is the same bytes every time (and so the same cache key), and a
tool result that quotes a fence line of its own cannot close a section early.

Tool simulator sections: ``TOOL`` (name), ``TOOL SCHEMA`` (JSON, ``null`` when unknown),
``EXAMPLES`` (JSON list of ``{"arguments", "result"}``: real past calls of this tool),
``TRAJECTORY`` (JSON list of the chat messages so far), ``CALL`` (JSON ``{"name",
"arguments"}``). The answer is the tool's result text, nothing else.

Discriminator sections: ``TOOL``, ``CALL`` (the arguments), ``RESULT A``, ``RESULT B``. The
answer is one letter, ``A`` or ``B``: the result it believes came from the real tool.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

# The built-in simulator's models for the two roles (the embedded defaults).
SIM_TOOL_SIMULATOR = "sim-tool-simulator"
SIM_DISCRIMINATOR = "sim-discriminator"

# Trace entry keys, one entry per tool call the candidate made in its turn (in order):
#   step           index of the candidate call (0-based) that emitted it
#   id             the tool_call id, name, arguments (JSON text as the candidate sent it)
#   result         the tool result the candidate was shown (None when none was produced)
#   result_source  "simulated" (the tool simulator), "replayed" (the same call was already
#                  answered in the prefix: that real result, no call), "simulator_error"
#                  (the simulator failed: the result says so, and the row is not clean)
#   content        assistant text sent alongside the call, if any
RESULT_SIMULATED = "simulated"
RESULT_REPLAYED = "replayed"
RESULT_SIMULATOR_ERROR = "simulator_error"

SIMULATOR_SYSTEM = (
    "You are a tool. You are given the tool's name and JSON schema, examples of real past "
    "calls of this tool with the results the real tool returned, the conversation so far, and "
    "a new call. Reply with exactly the result the real tool would return for the new call: "
    "the same format, length and style as the real results (JSON when they are JSON), "
    "consistent with everything the conversation already shows. No commentary, no markdown "
    "fences, nothing but the result."
)

DISCRIMINATOR_SYSTEM = (
    "You are shown one call to a tool and two results for it. One result came from the real "
    "tool; the other was written by a language model imitating the tool. Decide which result "
    "is the real one. Answer with exactly one letter: A or B."
)

_FENCE_LINE = re.compile(r"^Fence token: (\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ToolExample:
    """One real past call of a tool and the result the real tool returned."""

    arguments: str
    result: str


@dataclass(frozen=True)
class SimulatorRequest:
    """What a tool-simulator prompt asks (as parsed back by a simulator)."""

    name: str
    schema: dict[str, Any] | None
    examples: list[ToolExample]
    trajectory: list[dict[str, Any]]
    arguments: str


@dataclass(frozen=True)
class DiscriminatorRequest:
    """What a discriminator prompt asks (as parsed back by a simulator)."""

    name: str
    arguments: str
    result_a: str
    result_b: str


def _token(bodies: list[str]) -> str:
    digest = hashlib.sha256("\x1f".join(bodies).encode("utf-8")).hexdigest()
    return digest[:16]


def _fenced(sections: list[tuple[str, str]]) -> tuple[str, str]:
    token = _token([body for _, body in sections])
    text = "\n\n".join(
        f"<<<BEGIN {name} {token}>>>\n{body}\n<<<END {name} {token}>>>" for name, body in sections
    )
    return token, text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def simulator_messages(
    *,
    name: str,
    schema: dict[str, Any] | None,
    arguments: str,
    trajectory: list[dict[str, Any]],
    examples: list[ToolExample],
) -> list[dict[str, Any]]:
    """The chat messages that ask a model for the result of one tool call."""
    token, body = _fenced(
        [
            ("TOOL", name),
            ("TOOL SCHEMA", _dumps(schema)),
            ("EXAMPLES", _dumps([{"arguments": e.arguments, "result": e.result}
                                 for e in examples])),
            ("TRAJECTORY", _dumps(trajectory)),
            ("CALL", _dumps({"name": name, "arguments": arguments})),
        ]
    )
    return [
        {"role": "system", "content": f"{SIMULATOR_SYSTEM}\nFence token: {token}"},
        {"role": "user", "content": body},
    ]


def discriminator_messages(
    *, name: str, arguments: str, result_a: str, result_b: str
) -> list[dict[str, Any]]:
    """The chat messages that ask a model which of two results of a call is the real one."""
    token, body = _fenced(
        [("TOOL", name), ("CALL", arguments), ("RESULT A", result_a), ("RESULT B", result_b)]
    )
    return [
        {"role": "system", "content": f"{DISCRIMINATOR_SYSTEM}\nFence token: {token}"},
        {"role": "user", "content": body},
    ]


def _section(text: str, name: str, token: str) -> str:
    begin, end = f"<<<BEGIN {name} {token}>>>\n", f"\n<<<END {name} {token}>>>"
    start = text.find(begin)
    if start == -1:
        raise ValueError(f"no {name} section")
    start += len(begin)
    stop = text.find(end, start)
    if stop == -1:
        raise ValueError(f"section {name} is never closed")
    return text[start:stop]


def _parts(messages: list[dict[str, Any]]) -> tuple[str, str]:
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), None)
    if not isinstance(system, str) or not isinstance(user, str):
        raise ValueError("expected a system and a user message with string content")
    match = _FENCE_LINE.search(system)
    if match is None:
        raise ValueError("no 'Fence token: <token>' line in the system message")
    return match.group(1), user


def is_simulator_request(messages: list[dict[str, Any]]) -> bool:
    """Whether ``messages`` is a tool-simulator prompt."""
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    return isinstance(system, str) and system.startswith(SIMULATOR_SYSTEM)


def is_discriminator_request(messages: list[dict[str, Any]]) -> bool:
    """Whether ``messages`` is a discriminator prompt."""
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    return isinstance(system, str) and system.startswith(DISCRIMINATOR_SYSTEM)


def parse_simulator_request(messages: list[dict[str, Any]]) -> SimulatorRequest:
    """The request a :func:`simulator_messages` prompt carries; ValueError when it is not
    one."""
    token, user = _parts(messages)
    schema = json.loads(_section(user, "TOOL SCHEMA", token))
    examples = json.loads(_section(user, "EXAMPLES", token))
    call = json.loads(_section(user, "CALL", token))
    return SimulatorRequest(
        name=_section(user, "TOOL", token),
        schema=schema if isinstance(schema, dict) else None,
        examples=[ToolExample(str(e.get("arguments", "")), str(e.get("result", "")))
                  for e in examples if isinstance(e, dict)],
        trajectory=json.loads(_section(user, "TRAJECTORY", token)),
        arguments=str(call.get("arguments", "")),
    )


def parse_discriminator_request(messages: list[dict[str, Any]]) -> DiscriminatorRequest:
    """The request a :func:`discriminator_messages` prompt carries; ValueError when it is
    not one."""
    token, user = _parts(messages)
    return DiscriminatorRequest(
        name=_section(user, "TOOL", token),
        arguments=_section(user, "CALL", token),
        result_a=_section(user, "RESULT A", token),
        result_b=_section(user, "RESULT B", token),
    )


_VERDICT = re.compile(r"\b([AB])\b")


def parse_verdict(text: str | None) -> str | None:
    """``"A"`` or ``"B"``: the first standalone letter of a discriminator's answer (models
    add words around it); None when the answer names neither or both first."""
    if not text:
        return None
    match = _VERDICT.search(text.strip().upper().replace("RESULT ", ""))
    return match.group(1) if match else None
