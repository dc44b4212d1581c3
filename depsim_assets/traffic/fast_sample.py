"""Sampling a day at the speed of the file: DuckDB decides the lines, Python only the rest.

:func:`select_duckdb` gives exactly what the Python reader (:func:`.pipeline.select_python`)
gives for the same day: the same records in, quarantine rows in the same order with the
same reasons and details, the same ineligible counts, the same strata and the same seeded
bottom-k sample, as :class:`.selection.Selection`. Only how each line is decided differs.

Lines are split in Python (numpy finds the newlines of 32 MiB chunks, so line numbers, blank
lines, a leading BOM and over-long lines follow :func:`.logs.read_lines` to the byte), and
each chunk is handed to DuckDB as an Arrow column without a copy. One SQL pass per chunk
proves, for the plain chat shape (string roles and contents, no tool calls, parts or audio),
that the line is a record the Python validator would accept (the rules of
:func:`.logs.parse_record` for that shape, written as SQL), and reads what sampling needs
from it: the conversation id, the eligibility facts, the stratum. Any other line, and any
line DuckDB's JSON parser may read otherwise than Python's, is routed to Python, which
decides it with the very function the Python path uses (:func:`.logs.parse_line`): see
:data:`ROUTED`. Duplicate ids, eligibility counts, strata and the bottom-k order
(``sha256(f"{seed}|{id}")``, the key of :func:`.sample.sample_key`, taken as its first 16 hex
digits, which order exactly as the 64-bit integer does) are then one SQL query over all
lines. Only the sampled lines are read again and parsed, in full, by Python.

A file whose reader breaks (corrupt or truncated compression, an I/O error) is read again
by the Python reader from its start, so its lines and its Unreadable entry are exactly the
Python path's; such files are counted in ``python_files``.
"""

from __future__ import annotations

import io
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import zstandard

from depsim_assets.traffic import logs
from depsim_assets.traffic.eligibility import (
    EXCLUDED_METADATA,
    EXCLUDED_MODEL,
    EXCLUDED_SOURCE,
    OPTED_OUT,
    EligibilityConfig,
    ineligible_reason,
)
from depsim_assets.traffic.logs import (
    CHANGED,
    TOO_LARGE,
    LogFile,
    LogRecord,
    Rejected,
    Unreadable,
    day_entries,
    parse_line,
    read_log_file,
    unreadable,
)
from depsim_assets.traffic.sample import _KEY_SPACE
from depsim_assets.traffic.selection import DUPLICATE_ID, Selection, stratum_of

_CHUNK = 32 << 20
# A line's status in the per-batch query.
_BLANK, _RECORD, _PYTHON, _SKIP = 0, 1, 2, 3
_ROWS_PER_TASK = 4096
_NEWLINE = 10
_BOM = b"\xef\xbb\xbf"

# Why a line goes to Python rather than being decided in SQL (metadata of a run):
ROUTED = (
    "lines that are not plain chat records (tool calls and results, declared tools or "
    "functions, content parts, audio, refusals, a null or non-string role or content), "
    "invalid JSON or UTF-8, not an object, "
    "duplicate keys, trailing commas or nan/inf literals (DuckDB's parser accepts what "
    "Python's refuses), any \\u escape (it could hide a key, a bracket or a backslash), more "
    "than 64 brackets (the depth check), ids that are missing, blank, floats or longer than "
    "18 digits, ingest stubs, over-long lines, and files whose reader broke"
)

