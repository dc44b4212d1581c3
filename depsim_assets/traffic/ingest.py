"""``depsim ingest``: logs as users have them -> the production-log layout, one folder per day.

Four source formats are read, each streamed record by record (a JSONL line, an element of a
JSON array, a Parquet row), never a whole file:

- ``openai``: ``{"messages": [...]}`` chat records (roles system, developer, user, assistant,
  tool; string or part-list content; ``tool_calls`` and ``tool_call_id``).
- ``sharegpt``: ``{"id", "conversations": [{"from", "value"}]}``, JSON or JSONL, with the
  ``function_call``/``observation`` turns and ``images`` lists of the tool-using variants.
- ``anthropic``: a ``\\n\\nHuman: ... \\n\\nAssistant: ...`` transcript in a field of each
  record (``chosen``, ``transcript``, ``text``...), or Messages-API records whose content
  blocks carry ``tool_use``, ``tool_result`` and ``image``.
- ``parquet``: a ``messages`` column (list of structs, or JSON text) and the optional fields.

Every record becomes one OpenAI-chat JSON line in ``<log_root>/<day>/ingest-<name>-<h>.jsonl``
(its ``created_at`` decides the day; ``date`` applies when it has none). A record that cannot
be used becomes a stub line ``{"ingest_rejected": {source_file, line_number, reason,
detail}}`` in the ``date`` folder, so the day's sampling funnel counts it and quarantines it
under the original file and line, and no text of it is kept. Output is written to hidden
temporary files renamed into place only when every input was read: a failure leaves the log
as it was. Re-ingesting a file replaces what it wrote before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import stat
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard

from depsim_assets import config
from depsim_assets.traffic import logs
from depsim_assets.traffic.logs import (
    BAD_FIELD,
    BAD_MESSAGE,
    DEFAULT_MAX_LINE_BYTES,
    INGEST_ORIGIN,
    INGEST_REJECTED,
    INGEST_UNREADABLE,
    INVALID_ENCODING,
    INVALID_JSON,
    NO_DECODABLE_RECORD,
    NO_MESSAGES,
    NOT_AN_OBJECT,
    TOO_DEEP,
    TOO_LARGE,
    UNKNOWN_ROLE,
    UNSUPPORTED_NAME,
    RecordError,
    day_folder,
    derive_conversation_id,
)

FORMATS = ("auto", "openai", "sharegpt", "anthropic", "parquet")
TRANSCRIPT_FIELDS = ("chosen", "transcript", "text", "conversation", "dialogue", "dialog")
TIMESTAMP_FIELDS = ("created_at", "timestamp", "created", "create_time")
_KEPT_FIELDS = ("user_id", "opted_out", "source", "model", "metadata", "tools", "functions")

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
SHAREGPT_CALL = "function_call"
SHAREGPT_RESULT = ("observation", "function_response", "tool")

_TURN_RE = re.compile(r"(?:^|\n\n)(Human|Assistant|H|A|System):[ \t]?")
_PARQUET_BATCH = 4096
_READ_CHUNK = 1 << 16


@dataclass
class IngestResult:
    """What one ``depsim ingest`` did: counts that reconcile and the files it wrote.

    ``records_in = written + quarantined``; ``days`` counts records (stubs included) per day.
    ``unreadable`` lists input files that could not be read, or not to their end: files, not
    records (the records read before a break are in the counts, and kept).
    """

    files: list[str] = field(default_factory=list)
    records_in: int = 0
    written: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "files": self.files,
            "records_in": self.records_in,
            "written": self.written,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(sorted(self.quarantine_reasons.items())),
            "days": dict(sorted(self.days.items())),
            "outputs": self.outputs,
            "unreadable_files": len(self.unreadable),
            "unreadable": self.unreadable,
        }


class UnreadableFile(ValueError):
    """A whole input file cannot be read; the message names it, ``kind`` is a code."""

    def __init__(self, message: str, *, kind: str = NO_DECODABLE_RECORD) -> None:
        super().__init__(message)
        self.kind = kind
        # The reason without the file name (the stub names the file in its own field).
        self.why = message.split(": ", 1)[-1]


# Compression is told by the file name (case-insensitive); these are named and refused.
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
_UNSUPPORTED_PACKING = (".bz2", ".xz", ".lz4", ".lzma", ".zip", ".7z", ".tar", ".br")


# --- entry point -------------------------------------------------------------------------------


def ingest_files(
    paths: Sequence[Path | str],
    *,
    date: str,
    fmt: str = "auto",
    log_root: Path | str | None = None,
    max_record_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> IngestResult:
    """Normalize ``paths`` into the production log (``log_root`` None: the configured one).

    Raises UnreadableFile naming the file, before anything is read, when a path is missing,
    a directory, a broken link or not a regular file. A file that opens but cannot be read
    (not of its format or compression, no record that decodes, cut short, an I/O error while
    reading) does not stop the others: it is listed in ``unreadable`` and a stub names it in
    the ``date`` folder, so the day's funnel counts it; the records read before a break are
    kept.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    root = Path(log_root) if log_root is not None else config.log_root()
    day_folder(root, date)  # validates the date before anything is read
    if not paths:
        raise ValueError("no input files given")
    for path in paths:
        _check_input(Path(path))
    result = IngestResult()
    reasons: Counter[str] = Counter()
    days: Counter[str] = Counter()
    writers: dict[tuple[str, str], _Writer] = {}

    def write(day: str, out_name: str, line: bytes) -> None:
        key = (day, out_name)
        writer = writers.get(key)
        if writer is None:
            writer = writers[key] = _Writer(day_folder(root, day), out_name)
        writer.write(line)

    try:
        for path in paths:
            path = Path(path)
            label = str(path)
            result.files.append(label)
            out_name = _output_name(path)
            readable = 0
            seen = 0
            file_days: Counter[str] = Counter()
            file_reasons: Counter[str] = Counter()
            file_written = 0
            broke: list[tuple[str, str]] = []
            for position, item in _guard(_read_records(path, fmt, max_record_bytes), broke):
                seen += 1
                if isinstance(item, RecordError):
                    if item.reason not in (INVALID_JSON, INVALID_ENCODING, TOO_LARGE, TOO_DEEP):
                        readable += 1
                    line = _stub(label, position, item)
                    day = date
                    file_reasons[item.reason] += 1
                else:
                    readable += 1
                    try:
                        record = normalise(item, fmt)
                        if "conversation_id" not in record:
                            record["conversation_id"] = derive_conversation_id(item)
                        record[INGEST_ORIGIN] = {"file": label, "line": position}
                        logs.parse_record(record, label, position)
                        day = record_day(record) or date
                        line = _encode(record)
                    except RecordError as err:
                        line = _stub(label, position, err)
                        day = date
                        file_reasons[err.reason] += 1
                    else:
                        file_written += 1
                write(day, out_name, line)
                file_days[day] += 1
            if seen and not readable and not broke:
                # Not one line decodes: the wrong kind of file (a CSV, a binary), not records.
                broke.append((NO_DECODABLE_RECORD, "no line or element decodes as a JSON record"))
                for key in [k for k in writers if k[1] == out_name]:
                    writers.pop(key).discard()
                seen = 0
                file_days.clear()
                file_reasons.clear()
            if broke:
                kind, why = broke[0]
                detail = f"{kind}: {why}" + (f", after record {seen}" if seen else "")
                entry = {"file": label, "kind": kind, "detail": detail, "lines_read": seen}
                result.unreadable.append(entry)
                write(date, out_name, _unreadable_stub(entry))
            result.records_in += seen
            result.written += file_written
            result.quarantined += sum(file_reasons.values())
            reasons.update(file_reasons)
            days.update(file_days)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    # Commit: stale outputs of these inputs in other days go, new ones are renamed in.
    names = {name for _, name in writers} | {_output_name(Path(p)) for p in paths}
    keep = {writer.target for writer in writers.values()}
    if root.is_dir():
        for name in names:
            for stale in root.glob(f"*/{name}"):
                if stale not in keep:
                    stale.unlink()
    for writer in writers.values():
        writer.commit()
        result.outputs.append(writer.target.relative_to(root).as_posix())
    result.quarantine_reasons = dict(reasons)
    result.days = dict(days)
    result.outputs.sort()
    return result


