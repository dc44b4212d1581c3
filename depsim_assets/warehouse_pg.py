"""The PostgreSQL backend of the warehouse: the same tables, the same calls, many writers.

Selected by ``DEPSIM_WAREHOUSE_URL`` (``postgresql://user@host:port/db``; see
docs/warehouse.md). :class:`PgConnection` presents the part of DuckDB's connection API that
depsim uses (``execute(sql, params)`` then ``fetchall``/``fetchone``/``df``, ``register`` of a
frame, ``BEGIN``/``COMMIT``/``ROLLBACK`` as statements), so the stages' code is the same on
both backends. What differs is here:

- ``?`` placeholders become psycopg's ``%s`` (outside string literals);
- the table declarations' DuckDB types map to Postgres ones (``DOUBLE`` -> ``double
  precision``, ``VARCHAR`` -> ``text``...);
- a partition is written with ``COPY`` (DuckDB inserts a registered frame ``BY NAME``) under
  a transaction-scoped advisory lock per partition, so writers of different partitions never
  wait for each other and two writers of the same partition take turns instead of both
  inserting;
- ``df()`` gives the dtypes DuckDB's ``df()`` gives for the same column types (nullable
  integers as ``Int32``/``Int64``, nullable booleans as ``boolean``, timestamps as
  ``datetime64[us]``), so a frame read back compares equal whichever backend stored it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any, LiteralString
from urllib.parse import urlsplit, urlunsplit

import duckdb
import numpy as np
import pandas as pd
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

from depsim_assets.warehouse import ALL_TABLES, Table

DIALECT = "postgres"

# The DuckDB types of the table declarations, as Postgres spells them.
PG_TYPES = {
    "VARCHAR": "text",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp",
}

# Postgres type OIDs the result frames are typed by (pg_type.oid; stable across versions).
_INT4, _INT8, _INT2 = 23, 20, 21
_FLOAT4, _FLOAT8, _NUMERIC = 700, 701, 1700
_BOOL = 16
_TIMESTAMP, _TIMESTAMPTZ = 1114, 1184

# Any table's DDL runs under this advisory lock: CREATE TABLE IF NOT EXISTS is not safe
# against a concurrent CREATE of the same table in Postgres (it can fail on pg_type).
_DDL_LOCK = 0x64657073696D  # "depsim"


class WarehouseConnectError(RuntimeError):
    """The Postgres warehouse could not be reached; the message names it without a password."""


def display_url(url: str) -> str:
    """``url`` with any password removed (safe for logs, errors and metadata)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_postgres_url(url: str | None) -> bool:
    """Whether ``url`` names a Postgres database (``postgresql://`` or ``postgres://``)."""
    return bool(url) and urlsplit(str(url)).scheme in ("postgresql", "postgres")


# ------------------------------------------------------------------------------- the adapter
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


def translate(query: str) -> str:
    """``?`` placeholders as ``%s`` (a ``?`` in quoted text is kept), and every ``%`` as
    ``%%`` (psycopg reads ``%`` everywhere in a query with parameters, quotes included)."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        return "%s" if token == "?" else token.replace("%", "%%")

    return _TOKENS.sub(swap, query)


class _NumberLoader(Loader):
    """``numeric`` (what ``sum`` of a bigint gives) as an int when integral, else a float,
    as DuckDB returns its HUGEINT and DOUBLE sums (not ``Decimal``)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class PgResult:
    """The rows of one statement, read like a DuckDB result."""

    def __init__(self, names: list[str], oids: list[int], rows: list[tuple]) -> None:
        self.names, self.oids, self.rows = names, oids, rows
        self._next = 0

    def fetchall(self) -> list[tuple]:
        """Every row not fetched yet."""
        rows, self._next = self.rows[self._next :], len(self.rows)
        return rows

    def fetchone(self) -> tuple | None:
        """The next row, or None."""
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def df(self) -> pd.DataFrame:
        """The rows as a frame with the dtypes DuckDB's ``df()`` gives the same types."""
        columns = {
            name: _column([row[i] for row in self.rows], self.oids[i])
            for i, name in enumerate(self.names)
        }
        return pd.DataFrame(columns, columns=pd.Index(self.names))


def _column(values: list[Any], oid: int) -> Any:
    nulls = any(v is None for v in values)
    if oid in (_INT2, _INT4, _INT8):
        wide = oid == _INT8
        if nulls:
            return pd.array(values, dtype="Int64" if wide else "Int32")
        return np.array(values, dtype=np.int64 if wide else np.int32)
    if oid == _BOOL:
        return pd.array(values, dtype="boolean") if nulls else np.array(values, dtype=bool)
    if oid in (_FLOAT4, _FLOAT8, _NUMERIC):
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    if oid in (_TIMESTAMP, _TIMESTAMPTZ):
        return pd.to_datetime(pd.Series(values, dtype=object)).astype("datetime64[us]").array
    out = np.empty(len(values), dtype=object)  # element-wise: arrays stay lists, not a 2-D
    for i, value in enumerate(values):
        out[i] = value
    return out