# Python's str.isspace(), as an RE2 class: str.strip() decides a blank reply or id, and RE2's
# \s is ASCII only.
_SPACE_CLASS = "".join(f"\\x{{{c:x}}}" for c in range(sys.maxunicode + 1) if chr(c).isspace())
_NOT_SPACE = f"[^{_SPACE_CLASS}]"
# A line goes to Python when it matches this: DuckDB's JSON (yyjson, with trailing commas and
# inf/nan literals allowed) may read it otherwise than Python (a trailing comma, an inf/nan
# literal), an escape could hide a key name, a bracket or a backslash from the checks below
# (any \u), it has the keys of the shapes decided in Python (tool calls and results, declared
# tools or functions, whose schemas only Python checks, audio, refusals, ingest stubs), or a
# key that is read appears twice at any level (DuckDB keeps the first, Python the last). In
# JSON text a key is a quote, its name, a quote and a colon: inside a string the quotes would
# be escaped, so these do not match string contents.
_READ_KEYS = (
    "conversation_id",
    "messages",
    "opted_out",
    "metadata",
    "source",
    "model",
    "user_id",
    "created_at",
    logs.INGEST_ORIGIN,
)
_COLON = r"[ \t\n\r]*:"
_ROUTE = "|".join(
    [
        r",[ \t\n\r]*[\]}]",
        r"[:\[,][ \t\n\r]*[-+]?[nNiI][aAnN][nNfF]",
        r"\\u",
        '"(?:tool_calls|tool_call_id|audio|refusal|tools|functions|'
        + f'{logs.INGEST_REJECTED}|{logs.INGEST_UNREADABLE})"{_COLON}',
        *(f'"{k}"{_COLON}[\\s\\S]*"{k}"{_COLON}' for k in _READ_KEYS),
        # A role or content that is not a string (content parts, a null reply) is Python's.
        f'"(?:role|content)"{_COLON}[ \\t\\n\\r]*[^" \\t\\n\\r]',
    ]
)
_TOP = (
    '{"conversation_id":"JSON","opted_out":"JSON","metadata":"JSON","source":"JSON",'
    '"model":"JSON","user_id":"JSON","created_at":"JSON","ingest_origin":"JSON",'
    '"messages":[{"role":"VARCHAR","content":"VARCHAR"}]}'
)
_WS_JSON = "' ' || chr(9) || chr(10) || chr(13)"
_INT_TEXT = r"^(0|-?[1-9][0-9]{0,17})$"
_MAP = "'\"MAP(VARCHAR, JSON)\"'"
_ROLES = ", ".join(f"'{r}'" for r in sorted(logs.ROLES))


def _json_text(value: str) -> str:
    """SQL of a JSON-typed value decoded to VARCHAR (strings only)."""
    return f"json_extract_string({value}, '$')"


def _scalar_text(value: str, *, booleans: bool = False) -> str:
    """SQL: the text Python's ``_optional_str`` (or, with ``booleans``, ``metadata_text``)
    gives a JSON value; ``_BAD`` for a value the SQL does not decide (routed to Python); SQL
    NULL for a missing value or JSON null."""
    bools = f"WHEN {value} IN ('true', 'false') THEN {value}::VARCHAR " if booleans else ""
    return (
        f"CASE WHEN {value} IS NULL THEN NULL "
        f"WHEN left({value}, 1) = '\"' THEN {_json_text(value)} "
        f"WHEN regexp_matches({value}, '{_INT_TEXT}') THEN {value}::VARCHAR "
        f"{bools}ELSE '{_BAD}' END"
    )


_BAD = "\x00bad\x00"


