"""Streaming reader of the production log.

The log is one folder per day, ``<log_root>/<YYYY-MM-DD>/*.jsonl``, one conversation per line
in OpenAI chat format. :func:`iter_log` yields a :class:`LogRecord` for every usable line and
a :class:`Rejected` for every line that cannot be used, so the caller can count and
quarantine without ever holding a whole file in memory.

A rejection's ``detail`` is built only from this module's own words, positions and fixed
vocabularies (roles, JSON types): record text is raw, un-de-identified production text and
must not travel into the quarantine table.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from depsim_assets import config

DEFAULT_MAX_LINE_BYTES = 1 << 20

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
TEXT_PART_TYPES = frozenset({"text", "refusal"})

INVALID_JSON = "invalid_json"
INVALID_ENCODING = "invalid_encoding"
NOT_AN_OBJECT = "not_an_object"
NO_MESSAGES = "no_messages"
BAD_MESSAGE = "bad_message"
BAD_FIELD = "bad_field"
UNKNOWN_ROLE = "unknown_role"
NO_FINAL_ASSISTANT = "no_final_assistant"
EMPTY_FINAL_REPLY = "empty_final_reply"
ORPHAN_TOOL_MESSAGE = "orphan_tool_message"
TOO_LARGE = "too_large"

REJECT_REASONS = (
    INVALID_JSON,
    INVALID_ENCODING,
    NOT_AN_OBJECT,
    NO_MESSAGES,
    BAD_MESSAGE,
    BAD_FIELD,
    UNKNOWN_ROLE,
    NO_FINAL_ASSISTANT,
    EMPTY_FINAL_REPLY,
    ORPHAN_TOOL_MESSAGE,
    TOO_LARGE,
)

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_READ_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One usable conversation of the production log, with its place in the log.

    ``user_id`` is None when the log does not name an account.
    """

    conversation_id: str
    created_at: str | None
    user_id: str | None
    opted_out: bool
    source: str
    model: str
    messages: list[dict[str, Any]]
    source_file: str
    line_number: int
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that cannot be used: where it is, a reason code, and a text-free detail."""

    source_file: str
    line_number: int
    reason: str
    detail: str


class RecordError(Exception):
    """Why one record cannot be used: a reason code and a text-free detail.

    ``source_file``/``line_number`` override the reader's position when the record is a
    rejection carried over from ``depsim ingest`` (it names the original file and line).
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        source_file: str | None = None,
        line_number: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.source_file = source_file
        self.line_number = line_number


_Reject = RecordError

# A line ``{"ingest_rejected": {...}}`` is a record ``depsim ingest`` could not use: it stands
# in the day's log so the day's funnel counts it, and it carries no text of the record.
INGEST_REJECTED = "ingest_rejected"
# ``{"ingest_origin": {"file", "line"}}`` on a normalized record: where ingest read it.
INGEST_ORIGIN = "ingest_origin"


def day_folder(log_root: Path | str | None, date: str) -> Path:
    """The folder of one day of log, ``<log_root>/<date>``; rejects anything but YYYY-MM-DD."""
    # The date becomes a path component, so it is checked strictly before use.
    if not _DATE_RE.fullmatch(date):
        raise ValueError(f"traffic date must be YYYY-MM-DD, got {date!r}")
    dt.date.fromisoformat(date)
    root = Path(log_root) if log_root is not None else config.log_root()
    return root / date


def log_files(log_root: Path | str | None, date: str) -> list[Path]:
    """The day's ``*.jsonl`` (and ``*.jsonl.gz``) files in name order, hidden files skipped."""
    folder = day_folder(log_root, date)
    if not folder.is_dir():
        raise FileNotFoundError(f"no production log folder for {date}: {folder}")
    files = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz"))
    ]
    return sorted(files, key=lambda p: p.name)


