"""The one warehouse loader every asset uses: idempotent window loads by binary COPY.

:func:`load_window` replaces one partition window of a table in a single transaction:

1. ``pg_advisory_xact_lock`` on a hash of (table, window): concurrent loads of the same window
   serialize instead of interleaving their DELETE and COPY;
2. ``DELETE`` the rows of the window (optionally only the given entities);
3. ``COPY schema.table (cols) FROM STDIN (FORMAT BINARY)`` of the frame;
4. an audit row in ``ops.loads`` (asset, partition, table, window, rows, checksum, run id).

Re-running a partition therefore leaves identical content. Frame columns are matched to table
columns by name; table columns missing from the frame get their defaults.

The binary COPY stream is built column-wise with numpy, without a Python loop over rows: rows
are grouped by their "shape" (the byte length of each text value and which values are null), and
each group is one packed numpy record array whose bytes are exactly the COPY rows. Column types with
no vectorized encoder (numeric, json, uuid, ...) fall back to psycopg's binary dumpers per value.

The checksum is deterministic and independent of row and column order: sha256 over the columns in
table order, each hashed as the PostgreSQL binary representation of its values (lengths, then
payloads) with the rows sorted by the table's primary key (all loaded columns when it has none).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import pq, sql
from psycopg.copy import QueuedLibpqWriter

from wealth_pipeline.warehouse.timescale import refresh_rollups

__all__ = ["LoadError", "LoadResult", "load_window", "refresh_rollups", "replace_table", "upsert"]

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
CHUNK_ROWS = 131_072
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000

# type oid -> (polars dtype to cast to, big-endian numpy dtype) for fixed-width binary encodings.
_FIXED: dict[int, tuple[pl.DataType, str]] = {
    16: (pl.Boolean(), "u1"),
    20: (pl.Int64(), ">i8"),
    21: (pl.Int16(), ">i2"),
    23: (pl.Int32(), ">i4"),
    700: (pl.Float32(), ">f4"),
    701: (pl.Float64(), ">f8"),
    1082: (pl.Date(), ">i4"),
    1114: (pl.Datetime("us"), ">i8"),
    1184: (pl.Datetime("us", "UTC"), ">i8"),
}
_TEXT_OIDS = {19, 25, 1042, 1043}  # name, text, bpchar, varchar: binary format is the UTF-8 bytes


class LoadError(ValueError):
    """A load was refused or failed; the message names the table, window and column."""

    def __init__(self, message: str, *, table: str, window: str | None = None, column: str | None = None):
        where = table + (f" window {window}" if window else "") + (f" column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.table = table
        self.window = window
        self.column = column


@dataclass(frozen=True)
class LoadResult:
    """What a load wrote: the number of rows and the content checksum (also in ``ops.loads``)."""

    rows: int
    checksum: str


# ---- catalog ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    type_oid: int
    type_name: str
    not_null: bool
    has_default: bool


@dataclass(frozen=True)
class _Table:
    schema: str
    name: str
    columns: tuple[_Column, ...]
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def column(self, name: str) -> _Column | None:
        return next((c for c in self.columns if c.name == name), None)


def _table(conn: psycopg.Connection, table: str) -> _Table:
    if not isinstance(table, str) or "." not in table:
        raise LoadError("table must be given as 'schema.table'", table=str(table))
    row = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (table,),
    ).fetchone()
    if row is None:
        raise LoadError("no such table (or no privilege to see it)", table=table)
    oid, schema, name, kind = row
    if kind not in ("r", "p"):
        raise LoadError(f"is not a table (relkind {kind!r})", table=table)
    columns = tuple(
        _Column(*r)
        for r in conn.execute(
            "SELECT a.attname, a.atttypid::int, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' "
            "FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (oid,),
        )
    )
    pk = tuple(
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord",
            (oid,),
        )
    )
    return _Table(schema, name, columns, pk)


# ---- column encoding -------------------------------------------------------------------------


@dataclass
class _Encoded:
    """One column in PostgreSQL binary form: fixed-width big-endian values or variable-length bytes."""

    values: np.ndarray | None = None  # fixed: native-order values (converted to big endian on copy)
    be_dtype: str = ""
    offsets: np.ndarray | None = None  # var: int64 offsets (n + 1) into data
    data: np.ndarray | None = None  # var: uint8
    null: np.ndarray | None = None  # bool mask, None when no nulls

    @property
    def is_var(self) -> bool:
        return self.offsets is not None


def _cast(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    if series.dtype == dtype:
        return series
    if isinstance(dtype, pl.Datetime) and isinstance(series.dtype, pl.Datetime):
        tz_target = dtype.time_zone
        s = series
        if tz_target is not None:  # timestamptz: naive values are taken as UTC
            s = s.dt.replace_time_zone("UTC") if s.dtype.time_zone is None else s.dt.convert_time_zone("UTC")
        elif s.dtype.time_zone is not None:  # timestamp: aware values as UTC wall time
            s = s.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return s.dt.cast_time_unit("us")
    return series.cast(dtype, strict=True)


def _var_from_arrow(arr: pa.Array | pa.ChunkedArray, null: np.ndarray | None) -> _Encoded:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if null is not None:
        arr = pc.fill_null(arr, pa.scalar(b"" if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type) else ""))
    target = pa.large_binary() if (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)) else pa.large_string()
    if arr.type != target:
        arr = arr.cast(target)
    n = len(arr)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arr.offset : arr.offset + n + 1] if n else np.zeros(1, np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return _Encoded(offsets=offsets, data=data, null=null)


def _fallback(series: pl.Series, column: _Column) -> _Encoded:
    """Per-value psycopg binary dumpers for types without a vectorized encoder."""
    cls = psycopg.adapters.get_dumper_by_oid(column.type_oid, pq.Format.BINARY)
    values = series.to_list()
    py_type = next((type(v) for v in values if v is not None), str)
    if column.type_oid == 1700 and py_type is float:  # numeric from floats: exact decimal of repr
        values = [None if v is None else Decimal(repr(v)) for v in values]
        py_type = Decimal
    dumper = cls(py_type, None)
    dumped = [None if v is None else bytes(dumper.dump(v)) for v in values]
    null = np.fromiter((v is None for v in dumped), dtype=bool, count=len(dumped))
    arr = pa.array([b"" if v is None else v for v in dumped], type=pa.large_binary())
    return _var_from_arrow(arr, null if null.any() else None)


def _encode(series: pl.Series, column: _Column) -> _Encoded:
    null = series.is_null().to_numpy() if series.null_count() else None
    if column.type_oid in _TEXT_OIDS:
        s = series if series.dtype == pl.String else series.cast(pl.String, strict=True)
        return _var_from_arrow(s.to_arrow(), null)
    if column.type_oid in _FIXED:
        dtype, be = _FIXED[column.type_oid]
        s = _cast(series, dtype)
        s = s.to_physical() if null is None else s.to_physical().fill_null(0)
        values = s.to_numpy()
        if column.type_oid == 16:
            values = values.astype(np.uint8)
        elif column.type_oid == 1082:
            values = values.astype(np.int32) - np.int32(_PG_EPOCH_DAYS)
        elif column.type_oid in (1114, 1184):
            values = values.astype(np.int64) - np.int64(_PG_EPOCH_US)
        return _Encoded(values=values, be_dtype=be, null=null)
    return _fallback(series, column)


def _lengths(col: _Encoded, lo: int, hi: int) -> np.ndarray:
    """Per-row field lengths (-1 for NULL) of rows [lo, hi)."""
    if col.is_var:
        assert col.offsets is not None
        lengths = np.diff(col.offsets[lo : hi + 1]).astype(np.int32)
    else:
        lengths = np.full(hi - lo, np.dtype(col.be_dtype).itemsize, dtype=np.int32)
    if col.null is not None:
        lengths = np.where(col.null[lo:hi], np.int32(-1), lengths)
    return lengths


def _encode_rows(cols: Sequence[_Encoded], lo: int, hi: int) -> Iterator[memoryview]:
    """COPY BINARY tuples for rows [lo, hi), as packed record arrays, one per row shape."""
    n = hi - lo
    if n == 0:
        return
    lengths = [_lengths(c, lo, hi) for c in cols]
    varying = [i for i, c in enumerate(cols) if c.is_var or c.null is not None]
    if varying:
        keys = np.stack([lengths[i] for i in varying])
        order = np.lexsort(keys[::-1])
        sorted_keys = keys[:, order]
        change = np.flatnonzero(np.any(sorted_keys[:, 1:] != sorted_keys[:, :-1], axis=0)) + 1
        bounds = np.concatenate(([0], change, [n]))
    else:
        order = np.arange(n)
        bounds = np.array([0, n])
    nfields = len(cols)
    for g in range(len(bounds) - 1):
        rows = order[bounds[g] : bounds[g + 1]]
        first = rows[0]
        fields: list[tuple[str, Any]] = [("n", ">i2")]
        plan: list[tuple[int, int]] = []  # (column index, payload length or -1)
        for i, col in enumerate(cols):
            length = int(lengths[i][first])
            fields.append((f"l{i}", ">i4"))
            if length > 0:
                fields.append((f"v{i}", f"S{length}" if col.is_var else col.be_dtype))
            plan.append((i, length))
        rec = np.empty(len(rows), dtype=np.dtype(fields))
        rec["n"] = nfields
        absolute = rows + lo
        for i, length in plan:
            rec[f"l{i}"] = length
            if length <= 0:
                continue
            col = cols[i]
            if col.is_var:
                assert col.offsets is not None and col.data is not None
                starts = col.offsets[absolute]
                gathered = col.data[starts[:, None] + np.arange(length)]
                rec[f"v{i}"] = gathered.view(f"S{length}").reshape(len(rows))
            else:
                assert col.values is not None
                rec[f"v{i}"] = col.values[absolute]
        yield memoryview(rec.view(np.uint8))


def _checksum(table: _Table, names: Sequence[str], cols: Sequence[_Encoded], n: int) -> str:
    """sha256 over columns in table order: name, type, then lengths and payload bytes of the rows."""
    outer = hashlib.sha256(f"rows:{n}\n".encode())
    for name, col in zip(names, cols, strict=True):  # names are in table column order
        column = table.column(name)
        assert column is not None
        outer.update(f"{name}\x00{column.type_name}\x00".encode())
        lengths = _lengths(col, 0, n)
        outer.update(hashlib.sha256(lengths.astype(">i4").tobytes()).digest())
        payload = hashlib.sha256()
        if col.is_var:
            assert col.offsets is not None and col.data is not None
            payload.update(col.data[col.offsets[0] : col.offsets[n]].tobytes())
        else:
            assert col.values is not None
            values = col.values if col.null is None else col.values[~col.null]
            payload.update(values.astype(col.be_dtype).tobytes())
        outer.update(payload.digest())
    return outer.hexdigest()


# ---- preparing a frame -----------------------------------------------------------------------


@dataclass
class _Prepared:
    names: list[str]
    cols: list[_Encoded]
    rows: int
    pending_checksum: Future[str]

    @property
    def checksum(self) -> str:
        """Computed in a background thread (hashlib releases the GIL) while the COPY runs."""
        return self.pending_checksum.result()


def _sorted_by(frame: pl.DataFrame, key: Sequence[str]) -> bool:
    """True when the rows are already in ascending ``key`` order (then sorting can be skipped)."""
    if frame.height < 2:
        return True
    if any(frame[k].null_count() for k in key):
        return False
    try:
        ordered = pl.lit(True)
        for name in reversed(key):
            col, nxt = pl.col(name), pl.col(name).shift(-1)
            ordered = (nxt > col) | ((nxt == col) & ordered)
        result = frame.select(ordered.head(frame.height - 1).all())
        return bool(result.item())
    except pl.exceptions.PolarsError:
        return False


def _prepare(table: _Table, frame: pl.DataFrame, window: str | None) -> _Prepared:
    if not isinstance(frame, pl.DataFrame):
        raise LoadError(f"expected a polars DataFrame, got {type(frame).__name__}", table=table.qualified, window=window)
    unknown = [c for c in frame.columns if table.column(c) is None]
    if unknown:
        raise LoadError(
            f"frame columns {unknown} are not columns of the table ({[c.name for c in table.columns]})",
            table=table.qualified, window=window, column=unknown[0],
        )
    missing = [c.name for c in table.columns if c.not_null and not c.has_default and c.name not in frame.columns]
    if missing:
        raise LoadError(f"NOT NULL columns {missing} are missing from the frame",
                        table=table.qualified, window=window, column=missing[0])
    for name in frame.columns:
        column = table.column(name)
        assert column is not None
        nulls = frame[name].null_count()
        if column.not_null and nulls:
            first = int(frame[name].is_null().arg_true()[0])
            raise LoadError(f"{nulls} NULL value(s) in a NOT NULL column (first at frame row {first})",
                            table=table.qualified, window=window, column=name)
    names = [c.name for c in table.columns if c.name in frame.columns]
    # Canonical row order for the checksum: the primary key when the frame carries all of it.
    key = list(table.primary_key) if table.primary_key and set(table.primary_key) <= set(names) else names
    ordered = frame.select(names)
    if ordered.height > 1 and key and not _sorted_by(ordered, key):
        with contextlib.suppress(pl.exceptions.PolarsError):  # unsortable dtypes: keep the given order
            ordered = ordered.sort(key, nulls_last=True, maintain_order=True)
    cols: list[_Encoded] = []
    for name in names:
        column = table.column(name)
        assert column is not None
        try:
            cols.append(_encode(ordered[name], column))
        except (pl.exceptions.PolarsError, TypeError, ValueError, psycopg.Error) as exc:
            raise LoadError(f"cannot convert {ordered[name].dtype} to {column.type_name}: {exc}",
                            table=table.qualified, window=window, column=name) from exc
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wealth-load-checksum")
    try:
        pending = executor.submit(_checksum, table, names, cols, ordered.height)
    finally:
        executor.shutdown(wait=False)
    return _Prepared(names, cols, ordered.height, pending)


def _copy(conn: psycopg.Connection, target: sql.Composable, prepared: _Prepared) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        target, sql.SQL(", ").join(sql.Identifier(n) for n in prepared.names)
    )
    with conn.cursor() as cur, cur.copy(statement, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(COPY_SIGNATURE)
        for lo in range(0, prepared.rows, CHUNK_ROWS):
            for block in _encode_rows(prepared.cols, lo, min(lo + CHUNK_ROWS, prepared.rows)):
                copy.write(block)
        copy.write(COPY_TRAILER)


_STAGE = sql.Identifier("_wealth_load_stage")


def _stage(conn: psycopg.Connection, table: _Table, prepared: _Prepared) -> None:
    """COPY into a temporary table shaped like ``table`` (dropped at commit)."""
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(_STAGE, table.ident))
    _copy(conn, _STAGE, prepared)


def _insert_rows(conn: psycopg.Connection, table: _Table, prepared: _Prepared) -> None:
    """Binary COPY into the table; through a staging table when row-level security applies.

    PostgreSQL refuses ``COPY FROM`` into a table whose row-level security is active for the
    current role (the loader login, or the owner under FORCE ROW LEVEL SECURITY); the rows then go
    through a temporary table and one ``INSERT ... SELECT``, which the policies check.
    """
    active = conn.execute("SELECT row_security_active(%s::regclass)", (table.qualified,)).fetchone()
    if not (active and active[0]):
        _copy(conn, table.ident, prepared)
        return
    _stage(conn, table, prepared)
    cols = sql.SQL(", ").join(sql.Identifier(n) for n in prepared.names)
    conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(table.ident, cols, cols, _STAGE))


def _audit(conn: psycopg.Connection, *, asset: str, partition_key: str | None, table: _Table,
           window: tuple[dt.date, dt.date] | None, prepared: _Prepared, run_id: str | None) -> None:
    conn.execute(
        "INSERT INTO ops.loads (asset, partition_key, table_name, window_start, window_end, rows, checksum, run_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (asset, partition_key, table.qualified, window[0] if window else None, window[1] if window else None,
         prepared.rows, prepared.checksum, run_id),
    )


def _database_error(exc: psycopg.Error, table: str, window: str | None) -> LoadError:
    diag = exc.diag
    column = diag.column_name
    context = diag.context
    detail = str(exc).strip()
    if context and context not in detail:
        detail += f" ({context.strip()})"
    if column is None and context and "column " in context:
        column = context.rsplit("column ", 1)[1].split(":", 1)[0].strip() or None
    return LoadError(f"load rolled back: {detail}", table=table, window=window, column=column)


def _as_date(value: Any, what: str, table: str) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise LoadError(f"{what} must be a datetime.date, got {value!r}", table=table)
    return value


# ---- public API ------------------------------------------------------------------------------


def load_window(
    conninfo: str,
    table: str,
    frame: pl.DataFrame,
    *,
    time_column: str,
    window_start: dt.date,
    window_end: dt.date,
    asset: str,
    partition_key: str,
    run_id: str,
    entity_filter: tuple[str, list[str]] | None = None,
) -> LoadResult:
    """Replace the rows of ``table`` with ``time_column`` in [window_start, window_end] by ``frame``.

    One transaction: advisory lock on (table, window), DELETE of the window (only rows whose
    ``entity_filter[0]`` is in ``entity_filter[1]`` when given), binary COPY of the frame, audit row
    in ``ops.loads``. Every frame row must fall inside the window (and inside the entity filter),
    otherwise a re-run would not replace it. Raises :class:`LoadError` naming the table, window and
    column on bad input or when the database rejects the rows (nothing is changed then).
    """
    window_start = _as_date(window_start, "window_start", table)
    window_end = _as_date(window_end, "window_end", table)
    window = f"{window_start}..{window_end}"
    if window_start > window_end:
        raise LoadError("window_start is after window_end", table=table, window=window)
    with psycopg.connect(conninfo) as conn:
        info = _table(conn, table)
        conn.rollback()
        tcol = info.column(time_column)
        if tcol is None:
            raise LoadError("time column is not a column of the table", table=info.qualified, window=window, column=time_column)
        if time_column not in frame.columns:
            raise LoadError("time column is missing from the frame", table=info.qualified, window=window, column=time_column)
        times = frame[time_column]
        if times.null_count():
            raise LoadError("NULL values in the time column", table=info.qualified, window=window, column=time_column)
        if frame.height:
            try:
                as_dates = times.cast(pl.Date, strict=True) if times.dtype != pl.Date else times
            except pl.exceptions.PolarsError as exc:
                raise LoadError(f"time column of dtype {times.dtype} is not a date", table=info.qualified,
                                window=window, column=time_column) from exc
            outside = as_dates.filter((as_dates < window_start) | (as_dates > window_end))
            if len(outside):
                raise LoadError(f"{len(outside)} row(s) outside the window (e.g. {outside[0]})",
                                table=info.qualified, window=window, column=time_column)
        entity_sql = sql.SQL("")
        params: list[Any] = [window_start, window_end + dt.timedelta(days=1)]
        if entity_filter is not None:
            entity, values = entity_filter
            if info.column(entity) is None:
                raise LoadError("entity filter column is not a column of the table", table=info.qualified,
                                window=window, column=entity)
            values = list(values)
            if entity in frame.columns and frame.height:
                stray = frame.filter(~pl.col(entity).is_in(values))[entity]
                if len(stray):
                    raise LoadError(f"{len(stray)} row(s) outside the entity filter (e.g. {stray[0]!r})",
                                    table=info.qualified, window=window, column=entity)
            elif frame.height:
                raise LoadError("entity filter column is missing from the frame", table=info.qualified,
                                window=window, column=entity)
            entity_sql = sql.SQL(" AND {} = ANY(%s)").format(sql.Identifier(entity))
            params.append(values)
        prepared = _prepare(info, frame, window)
        delete = sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(
            info.ident, sql.Identifier(time_column), sql.Identifier(time_column)
        ) + entity_sql
        lock_key = f"{info.qualified}|{window_start.isoformat()}|{window_end.isoformat()}"
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key,))
                conn.execute(delete, params)
                _insert_rows(conn, info, prepared)
                _audit(conn, asset=asset, partition_key=partition_key, table=info,
                       window=(window_start, window_end), prepared=prepared, run_id=run_id)
        except psycopg.Error as exc:
            raise _database_error(exc, info.qualified, window) from exc
    return LoadResult(prepared.rows, prepared.checksum)


def replace_table(
    conninfo: str,
    table: str,
    frame: pl.DataFrame,
    asset: str,
    run_id: str,
    *,
    partition_key: str | None = None,
) -> LoadResult:
    """Replace the whole content of a small table (e.g. ``ref.securities``) in one transaction.

    DELETE (not TRUNCATE, so readers are never blocked) and binary COPY, under an advisory lock on
    the table, with an audit row whose window is NULL. Rows referenced by foreign keys cannot be
    deleted: use :func:`upsert` for such tables.
    """
    with psycopg.connect(conninfo) as conn:
        info = _table(conn, table)
        conn.rollback()
        prepared = _prepare(info, frame, None)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{info.qualified}|*",))
                conn.execute(sql.SQL("DELETE FROM {}").format(info.ident))
                _insert_rows(conn, info, prepared)
                _audit(conn, asset=asset, partition_key=partition_key, table=info, window=None,
                       prepared=prepared, run_id=run_id)
        except psycopg.Error as exc:
            raise _database_error(exc, info.qualified, None) from exc
    return LoadResult(prepared.rows, prepared.checksum)


def upsert(
    conninfo: str,
    table: str,
    frame: pl.DataFrame,
    *,
    asset: str,
    run_id: str,
    key_columns: Sequence[str] | None = None,
    partition_key: str | None = None,
) -> LoadResult:
    """Insert or update rows by key (default: the primary key); other rows are left alone.

    Binary COPY into a temporary table, then ``INSERT ... ON CONFLICT (key) DO UPDATE`` of the
    frame's columns, with an audit row whose window is NULL.
    """
    with psycopg.connect(conninfo) as conn:
        info = _table(conn, table)
        conn.rollback()
        keys = tuple(key_columns) if key_columns else info.primary_key
        if not keys:
            raise LoadError("upsert needs key_columns (the table has no primary key)", table=info.qualified)
        absent = [k for k in keys if k not in frame.columns]
        if absent:
            raise LoadError("key columns are missing from the frame", table=info.qualified, column=absent[0])
        if frame.height and frame.select(keys).is_duplicated().any():
            raise LoadError(f"duplicate keys {list(keys)} in the frame", table=info.qualified, column=keys[0])
        prepared = _prepare(info, frame, None)
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in prepared.names)
        updates = [n for n in prepared.names if n not in keys]
        action = (
            sql.SQL("DO UPDATE SET ")
            + sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in updates)
            if updates
            else sql.SQL("DO NOTHING")
        )
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{info.qualified}|*",))
                _stage(conn, info, prepared)
                conn.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) ").format(
                        info.ident, cols, cols, _STAGE, sql.SQL(", ").join(sql.Identifier(k) for k in keys)
                    )
                    + action
                )
                _audit(conn, asset=asset, partition_key=partition_key, table=info, window=None,
                       prepared=prepared, run_id=run_id)
        except psycopg.Error as exc:
            raise _database_error(exc, info.qualified, None) from exc
    return LoadResult(prepared.rows, prepared.checksum)