def _classify_sql(config: EligibilityConfig, stratify_by: str | None, *, utf8: bool) -> str:
    """The per-batch query: one row per line with its status (:data:`_RECORD`: decided, with
    what sampling needs; :data:`_BLANK`; :data:`_SKIP`: over-long; :data:`_PYTHON`: routed)."""
    meta_keys = sorted(set(config.exclude_metadata) | _stratum_meta_key(stratify_by))
    meta_cols = "".join(
        f"{_scalar_text(f'md[{_sql_str(k)}]', booleans=True)} AS m{i}, "
        for i, k in enumerate(meta_keys)
    )
    meta_idx = {k: i for i, k in enumerate(meta_keys)}
    meta_ok = "".join(f"AND m{i} IS DISTINCT FROM '{_BAD}' " for i in range(len(meta_keys)))
    meta_excl = " OR ".join(
        f"m{meta_idx[k]} IN ({', '.join(_sql_str(v) for v in vals)})"
        for k, vals in config.exclude_metadata.items()
        if vals
    )
    sources = ", ".join(_sql_str(s) for s in config.exclude_sources) or "NULL"
    models = ", ".join(_sql_str(s) for s in config.exclude_models) or "NULL"
    if stratify_by is None:
        stratum = "NULL::VARCHAR"
    elif stratify_by == "source":
        stratum = "src"
    elif stratify_by == "model":
        stratum = "mdl"
    else:
        stratum = f"coalesce(m{meta_idx[stratify_by.removeprefix('metadata.')]}, '(none)')"
    md = (
        f"CASE WHEN meta_j IS NULL THEN map{{}}::MAP(VARCHAR, JSON) "
        f"WHEN left(meta_j, 1) = '{{' THEN try(json_transform(meta_j, {_MAP})) END"
        if meta_keys
        else "map{}::MAP(VARCHAR, JSON)"
    )
    text = (
        "CASE WHEN flag = 0 THEN line END"
        if utf8
        else ("CASE WHEN flag = 0 THEN try(decode(line)) END")
    )
    return f"""
WITH lines AS (
    SELECT lineno, flag, off, nbytes, {text} AS s
    FROM batch
), marked AS (
    SELECT lineno, flag, off, nbytes, s,
        s IS NOT NULL AND NOT regexp_matches(s, '[^ \t\n\r\x0b\x0c]') AS blank,
        s IS NOT NULL AND left(ltrim(s, {_WS_JSON}), 1) = '{{'
            AND strlen(s) - strlen(replace(replace(s, '[', ''), '{{', '')) <= {logs.MAX_DEPTH}
            AND NOT regexp_matches(s, {_sql_str(_ROUTE)})
            AND json_valid(s) AS candidate
    FROM lines
), parsed AS (
    SELECT lineno, off, nbytes, flag, blank, candidate, s,
        CASE WHEN candidate THEN json_transform(s, {_sql_str(_TOP)}) END AS t
    FROM marked
), fields AS (
    SELECT lineno, off, nbytes, flag, blank, candidate,
        t.messages AS msgs,
        CASE WHEN candidate
             THEN len(regexp_extract_all(s, '"(?:role|content)"[ \\t\\n\\r]*:')) END
            AS n_keys,
        t.conversation_id AS cid_j, t.opted_out AS opted_j, t.metadata AS meta_j,
        t.ingest_origin AS origin_j,
        {_scalar_text("t.source")} AS src_raw,
        {_scalar_text("t.model")} AS mdl_raw,
        {_scalar_text("t.user_id")} AS uid,
        {_scalar_text("t.created_at")} AS created
    FROM parsed
), facts AS (
    SELECT *,
        CASE WHEN cid_j IS NULL THEN NULL
             WHEN left(cid_j, 1) = '"' THEN {_json_text("cid_j")}
             WHEN regexp_matches(cid_j, '{_INT_TEXT}') THEN cid_j::VARCHAR END AS cid,
        {md} AS md,
        CASE WHEN origin_j IS NULL THEN map{{}}::MAP(VARCHAR, JSON)
             WHEN left(origin_j, 1) = '{{' THEN try(json_transform(origin_j, {_MAP})) END
            AS origin,
        CASE WHEN src_raw IS NULL OR src_raw = '' THEN 'unknown' ELSE src_raw END AS src,
        CASE WHEN mdl_raw IS NULL OR mdl_raw = '' THEN 'unknown' ELSE mdl_raw END AS mdl
    FROM fields
), metas AS (
    SELECT *, {meta_cols} 1 AS _
    FROM facts
), decided AS (
    SELECT lineno, off, nbytes, flag, blank,
        candidate AND msgs IS NOT NULL AND len(msgs) > 0 AND n_keys = 2 * len(msgs)
        AND list_bool_and(list_transform(msgs, lambda m:
            m IS NOT NULL AND m.role IN ({_ROLES}) AND m.content IS NOT NULL))
        AND msgs[-1].role = 'assistant'
        AND regexp_matches(msgs[-1].content, {_sql_str(_NOT_SPACE)})
        AND cid IS NOT NULL AND regexp_matches(cid, {_sql_str(_NOT_SPACE)})
        AND (opted_j IS NULL OR opted_j IN ('true', 'false'))
        AND (meta_j IS NULL OR left(meta_j, 1) = '{{') AND md IS NOT NULL
        AND origin IS NOT NULL
        AND (origin['line'] IS NULL OR left(origin['line'], 1) IN ('"', '[', '{{')
             OR regexp_matches(origin['line'], '{_INT_TEXT}'))
        AND src_raw IS DISTINCT FROM '{_BAD}' AND mdl_raw IS DISTINCT FROM '{_BAD}'
        AND uid IS DISTINCT FROM '{_BAD}' AND created IS DISTINCT FROM '{_BAD}'
        {meta_ok}
        AS simple,
        cid,
        CASE WHEN opted_j = 'true' THEN '{OPTED_OUT}'
             WHEN src IN ({sources}) THEN '{EXCLUDED_SOURCE}'
             WHEN mdl IN ({models}) THEN '{EXCLUDED_MODEL}'
             {f"WHEN {meta_excl} THEN '{EXCLUDED_METADATA}'" if meta_excl else ""}
        END AS inelig,
        {stratum} AS stratum,
        CASE WHEN left(origin['file'], 1) = '"' THEN {_json_text("origin['file']")} END
            AS qfile,
        CASE WHEN left(origin['file'], 1) = '"'
              AND regexp_matches(origin['line'], '{_INT_TEXT}')
             THEN origin['line']::BIGINT END AS qline
    FROM metas
)
SELECT lineno, off, nbytes,
    CASE WHEN flag <> 0 THEN {_SKIP}
         WHEN blank THEN {_BLANK}
         WHEN simple THEN {_RECORD}
         ELSE {_PYTHON} END::TINYINT AS status,
    cid, inelig, stratum, qfile, qline
FROM decided
"""


