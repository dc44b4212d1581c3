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
import errno
import gzip
import hashlib
import io
import json
import os
import re
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import orjson
import zstandard

from depsim_assets import config
from depsim_assets.messages import TEXT_PART_TYPES, message_text

DEFAULT_MAX_LINE_BYTES = 1 << 20

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

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
TOO_DEEP = "too_deep"

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
    TOO_DEEP,
)

# Containers deeper than this are refused: chat records are a few levels deep, and every
# recursive walk downstream (encoders, the de-identifier, DuckDB's JSON) stays far from its
# limit. Checked without recursion.
MAX_DEPTH = 64

# A day-folder entry or input file that gives no (more) records: a file, not a record.
UNREADABLE_FILE = "unreadable_file"
# Why, in the ``kind`` of an Unreadable (and the funnel's reason for stage unreadable_file).
DIRECTORY = "directory"
BROKEN_SYMLINK = "broken_symlink"
OUTSIDE_LOG_ROOT = "outside_log_root"
NOT_A_FILE = "not_a_regular_file"
UNSUPPORTED_NAME = "unsupported_name"
VANISHED = "vanished"
CORRUPT = "corrupt_compression"
CHANGED = "changed_while_read"
READ_ERROR = "read_error"
NO_DECODABLE_RECORD = "no_decodable_record"

LOG_SUFFIXES = {".jsonl": None, ".jsonl.gz": "gzip", ".jsonl.zst": "zstd"}

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_READ_CHUNK = 1 << 16
_ZSTD_SLICE = 1 << 10


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
    # The tools the record declared, as OpenAI ``tools`` entries (legacy ``functions`` are
    # given the same shape); None when it declared none. Raw text, like ``messages``.
    tools: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that cannot be used: where it is, a reason code, and a text-free detail."""

    source_file: str
    line_number: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Unreadable(Rejected):
    """A file (or folder entry) that gave no more records, with a ``kind`` code.

    Its ``reason`` is always ``unreadable_file``; ``line_number`` is how many lines were read
    before it broke (0: none), and those lines were yielded as usual. Counted apart from
    records: it is not one.
    """

    kind: str = ""


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
# ``{"ingest_unreadable": {...}}``: an input file ``depsim ingest`` could not read (or not to
# its end), so the day's funnel names it as an unreadable file.
INGEST_UNREADABLE = "ingest_unreadable"
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


@dataclass(frozen=True, slots=True)
class LogFile:
    """A day-folder entry that will be read: its path, its name in the log, its compression."""

    path: Path
    source_file: str
    compression: str | None


def log_compression(name: str) -> str | None | Literal[False]:
    """``None`` (plain), ``"gzip"`` or ``"zstd"`` for a log file name; False for other names.

    Extensions are matched case-insensitively: ``DAY.JSONL`` is as much JSON Lines as
    ``day.jsonl``, and reading it is kinder than refusing it.
    """
    lower = name.lower()
    for suffix, kind in LOG_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return False


def day_entries(log_root: Path | str | None, date: str) -> list[LogFile | Unreadable]:
    """Every entry of the day's folder in name order: a LogFile to read, or an Unreadable.

    Nothing is skipped silently except hidden names (``.``-prefixed: editors' and ingest's
    temporary files). Directories, special files, broken symlinks, symlinks resolving outside
    the log root and names that are not ``.jsonl``, ``.jsonl.gz`` or ``.jsonl.zst`` come back
    as Unreadable, named. Raises FileNotFoundError when the day has no folder.
    """
    root = Path(log_root) if log_root is not None else config.log_root()
    folder = day_folder(root, date)
    if not folder.is_dir():
        raise FileNotFoundError(f"no production log folder for {date}: {folder}")
    # A day folder may itself be a link to another disk; what is inside it, or under the log
    # root, is the log. Anything else (a link to /etc/passwd) is not read.
    allowed = (root.resolve(), folder.resolve())
    out: list[LogFile | Unreadable] = []
    for name in sorted(os.listdir(folder)):
        if name.startswith("."):
            continue
        path = folder / name
        rel = f"{date}/{name}"
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            if path.is_symlink():
                out.append(unreadable(rel, BROKEN_SYMLINK, "a symbolic link to nothing"))
            else:
                out.append(unreadable(rel, VANISHED, "removed before it could be read"))
            continue
        if not any(real == base or real.is_relative_to(base) for base in allowed):
            out.append(
                unreadable(rel, OUTSIDE_LOG_ROOT, "a symbolic link out of the log root, refused")
            )
            continue
        if real.is_dir():
            out.append(
                unreadable(rel, DIRECTORY, "a directory; a day folder is read one level deep")
            )
            continue
        if not real.is_file():
            out.append(unreadable(rel, NOT_A_FILE, "not a regular file (a pipe, socket or device)"))
            continue
        compression = log_compression(name)
        if compression is False:
            out.append(unreadable(rel, UNSUPPORTED_NAME, _unsupported_why(name)))
            continue
        out.append(LogFile(real, rel, compression or None))
    return out


def _unsupported_why(name: str) -> str:
    lower = name.lower()
    expected = "expected .jsonl, .jsonl.gz or .jsonl.zst"
    if lower.endswith(".json"):
        return f"a .json file ({expected}; `depsim ingest` converts JSON)"
    for packed in (".bz2", ".xz", ".lz4", ".zip", ".7z", ".tar", ".br", ".lzma"):
        if lower.endswith(packed):
            return f"compressed with an unsupported method, {packed} ({expected})"
    return f"not a log file name ({expected})"


def unreadable(source_file: str, kind: str, why: str, lines_read: int = 0) -> Unreadable:
    """An Unreadable for ``source_file``: ``kind`` is a code, ``why`` a text-free sentence."""
    return Unreadable(source_file, lines_read, UNREADABLE_FILE, f"{kind}: {why}", kind)


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
    skipped in chunks without being held whole. A folder entry that cannot be read, or a file
    that breaks while it is read (corrupt or truncated compression, an I/O error, a file cut
    short under the reader), is yielded as an :class:`Unreadable` (a Rejected with reason
    ``unreadable_file``, which is a file, not a record); the lines read before the break are
    kept. ``log_root`` None means the configured log. Raises FileNotFoundError when the day
    has no folder.
    """
    for entry in day_entries(log_root, date):
        if isinstance(entry, Unreadable):
            yield entry
        else:
            yield from read_log_file(entry, max_line_bytes)