def derive_conversation_id(obj: dict[str, Any]) -> str:
    """A stable id for a record that has none: a hash of its canonical JSON."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "h-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]


def iter_log(
    log_root: Path | str | None,
    date: str,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[LogRecord | Rejected]:
    """Yield every non-blank line of one day's log as a LogRecord or a Rejected.

    Files are read in name order and line by line; a line longer than ``max_line_bytes`` is
    skipped in chunks without being held whole. ``log_root`` None means the configured log.
    Raises FileNotFoundError when the day has no folder.
    """
    root = Path(log_root) if log_root is not None else config.log_root()
    for path in log_files(root, date):
        rel = path.relative_to(root).as_posix()
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            yield from _iter_file(fh, rel, max_line_bytes)


def _iter_file(fh: IO[bytes], rel: str, max_line_bytes: int) -> Iterator[LogRecord | Rejected]:
    for line_number, raw in read_lines(fh, max_line_bytes):
        if raw is None:
            yield Rejected(rel, line_number, TOO_LARGE, f"line exceeds {max_line_bytes} bytes")
            continue
        try:
            yield _parse_line(raw, rel, line_number)
        except _Reject as rej:
            yield Rejected(
                rej.source_file or rel, rej.line_number or line_number, rej.reason, rej.detail
            )


def read_lines(fh: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` of each non-blank line, read at most ``max_bytes`` at a time.

    A longer line is skipped to its end and given as ``None`` (its number still counts), so
    memory stays bounded whatever the file holds; a UTF-8 BOM on the first line is dropped.
    """
    line_number = 0
    while True:
        raw = fh.readline(max_bytes + 1)
        if not raw:
            return
        line_number += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            _skip_rest_of_line(fh)
            yield line_number, None
            continue
        if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if raw.strip():
            yield line_number, raw


