"""The simulator as a real OpenAI-compatible HTTP server on loopback.

depsim talks to every model through the ``openai`` client, so the simulator is a server
rather than a mock: the same client code, retries and parsing run in the demo and the tests
as against a real endpoint. It serves the personas of ``personas.py`` (which call tools when
a request offers them), the lexical ``sim-judge``, and the agentic roles of ``tool_sim.py``
(``sim-tool-simulator``, ``sim-discriminator``), and counts requests so tests can check how
many calls a step made.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import fastjsonschema
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from depsim_assets.sim.agentic import respond
from depsim_assets.sim.batches import BatchStore
from depsim_assets.sim.faults import FaultPlan
from depsim_assets.sim.flavours import context_error, parse_model, refusal
from depsim_assets.sim.judge import JUDGE_MODEL, grade_request, schema_from_prompt
from depsim_assets.sim.personas import PERSONA_MODELS, content_text
from depsim_assets.sim.tool_sim import DEFAULT_REALISM, discriminate, simulate_result
from depsim_assets.taxonomy import Taxonomy, load_taxonomy
from depsim_assets.toolsim import (
    SIM_DISCRIMINATOR,
    SIM_TOOL_SIMULATOR,
    parse_discriminator_request,
    parse_simulator_request,
)

_OWNER = "depsim-sim"
_AGENTIC_ROLES = (SIM_TOOL_SIMULATOR, SIM_DISCRIMINATOR)
_STARTUP_TIMEOUT_S = 15.0


@functools.lru_cache(maxsize=64)
def _schema_validator(schema_json: str) -> Callable[[Any], Any]:
    # A judge sends the same schema on every call: compile it once. fastjsonschema turns the
    # schema into Python code (about 0.08 ms per check here, against 2.6 ms for jsonschema's
    # interpreter with $ref lookups), which matters when the simulator shares a core with
    # the client.
    return fastjsonschema.compile(json.loads(schema_json))


def _error_body(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error"):
    return JSONResponse(_error_body(message, code, kind), status_code=status)


def _completion_body(
    model: str,
    content: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if cached_tokens:
        body["usage"]["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return body


class _DroppedConnection:
    """An ASGI response that sends its headers and part of the body, then gives up.

    uvicorn closes the socket when an app returns mid-response, so the client sees what a
    dropped connection looks like (the peer closed before the body was complete), not an
    HTTP error it could parse.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})


class _QuietPlannedDrops(logging.Filter):
    # uvicorn logs every incomplete response as an error; the planned ones are not errors.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _INCOMPLETE_RESPONSE


_INCOMPLETE_RESPONSE = "ASGI callable returned without completing response."
logging.getLogger("uvicorn.error").addFilter(_QuietPlannedDrops())