def read_log_file(entry: LogFile, max_line_bytes: int) -> Iterator[LogRecord | Rejected]:
    """The lines of one log file, then an Unreadable if it broke (see :func:`iter_log`)."""
    progress = [0]
    try:
        fh, raw, size = open_log(entry.path, entry.compression)
    except FileBroke as exc:
        yield unreadable(entry.source_file, exc.kind, exc.why)
        return
    except OSError as exc:
        kind, why = io_failure(exc, entry.compression)
        yield unreadable(entry.source_file, kind, why)
        return
    broke: Unreadable | None = None
    try:
        with raw, fh:
            yield from _iter_file(fh, entry.source_file, max_line_bytes, progress)
            if raw.tell() < size:
                # Read to its end but shorter than when it was opened: cut under the reader.
                broke = unreadable(
                    entry.source_file,
                    CHANGED,
                    f"the file shrank while it was read, after line {progress[0]}",
                    progress[0],
                )
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        kind, why = io_failure(exc, entry.compression)
        where = f"after line {progress[0]}" if progress[0] else "before its first line"
        broke = unreadable(entry.source_file, kind, f"{why}, {where}", progress[0])
    if broke is not None:
        yield broke


class FileBroke(Exception):
    """A file that opened but is not one to read (``kind`` and a text-free ``why``)."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind
        self.why = why


def open_log(
    path: Path, compression: str | None
) -> tuple[io.BufferedIOBase, io.BufferedReader, int]:
    """``(reader, raw file, size at open)`` of one log file, decompressing gzip and zstd.

    Opened without following a last-component symlink (``path`` is already resolved, so a
    link swapped in since the listing is refused) and without blocking, then checked to be a
    regular file: a FIFO put in the day folder cannot hang the day.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    fd = os.open(path, flags)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FileBroke(NOT_A_FILE, "not a regular file")
    raw = os.fdopen(fd, "rb")
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw, info.st_size
    if compression == "zstd":
        return io.BufferedReader(_ZstdReader(raw), _READ_CHUNK), raw, info.st_size
    return raw, raw, info.st_size


def io_failure(exc: BaseException, compression: str | None) -> tuple[str, str]:
    """``(kind, why)`` of a reader's error, in fixed words."""
    # Library messages can quote the file's first bytes (gzip's "Not a gzipped file (b'..')"),
    # so only fixed words and the OS error name go into the detail.
    if isinstance(exc, FileNotFoundError):
        return VANISHED, "removed before it could be read"
    if isinstance(exc, EOFError):
        return CORRUPT, f"{compression or 'compressed'} stream ends early (truncated)"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return CORRUPT, "not a valid gzip stream (corrupt or not gzip)"
    if isinstance(exc, zstandard.ZstdError):
        return CORRUPT, "not a valid zstd stream (corrupt or not zstd)"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return OUTSIDE_LOG_ROOT, "replaced by a symbolic link while the day was read, refused"
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return READ_ERROR, f"read error ({why})"


