"""The analytics datasets' window computations: indicators and rolling factor exposures.

Both take frames that already include the warm-up history before the window and return the
window's rows only, so a partition computed alone equals the same partition inside a backfill.
Also the plain range predicates their checks run. Pure compute: the assets in
``defs/analytics/assets.py`` read the history and publish the result.

Every row carries the ``security_id`` of its input bar (issue 21: the facts join on the stable id;
``security_ids``): the id valid for the row's symbol and session, the one the processed bars took
from the symbol master. The series run per security (``by_security``): across a ticker change the
indicators and exposures continue the old ticker's history instead of warming up again, and each
row keeps the symbol it traded under.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from wealth_pipeline.core import calendars, factor_models, indicators
from wealth_pipeline.core.schemas import FACTORS, RISK_FREE_FACTOR

EXPOSURE_WINDOW = 252
EXPOSURE_MIN_OBS = 126
# Rows with this many observed sessions behind them must carry every indicator.
WARM_AFTER_SESSIONS = 200

INDICATOR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(), "session_date": pl.Date(), **dict.fromkeys(indicators.INDICATOR_COLUMNS, pl.Float64()),
    "security_id": pl.Utf8(),
}
EXPOSURE_SCHEMA: dict[str, pl.DataType] = {**factor_models.factor_exposure_schema(FACTORS), "security_id": pl.Utf8()}


def security_ids(frame: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (keyed by symbol and session_date) with the ``security_id`` of the bar of its row.

    The id comes from the input bars (the processed bars carry the symbol master's id valid that
    session), not from a second lookup. Bars without the column (frames built by hand, not read
    from the processed tier) give null, which the datasets' ``security_id_known`` check blocks.
    """
    frame = frame.drop("security_id", strict=False)
    if "security_id" not in bars.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("security_id"))
    ids = bars.select("symbol", "session_date", pl.col("security_id").cast(pl.Utf8)).unique(["symbol", "session_date"])
    return frame.join(ids, on=["symbol", "session_date"], how="left", maintain_order="left")


_SERIES_SYMBOL = "_traded_symbol"


