"""A loopback chat-completions endpoint that plays an agent following a script in the prompt.

The first user message says what to do, as ``key=value`` words:

- ``calls=N``: call a tool in each of the first N steps of the turn, then reply (``forever``:
  never stop calling);
- ``per_step=M``: tool calls per step (1);
- ``tool=NAME`` and ``args=JSON``: the call made (the first tool the request offers, else
  ``lookup``; and ``{"by": "cand", "step": <k>, "j": <i>}``);
- ``tokens=T``: the completion tokens each answer reports (5).

A step is counted by the assistant messages with calls whose ids this server made
(``cand_...``), so the real calls of a prefix do not count. The final reply quotes the tool
results the turn was shown. ``state.fail_from_step = k`` answers every step k and later with
HTTP 500; ``state.no_ids`` sends calls without ids; ``state.default`` is the script of a
prompt that has none (from its first user message's text). Every request body is kept in
``state.requests``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class AgentState:
    """What the server was asked and how it misbehaves."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_from_step: int | None = None
    no_ids: bool = False
    default: Callable[[str], dict[str, str]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def script_of(messages: list[dict[str, Any]],
              default: Callable[[str], dict[str, str]] | None = None) -> dict[str, str]:
    """The ``key=value`` words of the first user message (else ``default`` of its text)."""
    first = next(m for m in messages if m.get("role") == "user")
    text = str(first.get("content") or "")
    script = dict(w.split("=", 1) for w in text.split() if "=" in w)
    return script if script or default is None else default(text)


def candidate_steps(messages: list[dict[str, Any]]) -> int:
    """Assistant messages carrying this server's own calls: the steps already taken."""
    return sum(
        1 for m in messages
        if m.get("role") == "assistant"
        and any(str(c.get("id", "")).startswith("cand_") or c.get("function", {}).get(
            "arguments", "").startswith('{"by": "cand"')
            for c in m.get("tool_calls") or [])
    )


def answer(body: dict[str, Any], state: AgentState) -> tuple[int, dict[str, Any]]:
    """The status and body of the reply to one request."""
    messages = body["messages"]
    script = script_of(messages, state.default)
    step = candidate_steps(messages)
    if state.fail_from_step is not None and step >= state.fail_from_step:
        return 500, {"error": {"message": "scripted failure", "type": "server_error"}}
    tokens = int(script.get("tokens", "5"))
    calls = script.get("calls", "0")
    more = calls == "forever" or step < int(calls)
    if more:
        offered = [t["function"]["name"] for t in body.get("tools") or []
                   if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        tool = script.get("tool", offered[0] if offered else "lookup")
        raw = script.get("args")
        tool_calls = []
        for j in range(int(script.get("per_step", "1"))):
            args = raw if raw is not None else json.dumps({"by": "cand", "step": step, "j": j})
            call: dict[str, Any] = {"type": "function",
                                    "function": {"name": tool, "arguments": args}}
            if not state.no_ids:
                call["id"] = f"cand_{step}_{j}"
            tool_calls.append(call)
        message: dict[str, Any] = {"role": "assistant", "content": f"calling {tool}",
                                   "tool_calls": tool_calls}
        finish = "tool_calls"
    else:
        shown = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
        message = {"role": "assistant", "content": "done: " + " | ".join(shown)}
        finish = "stop"
    return 200, {
        "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens},
    }


class _Agent(BaseHTTPRequestHandler):
    state: AgentState

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.state.lock:
            self.state.requests.append(body)
        status, reply = answer(body, self.state)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def serve_agent(state: AgentState) -> tuple[ThreadingHTTPServer, str]:
    """Start the endpoint in a daemon thread; returns the server and its ``/v1`` base URL.
    Call ``server.shutdown()`` after."""
    handler = type("Agent", (_Agent,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