def _check_input(path: Path) -> None:
    """Refuse, before anything is read, a path that is no file at all (a usage error)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise UnreadableFile(f"{path}: a symbolic link to nothing") from None
        raise UnreadableFile(f"{path}: cannot open (No such file or directory)") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UnreadableFile(f"{path}: cannot open ({why})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableFile(f"{path}: a directory; give the files inside it")
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(f"{path}: not a regular file (a pipe, socket or device)")


def _guard(
    items: Iterator[tuple[int, Any]], broke: list[tuple[str, str]]
) -> Iterator[tuple[int, Any]]:
    """``items`` until the file breaks; then why it broke goes into ``broke``.

    Only the reader's errors are caught here, never the writer's: a full output disk is not
    the input file's fault.
    """
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except UnreadableFile as exc:
            broke.append((exc.kind, exc.why))
            return
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            broke.append(logs.io_failure(exc, None))
            return
        yield item


def _encode(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=str)
    except orjson.JSONEncodeError:
        pass
    # orjson refuses integers beyond 64 bits (the stdlib decoder keeps them); json writes them.
    try:
        return json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        raise RecordError(BAD_FIELD, "the record cannot be written back as JSON") from None


def _unreadable_stub(entry: dict[str, Any]) -> bytes:
    stub = {
        "source_file": entry["file"],
        "kind": entry["kind"],
        "detail": entry["detail"],
        "lines_read": entry["lines_read"],
    }
    return orjson.dumps({INGEST_UNREADABLE: stub})


def _output_name(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:60]
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"ingest-{stem}-{digest}.jsonl"


def _stub(label: str, position: int, err: RecordError) -> bytes:
    stub = {"source_file": label, "line_number": position, "reason": err.reason}
    stub["detail"] = err.detail
    return orjson.dumps({INGEST_REJECTED: stub})


class _Writer:
    """One output file, written under a hidden name and renamed into place on commit."""

    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.target = folder / name
        self.tmp = folder / f".{name}.tmp"
        self._fh: IO[bytes] | None = open(self.tmp, "wb", buffering=1 << 20)  # noqa: SIM115

    def write(self, line: bytes) -> None:
        assert self._fh is not None
        self._fh.write(line)
        self._fh.write(b"\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def commit(self) -> None:
        os.replace(self.tmp, self.target)

    def discard(self) -> None:
        if self._fh is not None:
            # Closing flushes the buffer, which fails again on a full disk: the file goes anyway.
            with suppress(OSError):
                self._fh.close()
            self._fh = None
        self.tmp.unlink(missing_ok=True)


# --- reading -----------------------------------------------------------------------------------


def _read_records(
    path: Path, fmt: str, max_bytes: int
) -> Iterator[tuple[int, Any | RecordError]]:
    """Yield ``(position, decoded record or RecordError)``; position is 1-based line or row.

    Raises UnreadableFile (with a ``kind``) when the file as a whole cannot be read, and lets
    OSError, EOFError and the decompressors' errors through when it breaks while read.
    """
    lower = path.name.lower()
    for packed in _UNSUPPORTED_PACKING:
        if lower.endswith(packed):
            raise UnreadableFile(
                f"{path}: compressed with an unsupported method, {packed} (use .gz or .zst)",
                kind=UNSUPPORTED_NAME,
            )
    compression = next((c for s, c in _COMPRESSIONS.items() if lower.endswith(s)), None)
    try:
        fh, raw, _ = logs.open_log(path.resolve(), compression)
    except OSError as exc:
        kind, why = logs.io_failure(exc, compression)
        raise UnreadableFile(f"{path}: cannot open ({why})", kind=kind) from None
    except logs.FileBroke as exc:
        raise UnreadableFile(f"{path}: {exc.why}", kind=exc.kind) from None
    with raw, fh:
        head = fh.peek(4)[:4] if isinstance(fh, io.BufferedReader) else b""
        if compression is None and (fmt == "parquet" or (fmt == "auto" and head == b"PAR1")):
            yield from _read_parquet(path)
            return
        # A compressed stream is probed a few bytes at a time: reading ahead would meet a
        # corruption further on before the lines in front of it were read (and kept).
        first = _first_significant_byte(fh, _READ_CHUNK if compression is None else 16)
        if compression is None:
            fh.seek(0)
            if first == b"[":
                yield from _read_json_array(fh, path, max_bytes)
            else:
                yield from _read_jsonl(fh, max_bytes)
            return
    # A compressed stream cannot seek back cheaply: open it again to read from the start.
    fh, raw, _ = logs.open_log(path.resolve(), compression)
    with raw, fh:
        if first == b"[":
            yield from _read_json_array(fh, path, max_bytes)
        else:
            yield from _read_jsonl(fh, max_bytes)


def _first_significant_byte(fh: io.BufferedIOBase, chunk_size: int = _READ_CHUNK) -> bytes:
    while True:
        chunk = fh.read(chunk_size)
        if not chunk:
            return b""
        stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
        if stripped:
            return stripped[:1]


def _decode(raw: bytes | str) -> Any:
    return logs.loads(raw)


def _read_jsonl(fh: io.BufferedIOBase, max_bytes: int) -> Iterator[tuple[int, Any | RecordError]]:
    for line_number, raw in logs.read_lines(fh, max_bytes):
        if raw is None:
            yield line_number, RecordError(TOO_LARGE, f"record exceeds {max_bytes} bytes")
            continue
        try:
            yield line_number, _decode(raw)
        except RecordError as err:
            yield line_number, err


def _read_json_array(
    fh: io.BufferedIOBase, path: Path, max_bytes: int
) -> Iterator[tuple[int, Any | RecordError]]:
    """Elements of a top-level JSON array, decoded one at a time from a sliding buffer.

    The buffer holds at most one element plus one read chunk. An element that does not
    parse ends the file (an array cannot be resynchronised after a broken element).
    """
    decoder = json.JSONDecoder()
    buf = ""
    pending = b""
    eof = False

    def fill() -> bool:
        nonlocal buf, pending, eof
        chunk = fh.read(_READ_CHUNK)
        if not chunk:
            eof = True
            if pending:
                raise RecordError(INVALID_ENCODING, "file ends inside a UTF-8 character")
            return False
        data = pending + chunk
        # Keep a split multi-byte character for the next chunk.
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            byte = data[-back]
            if byte & 0xC0 != 0x80:
                need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
                if byte >= 0xC0 and back < need:
                    cut = len(data) - back
                break
        try:
            buf += data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError(INVALID_ENCODING, "not UTF-8") from None
        pending = data[cut:]
        return True

    def skip(chars: str) -> None:
        nonlocal buf
        while True:
            buf = buf.lstrip(chars)
            if buf or eof or not fill():
                return

    try:
        skip(" \t\r\n\ufeff")
        if not buf.startswith("["):
            raise UnreadableFile(f"{path}: not a JSON array")
        buf = buf[1:]
        position = 0
        while True:
            skip(" \t\r\n")
            if buf.startswith("]"):
                return
            if position and buf.startswith(","):
                buf = buf[1:]
                skip(" \t\r\n")
            position += 1
            while True:
                try:
                    obj, end = decoder.raw_decode(buf)
                    # A number or literal cut at the buffer's end decodes early; read on.
                    if end == len(buf) and not eof and fill():
                        continue
                    break
                except json.JSONDecodeError as exc:
                    if len(buf) > max_bytes:
                        yield position, RecordError(TOO_LARGE, f"record exceeds {max_bytes} bytes")
                        return
                    if eof or not fill():
                        yield position, RecordError(
                            INVALID_JSON, f"{exc.msg.removesuffix(' at')} (array element)"
                        )
                        return
            if end > max_bytes:
                yield position, RecordError(TOO_LARGE, f"record exceeds {max_bytes} bytes")
            else:
                yield position, _checked(obj)
            buf = buf[end:]
    except RecordError as err:
        yield 0, err


def _read_parquet(path: Path) -> Iterator[tuple[int, Any | RecordError]]:
    try:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        why = type(exc).__name__
        raise UnreadableFile(f"{path}: not a readable Parquet file ({why})") from None
    if "messages" not in pf.schema_arrow.names:
        raise UnreadableFile(f"{path}: Parquet file has no 'messages' column")
    row = 0
    for batch in pf.iter_batches(batch_size=_PARQUET_BATCH):
        for record in batch.to_pylist():
            row += 1
            yield row, _checked(_from_parquet_row(record))


def _checked(value: Any) -> Any:
    # The stdlib decoder (JSON arrays, JSON text in Parquet) keeps lone surrogate escapes and
    # deep nesting that no encoder downstream can take: refused here, per record.
    if isinstance(value, RecordError):
        return value
    try:
        logs.check_tree(value)
    except RecordError as err:
        return err
    return value


def _from_parquet_row(record: dict[str, Any]) -> Any:
    messages = record.get("messages")
    if isinstance(messages, str | bytes):
        try:
            messages = _decode(messages)
        except RecordError as err:
            return err
    elif isinstance(messages, list):
        messages = [_drop_nulls(m) if isinstance(m, dict) else m for m in messages]
    out = {k: _plain(v) for k, v in record.items() if v is not None and k != "messages"}
    for key in ("metadata", "tools", "functions"):
        # Nested fields often travel as JSON text in Parquet (one string column).
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except ValueError:
                return RecordError(BAD_FIELD, f"'{key}' is text that is not JSON")
    out["messages"] = messages
    return out


def _drop_nulls(message: dict[str, Any]) -> dict[str, Any]:
    # A list of structs carries every field on every message; absent ones arrive as nulls.
    out = {}
    for key, value in message.items():
        if value is None and not (key == "content" and message.get("role") == "assistant"):
            continue
        if key == "content" and isinstance(value, str) and value.lstrip().startswith("[{"):
            # Part lists cannot share a column with strings; they are stored as JSON text.
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, list) and all(
                isinstance(p, dict) and "type" in p for p in parsed
            ):
                value = parsed
        if isinstance(value, list):
            value = [_drop_nulls(v) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict):
            value = _drop_nulls(value)
        out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# --- normalisation -----------------------------------------------------------------------------


def detect_format(obj: dict[str, Any]) -> str | None:
    """The format of one decoded record, or None when it is none of them."""
    messages = obj.get("messages")
    if isinstance(messages, list):
        if isinstance(obj.get("system"), str | list) or any(
            _has_anthropic_blocks(m) for m in messages
        ):
            return "anthropic"
        return "openai"
    for key in ("conversations", "conversation"):
        turns = obj.get(key)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "from" in turns[0]:
            return "sharegpt"
    if _transcript_field(obj) is not None:
        return "anthropic"
    return None


def _has_anthropic_blocks(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict)
        and (b.get("type") in ("tool_use", "tool_result") or isinstance(b.get("source"), dict))
        for b in content
    )


def _transcript_field(obj: dict[str, Any]) -> str | None:
    for key in TRANSCRIPT_FIELDS:
        value = obj.get(key)
        if isinstance(value, str) and _TURN_RE.search(value):
            return key
    return None


def normalise(obj: Any, fmt: str = "auto") -> dict[str, Any]:
    """One decoded source record as a production-log record; raises RecordError.

    The result has ``messages`` in OpenAI chat form plus whichever of ``conversation_id``,
    ``created_at``, ``user_id``, ``opted_out``, ``source``, ``model``, ``metadata`` the
    source gave; ``created_at`` is normalised to UTC ISO 8601.
    """
    if not isinstance(obj, dict):
        raise RecordError(NOT_AN_OBJECT, "record is not a JSON object")
    kind = detect_format(obj) if fmt in ("auto", "parquet") else fmt
    if kind is None:
        raise RecordError(NO_MESSAGES, "no messages, conversations or transcript field")
    if kind == "openai":
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RecordError(NO_MESSAGES, "'messages' is missing or empty")
    elif kind == "sharegpt":
        messages = _from_sharegpt(obj)
    elif kind == "anthropic":
        if isinstance(obj.get("messages"), list):
            messages = _from_anthropic_messages(obj)
        else:
            messages = _from_transcript(obj)
    else:
        raise RecordError(NO_MESSAGES, f"format {kind!r} has no record converter")
    out: dict[str, Any] = {}
    cid = obj.get("conversation_id", obj.get("id"))
    if isinstance(cid, str | int) and not isinstance(cid, bool) and str(cid).strip():
        out["conversation_id"] = str(cid)
    created = _created_at(obj)
    if created is not None:
        out["created_at"] = created
    for key in _KEPT_FIELDS:
        if obj.get(key) is not None:
            out[key] = obj[key]
    if kind == "anthropic" and isinstance(out.get("tools"), list):
        out["tools"] = [_openai_tool(t) for t in out["tools"]]
    out["messages"] = messages
    return out


def _openai_tool(tool: Any) -> Any:
    """An Anthropic tool definition (name, description, input_schema) in OpenAI ``tools``
    form; anything else is left for the reader to judge."""
    if not isinstance(tool, dict) or "function" in tool or not isinstance(tool.get("name"), str):
        return tool
    function: dict[str, Any] = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("input_schema"), dict):
        function["parameters"] = tool["input_schema"]
    return {"type": "function", "function": function}


_UTC_STAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z")


def _created_at(obj: dict[str, Any]) -> str | None:
    for key in TIMESTAMP_FIELDS:
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, str) and _UTC_STAMP_RE.fullmatch(value):
            # Already UTC ISO 8601 (the common case): checked, not re-formatted.
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                raise RecordError(BAD_FIELD, f"'{key}' is not a valid date and time") from None
            return value
        if isinstance(value, bool):
            raise RecordError(BAD_FIELD, f"'{key}' is a boolean, not a timestamp")
        try:
            if isinstance(value, int | float):
                # Epoch seconds, or milliseconds when the number is too large for seconds.
                stamp = dt.datetime.fromtimestamp(
                    value / 1000 if value > 1e11 else value, tz=dt.UTC
                )
            elif isinstance(value, str):
                stamp = dt.datetime.fromisoformat(value.strip())
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=dt.UTC)
            else:
                raise ValueError
        except (ValueError, OverflowError, OSError):
            raise RecordError(BAD_FIELD, f"'{key}' is not an ISO 8601 or epoch timestamp") from None
        return stamp.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return None


def record_day(record: dict[str, Any]) -> str | None:
    """The UTC day of a normalised record's ``created_at``, or None."""
    created = record.get("created_at")
    return created[:10] if isinstance(created, str) else None