def _stratum_meta_key(stratify_by: str | None) -> set[str]:
    if stratify_by is not None and stratify_by.startswith("metadata."):
        return {stratify_by.removeprefix("metadata.")}
    return set()


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- lines -------------------------------------------------------------------------------------


@dataclass
class _Batch:
    """Consecutive lines of one file: ``buf[starts[i]:starts[i + 1]]`` is line ``linenos[i]``
    with its newline; ``too_large`` lines are named only (their bytes are not read whole)."""

    buf: bytes
    starts: np.ndarray
    linenos: np.ndarray
    flags: np.ndarray
    base: int  # stream offset of buf[0]

    def line(self, i: int) -> bytes:
        return self.buf[self.starts[i] : self.starts[i + 1]]

    def table(self) -> tuple[pa.Table, bool]:
        """The batch as an Arrow table (no copy of the text) and whether it is all UTF-8.

        A batch that is all UTF-8 (the whole buffer decodes: a newline never sits inside a
        UTF-8 sequence, so then every line does) goes as text; one that is not goes as bytes,
        and DuckDB decodes each line, leaving the invalid ones to Python.
        """
        n = len(self.linenos)
        buffers = [None, pa.py_buffer(self.starts.astype(np.int64)), pa.py_buffer(self.buf)]
        lines = pa.Array.from_buffers(pa.large_string(), n, buffers)
        try:
            lines.validate(full=True)  # checks UTF-8 in place, without decoding a copy
            utf8 = True
        except pa.ArrowInvalid:
            utf8 = False
            lines = pa.Array.from_buffers(pa.large_binary(), n, buffers)
        table = pa.table(
            {
                "line": lines,
                "lineno": pa.array(self.linenos),
                "flag": pa.array(self.flags),
                "off": pa.array(self.starts[:-1] + self.base),
                "nbytes": pa.array(np.diff(self.starts)),
            }
        )
        # Several record batches, so DuckDB's threads share a batch.
        return pa.Table.from_batches(table.to_batches(max_chunksize=_ROWS_PER_TASK)), utf8