class _Stats:
    """Request counts per model, faults served, batches and files; shared by the event loop
    and test threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._batches: Counter[str] = Counter()
        self._files: Counter[str] = Counter()

    def record(self, model: str) -> None:
        with self._lock:
            self._counts[model] += 1

    def record_fault(self, fault: str) -> None:
        with self._lock:
            self._faults[fault] += 1

    def record_batch(self, event: str, n: int = 1) -> None:
        with self._lock:
            self._batches[event] += n

    def record_file(self, n_bytes: int) -> None:
        with self._lock:
            self._files["uploaded"] += 1
            self._files["bytes"] += n_bytes

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self._counts.values()),
                "by_model": dict(self._counts),
                "faults": dict(self._faults),
                "batches": dict(self._batches),
                "files": dict(self._files),
            }

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faults.clear()
            self._batches.clear()
            self._files.clear()


def _word_count(messages: list[dict[str, Any]]) -> int:
    return sum(len(content_text(m.get("content")).split()) for m in messages)


def create_app(taxonomy: Taxonomy | None = None, faults: FaultPlan | None = None) -> Starlette:
    """The simulator's Starlette app.

    With ``taxonomy=None`` the judge reloads the default taxonomy on each request (cached by
    file mtimes), so edits to ``taxonomy/`` apply to a running server. ``faults`` injects
    429s, 500s, hung requests, dropped connections, malformed judge output and latency, and
    sets how long a batch takes (see ``faults.py``).
    """
    stats = _Stats()
    # Static prompt prefixes already read (hashes): a repeat is served "from cache", and the
    # answer says how many prompt tokens that saved, as servers with prefix caching do.
    seen_prefixes: set[str] = set()

    def current_taxonomy() -> Taxonomy:
        return taxonomy if taxonomy is not None else load_taxonomy()

    async def list_models(request: Request) -> JSONResponse:
        created = int(time.time())
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": _OWNER}
            for model in (*PERSONA_MODELS, JUDGE_MODEL, *_AGENTIC_ROLES)
        ]
        return JSONResponse({"object": "list", "data": data})

    def check_chat(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Why a chat request cannot be answered, as ``(status, error body)``; None if it can."""
        model = body.get("model")
        try:
            flavour = parse_model(model) if isinstance(model, str) else None
        except ValueError as exc:
            return 404, _error_body(f"The model '{model}' does not exist: {exc}",
                                    "model_not_found")
        base = flavour.base_model if flavour is not None else None
        if base not in PERSONA_MODELS and base != JUDGE_MODEL and base not in _AGENTIC_ROLES:
            return 404, _error_body(f"The model '{model}' does not exist", "model_not_found")
        if flavour is not None and flavour.realism is not None and base != SIM_TOOL_SIMULATOR:
            return 404, _error_body(
                f"The model '{model}' does not exist: @realism applies to "
                f"{SIM_TOOL_SIMULATOR} only", "model_not_found")
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            return 400, _error_body("'messages' must be a non-empty list of messages",
                                    "bad_messages")
        if body.get("n", 1) != 1:
            return 400, _error_body("the simulator returns one choice per request (n=1)", "bad_n")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            return 400, _error_body("'seed' must be an integer", "bad_seed")
        for knob, top in (("temperature", 2.0), ("top_p", 1.0)):  # OpenAI's ranges
            value = body.get(knob)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
                or not 0 <= value <= top
            ):
                return 400, _error_body(f"'{knob}' must be a number in [0, {top:g}]",
                                        f"bad_{knob}")
        return None

    def answer_chat(body: dict[str, Any], *, malformed: bool = False) -> tuple[int, dict[str, Any]]:
        """The one code path that answers a chat request, online or as a batch line.

        ``body`` has a non-empty string ``model``; returns ``(status, response body)``.
        """
        problem = check_chat(body)
        if problem is not None:
            return problem
        model, messages = body["model"], body["messages"]
        flavour = parse_model(model)
        refused = refusal(flavour, body)
        if refused is not None:
            return refused
        too_long = context_error(flavour, _word_count(messages))
        if too_long is not None:
            return too_long
        if flavour.base_model == JUDGE_MODEL:
            return _judge(body, messages, malformed=malformed)
        if flavour.base_model in _AGENTIC_ROLES:
            return _agentic_role(model, flavour.base_model, flavour.realism, messages)
        tools = body.get("tools")
        if tools is not None and not isinstance(tools, list):
            return 400, _error_body("'tools' must be a list of tool definitions", "bad_tools")
        if body.get("tool_choice") == "none":  # OpenAI: tools listed, but none may be called
            tools = None
        # The personas answer temperature and top_p with more or less variance between
        # replies, never with other expected rates (personas.temperature_multiplier). With
        # tools offered they call them (agentic.respond); without, they reply as always.
        reply = respond(flavour.base_model, messages, body.get("seed"),
                        temperature=body.get("temperature"), top_p=body.get("top_p"),
                        tools=tools)
        content = None if reply.tool_calls and not reply.text else reply.text
        return 200, _completion_body(model, content, reply.prompt_tokens,
                                     reply.completion_tokens, tool_calls=reply.tool_calls)

    def _agentic_role(
        model: str, base: str, realism: float | None, messages: list[dict[str, Any]]
    ) -> tuple[int, dict[str, Any]]:
        try:
            if base == SIM_TOOL_SIMULATOR:
                request = parse_simulator_request(messages)
                content = simulate_result(
                    request, DEFAULT_REALISM if realism is None else realism)
            else:
                content = discriminate(parse_discriminator_request(messages))
        except (ValueError, TypeError, AttributeError) as exc:
            # json.loads errors are ValueErrors; a section of the wrong JSON type is the rest.
            what = "tool-simulator" if base == SIM_TOOL_SIMULATOR else "discriminator"
            return 400, _error_body(
                f"{base} expects a {what} prompt (depsim_assets.toolsim): {exc}",
                "bad_agentic_request")
        return 200, _completion_body(model, content, _word_count(messages),
                                     len(content.split()))

    async def chat_completions(request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_json")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object", "invalid_body")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "'model' is required", "missing_model")
        stats.record(model)
        problem = check_chat(body)
        if problem is not None:
            return JSONResponse(problem[1], status_code=problem[0])
        fault: str | None = None
        if faults is not None:
            fault, delay = faults.decide(model, raw)
            if fault is not None:
                stats.record_fault(fault)
            if delay:
                await asyncio.sleep(delay)
            if fault == "429":
                response = _error(
                    429, "simulated rate limit", "rate_limit_exceeded", "rate_limit"
                )
                response.headers["Retry-After"] = f"{faults.for_model(model).retry_after:g}"
                return response
            if fault == "500":
                return _error(500, "simulated server error", "server_error", "server_error")
            if fault == "drop":
                return _DroppedConnection()
            if fault == "hang":
                # Answer only after the client has given up, as a stuck upstream would.
                await asyncio.sleep(faults.for_model(model).hang_s)
        status, payload = answer_chat(body, malformed=fault == "malformed")
        return JSONResponse(payload, status_code=status)

    def _judge(
        body: dict[str, Any], messages: list[dict[str, Any]], *, malformed: bool = False
    ) -> tuple[int, dict[str, Any]]:
        # Like a real server the judge takes the answer's shape from a strict json_schema, from
        # json_object with a schema (llama-cpp-python's form) or, with neither, from the
        # prompt; a text answer is wrapped in prose and a code fence, as small models do.
        response_format = body.get("response_format")
        if not isinstance(response_format, dict):
            response_format = {}
        kind = response_format.get("type")
        if kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
        elif kind == "json_object" and isinstance(response_format.get("schema"), dict):
            schema = response_format["schema"]
        elif kind in (None, "text", "json_object"):
            schema = schema_from_prompt(messages)
        else:
            return 400, _error_body(f"unknown response_format type {kind!r}", "bad_rf")
        if not isinstance(schema, dict):
            return 400, _error_body(
                "sim-judge needs a JSON schema: response_format json_schema, json_object with "
                "a schema, or the schema in the system prompt", "bad_rf")
        try:
            validator = _schema_validator(json.dumps(schema, sort_keys=True))
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            return 400, _error_body(f"invalid JSON schema: {exc}", "bad_schema")
        try:
            grade = grade_request(messages, schema, current_taxonomy())
            validator(grade)
        except fastjsonschema.JsonSchemaValueException as exc:
            return 400, _error_body(f"sim-judge output violates the schema: {exc.message}",
                                    "bad_schema")
        except ValueError as exc:
            return 400, _error_body(str(exc), "bad_judge_request")
        content = json.dumps(grade, ensure_ascii=False)
        if kind != "json_schema" and kind != "json_object":
            content = f"Here is my verdict:\n```json\n{content}\n```"
        if malformed:  # a judge that stops mid-object, as a flaky server can
            content = content[: len(content) // 2]
        return 200, _completion_body(body["model"], content, _word_count(messages),
                                     len(content.split()), _cached_tokens(messages))

    def _cached_tokens(messages: list[dict[str, Any]]) -> int:
        system = content_text(messages[0].get("content")) if messages else ""
        static = system.rpartition("\nFence token:")[0]
        if not static:
            return 0
        key = hashlib.sha256(static.encode()).hexdigest()
        hit = key in seen_prefixes
        seen_prefixes.add(key)
        return len(static.split()) if hit else 0

    async def tokenize(request: Request) -> JSONResponse:
        # llama.cpp's llama-server route (on the server root, not under /v1): the simulator
        # counts one token per word, as in its usage numbers.
        try:
            body = json.loads(await request.body())
            text = body["content"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "expected a JSON body with 'content'", "bad_tokenize")
        return JSONResponse({"tokens": list(range(len(str(text).split())))})

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse(stats.snapshot())

    async def reset_stats(request: Request) -> JSONResponse:
        stats.reset()
        return JSONResponse(stats.snapshot())

    batches = BatchStore(answer_chat, faults if faults is not None else FaultPlan(), stats)
    app = Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            *batches.routes("/v1"),
            Route("/v1/sim/stats", get_stats, methods=["GET"]),
            Route("/v1/sim/stats/reset", reset_stats, methods=["POST"]),
            Route("/tokenize", tokenize, methods=["POST"]),
        ]
    )
    app.state.stats = stats
    app.state.batches = batches
    return app