class PgConnection:
    """One Postgres connection, used like a ``duckdb.DuckDBPyConnection`` by depsim's code.

    Autocommit, so ``BEGIN TRANSACTION``/``COMMIT``/``ROLLBACK`` sent as statements delimit
    transactions exactly as on DuckDB; ``register(name, frame)`` copies the frame into a
    temporary table of that name (dropped by ``unregister`` or when the connection closes).
    """

    dialect = DIALECT

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        try:
            self.raw = psycopg.connect(url, autocommit=True, application_name="depsim")
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WarehouseConnectError(
                f"cannot reach the Postgres warehouse {display_url(url)}: {first}"
            ) from None
        self.raw.adapters.register_loader("numeric", _NumberLoader)
        if read_only:
            self.raw.execute("SET default_transaction_read_only = on")
        self.tables_checked = False

    # -- the DuckDB-like surface
    def execute(self, query: str, parameters: Sequence[Any] | None = None) -> PgResult:
        """Run one statement (``?`` placeholders) and hold its rows."""
        params = list(parameters) if parameters is not None else None
        text = translate(query) if params is not None else query
        try:
            cur = self.raw.execute(text, params)  # type: ignore[arg-type]  # built at runtime
        except pg_errors.UndefinedTable as exc:
            # DuckDB's exception for the same case, which callers already catch ("a table not
            # materialized yet"): the callers' code stays one for both backends.
            raise duckdb.CatalogException(str(exc).splitlines()[0]) from exc
        except (psycopg.OperationalError, pg_errors.InsufficientPrivilege) as exc:
            # The server went away, or this user may not read/write there: the operator's
            # problem, said in one line (a RuntimeError, which the CLI prints as such).
            # DiskFull is left to replace_partitions, which names what was not written.
            if isinstance(exc, pg_errors.DiskFull):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WarehouseConnectError(
                f"the Postgres warehouse {display_url(self.url)} failed: {first}"
            ) from exc
        if cur.description is None:
            return PgResult([], [], [])
        names = [d.name for d in cur.description]
        oids = [d.type_code for d in cur.description]
        return PgResult(names, oids, cur.fetchall())

    def register(self, name: str, frame: pd.DataFrame) -> None:
        """``frame`` as a temporary table ``name`` (column types from its dtypes)."""
        ident = pg_sql.Identifier(name)
        self.raw.execute(pg_sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(ident))
        inferred: dict[str, LiteralString] = {
            str(name): _inferred(column) for name, column in frame.items()
        }
        cols = pg_sql.SQL(", ").join(
            pg_sql.SQL("{} {}").format(pg_sql.Identifier(name), pg_sql.SQL(kind))
            for name, kind in inferred.items()
        )
        self.raw.execute(pg_sql.SQL("CREATE TEMP TABLE {} ({})").format(ident, cols))
        types = {name: _declared(kind) for name, kind in inferred.items()}
        copy_frame(self, name, frame, types)

    def unregister(self, name: str) -> None:
        """Drop the temporary table ``register`` made."""
        self.raw.execute(
            pg_sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(pg_sql.Identifier(name))
        )

    def abort(self) -> None:
        """Nothing to abandon: results are read whole when a statement runs."""

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back by the server)."""
        self.raw.close()

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (BEGIN sent, no COMMIT/ROLLBACK yet)."""
        return self.raw.info.transaction_status != TransactionStatus.IDLE


def _inferred(column: pd.Series) -> LiteralString:
    """The Postgres type a registered frame's column gets."""
    kind = column.dtype.kind
    if kind == "b" or str(column.dtype) == "boolean":
        return "boolean"
    if kind in "iu":
        return "bigint"
    if kind == "f":
        return "double precision"
    if kind == "M":
        return "timestamp"
    return "text"


def _declared(pg_type: str) -> str:
    return {v: k for k, v in PG_TYPES.items()}[pg_type]


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _cast(value: Any, duck_type: str) -> Any:
    """One value as the declared column type wants it (DuckDB's implicit casts of BY NAME)."""
    if _is_null(value):
        return None
    if duck_type in ("INTEGER", "BIGINT"):
        return int(value)
    if duck_type == "DOUBLE":
        return float(value)
    if duck_type == "BOOLEAN":
        return bool(value)
    if duck_type == "TIMESTAMP":
        return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
    return value if isinstance(value, str) else str(value)


# The pandas dtype that casts a whole column as the declared type wants it, when it can.
_COLUMN_DTYPES = {"INTEGER": "Int64", "BIGINT": "Int64", "DOUBLE": "Float64", "BOOLEAN": "boolean"}


def _values(column: Any, duck_type: str) -> list[Any]:
    """A column's values as Python objects for COPY: cast by pandas for the whole column
    (ten times faster than value by value), else value by value (:func:`_cast`), which also
    raises for a value the column cannot take (``int('n/a')``)."""
    typed = None
    try:
        if duck_type in _COLUMN_DTYPES:
            typed = column.astype(_COLUMN_DTYPES[duck_type])
        elif duck_type == "VARCHAR" and pd.api.types.infer_dtype(column, skipna=True) in (
            "string", "empty"
        ):
            typed = column
    except (TypeError, ValueError):
        typed = None  # e.g. 2.5 into an integer, or a string: decided value by value
    if typed is None:
        return [_cast(v, duck_type) for v in column.tolist()]
    return typed.astype(object).where(typed.notna(), None).tolist()


