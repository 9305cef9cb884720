"""Indicators and exposures run per security: a ticker change continues the old ticker's series.

Oracle: the same computation on the whole history under one made-up symbol (no ticker change), and
TA-Lib on the concatenated closes; the rows keep the symbol each bar traded under.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import talib

from wealth_pipeline.core import analytics
from wealth_pipeline_tests.unit.test_indicators import _bars

CHANGE = 230  # FB's last row index; META trades from the next session on


def _history() -> pl.DataFrame:
    """One security (FB until row 229, META after) and an unrelated one, with security ids."""
    issuer = _bars("FB", 300, seed=7).with_columns(
        pl.when(pl.int_range(pl.len()) < CHANGE).then(pl.lit("FB")).otherwise(pl.lit("META")).alias("symbol"),
        pl.lit("S-META").alias("security_id"),
    )
    other = _bars("IBM", 300, seed=8).with_columns(pl.lit("S-IBM").alias("security_id"))
    return pl.concat([issuer, other])


def test_indicators_continue_across_a_ticker_change() -> None:
    history = _history()
    days = history.filter(pl.col("symbol") == "META").get_column("session_date")
    start, end = days.min(), days.max()
    window = analytics.indicators_for_window(history, start, end)
    meta = window.filter(pl.col("security_id") == "S-META").sort("session_date")
    # every row of the window keeps its traded symbol and its id
    assert set(meta.get_column("symbol")) == {"META"} and meta.height == days.len()
    # oracle: the whole history under one symbol
    unchanged = history.with_columns(
        pl.when(pl.col("security_id") == "S-META").then(pl.lit("X")).otherwise(pl.col("symbol")).alias("symbol"))
    expected = analytics.indicators_for_window(unchanged, start, end).filter(pl.col("symbol") == "X").sort("session_date")
    for column in ("sma_200", "rsi_14", "return_1d", "obv", "realized_vol_60"):
        np.testing.assert_allclose(meta[column].to_numpy(), expected[column].to_numpy(), rtol=1e-12, equal_nan=True)
    # and TA-Lib on the concatenated closes: SMA-200 is defined on META's first session (no new warm-up)
    closes = history.filter(pl.col("security_id") == "S-META").sort("session_date").get_column("adj_close").to_numpy()
    np.testing.assert_allclose(meta["sma_200"].to_numpy(), talib.SMA(closes, 200)[CHANGE:], rtol=1e-9)
    assert meta["return_1d"][0] == closes[CHANGE] / closes[CHANGE - 1] - 1
    ibm = window.filter(pl.col("symbol") == "IBM")
    assert ibm.height == days.len() and set(ibm.get_column("security_id")) == {"S-IBM"}


def test_observed_sessions_count_the_security_not_the_ticker() -> None:
    history = _history()
    frame = history.filter(pl.col("symbol") == "META").select("symbol", "session_date")
    counted = analytics.observed_sessions(frame, history).sort("session_date")
    assert counted.get_column("observed_sessions").to_list() == list(range(CHANGE + 1, 301))


def test_frames_without_ids_stay_per_symbol() -> None:
    history = _history().drop("security_id")
    days = history.filter(pl.col("symbol") == "META").get_column("session_date")
    window = analytics.indicators_for_window(history, days.min(), days.max())
    meta = window.filter(pl.col("symbol") == "META").sort("session_date")
    assert meta["sma_200"].null_count() == meta.height  # only 70 sessions under META: still warming up
    assert meta["return_1d"][0] is None