def by_security(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``symbol`` replaced by its series key: the row's ``security_id``, else its symbol.

    The window computations group by ``symbol``; keyed this way one security's rows form one series
    across a ticker change. Frames without ``security_id`` (built by hand) stay per symbol.
    """
    if "security_id" not in frame.columns:
        return frame
    return frame.with_columns(pl.coalesce(pl.col("security_id").cast(pl.Utf8), pl.col("symbol")).alias("symbol"))


def traded_symbols(frame: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Undo ``by_security`` on a computed ``frame``: each row's symbol is its input bar's symbol."""
    if "security_id" not in bars.columns:
        return frame
    labels = by_security(bars.select("symbol", "session_date", "security_id")).select(
        "symbol", "session_date", bars.get_column("symbol").alias(_SERIES_SYMBOL)
    ).unique(["symbol", "session_date"])
    joined = frame.join(labels, on=["symbol", "session_date"], how="left", maintain_order="left")
    return joined.with_columns(pl.col(_SERIES_SYMBOL).alias("symbol")).drop(_SERIES_SYMBOL)


def calendar_days_before(day: dt.date, sessions: int) -> dt.date:
    """A date early enough that every exchange has at least ``sessions`` sessions before ``day``."""
    earliest = min(calendars.previous_sessions(exchange, day, sessions + 1)[0] for exchange in calendars.EXCHANGE_CALENDAR_CODES)
    return earliest - dt.timedelta(days=7)


# ---- indicators ------------------------------------------------------------------------------------
def indicators_for_window(history: pl.DataFrame, start: dt.date, end: dt.date,
                          anchor: pl.DataFrame | None = None) -> pl.DataFrame:
    """Indicators of the window's rows from bars that include the warm-up history.

    OBV is a running sum from a symbol's first bar, so it never forgets history: when the stored
    OBV of the session before the window is given (``anchor``: symbol, session_date, obv), the
    window continues from it, exactly as if computed from the first bar.
    """
    bars, history = history, by_security(history)
    anchor = by_security(anchor) if anchor is not None else None
    computed = indicators.compute_indicators(history)
    window = computed.filter(pl.col("session_date").is_between(start, end))
    if anchor is not None and anchor.height:
        before = computed.filter(pl.col("session_date") < start).group_by("symbol").agg(
            pl.col("session_date").max().alias("anchor_date"))
        at_anchor = computed.join(before, left_on=["symbol", "session_date"], right_on=["symbol", "anchor_date"]).select(
            "symbol", pl.col("session_date").alias("anchor_date"), pl.col("obv").alias("obv_computed"))
        offsets = at_anchor.join(anchor.rename({"session_date": "anchor_date", "obv": "obv_stored"}),
                                 on=["symbol", "anchor_date"]).select(
            "symbol", (pl.col("obv_stored") - pl.col("obv_computed")).alias("obv_offset"))
        window = window.join(offsets, on="symbol", how="left").with_columns(
            (pl.col("obv") + pl.col("obv_offset").fill_null(0.0)).alias("obv")).drop("obv_offset")
    return security_ids(traded_symbols(window, bars), bars).select(list(INDICATOR_SCHEMA)).sort(["symbol", "session_date"])


def observed_sessions(frame: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``observed_sessions``: how many bars of the symbol lie at or before each row."""
    if bars.is_empty():
        return frame.with_columns(pl.lit(0).alias("observed_sessions"))
    counted = by_security(bars).sort("session_date").with_columns(
        pl.int_range(1, pl.len() + 1).over("symbol").alias("observed_sessions")).select("symbol", "session_date", "observed_sessions")
    counted = traded_symbols(counted, bars)
    return frame.join(counted, on=["symbol", "session_date"], how="left")


def indicator_ranges(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """RSI and stochastic in [0, 100], Bollinger bands ordered, ATR and volatility >= 0."""
    problems = {
        "rsi_outside_0_100": frame.filter((pl.col("rsi_14") < 0) | (pl.col("rsi_14") > 100)).height,
        "bands_out_of_order": frame.filter((pl.col("bb_lower_20") > pl.col("bb_middle_20") + 1e-9)
                                           | (pl.col("bb_middle_20") > pl.col("bb_upper_20") + 1e-9)).height,
        "negative_atr": frame.filter(pl.col("atr_14") < 0).height,
        "stochastic_outside_0_100": frame.filter((pl.col("stoch_k") < -1e-9) | (pl.col("stoch_k") > 100 + 1e-9)).height,
        "negative_volatility": frame.filter((pl.col("realized_vol_20") < 0) | (pl.col("realized_vol_60") < 0)).height,
    }
    return not any(problems.values()), problems


def no_nan_after_warmup(observed: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Rows with at least ``WARM_AFTER_SESSIONS`` observed sessions behind them have every indicator."""
    warm = observed.filter(pl.col("observed_sessions") >= WARM_AFTER_SESSIONS)
    missing = warm.filter(pl.any_horizontal([pl.col(c).is_null() | pl.col(c).is_nan() for c in indicators.INDICATOR_COLUMNS]))
    return missing.is_empty(), {"rows_after_warmup": warm.height, "rows_with_missing_values": missing.height,
                                "examples": [f"{s} {d}" for s, d in missing.select("symbol", "session_date").head(5).rows()]}


# ---- factor exposures ------------------------------------------------------------------------------
def exposures_for_window(bars: pl.DataFrame, factor_returns: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Rolling exposures of the window's rows from bars and factor returns that include the regression window."""
    returns = (
        by_security(bars).sort(["symbol", "session_date"])
        .with_columns((pl.col("adj_close") / pl.col("adj_close").shift(1).over("symbol") - 1).alias("return"))
        .select("symbol", "session_date", "return")
    )
    wide = factor_returns.pivot(on="factor", index="session_date", values="value").sort("session_date")
    if RISK_FREE_FACTOR not in wide.columns or any(f not in wide.columns for f in FACTORS):
        return pl.DataFrame(schema=EXPOSURE_SCHEMA)
    excess = returns.join(wide.select("session_date", RISK_FREE_FACTOR), on="session_date", how="inner").select(
        "symbol", "session_date", (pl.col("return") - pl.col(RISK_FREE_FACTOR)).alias("excess_return"))
    exposures = factor_models.rolling_factor_exposures(
        excess, wide.select("session_date", *FACTORS), factor_names=FACTORS, window=EXPOSURE_WINDOW, min_obs=EXPOSURE_MIN_OBS)
    window = security_ids(traded_symbols(exposures.filter(pl.col("session_date").is_between(start, end)), bars), bars)
    return window.select([pl.col(c).cast(t) for c, t in EXPOSURE_SCHEMA.items()]).sort(["symbol", "session_date"])


def exposure_ranges(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """R² in [0, 1], residual vol >= 0, n_obs within the window, estimates only with enough observations."""
    problems = {
        "r_squared_outside_0_1": frame.filter((pl.col("r_squared") < -1e-12) | (pl.col("r_squared") > 1 + 1e-12)).height,
        "negative_residual_vol": frame.filter(pl.col("residual_vol") < 0).height,
        "n_obs_above_window": frame.filter(pl.col("n_obs") > EXPOSURE_WINDOW).height,
        "estimates_below_min_obs": frame.filter((pl.col("n_obs") < EXPOSURE_MIN_OBS) & pl.col("beta_market").is_not_null()).height,
    }
    return not any(problems.values()), problems