class _ZstdReader(io.RawIOBase):
    """A zstd stream as a raw binary file that notices truncation.

    ``zstandard``'s own stream reader ends quietly when the input stops inside a frame; this
    one raises EOFError then, so a cut ``.jsonl.zst`` is named instead of read short.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._pending = b""
        self._at = 0
        self._in = b""
        self._in_at = 0
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._at >= len(self._pending):
            if self._in_at >= len(self._in):
                self._in = self._raw.read(_READ_CHUNK)
                self._in_at = 0
                if not self._in:
                    if self._in_frame:
                        raise EOFError("zstd stream ends inside a frame")
                    return 0
            # One small slice at a time, returned as soon as it gives text: a zstd block
            # expands up to 128 KiB from a few bytes (a whole chunk at once could become
            # gigabytes), and the lines before a corruption further on are read first.
            data = self._in[self._in_at : self._in_at + _ZSTD_SLICE]
            self._in_at += len(data)
            out = []
            while data:
                self._in_frame = True
                out.append(self._obj.decompress(data))
                if self._obj.eof:
                    self._in_frame = False
                    data = self._obj.unused_data
                    self._obj = self._dctx.decompressobj()
                else:
                    data = b""
            self._pending = b"".join(out)
            self._at = 0
        n = min(len(buffer), len(self._pending) - self._at)
        buffer[:n] = self._pending[self._at : self._at + n]
        self._at += n
        return n


def _iter_file(
    fh: io.BufferedIOBase, rel: str, max_line_bytes: int, progress: list[int] | None = None
) -> Iterator[LogRecord | Rejected]:
    for line_number, raw in read_lines(fh, max_line_bytes):
        if progress is not None:
            progress[0] = line_number
        yield parse_line(raw, rel, line_number, max_line_bytes)


def parse_line(
    raw: bytes | None, rel: str, line_number: int, max_line_bytes: int
) -> LogRecord | Rejected:
    """One non-blank line of ``rel`` (None: longer than ``max_line_bytes``) as a LogRecord,
    a Rejected, or an Unreadable (an ingest stub naming a file ingest could not read).

    The one decision per line that every reader of the day shares, so the DuckDB sampling
    path (:mod:`.fast_sample`) gives the lines it does not decide itself the same outcome.
    """
    if raw is None:
        return Rejected(rel, line_number, TOO_LARGE, f"line exceeds {max_line_bytes} bytes")
    try:
        return _parse_line(raw, rel, line_number)
    except _IngestUnreadable as stub:
        return stub.entry
    except _Reject as rej:
        return Rejected(
            rej.source_file or rel, rej.line_number or line_number, rej.reason, rej.detail
        )


def read_lines(fh: io.BufferedIOBase, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
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


def _skip_rest_of_line(fh: io.BufferedIOBase) -> None:
    while True:
        chunk = fh.readline(_READ_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one JSON record, fast; raises RecordError with the stdlib's wording when bad.

    orjson parses several times faster than ``json``; anything it refuses (invalid UTF-8,
    NaN, lone surrogate escapes, nesting beyond 1024, broken JSON) is decoded again by
    ``json`` so the accepted input and the rejection details are the standard library's.
    What ``json`` accepts but no UTF-8 encoder can write back (a lone ``\\ud800`` escape) is
    refused as ``invalid_encoding``; anything nested deeper than ``max_depth`` as ``too_deep``.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        # orjson never yields a lone surrogate; depth needs a walk only when the line has more
        # brackets than the limit (a cheap upper bound on its depth).
        if _bracket_bound(raw) > max_depth:
            check_tree(value, max_depth=max_depth, text=False)
        return value
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Reject(INVALID_ENCODING, f"not UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        # exc.msg is the decoder's fixed wording; exc.doc (the line) is deliberately unused.
        raise _Reject(
            INVALID_JSON, f"{exc.msg.removesuffix(' at')} (character {exc.pos})"
        ) from None
    except RecursionError:
        raise _Reject(TOO_DEEP, f"nested deeper than {max_depth} levels") from None
    check_tree(value, max_depth=max_depth, text=True)
    return value


def _bracket_bound(raw: bytes | str) -> int:
    if isinstance(raw, bytes):
        return raw.count(b"[") + raw.count(b"{")
    return raw.count("[") + raw.count("{")


def check_tree(value: Any, *, max_depth: int = MAX_DEPTH, text: bool = True) -> None:
    """Raise RecordError when ``value`` is unsafe to keep, without recursing.

    ``too_deep`` when containers nest deeper than ``max_depth`` (the top level is 1);
    with ``text``, ``invalid_encoding`` when a string or key holds a lone UTF-16 surrogate,
    which no UTF-8 encoder (orjson, DuckDB) can write.
    """
    if not isinstance(value, dict | list):
        if text and isinstance(value, str) and _lone_surrogate(value):
            raise _Reject(INVALID_ENCODING, "a string holds a lone surrogate escape")
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise _Reject(TOO_DEEP, f"nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            if text and any(isinstance(k, str) and _lone_surrogate(k) for k in node):
                raise _Reject(INVALID_ENCODING, "a key holds a lone surrogate escape")
            children = node.values()
        else:
            children = node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif text and isinstance(child, str) and _lone_surrogate(child):
                raise _Reject(INVALID_ENCODING, "a string holds a lone surrogate escape")


def _lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_embedded_json(text: str, where: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON text (tool arguments, tool results) that later stages would choke on.

    The de-identifier and the residue check decode these strings and walk them; a lone
    surrogate escape or a 900-deep array inside would stop the day there, after the sample
    was drawn. Text that is not JSON is fine: it stays text.
    """
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "[{":
        return
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)
        except ValueError:
            return
        except RecursionError:
            raise _Reject(TOO_DEEP, f"{where} nests deeper than {max_depth} levels") from None
        try:
            check_tree(value, max_depth=max_depth, text=True)
        except RecordError as err:
            raise _Reject(err.reason, f"{where}: {err.detail}") from None
        return
    if _bracket_bound(text) > max_depth:
        try:
            check_tree(value, max_depth=max_depth, text=False)
        except RecordError as err:
            raise _Reject(err.reason, f"{where}: {err.detail}") from None


