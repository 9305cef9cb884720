"""TimescaleDB where it is installed, plain PostgreSQL where it is not.

Detection is automatic: :func:`ensure_timescale` creates the ``timescaledb`` extension when the server
offers it (``pg_available_extensions``) and it can be created (it must be in
``shared_preload_libraries``); otherwise the warehouse runs on plain PostgreSQL. The migrations then
branch on ``ops.timescale_enabled()`` (the extension is present in the database):

* time-series tables become hypertables (``ops.enable_timeseries``) with compression segmented by the
  entity column and a compression policy on old chunks; without TimescaleDB they stay plain tables;
* rollups (``market.bars_weekly``, ``market.bars_monthly``) are continuous aggregates with refresh
  policies; without TimescaleDB, materialized views with a unique index refreshed concurrently.

Queries use the same names and columns on both, so user SQL works unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

EXTENSION = "timescaledb"


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


def refresh_rollups(conn: psycopg.Connection | str, start: dt.date, end: dt.date) -> list[str]:
    """Bring every registered rollup (``ops.rollups``) up to date for sessions in [start, end].

    On TimescaleDB: ``CALL refresh_continuous_aggregate`` for the whole buckets covering the window
    (weeks start on Monday, months on the 1st). This is a procedure that cannot run inside a
    transaction, so a connection passed in must be idle (it is switched to autocommit for the call);
    it needs the owner of the aggregates (a superuser or a member of ``wealth_owner``): a plain loader
    login relies on the refresh policies and on real-time aggregation instead.
    Without TimescaleDB: ``ops.refresh_rollup(view)`` (SECURITY DEFINER, callable by the loader) runs
    ``REFRESH MATERIALIZED VIEW CONCURRENTLY``, which recomputes the whole view (the window is only
    used to validate the call). Returns the refreshed view names.
    """
    if start > end:
        raise ValueError(f"refresh_rollups: window start {start} is after end {end}")
    if isinstance(conn, str):
        with psycopg.connect(conn, autocommit=True) as own:
            return refresh_rollups(own, start, end)
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
        refreshed: list[str] = []
        for view_name, bucket in rows:
            if view_name in caggs:
                lo, hi = _bucket_bounds(conn, bucket, start, end)
                try:
                    conn.execute(
                        "CALL refresh_continuous_aggregate(%s::regclass, %s::date, %s::date)",
                        (view_name, lo, hi),
                    )
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise PermissionError(
                        f"refreshing continuous aggregate {view_name} for {lo}..{hi} needs its owner "
                        f"(wealth_owner or a superuser): {exc}"
                    ) from exc
            else:
                conn.execute("SELECT ops.refresh_rollup(%s)", (view_name,))
            refreshed.append(view_name)
        return refreshed
    finally:
        conn.autocommit = previous
