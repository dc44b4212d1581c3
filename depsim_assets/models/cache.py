"""The response cache: every answered request is stored as it arrives, keyed by its content.

A request's key hashes everything that determines the answer: endpoint, model, generation
parameters, messages and sample index (repeated samples of one prefix are distinct keys, so
k > 1 means k real calls). Re-materializing a partition asks the cache first and calls only
for keys never answered; a run killed mid-way loses at most the calls in flight, because
answers are written in short batches while the run goes on, not at its end.

Only ``ok`` answers are hits: a failed call is recorded (so its error is visible) and tried
again next time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.warehouse import MODEL_CALLS, ensure_tables, upsert_sql


def request_key(
    *, endpoint: str, model: str, params: dict[str, Any], messages: Any, sample_index: int
) -> str:
    """Content key of one request (canonical JSON, SHA-256)."""
    body = json.dumps(
        {"endpoint": endpoint, "model": model, "params": params, "messages": messages,
         "sample_index": sample_index},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def lookup(conn: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Answered (``ok``) payloads for ``keys``, by key."""
    ensure_tables(conn)
    if not keys:
        return {}
    wanted = pd.DataFrame({"request_key": list(dict.fromkeys(keys))})
    conn.register("_wanted_keys", wanted)
    try:
        rows = conn.execute(
            "SELECT c.request_key, c.payload_json FROM model_calls c "
            "JOIN _wanted_keys w USING (request_key) WHERE c.status = 'ok'"
        ).fetchall()
    finally:
        conn.unregister("_wanted_keys")
    return {key: json.loads(payload) for key, payload in rows}


def store(conn: duckdb.DuckDBPyConnection, entries: Iterable[dict[str, Any]]) -> int:
    """Insert or replace answers in one short transaction; returns rows written.

    Each entry has ``request_key, kind, endpoint, model, status, payload`` and token counts.
    """
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    latest: dict[str, dict[str, Any]] = {}
    for entry in entries:  # one row per key: the batch itself must not conflict
        latest[entry["request_key"]] = {
            "request_key": entry["request_key"],
            "kind": entry["kind"],
            "endpoint": entry["endpoint"],
            "model": entry["model"],
            "status": entry["status"],
            "payload_json": json.dumps(entry["payload"], ensure_ascii=False),
            "prompt_tokens": int(entry.get("prompt_tokens") or 0),
            "completion_tokens": int(entry.get("completion_tokens") or 0),
            "answered_at": now,
        }
    if not latest:
        return 0
    ensure_tables(conn)
    # In key order: on Postgres, two writers upserting overlapping keys then lock them in the
    # same order and take turns instead of deadlocking.
    rows = [latest[key] for key in sorted(latest)]
    frame = pd.DataFrame(rows, columns=pd.Index(MODEL_CALLS.column_names))
    conn.register("_answers", frame)
    try:
        conn.execute("BEGIN TRANSACTION")
        # ON CONFLICT: a key another process stored meanwhile is replaced, never an error.
        conn.execute(upsert_sql(MODEL_CALLS, "SELECT * FROM _answers ORDER BY request_key"))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.unregister("_answers")
    return len(frame)


class CacheWriter:
    """Buffers answers and writes them in short transactions while the run goes on."""

    def __init__(self, warehouse: DuckDBResource, every: int = 200, seconds: float = 2.0):
        self.warehouse, self.every, self.seconds = warehouse, every, seconds
        self.buffer: list[dict] = []
        self.last = time.monotonic()

    def add(self, entry: dict) -> None:
        self.buffer.append(entry)
        if len(self.buffer) >= self.every or time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            with self.warehouse.get_connection() as conn:
                store(conn, self.buffer)
            self.buffer = []
        self.last = time.monotonic()


def recall(warehouse: DuckDBResource, key: str) -> dict[str, Any]:
    """A fact remembered about an endpoint under ``key`` (empty when none): not an answer to
    a request, but what a run learned, e.g. the structured-output mode a server takes."""
    with warehouse.get_connection() as conn:
        return lookup(conn, [key]).get(key, {})


def remember(
    warehouse: DuckDBResource, key: str, *, kind: str, endpoint: str, model: str,
    payload: dict[str, Any],
) -> None:
    """Keep a fact about an endpoint for later runs (read back by :func:`recall`)."""
    with warehouse.get_connection() as conn:
        store(conn, [{"request_key": key, "kind": kind, "endpoint": endpoint, "model": model,
                      "status": "ok", "payload": payload}])