def copy_frame(
    conn: PgConnection, table: str, frame: pd.DataFrame, types: Mapping[str, str]
) -> int:
    """``COPY`` the rows of ``frame`` into ``table`` (columns by name; ``types`` maps each
    column to its declared DuckDB type, which says how a value is cast)."""
    if frame.empty:
        return 0
    names = list(types)
    columns = [_values(frame[n], types[n]) for n in names]
    statement = pg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        pg_sql.Identifier(table), pg_sql.SQL(", ").join(pg_sql.Identifier(n) for n in names)
    )
    with conn.raw.cursor() as cur, cur.copy(statement) as copy:
        for row in zip(*columns, strict=True):
            copy.write_row(row)
    return len(frame)


# ------------------------------------------------------------------------------------- tables
def ddl(table: Table) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table`` in Postgres types."""
    cols = ", ".join(f'"{c.name}" {PG_TYPES[c.type]}' for c in table.columns)
    if table.primary_key:
        cols += ", PRIMARY KEY (" + ", ".join(f'"{k}"' for k in table.primary_key) + ")"
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({cols})"


def ensure_tables(conn: PgConnection) -> None:
    """Create the tables (and columns) missing from the current schema; once per connection.

    Concurrent processes may all find a table missing: the DDL runs under one advisory lock
    and looks again inside it, so exactly one creates each table.
    """
    if conn.tables_checked:
        return
    if not _missing(conn):
        conn.tables_checked = True
        return
    opened = not conn.in_transaction
    if opened:
        conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", [_DDL_LOCK])
        for table, column in _missing(conn):
            if column is None:
                conn.execute(ddl(table))
            else:
                pg_type = PG_TYPES[column.type]
                conn.execute(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {pg_type}')
        if opened:
            conn.execute("COMMIT")
    except BaseException:
        if opened:
            with suppress(psycopg.Error, WarehouseConnectError):
                conn.execute("ROLLBACK")
        raise
    conn.tables_checked = True


def _missing(conn: PgConnection) -> list[tuple[Table, Any]]:
    have = set(
        conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    )
    tables = {t for t, _ in have}
    out: list[tuple[Table, Any]] = []
    for table in ALL_TABLES:
        if table.name not in tables:
            out.append((table, None))
            continue
        out.extend((table, c) for c in table.columns if (table.name, c.name) not in have)
    return out


def replace_partitions(
    conn: PgConnection, writes: Sequence[tuple[Table, pd.DataFrame, Mapping[str, str]]]
) -> None:
    """DELETE and COPY every write in ONE transaction (see ``warehouse.replace_partitions``).

    Each partition is locked for the transaction (``pg_advisory_xact_lock`` on its table and
    key values): writers of other partitions go on in parallel, a second writer of the same
    partition waits and then replaces the first one's rows rather than adding to them.
    """
    ensure_tables(conn)
    conn.execute("BEGIN TRANSACTION")
    try:
        for table, _, keys in sorted(writes, key=lambda w: _lock_name(w[0], w[2])):
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
                         [_lock_name(table, keys)])
        for table, frame, keys in writes:
            where = " AND ".join(f'"{k}" = ?' for k in keys) or "TRUE"
            conn.execute(f"DELETE FROM {table.name} WHERE {where}", list(keys.values()))
            copy_frame(conn, table.name, frame, {c.name: c.type for c in table.columns})
        conn.execute("COMMIT")
    except BaseException:
        with suppress(psycopg.Error, WarehouseConnectError):
            conn.execute("ROLLBACK")
        raise
    refresh_statistics(conn, writes)


# A table is analyzed after a write that adds more than this share of its estimated rows.
ANALYZE_SHARE = 0.1


def refresh_statistics(
    conn: PgConnection, writes: Sequence[tuple[Table, pd.DataFrame, Mapping[str, str]]]
) -> None:
    """``ANALYZE`` each written table that has no statistics yet or grew by more than
    :data:`ANALYZE_SHARE` of its rows.

    The next step reads the table at once (rates and the comparison right after the grades),
    before autovacuum's next round: without statistics Postgres estimates one row per CTE
    and joins the two arms of the paired SQL by nested loop, measured 31.8 s instead of
    0.21 s on 34k grade rows. A large table taking a small partition keeps its statistics.
    """
    written: dict[str, int] = {}
    for table, frame, _ in writes:
        written[table.name] = written.get(table.name, 0) + len(frame)
    for name, rows in written.items():
        found = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(?)", [name]
        ).fetchone()
        estimated = float(found[0]) if found and found[0] is not None else -1.0
        if rows and (estimated < 0 or rows > ANALYZE_SHARE * estimated):
            conn.execute(f"ANALYZE {name}")


def _lock_name(table: Table, keys: Mapping[str, str]) -> str:
    # Sorted before locking, so two transactions never take the same locks in two orders.
    return table.name + "|" + "|".join(f"{k}={v}" for k, v in sorted(keys.items()))
