"""Processed daily bars from raw deliveries: validation, spike removal, adjustment, completeness.

Pure compute on polars frames; the ``bars`` asset (``defs/processed/bars.py``) reads the raw tier,
calls these and hands the result to the publish step.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from wealth_pipeline.core import adjustments, calendars, outliers, validation
from wealth_pipeline.core.schemas import PROCESSED_BARS_SCHEMA

# Calendar days of raw history read before the window: the close before a dividend's ex-date and
# the neighbours a spike is judged against (a suspension longer than this is documented as a gap).
LOOKBACK_DAYS = 14
SPIKE_RATIO = 20.0
JUMP_THRESHOLD = 0.4
# Columns of a raw row that identify it in a quarantine report, when the dataset has them.
TRACE_COLUMNS = ("source_file", "source_row", "symbol", "session_date", "ex_date", "base_currency")


def expected_bars(universe: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """(symbol, session_date) pairs the universe should trade: each listing on its exchange's sessions."""
    rows = []
    for exchange, symbols in universe.group_by("exchange"):
        days = calendars.sessions(str(exchange[0]), start, end)
        rows.append(pl.DataFrame({"symbol": symbols["symbol"]}).join(
            pl.DataFrame({"session_date": days}, schema={"session_date": pl.Date()}), how="cross"))
    return pl.concat(rows) if rows else pl.DataFrame(schema={"symbol": pl.Utf8(), "session_date": pl.Date()})


def trace_rejects(rejects: pl.DataFrame, numbered: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Rejects with the raw file and row they came from and the row's key: what quarantine keeps."""
    context = [c for c in TRACE_COLUMNS if c in numbered.columns]
    traced = rejects.join(numbered.select("row_number", *context), on="row_number", how="left")
    return traced.with_columns(pl.lit(dataset).alias("dataset"))


def build_bars(raw_bars: pl.DataFrame, actions: pl.DataFrame, universe: pl.DataFrame, start: dt.date, end: dt.date,
               source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validated, deduplicated, adjusted bars of the window, and the rejected rows with their reasons.

    ``raw_bars`` may carry ``source_file``/``source_row`` (see ``lakehouse.raw.read_current``); rejects
    then name the raw file and row of every problem.
    """
    listings = dict(universe.select("symbol", "exchange").iter_rows())
    numbered = raw_bars.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))
    result = validation.validate_bars(numbered, known_symbols=listings, is_session=calendars.is_session)
    good, rejects = result.good, result.rejects
    good_numbered = good.join(numbered.select("row_number", "symbol", "session_date"), on=["symbol", "session_date"], how="left")
    spikes = outliers.flag_spikes(good, SPIKE_RATIO)
    if spikes.any():
        spiked = good_numbered.filter(spikes)
        spike_rejects = spiked.select(
            pl.col("row_number"),
            pl.lit("close").alias("field"),
            pl.col("close").cast(pl.Utf8).alias("value"),
            pl.lit(f"close is at least {SPIKE_RATIO:.0f}x away from both neighbouring closes and no corporate action explains it").alias("reason"),
        )
        rejects = pl.concat([rejects, spike_rejects.cast(validation.REJECT_SCHEMA)], how="vertical_relaxed")
        good = good.filter(~spikes)
    adjusted = adjustments.apply_adjustments(good, actions)
    window = adjusted.filter(pl.col("session_date").is_between(start, end))
    window = window.join(universe.select("symbol", "exchange"), on="symbol", how="left").with_columns(pl.lit(source).alias("source"))
    traced = trace_rejects(rejects, numbered, "bars")
    in_window = traced.filter(pl.col("session_date").is_null() | pl.col("session_date").is_between(start, end))
    return window.select([pl.col(c).cast(t) for c, t in PROCESSED_BARS_SCHEMA.items()]).sort(["symbol", "session_date"]), in_window


def completeness(frame: pl.DataFrame, expected: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Every expected (symbol, session_date) has a bar; the missing ones are counted and named."""
    missing = expected.join(frame.select("symbol", "session_date"), on=["symbol", "session_date"], how="anti")
    return missing.is_empty(), {
        "expected_bars": expected.height,
        "present_bars": frame.height,
        "missing_bars": missing.height,
        "examples": [f"{s} {d}" for s, d in missing.head(10).rows()],
    }


def no_unexplained_jumps(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """No adjusted move above ``JUMP_THRESHOLD`` that no split or dividend explains."""
    jumps = outliers.unexplained_jumps(frame, JUMP_THRESHOLD)
    return jumps.is_empty(), {
        "threshold": JUMP_THRESHOLD,
        "jumps": jumps.height,
        "examples": [f"{r[0]} {r[1]}: {r[4]:+.1%}" for r in jumps.head(10).rows()],
    }


def restate_before(history: pl.DataFrame, window: pl.DataFrame, actions: pl.DataFrame, symbols: list[str],
                   start: dt.date) -> pl.DataFrame:
    """Processed bars of ``symbols`` before ``start`` re-adjusted for the actions now known.

    The window's bars come along: an action only applies once a bar on or after its ex-date exists.
    """
    adjusted_cols = [c for c in PROCESSED_BARS_SCHEMA if c.startswith("adj_") or c.endswith("_factor")]
    raw_cols = ["symbol", "session_date", "open", "high", "low", "close", "volume", "currency"]
    with_window = pl.concat([history.select(raw_cols), window.filter(pl.col("symbol").is_in(symbols)).select(raw_cols)])
    readjusted = adjustments.apply_adjustments(with_window, actions).filter(pl.col("session_date") < start)
    return (
        history.drop(adjusted_cols)
        .join(readjusted.select("symbol", "session_date", *adjusted_cols), on=["symbol", "session_date"], how="left")
        .select([pl.col(c).cast(t) for c, t in PROCESSED_BARS_SCHEMA.items()])
    )