def _skip_rest_of_line(fh: IO[bytes]) -> None:
    while True:
        chunk = fh.readline(_READ_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return


def loads(raw: bytes | str) -> Any:
    """Decode one JSON record, fast; raises RecordError with the stdlib's wording when bad.

    orjson parses several times faster than ``json``; anything it refuses (invalid UTF-8,
    NaN, integers beyond 64 bits, broken JSON) is decoded again by ``json`` so the accepted
    input and the rejection details are exactly the standard library's.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Reject(INVALID_ENCODING, f"not UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        # exc.msg is the decoder's fixed wording; exc.doc (the line) is deliberately unused.
        raise _Reject(
            INVALID_JSON, f"{exc.msg.removesuffix(' at')} (character {exc.pos})"
        ) from None
    except RecursionError:
        raise _Reject(INVALID_JSON, "nesting too deep") from None


def _parse_line(raw: bytes, source_file: str, line_number: int) -> LogRecord:
    """Parse and validate one log line; raises an internal rejection on a bad line."""
    return parse_record(loads(raw), source_file, line_number)


def parse_record(obj: Any, source_file: str, line_number: int) -> LogRecord:
    """Validate one decoded record of the production-log layout; raises RecordError."""
    if not isinstance(obj, dict):
        raise _Reject(NOT_AN_OBJECT, f"top-level JSON is {_json_type(obj)}, not an object")
    if INGEST_REJECTED in obj and "messages" not in obj:
        _raise_ingest_rejection(obj[INGEST_REJECTED])
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        what = "missing" if messages is None else _json_type(messages)
        if messages == []:
            what = "an empty array"
        raise _Reject(NO_MESSAGES, f"'messages' is {what}")
    _validate_messages(messages)

    conversation_id = _optional_str(obj, "conversation_id")
    if conversation_id is None or not conversation_id.strip():
        conversation_id = derive_conversation_id(obj)
    opted_out = obj.get("opted_out", False)
    if opted_out is None:
        opted_out = False
    if not isinstance(opted_out, bool):
        raise _Reject(BAD_FIELD, f"'opted_out' is {_json_type(opted_out)}, not a boolean")
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _Reject(BAD_FIELD, f"'metadata' is {_json_type(metadata)}, not an object")
    origin = obj.get(INGEST_ORIGIN)
    if isinstance(origin, dict) and isinstance(origin.get("file"), str):
        # Point quarantine rows (duplicate ids) at the file the user gave, not our copy.
        source_file = origin["file"]
        if isinstance(origin.get("line"), int):
            line_number = origin["line"]
    return LogRecord(
        conversation_id=conversation_id,
        created_at=_optional_str(obj, "created_at"),
        user_id=_optional_str(obj, "user_id"),
        opted_out=opted_out,
        source=_optional_str(obj, "source") or "unknown",
        model=_optional_str(obj, "model") or "unknown",
        messages=messages,
        source_file=source_file,
        line_number=line_number,
        metadata=metadata or None,
    )


def _raise_ingest_rejection(stub: Any) -> None:
    if (
        not isinstance(stub, dict)
        or stub.get("reason") not in (*REJECT_REASONS, "duplicate_id")
        or not isinstance(stub.get("source_file"), str)
        or not isinstance(stub.get("line_number"), int)
    ):
        raise _Reject(BAD_FIELD, f"'{INGEST_REJECTED}' is not a rejection written by ingest")
    raise _Reject(
        stub["reason"],
        str(stub.get("detail", "")),
        source_file=stub["source_file"],
        line_number=stub["line_number"],
    )


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    # Numeric ids are common in exported logs; containers are not ids.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Reject(BAD_FIELD, f"'{key}' is {_json_type(value)}, not a string")


def _validate_messages(messages: list[Any]) -> None:
    call_ids: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _Reject(BAD_MESSAGE, f"message {i} is {_json_type(msg)}, not an object")
        role = msg.get("role")
        if not isinstance(role, str):
            raise _Reject(BAD_MESSAGE, f"message {i} has no string 'role'")
        if role not in ROLES:
            raise _Reject(
                UNKNOWN_ROLE, f"message {i} has a role that is not one of the five chat roles"
            )
        content = msg.get("content")
        if content is None and role != "assistant":
            raise _Reject(BAD_MESSAGE, f"message {i} ({role}) has no content")
        _validate_content(content, i)
        if role == "assistant":
            call_ids.update(_validate_tool_calls(msg.get("tool_calls"), i))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _Reject(ORPHAN_TOOL_MESSAGE, f"message {i} (tool) has no tool_call_id")
            if call_id not in call_ids:
                raise _Reject(
                    ORPHAN_TOOL_MESSAGE, f"message {i} (tool) answers no earlier tool call"
                )

    last = messages[-1]
    if last["role"] != "assistant":
        raise _Reject(NO_FINAL_ASSISTANT, f"the last message has role '{last['role']}'")
    if not message_text(last).strip():
        why = "only calls tools" if last.get("tool_calls") else "has no text"
        raise _Reject(EMPTY_FINAL_REPLY, f"the final assistant turn {why}")


def _validate_content(content: Any, i: int) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _Reject(BAD_MESSAGE, f"message {i} content is {_json_type(content)}")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _Reject(BAD_MESSAGE, f"message {i} part {j} is not a typed object")
        kind = part["type"]
        if kind in TEXT_PART_TYPES and not isinstance(part.get(kind), str):
            raise _Reject(BAD_MESSAGE, f"message {i} part {j} ({kind}) has no string '{kind}'")


def _validate_tool_calls(tool_calls: Any, i: int) -> list[str]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise _Reject(BAD_MESSAGE, f"message {i} tool_calls is {_json_type(tool_calls)}")
    ids = []
    for j, call in enumerate(tool_calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not isinstance(fn.get("arguments"), str)
        ):
            raise _Reject(
                BAD_MESSAGE,
                f"message {i} tool call {j} lacks id, function.name or string arguments",
            )
        ids.append(call["id"])
    return ids


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


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "an unknown type"
