"""TimescaleDB where it is installed, plain PostgreSQL where it is not.

Detection is automatic: :func:`ensure_timescale` creates the ``timescaledb`` extension when the server
offers it (``pg_available_extensions``) and it can be created (it must be in
``shared_preload_libraries``); otherwise the warehouse runs on plain PostgreSQL. The migrations then
branch on ``ops.timescale_enabled()`` (the extension is present in the database):

* time-series tables become hypertables (``ops.enable_timeseries``) with compression segmented by the
  entity column and a compression policy on old chunks; without TimescaleDB they stay plain tables;
* rollups (``market.bars_weekly``, ``market.bars_monthly``) are continuous aggregates with refresh
  policies; without TimescaleDB, tables whose buckets covering a loaded window are recomputed by
  ``ops.refresh_rollup(view, start, end)`` (migration 0017; materialized views refreshed whole before).

Queries use the same names and columns on both, so user SQL works unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

EXTENSION = "timescaledb"
# How long the loader waits for the job refreshing the continuous aggregates (ops.request_rollup_refresh).
REFRESH_TIMEOUT_SECONDS = 600.0


def timescale_available(conn: psycopg.Connection) -> bool:
    """True when the server ships the extension (it may still need preloading to be created)."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (EXTENSION,)).fetchone()
    return row is not None


