"""Replay through the OpenAI Batch API (``mode: batch`` in ``candidates.yaml``).

The pending requests of one candidate become a JSONL file of chat requests (``custom_id`` =
the request's cache key, ``body`` = exactly what the online path sends), uploaded and
submitted as a batch. The batch id is written to ``model_batches`` *before* any polling, so
a run that is killed, or that stops waiting (``batch_max_wait_s``), loses nothing: the next
run with the same pending requests finds the unfinished (or finished but not yet collected)
batch by the hash of its input and resumes polling it instead of paying for it again.

When the batch is done, its output and error files are read and every request gets an
outcome by ``custom_id``: ``ok`` with the reply, or ``error`` with a class and message; a
request found in neither file is an ``error`` too, never dropped. Outcomes go into the
response cache exactly as online answers do, so a rerun is a cache hit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import openai
import pydantic
from dagster_duckdb import DuckDBResource
from openai.types.chat import ChatCompletion

from depsim_assets.endpoints import (
    api_key_from_env,
    describe_error,
    describe_text,
    display_endpoint,
    resolve_base_url,
)
from depsim_assets.models import cache
from depsim_assets.registry import Candidate
from depsim_assets.replay.engine import (
    ReplayOutcome,
    ReplayRequest,
    outcome_of,
    request_params,
    sent_params,
)
from depsim_assets.warehouse import MODEL_BATCHES, ensure_tables

CHAT_ENDPOINT = "/v1/chat/completions"
MAX_LINES = 50_000  # requests per batch on the OpenAI Batch API
MAX_BYTES = 190 * 1024 * 1024  # input file size, under the API's 200 MB
FINISHED = ("completed", "failed", "expired", "cancelled")
# Client options the online call takes as keyword arguments: not part of a request body.
_CLIENT_OPTIONS = ("extra_headers", "extra_query", "timeout")
_POLL_FAILURES_TOLERATED = 10
# The exception class the openai client raises for an HTTP status, so a failed batch line
# reads like the same failure online.
_STATUS_ERRORS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}


class BatchError(RuntimeError):
    """A batch could not be submitted or followed (the endpoint refused or vanished)."""


class BatchPending(BatchError):
    """Stopped waiting for a batch that is still running; a rerun collects it."""


def request_body(entry: Candidate, request: ReplayRequest) -> dict[str, Any]:
    """The chat-completions body of one request, as the online path sends it."""
    params = sent_params(request_params(entry.params, entry.max_tokens), request)
    extra = params.pop("extra_body", None) or {}
    for option in _CLIENT_OPTIONS:
        params.pop(option, None)
    return {"model": entry.model, "messages": request.messages, **params, **extra}


def build_input(entry: Candidate, pending: Sequence[tuple[str, ReplayRequest]]) -> bytes:
    """The batch input file: one JSONL line per distinct request key, in a canonical form
    (same pending requests, same bytes, same hash)."""
    lines: dict[str, bytes] = {}
    for key, request in pending:
        if key not in lines:
            line = {
                "custom_id": key,
                "method": "POST",
                "url": CHAT_ENDPOINT,
                "body": request_body(entry, request),
            }
            lines[key] = (
                json.dumps(line, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
                + b"\n"
            )
    return b"".join(lines.values())


def _chunks(data: bytes) -> list[bytes]:
    """Split an input file into files the Batch API accepts (lines and bytes per batch)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in data.splitlines(keepends=True):
        if current and (len(current) >= MAX_LINES or size + len(line) > MAX_BYTES):
            out.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        out.append(b"".join(current))
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _sync_client(entry: Candidate) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=resolve_base_url(entry.base_url),
        api_key=api_key_from_env(entry.api_key_env),
        timeout=entry.timeout_s,
        max_retries=entry.max_retries,
    )


def _error_text(cls: str, message: str) -> str:
    return describe_text(f"{cls}: {message}")  # whole text, key-scrubbed, as online errors


def outcome_from_body(body: Any) -> ReplayOutcome:
    """The outcome of one chat-completions response body, by the online path's rules."""
    try:
        response = ChatCompletion.model_validate(body)
    except pydantic.ValidationError as exc:
        return ReplayOutcome(status="error", error=_error_text("InvalidResponse", str(exc)))
    return outcome_of(response)