class _IngestUnreadable(Exception):
    def __init__(self, entry: Unreadable) -> None:
        super().__init__(entry.detail)
        self.entry = entry


def _parse_line(raw: bytes, source_file: str, line_number: int) -> LogRecord:
    """Parse and validate one log line; raises an internal rejection on a bad line."""
    return parse_record(loads(raw), source_file, line_number)


def parse_record(obj: Any, source_file: str, line_number: int) -> LogRecord:
    """Validate one decoded record of the production-log layout; raises RecordError."""
    if not isinstance(obj, dict):
        raise _Reject(NOT_AN_OBJECT, f"top-level JSON is {_json_type(obj)}, not an object")
    if INGEST_REJECTED in obj and "messages" not in obj:
        _raise_ingest_rejection(obj[INGEST_REJECTED])
    if INGEST_UNREADABLE in obj and "messages" not in obj:
        _raise_ingest_unreadable(obj[INGEST_UNREADABLE])
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
        tools=parse_tools(obj),
    )


def parse_tools(obj: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The record's declared tools in OpenAI ``tools`` form, or None; raises RecordError.

    ``tools`` entries are kept as given (a function tool must name its function; other tool
    types are kept as they are); each legacy ``functions`` entry becomes ``{"type":
    "function", "function": entry}`` after them. A name declared twice is kept once (the
    first): a model is sent one schema per name.
    """
    out: list[dict[str, Any]] = []
    for key in ("tools", "functions"):
        entries = obj.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise _Reject(BAD_FIELD, f"'{key}' is {_json_type(entries)}, not an array")
        for j, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise _Reject(BAD_FIELD, f"{key} entry {j} is {_json_type(entry)}, not an object")
            if key == "functions":
                entry = {"type": "function", "function": entry}
            kind = entry.get("type", "function")
            if not isinstance(kind, str):
                raise _Reject(BAD_FIELD, f"{key} entry {j} has a 'type' that is not a string")
            if kind != "function":
                out.append(entry)
                continue
            fn = entry.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            if not isinstance(fn, dict) or not isinstance(name, str) or not name.strip():
                raise _Reject(BAD_FIELD, f"{key} entry {j} has no function name")
            params = fn.get("parameters")
            if params is not None and not isinstance(params, dict):
                raise _Reject(
                    BAD_FIELD, f"{key} entry {j} parameters are {_json_type(params)}, not an object"
                )
            out.append({**entry, "type": "function"})
    seen: set[str] = set()
    unique = []
    for entry in out:
        fn = entry.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            if name in seen:
                continue
            seen.add(name)
        unique.append(entry)
    return unique or None


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


def _raise_ingest_unreadable(stub: Any) -> None:
    if (
        not isinstance(stub, dict)
        or not isinstance(stub.get("source_file"), str)
        or not isinstance(stub.get("kind"), str)
        or not isinstance(stub.get("lines_read"), int)
    ):
        raise _Reject(BAD_FIELD, f"'{INGEST_UNREADABLE}' is not a stub written by ingest")
    raise _IngestUnreadable(
        Unreadable(
            stub["source_file"],
            stub["lines_read"],
            UNREADABLE_FILE,
            str(stub.get("detail", "")),
            stub["kind"],
        )
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
            for text in _texts(content):
                check_embedded_json(text, f"message {i} (tool) result")
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
        check_embedded_json(fn["arguments"], f"message {i} tool call {j} arguments")
        ids.append(call["id"])
    return ids


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict)]
        return [p["text"] for p in parts if isinstance(p.get("text"), str)]
    return []


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