def timescale_installed(conn: psycopg.Connection) -> bool:
    """True when the extension is created in the connected database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (EXTENSION,)).fetchone()
    return row is not None


def timescale_preloaded(conn: psycopg.Connection) -> bool:
    """True when the server preloads the library (required before the extension can be created)."""
    row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    libraries = [part.strip().strip('"') for part in (row[0] if row else "").split(",")]
    return any(lib == EXTENSION or lib.startswith(f"{EXTENSION}-") for lib in libraries)


def ensure_timescale(conn: psycopg.Connection) -> bool:
    """Create the extension when available and creatable; return whether it is installed.

    A server that ships TimescaleDB without preloading it (creating it then fails and, with
    TimescaleDB, even ends the session) or a role not allowed to create it is not an error: the
    warehouse falls back to plain PostgreSQL and the reason is logged.
    """
    if timescale_installed(conn):
        return True
    if not timescale_available(conn):
        return False
    if not timescale_preloaded(conn):
        log.info("TimescaleDB is installed on the server but not in shared_preload_libraries; using plain PostgreSQL")
        return False
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(EXTENSION)))
    except psycopg.Error as exc:
        log.warning(
            "TimescaleDB is available but could not be created (%s); using plain PostgreSQL",
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return False
    return True


def _bucket_bounds(conn: psycopg.Connection, unit: str, start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """[first bucket start, bucket start after ``end``): the whole buckets covering [start, end]."""
    if unit not in ("week", "month"):
        raise ValueError(f"unknown rollup bucket {unit!r} (expected week or month)")
    row = conn.execute(
        "SELECT date_trunc(%(unit)s, %(start)s::date)::date, "
        "(date_trunc(%(unit)s, %(end)s::date) + ('1 ' || %(unit)s)::interval)::date",
        {"unit": unit, "start": start, "end": end},
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def refresh_rollups(
    conn: psycopg.Connection | str, start: dt.date, end: dt.date, *, timeout: float = REFRESH_TIMEOUT_SECONDS
) -> list[str]:
    """Bring every registered rollup (``ops.rollups``) up to date for sessions in [start, end].

    On TimescaleDB: ``refresh_continuous_aggregate`` for the whole buckets covering the window
    (weeks start on Monday, months on the 1st). It is a procedure that needs the aggregates' owner
    and cannot run inside a transaction block or a function (a SECURITY DEFINER routine is always
    one), so a connection passed in must be idle (it is switched to autocommit). An owner (a
    superuser or a member of ``wealth_owner``) calls it directly; any other login (the pipeline's
    ``wealth_loader``) asks ``ops.request_rollup_refresh`` (migration 0008), which has a one-shot
    TimescaleDB job owned by ``wealth_owner`` run the same refresh, and waits up to ``timeout``
    seconds for ``ops.rollup_refresh_status`` to say it is done (the job scheduler starts it within
    a few seconds); a failed refresh raises ``RuntimeError`` with the job's error.
    Without TimescaleDB the rollups are tables (migration 0017): ``ops.refresh_rollup(view, start,
    end)`` (SECURITY DEFINER, callable by the loader) deletes and inserts the same whole buckets from
    ``market.bars_daily``, so a daily load recomputes one week and one month, not ten years (a
    warehouse before 0017 still has materialized views, refreshed whole). Returns the refreshed
    view names.
    """
    if start > end:
        raise ValueError(f"refresh_rollups: window start {start} is after end {end}")
    if isinstance(conn, str):
        with psycopg.connect(conn, autocommit=True) as own:
            return refresh_rollups(own, start, end, timeout=timeout)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("refresh_rollups needs an idle connection (no transaction in progress)")
    previous = conn.autocommit
    conn.autocommit = True
    try:
        rows = conn.execute(
            "SELECT view_name, bucket FROM ops.rollups ORDER BY view_name"
        ).fetchall()
        caggs: set[str] = set()
        if timescale_installed(conn):
            caggs = {
                f"{s}.{n}"
                for s, n in conn.execute(
                    "SELECT view_schema, view_name FROM timescaledb_information.continuous_aggregates"
                ).fetchall()
            }
        if caggs and any(view_name in caggs for view_name, _ in rows) and not _owns_rollups(conn):
            return _request_refresh(conn, start, end, [v for v, _ in rows], timeout)
        windowed = conn.execute(
            "SELECT to_regprocedure('ops.refresh_rollup(text, date, date)') IS NOT NULL"
        ).fetchone() == (True,)
        refreshed: list[str] = []
        for view_name, bucket in rows:
            if view_name in caggs:
                lo, hi = _bucket_bounds(conn, bucket, start, end)
                _refresh_aggregate(conn, view_name, lo, hi, timeout)
            elif windowed:
                conn.execute("SELECT ops.refresh_rollup(%s, %s, %s)", (view_name, start, end))
            else:
                conn.execute("SELECT ops.refresh_rollup(%s)", (view_name,))
            refreshed.append(view_name)
        return refreshed
    finally:
        conn.autocommit = previous


def _refresh_aggregate(conn: psycopg.Connection, view_name: str, lo: dt.date, hi: dt.date, timeout: float) -> None:
    """``refresh_continuous_aggregate`` of [lo, hi), one at a time per aggregate, waiting out others.

    TimescaleDB refuses a refresh whose window overlaps one in progress (``LockNotAvailable``: "due
    to a concurrent refresh"), which two runs of a chunked backfill sharing a week at their boundary
    would hit. Our own refreshes queue on a session advisory lock (the key ``ops.refresh_rollup``
    takes on plain PostgreSQL); one that still meets a refresh policy's job is tried again until
    ``timeout``.
    """
    key = f"ops.refresh_rollup:{view_name}"
    deadline = time.monotonic() + timeout
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
    try:
        delay = 0.2
        while True:
            try:
                conn.execute("CALL refresh_continuous_aggregate(%s::regclass, %s::date, %s::date)", (view_name, lo, hi))
                return
            except psycopg.errors.LockNotAvailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 1.5, 2.0)
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


def _owns_rollups(conn: psycopg.Connection) -> bool:
    """True when the connected role may refresh every registered rollup itself (owner or superuser)."""
    row = conn.execute(
        "SELECT coalesce(bool_and(pg_has_role(current_user, c.relowner, 'USAGE')), true) "
        "FROM ops.rollups r JOIN pg_class c ON c.oid = to_regclass(r.view_name)"
    ).fetchone()
    return bool(row and row[0])


def _request_refresh(conn: psycopg.Connection, start: dt.date, end: dt.date, views: list[str], timeout: float) -> list[str]:
    """The loader's route on TimescaleDB: ``ops.request_rollup_refresh`` then wait for its job."""
    if conn.execute("SELECT to_regprocedure('ops.request_rollup_refresh(date, date)')").fetchone() == (None,):
        raise PermissionError(
            f"refreshing the continuous aggregates {', '.join(views)} needs their owner (wealth_owner or a "
            "superuser), and this warehouse predates migration 0008 (ops.request_rollup_refresh): run "
            "`wealth-pipeline db upgrade`"
        )
    row = conn.execute("SELECT ops.request_rollup_refresh(%s, %s)", (start, end)).fetchone()
    assert row is not None
    request_id = row[0]
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        (status,) = conn.execute("SELECT ops.rollup_refresh_status(%s)", (request_id,)).fetchone() or ("pending",)
        if status == "done":
            break
        if status.startswith("failed"):
            raise RuntimeError(
                f"rollup refresh request {request_id} ({', '.join(views)} for {start}..{end}) {status}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"rollup refresh request {request_id} ({', '.join(views)} for {start}..{end}) not done after "
                f"{timeout:.0f} s: is the TimescaleDB job scheduler running (timescaledb.max_background_workers)?"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    row = conn.execute("SELECT refreshed FROM ops.rollup_refreshes WHERE request_id = %s", (request_id,)).fetchone()
    return list(row[0]) if row and row[0] is not None else []