def _batches(fh: io.BufferedIOBase, max_line_bytes: int, too_large: list[int]) -> Iterator[_Batch]:
    """The lines of ``fh`` as :class:`_Batch` es, numbered as :func:`.logs.read_lines` numbers
    them; the numbers of lines longer than ``max_line_bytes`` that span chunks go to
    ``too_large`` (they are skipped without being held)."""
    carry = b""
    skipping = False  # inside an over-long line whose number is already given
    lineno = 0
    consumed = 0  # stream offset of the first byte not yet in a batch
    while True:
        data = fh.read(_CHUNK)
        if not data:
            break
        if skipping:
            cut = data.find(b"\n")
            if cut < 0:
                consumed += len(data)
                continue
            data = data[cut + 1 :]
            consumed += cut + 1
            skipping = False
        buf = carry + data if carry else data
        base = consumed - len(carry)
        consumed += len(data)
        newlines = np.flatnonzero(np.frombuffer(buf, np.uint8) == _NEWLINE)
        if len(newlines) == 0:
            if len(buf) > max_line_bytes:
                lineno += 1
                too_large.append(lineno)
                carry, skipping = b"", True
            else:
                carry = buf
            continue
        end = int(newlines[-1]) + 1
        starts = np.empty(len(newlines) + 1, np.int64)
        starts[0] = 0
        starts[1:] = newlines + 1
        lengths = np.diff(starts) - 1  # without the newline
        linenos = np.arange(lineno + 1, lineno + 1 + len(newlines), dtype=np.int64)
        lineno += len(newlines)
        flags = (lengths > max_line_bytes).astype(np.int8)
        if linenos[0] == 1 and not flags[0] and buf.startswith(_BOM):
            starts[0] = len(_BOM)
        yield _Batch(buf[:end] if end < len(buf) else buf, starts, linenos, flags, base)
        carry = buf[end:]
        if len(carry) > max_line_bytes:
            lineno += 1
            too_large.append(lineno)
            carry, skipping = b"", True
    if carry and not skipping:
        lineno += 1
        flag = np.int8(len(carry) > max_line_bytes)
        starts = np.array([0, len(carry)], np.int64)
        if lineno == 1 and not flag and carry.startswith(_BOM):
            starts[0] = len(_BOM)
        yield _Batch(
            carry, starts, np.array([lineno], np.int64), np.array([flag]), consumed - len(carry)
        )


# --- the day -----------------------------------------------------------------------------------

_RECS_SCHEMA = pa.schema(
    [
        ("file_idx", pa.int32()),
        ("pos", pa.int64()),
        ("cid", pa.string()),
        ("inelig", pa.string()),
        ("stratum", pa.string()),
        ("qfile", pa.string()),
        ("qline", pa.int64()),
        ("off", pa.int64()),
        ("nbytes", pa.int64()),
    ]
)