def _from_sharegpt(obj: dict[str, Any]) -> list[dict[str, Any]]:
    turns = obj.get("conversations", obj.get("conversation"))
    if not isinstance(turns, list) or not turns:
        raise RecordError(NO_MESSAGES, "'conversations' is missing or empty")
    messages: list[dict[str, Any]] = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        messages.append({"role": "system", "content": obj["system"]})
    open_calls: list[str] = []
    n_calls = 0
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("from"), str):
            raise RecordError(BAD_MESSAGE, f"turn {i} has no string 'from'")
        value = turn.get("value")
        if not isinstance(value, str):
            raise RecordError(BAD_MESSAGE, f"turn {i} has no string 'value'")
        speaker = turn["from"].lower()
        if speaker == SHAREGPT_CALL:
            call = _decode(value) if value.strip() else None
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise RecordError(BAD_MESSAGE, f"turn {i} (function_call) is not a JSON call")
            n_calls += 1
            call_id = f"call_{n_calls}"
            args = call.get("arguments", {})
            tool_call = {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls"):
                messages[-1]["tool_calls"].append(tool_call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})
            open_calls.append(call_id)
        elif speaker in SHAREGPT_RESULT:
            if not open_calls:
                raise RecordError(
                    logs.ORPHAN_TOOL_MESSAGE, f"turn {i} ({speaker}) answers no function_call"
                )
            messages.append({"role": "tool", "tool_call_id": open_calls.pop(0), "content": value})
        elif speaker in SHAREGPT_ROLES:
            messages.append({"role": SHAREGPT_ROLES[speaker], "content": value})
        else:
            raise RecordError(UNKNOWN_ROLE, f"turn {i} has a speaker that is not a known role")
    _attach_media(messages, obj)
    return messages


