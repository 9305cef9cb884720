"""Versioned writes of ``market.adjustment_factors`` (migration 0009): what changed, and when it was known.

The table is bitemporal: each (symbol, ex_date) has at most one current row (``superseded_at``
NULL); a window's publish compares the current rows whose ex_date lies in the window with the
window's new factor rows and, in one transaction, marks the rows that changed or vanished
superseded and inserts the new versions with ``known_at = now()``. Unchanged rows are not touched,
so a re-run writes nothing and ``market.bars_adjusted_as_of(t)`` sees what was known at ``t``.
Each row carries its symbol's stable ``security_id`` (issue 21, migration 0015) when the frame has the
column: an identity, not a value, so a changed id alone is set on the current row in place (no new
version); a retraction's row keeps the id of the row it retracts.
A vanished row (a retracted action) is superseded by a row with factor 1, so the as-of function
still sees the retraction as the knowledge of that time.

Hand-written rather than the shared loader's delete-and-COPY: the loader replaces a window (it has
no notion of versions), and the rows changed per run are a handful (the day's actions), for which
one ``executemany`` is the simple tool.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl
import psycopg

from wealth_pipeline.core.schemas import PROCESSED_ADJUSTMENT_FACTORS_SCHEMA

TABLE = "market.adjustment_factors"
VALUES = ("factor", "volume_factor", "cum_factor", "cum_volume_factor")


@dataclass(frozen=True)
class FactorWrite:
    """Rows inserted (new versions) and rows superseded by a window's publish."""

    inserted: int
    superseded: int


def publish_factors(url: str, frame: pl.DataFrame, start: dt.date, end: dt.date) -> FactorWrite:
    """Make the current factor rows with ex_date in ``[start, end]`` equal ``frame`` (versions kept)."""
    outside = frame.filter(~pl.col("ex_date").is_between(start, end))
    if outside.height:
        raise ValueError(
            f"{TABLE}: {outside.height} factor row(s) with ex_date outside the window {start}..{end} "
            f"(first: {outside['symbol'][0]} {outside['ex_date'][0]})"
        )
    if "security_id" not in frame.columns:  # frames of the compute schema (no id): null ids
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("security_id"))
    rows_in = frame.select(list(PROCESSED_ADJUSTMENT_FACTORS_SCHEMA)).iter_rows(named=True)
    new: dict[tuple[str, dt.date], tuple[float, ...]] = {}
    ids: dict[tuple[str, dt.date], str | None] = {}
    for r in rows_in:
        new[(r["symbol"], r["ex_date"])] = tuple(r[c] for c in VALUES)
        ids[(r["symbol"], r["ex_date"])] = r["security_id"]
    with psycopg.connect(url) as conn, conn.transaction():
        # One writer per table at a time: two windows' versions never interleave.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
        current: dict[tuple[str, dt.date], list[float]] = {}
        current_ids: dict[tuple[str, dt.date], str | None] = {}
        for symbol, ex_date, security_id, *values in conn.execute(
            "SELECT symbol, ex_date, security_id, factor, volume_factor, cum_factor, cum_volume_factor "
            "FROM market.adjustment_factors WHERE superseded_at IS NULL AND ex_date BETWEEN %s AND %s",
            (start, end),
        ).fetchall():
            current[(symbol, ex_date)] = values
            current_ids[(symbol, ex_date)] = security_id
        changed = [key for key, values in new.items() if key in current and tuple(current[key]) != values]
        added = [key for key in new if key not in current]
        retracted = [
            key for key, values in current.items() if key not in new and tuple(values[:2]) != (1.0, 1.0)
        ]
        superseded = changed + retracted
        if superseded:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE market.adjustment_factors SET superseded_at = now() "
                    "WHERE symbol = %s AND ex_date = %s AND superseded_at IS NULL",
                    superseded,
                )
        # unchanged values, another id (a row from before the id, or a corrected master): set in place
        relabelled = [
            (ids[key], *key) for key, values in new.items()
            if key in current and tuple(current[key]) == values and ids[key] is not None and current_ids[key] != ids[key]
        ]
        if relabelled:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE market.adjustment_factors SET security_id = %s "
                    "WHERE symbol = %s AND ex_date = %s AND superseded_at IS NULL",
                    relabelled,
                )
        rows = [(s, d, *new[(s, d)], ids[(s, d)]) for s, d in changed + added]
        # a retraction: factor 1 from now on; its cumulative factors are those of the day before in
        # its chain (the security's, under any ticker, migration 0016; the symbol's without an id)
        for symbol, ex_date in retracted:
            security_id = current_ids[(symbol, ex_date)]
            before = conn.execute(
                "SELECT cum_factor, cum_volume_factor FROM market.adjustment_factors WHERE "
                + ("security_id = %s" if security_id is not None else "symbol = %s AND security_id IS NULL")
                + " AND ex_date < %s AND superseded_at IS NULL ORDER BY ex_date DESC LIMIT 1",
                (security_id if security_id is not None else symbol, ex_date),
            ).fetchone()
            rows.append((symbol, ex_date, 1.0, 1.0, *(before or (1.0, 1.0)), current_ids[(symbol, ex_date)]))
        if rows:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO market.adjustment_factors "
                    "(symbol, ex_date, factor, volume_factor, cum_factor, cum_volume_factor, security_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
    return FactorWrite(inserted=len(rows), superseded=len(superseded))
