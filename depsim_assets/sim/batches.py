"""The simulator's Files and Batches endpoints: the subset of the OpenAI Batch API depsim uses.

Upload a JSONL of chat requests (``POST /files``, purpose ``batch``), create a batch on it
(``POST /batches``), poll it (``GET /batches/{id}``), then download its output and error files
(``GET /files/{id}/content``); ``POST /batches/{id}/cancel`` stops one. A batch completes
``batch_delay_s`` after it was created (a fault-plan setting) and is answered when first
looked at after that. Every line is answered by the same function as an online
``/chat/completions`` request, so a batch and online calls give identical replies for identical
bodies. The fault plan can fail lines (they land in the error file with a 500) or lose them
(in neither file), deterministically per line.

State lives in memory: a restarted simulator knows no batch (``404``), as a real endpoint
would not know a batch from another account.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from depsim_assets.sim.faults import FaultPlan

CHAT_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOWS = ("24h",)
MAX_FILE_BYTES = 200 * 1024 * 1024  # the OpenAI Files API limit
MAX_LINES = 50_000  # requests per batch, as on the OpenAI Batch API

Answer = Callable[..., tuple[int, dict[str, Any]]]


def _error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        },
        status_code=status,
    )


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a ``multipart/form-data`` body: name -> (filename or None, bytes).

    The stdlib MIME parser reads form data as well as mail; ValueError when it is not
    multipart.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError("expected a multipart/form-data upload")
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("the multipart body has no parts")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


@dataclass
class _File:
    id: str
    data: bytes
    filename: str
    purpose: str
    created_at: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _Batch:
    obj: dict[str, Any]
    lines: list[tuple[str, dict[str, Any], bytes]]
    ready_at: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _line_error(line: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": param}


def _read_lines(
    data: bytes, endpoint: str
) -> tuple[list[tuple[str, dict[str, Any], bytes]], list[dict[str, Any]]]:
    """The requests of a batch input file, and every line that is not a valid request."""
    lines: list[tuple[str, dict[str, Any], bytes]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            errors.append(_line_error(number, "invalid_json_line", "this line is not JSON"))
            continue
        if not isinstance(item, dict):
            errors.append(_line_error(number, "invalid_json_line", "a line is a JSON object"))
            continue
        custom_id, body = item.get("custom_id"), item.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(
                _line_error(
                    number, "missing_required_parameter", "custom_id is required", "custom_id"
                )
            )
        elif custom_id in seen:
            errors.append(
                _line_error(
                    number,
                    "duplicate_custom_id",
                    f"custom_id {custom_id!r} appears twice",
                    "custom_id",
                )
            )
        elif item.get("method") != "POST":
            errors.append(_line_error(number, "invalid_method", "method must be POST", "method"))
        elif item.get("url") != endpoint:
            errors.append(
                _line_error(
                    number, "invalid_url", f"url must be the batch's endpoint {endpoint}", "url"
                )
            )
        elif not isinstance(body, dict) or not isinstance(body.get("model"), str):
            errors.append(
                _line_error(number, "invalid_body", "body must be an object with a model", "body")
            )
        else:
            seen.add(custom_id)
            models.add(body["model"])
            lines.append((custom_id, body, json.dumps(body, separators=(",", ":")).encode()))
    if len(models) > 1:
        errors.append(
            _line_error(
                0, "mismatched_model", f"a batch serves one model, this file names {sorted(models)}"
            )
        )
    if not lines and not errors:
        errors.append(_line_error(0, "empty_file", "the input file has no requests"))
    if len(lines) > MAX_LINES:
        errors.append(
            _line_error(
                0, "too_many_requests", f"{len(lines)} requests; a batch holds at most {MAX_LINES}"
            )
        )
    return lines, errors


class BatchStore:
    """Uploaded files and batches of one simulator app, and the routes that serve them."""

    def __init__(self, answer: Answer, plan: FaultPlan, stats: Any) -> None:
        self._answer, self._plan, self._stats = answer, plan, stats
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}

    def routes(self, prefix: str) -> list[Route]:
        """Starlette routes under ``prefix`` (``/v1``)."""
        return [
            Route(f"{prefix}/files", self.upload, methods=["POST"]),
            Route(f"{prefix}/files/{{file_id}}", self.get_file, methods=["GET"]),
            Route(f"{prefix}/files/{{file_id}}/content", self.file_content, methods=["GET"]),
            Route(f"{prefix}/batches", self.create, methods=["POST"]),
            Route(f"{prefix}/batches/{{batch_id}}", self.retrieve, methods=["GET"]),
            Route(f"{prefix}/batches/{{batch_id}}/cancel", self.cancel, methods=["POST"]),
        ]

    def _add_file(self, data: bytes, filename: str, purpose: str) -> _File:
        item = _File(f"file-{uuid.uuid4().hex[:24]}", data, filename, purpose, int(time.time()))
        self.files[item.id] = item
        return item

    # ------------------------------------------------------------------------------- files
    async def upload(self, request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_FILE_BYTES:
            return _error(413, f"files are limited to {MAX_FILE_BYTES} bytes", "file_too_large")
        try:
            fields = parse_multipart(request.headers.get("content-type", ""), body)
        except ValueError as exc:
            return _error(400, str(exc), "invalid_multipart")
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
        if "file" not in fields:
            return _error(400, "the upload has no 'file' field", "missing_file", "file")
        if purpose != "batch":
            return _error(
                400,
                f"purpose {purpose!r}: the simulator stores purpose 'batch' only",
                "invalid_purpose",
                "purpose",
            )
        filename, data = fields["file"]
        item = self._add_file(data, filename or "upload.jsonl", purpose)
        self._stats.record_file(len(data))
        return JSONResponse(item.public())

    async def get_file(self, request: Request) -> JSONResponse:
        item = self.files.get(request.path_params["file_id"])
        if item is None:
            return _error(
                404, f"No such File object: {request.path_params['file_id']}", "not_found", "id"
            )
        return JSONResponse(item.public())

    async def file_content(self, request: Request) -> Response:
        item = self.files.get(request.path_params["file_id"])
        if item is None:
            return _error(
                404, f"No such File object: {request.path_params['file_id']}", "not_found", "id"
            )
        return Response(item.data, media_type="application/octet-stream")

    # ----------------------------------------------------------------------------- batches
    async def create(self, request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_json")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object", "invalid_body")
        endpoint, window = body.get("endpoint"), body.get("completion_window")
        if endpoint != CHAT_ENDPOINT:
            return _error(
                400,
                f"endpoint {endpoint!r}: the simulator batches {CHAT_ENDPOINT} only",
                "invalid_endpoint",
                "endpoint",
            )
        if window not in COMPLETION_WINDOWS:
            return _error(
                400,
                f"completion_window {window!r}: one of {COMPLETION_WINDOWS}",
                "invalid_completion_window",
                "completion_window",
            )
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            return _error(400, "metadata maps strings to strings", "invalid_metadata", "metadata")
        source = self.files.get(str(body.get("input_file_id")))
        if source is None:
            return _error(
                404,
                f"No such File object: {body.get('input_file_id')}",
                "not_found",
                "input_file_id",
            )
        if source.purpose != "batch":
            return _error(
                400, "the input file's purpose is not 'batch'", "invalid_purpose", "input_file_id"
            )
        lines, errors = _read_lines(source.data, endpoint)
        now = time.time()
        model = lines[0][1]["model"] if lines else None
        obj: dict[str, Any] = {
            "id": f"batch_{uuid.uuid4().hex[:24]}",
            "object": "batch",
            "endpoint": endpoint,
            "model": model,
            "errors": None,
            "input_file_id": source.id,
            "completion_window": window,
            "status": "in_progress",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(now),
            "in_progress_at": int(now),
            "expires_at": int(now) + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": metadata,
            "usage": None,
        }
        if errors:  # as on the real API: an invalid input file fails the whole batch
            obj.update(
                status="failed",
                failed_at=int(now),
                in_progress_at=None,
                errors={"object": "list", "data": errors[:100]},
                request_counts={"total": 0, "completed": 0, "failed": 0},
            )
            lines = []
            self._stats.record_batch("failed")
        delay = self._plan.for_model(model).batch_delay_s if model else 0.0
        self.batches[obj["id"]] = _Batch(obj, lines, now + delay)
        self._stats.record_batch("created")
        return JSONResponse(obj)

    def _find(self, request: Request) -> _Batch | JSONResponse:
        """The batch the path names, or the API's 404 answer."""
        batch_id = request.path_params["batch_id"]
        batch = self.batches.get(batch_id)
        if batch is None:
            return _error(404, f"No such Batch object: {batch_id}", "not_found", "batch_id")
        return batch

    async def retrieve(self, request: Request) -> JSONResponse:
        batch = self._find(request)
        if isinstance(batch, JSONResponse):
            return batch
        await self._settle(batch)
        return JSONResponse(batch.obj)

    async def cancel(self, request: Request) -> JSONResponse:
        batch = self._find(request)
        if isinstance(batch, JSONResponse):
            return batch
        async with batch.lock:
            status = batch.obj["status"]
            if status in ("completed", "failed", "expired"):
                return _error(
                    409, f"batch {batch.obj['id']} is already {status}", "batch_not_cancellable"
                )
            if status != "cancelled":
                now = int(time.time())
                batch.obj.update(status="cancelled", cancelling_at=now, cancelled_at=now)
                batch.lines = []
                self._stats.record_batch("cancelled")
        return JSONResponse(batch.obj)

    async def _settle(self, batch: _Batch) -> None:
        if batch.obj["status"] != "in_progress" or time.time() < batch.ready_at:
            return
        async with batch.lock:
            if batch.obj["status"] != "in_progress":  # settled while we waited for the lock
                return
            # Answering thousands of lines takes a while: off the event loop, so online
            # requests to the same simulator keep flowing.
            output, failed, usage = await asyncio.to_thread(self._run, batch)
            now = int(time.time())
            out_id = err_id = None
            if output:
                out_id = self._add_file(
                    _jsonl(output), f"{batch.obj['id']}_output.jsonl", "batch_output"
                ).id
            if failed:
                err_id = self._add_file(
                    _jsonl(failed), f"{batch.obj['id']}_error.jsonl", "batch_output"
                ).id
            batch.obj.update(
                status="completed",
                finalizing_at=now,
                completed_at=now,
                output_file_id=out_id,
                error_file_id=err_id,
                usage=usage,
                request_counts={
                    "total": len(batch.lines),
                    "completed": len(output),
                    "failed": len(failed),
                },
            )
            batch.lines = []
            self._stats.record_batch("completed")

    def _run(
        self, batch: _Batch
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        output: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        tokens_in = tokens_out = 0
        for custom_id, body, raw in batch.lines:
            self._stats.record_batch("lines")
            fault = self._plan.batch_line_fault(body["model"], custom_id, raw)
            if fault == "drop":
                self._stats.record_fault("batch_drop")
                continue
            if fault == "fail":
                self._stats.record_fault("batch_fail")
                status, payload = (
                    500,
                    {
                        "error": {
                            "message": "simulated server error",
                            "type": "server_error",
                            "param": None,
                            "code": "server_error",
                        }
                    },
                )
            else:
                status, payload = self._answer(body)
            line = {
                "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                "custom_id": custom_id,
                "response": {
                    "status_code": status,
                    "request_id": f"req_{uuid.uuid4().hex[:24]}",
                    "body": payload,
                },
                "error": None,
            }
            if status == 200:
                usage = payload.get("usage") or {}
                tokens_in += int(usage.get("prompt_tokens") or 0)
                tokens_out += int(usage.get("completion_tokens") or 0)
                output.append(line)
            else:
                err = payload.get("error") or {}
                line["error"] = {
                    "code": err.get("code") or str(status),
                    "message": err.get("message") or f"HTTP {status}",
                }
                failed.append(line)
        usage = {
            "input_tokens": tokens_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + tokens_out,
        }
        return output, failed, usage


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(i, ensure_ascii=False).encode() + b"\n" for i in items)