def _attach_media(messages: list[dict[str, Any]], obj: dict[str, Any]) -> None:
    """Put a record's ``images``/``audios``/``videos`` into its user turns as content parts.

    An ``<image>`` (``<audio>``, ``<video>``) placeholder marks where each item goes, in order;
    items without one go to the first user turn.
    """
    media: list[tuple[str, str]] = []
    for key, tag in (("images", "<image>"), ("audios", "<audio>"), ("videos", "<video>")):
        items = obj.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise RecordError(BAD_FIELD, f"'{key}' is not a list of strings")
        media.extend((tag, x) for x in items)
    if not media:
        return
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise RecordError(BAD_MESSAGE, "media given but no user turn to hold it")
    for msg in users:
        text = msg["content"]
        parts: list[dict[str, Any]] = []
        pieces = re.split(r"(<image>|<audio>|<video>)", text)
        for piece in pieces:
            if piece in ("<image>", "<audio>", "<video>"):
                idx = next((k for k, (tag, _) in enumerate(media) if tag == piece), None)
                if idx is None:
                    parts.append({"type": "text", "text": piece})
                    continue
                parts.append(_media_part(*media.pop(idx)))
            elif piece:
                parts.append({"type": "text", "text": piece})
        if len(parts) != 1 or parts[0]["type"] != "text":
            msg["content"] = parts
    if media:
        first = users[0]
        if isinstance(first["content"], str):
            first["content"] = [{"type": "text", "text": first["content"]}]
        first["content"].extend(_media_part(tag, ref) for tag, ref in media)