def outcome_from_line(line: dict[str, Any]) -> ReplayOutcome:
    """The outcome of one line of a batch's output or error file."""
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    status = response.get("status_code") if response else None
    if response is not None and status == 200:
        return outcome_from_body(response.get("body"))
    if response is not None and isinstance(status, int):
        cls = _STATUS_ERRORS.get(
            status, "InternalServerError" if status >= 500 else "APIStatusError"
        )
        return ReplayOutcome(
            status="error", error=_error_text(cls, f"Error code: {status} - {response.get('body')}")
        )
    error = line.get("error") if isinstance(line.get("error"), dict) else {}
    return ReplayOutcome(
        status="error",
        error=_error_text(
            "BatchRequestError", f"{error.get('code') or 'unknown'}: {error.get('message') or ''}"
        ),
    )


def parse_results(data: bytes) -> dict[str, ReplayOutcome]:
    """Outcomes by ``custom_id`` from an output or error file (unreadable lines skipped:
    their requests then have no result and become errors)."""
    out: dict[str, ReplayOutcome] = {}
    for raw in data.splitlines():
        try:
            line = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            out[line["custom_id"]] = outcome_from_line(line)
    return out


class _Ledger:
    """``model_batches`` rows: every write a short transaction of its own."""

    def __init__(self, warehouse: DuckDBResource) -> None:
        self.warehouse = warehouse

    def find_open(self, *, endpoint: str, model: str, input_hash: str) -> dict[str, Any] | None:
        with self.warehouse.get_connection() as conn:
            ensure_tables(conn)
            frame = conn.execute(
                "SELECT * FROM model_batches WHERE endpoint = ? AND model = ? AND input_hash = ?"
                " AND collected_at IS NULL AND status <> 'lost' ORDER BY created_at DESC LIMIT 1",
                [endpoint, model, input_hash],
            ).df()
        return None if frame.empty else frame.iloc[0].to_dict()

    def insert(self, row: dict[str, Any]) -> None:
        cols = MODEL_BATCHES.column_names
        values = [row.get(c) for c in cols]
        with self.warehouse.get_connection() as conn:
            ensure_tables(conn)
            conn.execute(
                f"INSERT OR REPLACE INTO model_batches ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})",
                values,
            )

    def update(self, batch_id: str, **fields: Any) -> None:
        fields["updated_at"] = _now()
        sets = ", ".join(f'"{k}" = ?' for k in fields)
        with self.warehouse.get_connection() as conn:
            conn.execute(
                f"UPDATE model_batches SET {sets} WHERE batch_id = ?", [*fields.values(), batch_id]
            )


def _submit(
    client: openai.OpenAI,
    ledger: _Ledger,
    data: bytes,
    input_hash: str,
    *,
    endpoint: str,
    model: str,
    partition_key: str,
    log: Callable[[str], None],
) -> str:
    try:
        uploaded = client.files.create(
            file=(f"depsim-{input_hash[:16]}.jsonl", data), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=CHAT_ENDPOINT,
            completion_window="24h",
            metadata={"depsim_input_hash": input_hash[:64], "depsim_partition": partition_key},
        )
    except openai.OpenAIError as exc:
        # The whole reason, key-scrubbed: this message reaches the run log and the terminal.
        raise BatchError(f"submitting a batch to {endpoint}: {describe_error(exc)}") from None
    now, n_requests = _now(), data.count(b"\n")
    # Persisted before the first poll: from here on a restarted run resumes this batch.
    ledger.insert(
        {
            "batch_id": batch.id,
            "endpoint": endpoint,
            "model": model,
            "partition_key": partition_key,
            "input_hash": input_hash,
            "n_requests": n_requests,
            "input_file_id": uploaded.id,
            "status": batch.status,
            "created_at": now,
            "updated_at": now,
        }
    )
    log(f"batch {batch.id}: submitted {n_requests} requests to {endpoint}")
    return batch.id


def _wait(
    client: openai.OpenAI,
    ledger: _Ledger,
    batch_id: str,
    *,
    poll_s: float,
    deadline: float | None,
    log: Callable[[str], None],
) -> Any:
    """Poll until the batch finishes; None if the endpoint no longer knows it."""
    last: tuple[Any, ...] | None = None
    failures = 0
    while True:
        try:
            batch = client.batches.retrieve(batch_id)
            failures = 0
        except openai.NotFoundError:
            return None
        except (
            openai.APIConnectionError,
            openai.InternalServerError,
            openai.RateLimitError,
        ) as exc:
            failures += 1
            if failures > _POLL_FAILURES_TOLERATED:
                raise BatchError(
                    f"batch {batch_id}: polling failed {failures} times in a row: "
                    f"{type(exc).__name__}"
                ) from None
            batch = None
        if batch is not None:
            counts = batch.request_counts
            seen = (
                batch.status,
                counts.completed if counts else None,
                counts.failed if counts else None,
            )
            if seen != last:
                ledger.update(
                    batch_id,
                    status=batch.status,
                    output_file_id=batch.output_file_id,
                    error_file_id=batch.error_file_id,
                )
                done = f" {counts.completed}+{counts.failed}/{counts.total}" if counts else ""
                log(f"batch {batch_id}: {batch.status}{done}")
                last = seen
            if batch.status in FINISHED:
                return batch
        if deadline is not None and time.monotonic() >= deadline:
            raise BatchPending(
                f"batch {batch_id} is still {last[0] if last else 'unknown'} after the "
                "configured batch_max_wait_s; it keeps running, and the next materialization "
                "of this partition collects it"
            )
        time.sleep(
            poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
        )


