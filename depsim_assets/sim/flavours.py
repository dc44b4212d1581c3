"""Endpoint flavours: the simulator answering like servers that are not OpenAI.

Real OpenAI-compatible servers differ in what they accept, and depsim must cope with each.
A flavour is chosen per request by suffixes on the model name, so one simulator can play
several servers at once (``sim-judge@llama-cpp-python@ctx4096``):

- ``@llama-cpp-python``: refuses ``response_format`` of type ``json_schema`` with HTTP 500
  and the pydantic message llama-cpp-python 0.3 sends ("Input should be 'text' or
  'json_object'"); takes ``json_object`` with a ``schema``.
- ``@no-response-format``: refuses any ``response_format`` (HTTP 400, "not supported"), as
  servers without structured output do; the schema must be in the prompt.
- ``@ctxN``: a context window of N tokens (tokens as the simulator counts them, one per
  word); a longer prompt gets llama.cpp's HTTP 400 ``exceed_context_size_error``.
- ``@realismR`` (``sim-tool-simulator`` only): the share R in [0, 1] of results modelled on
  the real examples; the rest are visibly synthetic (see ``tool_sim.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FLAVOURS = ("llama-cpp-python", "no-response-format")
_CTX = re.compile(r"^ctx(\d+)$")
_REALISM = re.compile(r"^realism(\d+(?:\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class Flavour:
    """What one request's model name asks the simulator to behave like."""

    base_model: str
    refuse: str | None = None  # "json_schema" or "any"
    context_window: int | None = None
    realism: float | None = None


def parse_model(model: str) -> Flavour:
    """The base model and flavour of ``model``; ValueError names an unknown suffix."""
    base, *suffixes = model.split("@")
    refuse = None
    context = None
    realism = None
    for suffix in suffixes:
        if suffix == "llama-cpp-python":
            refuse = "json_schema"
        elif suffix == "no-response-format":
            refuse = "any"
        elif match := _CTX.match(suffix):
            context = int(match.group(1))
        elif match := _REALISM.match(suffix):
            realism = float(match.group(1))
            if realism > 1:
                raise ValueError(f"model suffix @{suffix}: realism must be in [0, 1]")
        else:
            raise ValueError(
                f"unknown model suffix @{suffix}: expected one of "
                f"{', '.join('@' + f for f in FLAVOURS)}, @ctxN or @realismR"
            )
    return Flavour(base, refuse, context, realism)


def refusal(flavour: Flavour, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """The error a server of this flavour answers to the request's ``response_format``."""
    response_format = body.get("response_format")
    if flavour.refuse is None or not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if flavour.refuse == "json_schema" and kind == "json_schema":
        # The shape of llama-cpp-python's answer: a pydantic validation error, as a 500.
        message = (
            "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
            "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
            f"'input': '{kind}', 'ctx': {{'expected': \"'text' or 'json_object'\"}}}}"
        )
        return 500, {"error": {"message": message, "type": "internal_server_error",
                               "param": None, "code": None}}
    if flavour.refuse == "any" and kind not in (None, "text"):
        return 400, {"error": {"message": f"response_format type {kind!r} is not supported",
                               "type": "invalid_request_error", "param": "response_format",
                               "code": "unsupported_parameter"}}
    return None


def context_error(flavour: Flavour, prompt_tokens: int) -> tuple[int, dict[str, Any]] | None:
    """llama.cpp's answer to a prompt longer than the context window, else None."""
    if flavour.context_window is None or prompt_tokens <= flavour.context_window:
        return None
    return 400, {"error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": prompt_tokens,
        "n_ctx": flavour.context_window,
    }}