def _media_part(tag: str, ref: str) -> dict[str, Any]:
    if tag == "<image>":
        return {"type": "image_url", "image_url": {"url": ref}}
    return {"type": "file", "file": {"filename": ref}}


def _from_transcript(obj: dict[str, Any]) -> list[dict[str, Any]]:
    key = _transcript_field(obj)
    if key is None:
        raise RecordError(NO_MESSAGES, "no Human/Assistant transcript field")
    text = obj[key]
    messages: list[dict[str, Any]] = []
    marks = list(_TURN_RE.finditer(text))
    preamble = text[: marks[0].start()].strip()
    if preamble:
        messages.append({"role": "system", "content": preamble})
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        body = text[m.end() : end].strip()
        role = {"Human": "user", "H": "user", "System": "system"}.get(m.group(1), "assistant")
        messages.append({"role": role, "content": body})
    return messages


def _from_anthropic_messages(obj: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = obj.get("system")
    if isinstance(system, list):
        system = "\n".join(
            b.get("text", "") for b in system if isinstance(b, dict) and b.get("type") == "text"
        )
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(obj["messages"]):
        if not isinstance(msg, dict):
            raise RecordError(BAD_MESSAGE, f"message {i} is not an object")
        role = msg.get("role")
        if role not in ("user", "assistant", "system"):
            raise RecordError(UNKNOWN_ROLE, f"message {i} has a role outside user/assistant")
        content = msg.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise RecordError(BAD_MESSAGE, f"message {i} content is not text or blocks")
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                parts.append({"type": "text", "text": block["text"]})
            elif kind in ("image", "document"):
                parts.append(_anthropic_media(block))
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    raise RecordError(BAD_MESSAGE, f"message {i} block {j} tool_use lacks id/name")
                calls.append(
                    {
                        "id": block["id"],
                        "type": "function",
                        "function": {
                            "name": block["name"],
                            "arguments": json.dumps(block.get("input", {}), ensure_ascii=False),
                        },
                    }
                )
            elif kind == "tool_result" and role == "user":
                results.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id"),
                        "content": _tool_result_text(block.get("content")),
                    }
                )
            elif kind in ("thinking", "redacted_thinking"):
                continue  # reasoning is not part of the replayed context
            else:
                raise RecordError(BAD_MESSAGE, f"message {i} block {j} has an unknown type")
        messages.extend(results)
        if calls:
            text = "\n".join(p["text"] for p in parts if p["type"] == "text") or None
            messages.append({"role": "assistant", "content": text, "tool_calls": calls})
        elif parts:
            if len(parts) == 1 and parts[0]["type"] == "text":
                messages.append({"role": role, "content": parts[0]["text"]})
            else:
                messages.append({"role": role, "content": parts})
    return messages


def _anthropic_media(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        source = {}
    if source.get("type") == "url":
        ref = source.get("url", "")
    else:
        ref = f"data:{source.get('media_type', 'application/octet-stream')};base64,"
        ref += str(source.get("data", ""))
    if block["type"] == "image":
        return {"type": "image_url", "image_url": {"url": ref}}
    return {"type": "file", "file": {"file_data": ref}}


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""