class SimServer:
    """The simulator served by uvicorn in a daemon thread on 127.0.0.1 (a free port by default)."""

    def __init__(
        self, taxonomy: Taxonomy | None = None, port: int = 0, faults: FaultPlan | None = None
    ) -> None:
        self._app = create_app(taxonomy, faults)
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``; only valid after ``start()``."""
        if self._port is None:
            raise RuntimeError("SimServer is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def running(self) -> bool:
        """Whether the server thread is alive and accepting requests."""
        if self._thread is None or self._server is None:
            return False
        return self._thread.is_alive() and self._server.started

    def start(self) -> SimServer:
        """Bind the port, start serving in a daemon thread and wait until it accepts requests."""
        if self._thread is not None:
            return self
        # Binding here, not in uvicorn, gives the real port before the thread starts, and
        # port 0 lets parallel test processes each get their own.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._requested_port))
        self._port = sock.getsockname()[1]
        # log_config=None leaves the host process's logging configuration alone.
        config = uvicorn.Config(
            self._app, log_config=None, log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        # uvicorn skips signal handlers outside the main thread, which is what we need here.
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="depsim-sim-server", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the simulator server failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_singleton: SimServer | None = None
_singleton_lock = threading.Lock()


def ensure_sim_server() -> str:
    """Start the process-wide simulator once (thread-safe) and return its base_url.

    ``DEPSIM_SIM_FAULTS`` (a fault spec, see ``faults.SPEC_HELP``) injects faults into it.
    """
    global _singleton
    with _singleton_lock:
        if _singleton is None or not _singleton.running:
            spec = os.environ.get("DEPSIM_SIM_FAULTS", "")
            _singleton = SimServer(faults=FaultPlan.parse(spec) if spec else None).start()
        return _singleton.base_url


def serve(host: str = "127.0.0.1", port: int = 8765, faults: FaultPlan | None = None) -> None:
    """Serve the simulator in the foreground until interrupted (``depsim sim serve``)."""
    uvicorn.run(create_app(faults=faults), host=host, port=port, log_level="info")