@dataclass
class _Day:
    """What the pass over a day's files collects."""

    date: str
    # (file index, position, tie) -> quarantine row; positions order rows as the log does.
    events: list[tuple[int, int, int, dict[str, Any]]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    python_lines: int = 0
    python_files: list[str] = field(default_factory=list)

    def event(self, file_idx: int, pos: int, item: Rejected, tie: int = 0) -> None:
        row = {
            "traffic_date": self.date,
            "source_file": item.source_file,
            "line_number": item.line_number,
            "reason": item.reason,
            "detail": item.detail,
        }
        self.events.append((file_idx, pos, tie, row))
        if isinstance(item, Unreadable):
            self.unreadable[item.kind] += 1
        else:
            self.rejected[item.reason] += 1


def _empty_rows() -> dict[str, list[Any]]:
    return {name: [] for name in _RECS_SCHEMA.names}


def select_duckdb(
    log_root: Path | str | None,
    date: str,
    *,
    n: int | None,
    fraction: float | None,
    seed: int,
    eligibility: EligibilityConfig,
    max_line_bytes: int,
    stratify_by: str | None,
) -> Selection:
    """The read phase of :func:`.pipeline.run_sampling`, decided by DuckDB (see the module)."""
    entries = day_entries(log_root, date)
    day = _Day(date)
    conn = duckdb.connect()
    try:
        conn.execute("SET enable_progress_bar = false")
        conn.execute(
            "CREATE TABLE recs (file_idx INTEGER, pos BIGINT, cid VARCHAR, inelig VARCHAR, "
            "stratum VARCHAR, qfile VARCHAR, qline BIGINT, off BIGINT, nbytes BIGINT)"
        )
        classify = {
            utf8: _classify_sql(eligibility, stratify_by, utf8=utf8) for utf8 in (True, False)
        }
        readers: dict[int, LogFile] = {}
        fell_back: set[int] = set()
        for file_idx, entry in enumerate(entries):
            if isinstance(entry, Unreadable):
                day.event(file_idx, 0, entry)
                continue
            readers[file_idx] = entry
            if not _read_with_duckdb(
                conn, classify, day, file_idx, entry, max_line_bytes, eligibility, stratify_by
            ):
                fell_back.add(file_idx)
                _read_with_python(
                    conn, day, file_idx, entry, max_line_bytes, eligibility, stratify_by
                )
        return _select(
            conn,
            day,
            entries,
            readers,
            fell_back,
            n=n,
            fraction=fraction,
            seed=seed,
            max_line_bytes=max_line_bytes,
        )
    finally:
        conn.close()


def _read_with_duckdb(
    conn: duckdb.DuckDBPyConnection,
    classify: dict[bool, str],
    day: _Day,
    file_idx: int,
    entry: LogFile,
    max_line_bytes: int,
    eligibility: EligibilityConfig,
    stratify_by: str | None,
) -> bool:
    """Decide one file's lines; False (and nothing of it kept) when its reader broke, so the
    Python reader takes the whole file and names the break exactly as it does."""
    mark = (len(day.events), day.rejected.copy(), day.unreadable.copy(), day.python_lines)
    try:
        fh, raw, size = logs.open_log(entry.path, entry.compression)
    except (OSError, logs.FileBroke):
        return False
    last = 0
    try:
        with raw, fh:
            too_large: list[int] = []
            for batch in _batches(fh, max_line_bytes, too_large):
                last = max(
                    last,
                    _decide_batch(
                        conn,
                        classify,
                        day,
                        file_idx,
                        entry,
                        batch,
                        max_line_bytes,
                        eligibility,
                        stratify_by,
                    ),
                )
            for lineno in too_large:
                text = f"line exceeds {max_line_bytes} bytes"  # as logs.parse_line words it
                day.event(file_idx, lineno, Rejected(entry.source_file, lineno, TOO_LARGE, text))
                last = max(last, lineno)
            shrank = raw.tell() < size
    except (OSError, EOFError, zlib.error, zstandard.ZstdError):
        conn.execute("DELETE FROM recs WHERE file_idx = ?", [file_idx])
        del day.events[mark[0] :]
        day.rejected, day.unreadable, day.python_lines = mark[1], mark[2], mark[3]
        return False
    if shrank:
        # Read to its end but shorter than when it was opened: cut under the reader.
        why = f"the file shrank while it was read, after line {last}"
        day.event(file_idx, sys.maxsize, unreadable(entry.source_file, CHANGED, why, last))
    return True


def _decide_batch(
    conn: duckdb.DuckDBPyConnection,
    classify: dict[bool, str],
    day: _Day,
    file_idx: int,
    entry: LogFile,
    batch: _Batch,
    max_line_bytes: int,
    eligibility: EligibilityConfig,
    stratify_by: str | None,
) -> int:
    """Classify one batch in DuckDB, decide its routed lines in Python; returns the number of
    its last non-blank line (0: none)."""
    table, utf8 = batch.table()
    conn.register("batch", table)
    try:
        out = conn.sql(classify[utf8]).to_arrow_table()
    finally:
        conn.unregister("batch")
    status = out.column("status").to_numpy()
    linenos = out.column("lineno").to_numpy()
    nonblank = linenos[status != _BLANK]
    last = int(nonblank.max()) if len(nonblank) else 0
    conn.register("decided", out)
    try:
        conn.execute(
            "INSERT INTO recs SELECT ?, lineno, cid, inelig, stratum, coalesce(qfile, ?), "
            "CASE WHEN qfile IS NOT NULL AND qline IS NOT NULL THEN qline ELSE lineno END, "
            f"off, nbytes FROM decided WHERE status = {_RECORD}",
            [file_idx, entry.source_file],
        )
    finally:
        conn.unregister("decided")
    first = int(batch.linenos[0])  # a batch's lines are consecutive
    routed = np.flatnonzero(status >= _PYTHON)
    if len(routed):
        rows = _empty_rows()
        for k in routed:
            lineno = int(linenos[k])
            i = lineno - first
            raw = None if batch.flags[i] else batch.line(i)
            item = parse_line(raw, entry.source_file, lineno, max_line_bytes)
            day.python_lines += 1
            _take(
                day,
                rows,
                file_idx,
                lineno,
                item,
                eligibility,
                stratify_by,
                int(batch.starts[i]) + batch.base,
                len(raw or b""),
            )
        _insert(conn, rows)
    return last


def _take(
    day: _Day,
    rows: dict[str, list[Any]],
    file_idx: int,
    pos: int,
    item: LogRecord | Rejected,
    eligibility: EligibilityConfig,
    stratify_by: str | None,
    off: int,
    nbytes: int,
) -> None:
    """Record one line Python decided: a record row, or a quarantine event."""
    if not isinstance(item, LogRecord):
        day.event(file_idx, pos, item)
        return
    rows["file_idx"].append(file_idx)
    rows["pos"].append(pos)
    rows["cid"].append(item.conversation_id)
    rows["inelig"].append(ineligible_reason(item, eligibility))
    rows["stratum"].append(stratum_of(item, stratify_by))
    rows["qfile"].append(item.source_file)
    rows["qline"].append(int(item.line_number))
    rows["off"].append(off)
    rows["nbytes"].append(nbytes)


def _read_with_python(
    conn: duckdb.DuckDBPyConnection,
    day: _Day,
    file_idx: int,
    entry: LogFile,
    max_line_bytes: int,
    eligibility: EligibilityConfig,
    stratify_by: str | None,
) -> None:
    """A whole file through the Python reader; positions are item ordinals."""
    day.python_files.append(entry.source_file)
    rows = _empty_rows()
    for pos, item in enumerate(read_log_file(entry, max_line_bytes), start=1):
        day.python_lines += 1
        _take(day, rows, file_idx, pos, item, eligibility, stratify_by, -1, -1)
        if len(rows["pos"]) >= 100_000:
            _insert(conn, rows)
            rows = _empty_rows()
    _insert(conn, rows)


def _insert(conn: duckdb.DuckDBPyConnection, rows: dict[str, list[Any]]) -> None:
    if rows["pos"]:
        conn.register("py_rows", pa.table(rows, schema=_RECS_SCHEMA))
        try:
            conn.execute("INSERT INTO recs SELECT * FROM py_rows")
        finally:
            conn.unregister("py_rows")


def _select(
    conn: duckdb.DuckDBPyConnection,
    day: _Day,
    entries: list[LogFile | Unreadable],
    readers: dict[int, LogFile],
    fell_back: set[int],
    *,
    n: int | None,
    fraction: float | None,
    seed: int,
    max_line_bytes: int,
) -> Selection:
    """Duplicates, eligibility, strata and the seeded bottom-k of the decided records."""
    from depsim_assets.traffic.pipeline import allocate

    # The first occurrence of an id (in log order) is the record; later ones are duplicates,
    # quarantined before eligibility, as the Python reader does.
    conn.execute(
        "CREATE TABLE ranked AS SELECT *, "
        "row_number() OVER (PARTITION BY cid ORDER BY file_idx, pos) AS occ FROM recs"
    )
    for file_idx, pos, qfile, qline in conn.execute(
        "SELECT file_idx, pos, qfile, qline FROM ranked WHERE occ > 1"
    ).fetchall():
        dup = Rejected(qfile, qline, DUPLICATE_ID, "conversation id seen earlier")
        day.event(file_idx, pos, dup)
    sel = Selection()
    (in_recs,) = conn.execute("SELECT count(*) FROM recs").fetchone() or (0,)
    sel.records_in = int(in_recs) + sum(v for k, v in day.rejected.items() if k != DUPLICATE_ID)
    sel.quarantined = day.rejected
    sel.unreadable = day.unreadable
    sel.ineligible = Counter(
        dict(
            conn.execute(
                "SELECT inelig, count(*) FROM ranked WHERE occ = 1 AND inelig IS NOT NULL "
                "GROUP BY inelig"
            ).fetchall()
        )
    )
    sel.sizes = dict(
        conn.execute(
            "SELECT stratum, count(*) FROM ranked WHERE occ = 1 AND inelig IS NULL GROUP BY stratum"
        ).fetchall()
    )
    day.events.sort(key=lambda e: (e[0], e[1], e[2]))
    sel.quarantine_rows = [row for _, _, _, row in day.events]

    # sha256(f"{seed}|{id}")[:8] as a big-endian integer is sample.sample_key; its 16 hex
    # digits sort as that integer does, so ORDER BY the text is ORDER BY the key.
    key = "substr(sha256(? || cid), 1, 16)"
    params: list[Any] = [f"{seed}|"]
    if fraction is not None:
        threshold = int(fraction * _KEY_SPACE)
        keep = "true" if threshold >= _KEY_SPACE else f"skey < '{threshold:016x}'"
        quotas: dict[str | None, int] = {h: 0 for h in sel.sizes}
    else:
        assert n is not None
        if list(sel.sizes) in ([], [None]):
            quotas = {None: n}
        else:
            alloc = allocate({str(h): size for h, size in sel.sizes.items()}, n)
            quotas = {h: alloc[str(h)] for h in sel.sizes}
        keep = "rk <= k"
    conn.register(
        "quotas",
        pa.table(
            {"stratum": list(quotas), "k": list(quotas.values())},
            schema=pa.schema([("stratum", pa.string()), ("k", pa.int64())]),
        ),
    )
    chosen = conn.execute(
        f"""
        WITH e AS (
            SELECT file_idx, pos, off, nbytes, cid, stratum, {key} AS skey
            FROM ranked WHERE occ = 1 AND inelig IS NULL
        ), r AS (
            SELECT e.*, q.k,
                row_number() OVER (PARTITION BY e.stratum ORDER BY skey, cid) AS rk
            FROM e JOIN quotas q ON e.stratum IS NOT DISTINCT FROM q.stratum
        )
        SELECT file_idx, pos, off, nbytes, cid, stratum FROM r
        WHERE {keep}
        ORDER BY stratum, skey, cid
        """,
        params,
    ).fetchall()
    records = _read_chosen(chosen, readers, fell_back, max_line_bytes)
    sel.samples = {h: [] for h in sel.sizes}
    for (_, _, _, _, _, stratum), record in zip(chosen, records, strict=True):
        sel.samples[stratum].append(record)
    sel.engine = {
        "engine": "duckdb",
        "python_lines": day.python_lines,
        "python_files": len(day.python_files),
    }
    return sel


def _read_chosen(
    chosen: list[tuple[Any, ...]],
    readers: dict[int, LogFile],
    fell_back: set[int],
    max_line_bytes: int,
) -> list[LogRecord]:
    """The chosen lines read again and parsed in full by Python, in ``chosen`` order."""
    wanted: dict[int, dict[int, tuple[int, int]]] = {}
    for file_idx, pos, off, nbytes, _, _ in chosen:
        wanted.setdefault(file_idx, {})[pos] = (off, nbytes)
    got: dict[tuple[int, int], LogRecord | Rejected] = {}
    for file_idx, lines in wanted.items():
        entry = readers[file_idx]
        if file_idx in fell_back:
            for pos, item in enumerate(read_log_file(entry, max_line_bytes), start=1):
                if pos in lines:
                    got[(file_idx, pos)] = item
            continue
        fh, raw, _ = logs.open_log(entry.path, entry.compression)
        with raw, fh:
            if entry.compression is None:
                for pos in sorted(lines, key=lambda p: lines[p][0]):
                    off, nbytes = lines[pos]
                    raw.seek(off)
                    got[(file_idx, pos)] = parse_line(
                        raw.read(nbytes), entry.source_file, pos, max_line_bytes
                    )
            else:
                for batch in _batches(fh, max_line_bytes, []):
                    for i, lineno in enumerate(batch.linenos.tolist()):
                        if lineno in lines:
                            got[(file_idx, lineno)] = parse_line(
                                batch.line(i), entry.source_file, lineno, max_line_bytes
                            )
    out = []
    for file_idx, pos, _, _, cid, _ in chosen:
        item = got.get((file_idx, pos))
        if not isinstance(item, LogRecord) or item.conversation_id != cid:
            # The line decided in the first pass reads otherwise now: the file changed.
            where = readers[file_idx].source_file
            raise RuntimeError(
                f"{where} changed while the day was sampled (line {pos} reads differently); "
                "sample the day again"
            )
        out.append(item)
    return out