def _download(client: openai.OpenAI, file_id: str | None) -> bytes:
    return client.files.content(file_id).content if file_id else b""


def _collect(client: openai.OpenAI, batch: Any, keys: list[str]) -> dict[str, ReplayOutcome]:
    results = parse_results(_download(client, batch.error_file_id))
    results.update(parse_results(_download(client, batch.output_file_id)))
    if batch.status == "failed" and batch.errors and batch.errors.data:
        first = batch.errors.data[0]
        why = _error_text("BatchFailed", f"{first.code}: {first.message} (line {first.line})")
    else:
        why = _error_text(
            "BatchLineMissing",
            f"batch {batch.id} ({batch.status}) returned no result for this request",
        )
    return {key: results.get(key) or ReplayOutcome(status="error", error=why) for key in keys}


def replay_batch(
    warehouse: DuckDBResource,
    entry: Candidate,
    pending: Sequence[tuple[str, ReplayRequest]],
    *,
    partition_key: str,
    log: Callable[[str], None] = print,
    kind: str = "replay",
) -> dict[str, ReplayOutcome]:
    """Outcomes of ``pending`` (request key, request) by key, through the Batch API.

    Submits (or resumes) one batch per at most 50,000 requests, waits for them, stores every
    outcome in the response cache and marks the batches collected. Raises
    :class:`BatchPending` when ``entry.batch_max_wait_s`` passes first, and
    :class:`BatchError` when the endpoint refuses the batch.
    """
    if not pending:
        return {}
    endpoint = display_endpoint(entry.base_url)
    ledger = _Ledger(warehouse)
    deadline = (
        time.monotonic() + entry.batch_max_wait_s if entry.batch_max_wait_s is not None else None
    )
    outcomes: dict[str, ReplayOutcome] = {}
    with _sync_client(entry) as client:
        submit = functools.partial(_submit, client, ledger, endpoint=endpoint, model=entry.model,
                                   partition_key=partition_key, log=log)
        wait = functools.partial(_wait, client, ledger, poll_s=entry.batch_poll_s,
                                 deadline=deadline, log=log)
        jobs: list[tuple[str, list[str], bytes, str]] = []
        for data in _chunks(build_input(entry, pending)):
            input_hash = hashlib.sha256(data).hexdigest()
            keys = [json.loads(line)["custom_id"] for line in data.splitlines()]
            found = ledger.find_open(endpoint=endpoint, model=entry.model, input_hash=input_hash)
            if found is not None:
                log(
                    f"batch {found['batch_id']}: resuming ({found['status']}, submitted "
                    f"{found['created_at']})"
                )
                batch_id = found["batch_id"]
            else:
                batch_id = submit(data, input_hash)
            jobs.append((batch_id, keys, data, input_hash))
        for batch_id, keys, data, input_hash in jobs:
            batch = wait(batch_id)
            if batch is None:  # the endpoint forgot it (a restarted server): submit again
                ledger.update(batch_id, status="lost")
                log(f"batch {batch_id}: unknown to {endpoint}; submitting its requests again")
                batch_id = submit(data, input_hash)
                batch = wait(batch_id)
                if batch is None:
                    raise BatchError(f"batch {batch_id} vanished from {endpoint} twice")
            got = _collect(client, batch, keys)
            with warehouse.get_connection() as conn:
                cache.store(
                    conn,
                    [
                        {
                            "request_key": key,
                            "kind": kind,
                            "endpoint": endpoint,
                            "model": entry.model,
                            "status": out.status,
                            "payload": dataclasses.asdict(out),
                            "prompt_tokens": out.prompt_tokens,
                            "completion_tokens": out.completion_tokens,
                        }
                        for key, out in got.items()
                    ],
                )
            ledger.update(batch_id, collected_at=_now())
            n_ok = sum(out.status == "ok" for out in got.values())
            log(f"batch {batch_id}: collected {n_ok} ok, {len(got) - n_ok} errors")
            outcomes.update(got)
    return {key: outcomes[key] for key, _ in pending}
