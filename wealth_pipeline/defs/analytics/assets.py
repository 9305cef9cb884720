"""Analytics: technical indicators and rolling factor exposures per security and session.

Both read exactly the history they need before the partition window from the processed tier
(indicators: ``WARMUP_SESSIONS`` observed sessions of each symbol; exposures: the 252-session
regression window), so a partition computed alone equals the same partition inside a backfill.
The compute is ``core/analytics.py``; the datasets are declared in ``defs/datasets.py``.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import analytics, indicators
from wealth_pipeline.defs import datasets, publish
from wealth_pipeline.defs.charts import markdown_chart
from wealth_pipeline.defs.partitions import partition_window
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource

ANALYTICS_TAGS = {"wealth/warehouse": "analytics", "wealth/tier": "processed"}
OWNERS = ["team:quant-research"]
INDICATORS, EXPOSURES, BARS = datasets.INDICATORS, datasets.FACTOR_EXPOSURES, datasets.BARS
COMPLETE = "complete_after_warmup"
EXPOSURES_COMPLETE = "complete_once_window_filled"


@publish.dataset_asset(
    INDICATORS,
    deps=[BARS],
    group_name="analytics",
    kinds={"polars", "parquet", "postgres"},
    owners=OWNERS,
    description=(
        "Technical indicators on the point-in-time adjusted prices, equal to TA-Lib (level indicators on each "
        "session's price basis, so a later corporate action changes no stored row; as of now: "
        "`analytics.indicators_adjusted`): SMA 20/50/200, EMA 12/26, RSI 14 (Wilder), "
        "Bollinger 20/2, MACD 12/26/9, ATR 14, stochastic 14/3/3, OBV, simple and log returns, realized "
        f"volatility 20/60 (annualized). Reads {indicators.WARMUP_SESSIONS} sessions of warm-up per symbol. "
        f"Warehouse table: `{INDICATORS.table}`."
    ),
    tags=ANALYTICS_TAGS,
)
def indicators_asset(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    history_start = analytics.calendar_days_before(start, indicators.WARMUP_SESSIONS)
    bars = BARS.read(lake, history_start, end)
    window_bars = bars.filter(pl.col("session_date").is_between(start, end)) if bars.height else bars
    anchor_rows = INDICATORS.read(lake, start - dt.timedelta(days=14), start - dt.timedelta(days=1))
    anchor = anchor_rows.select("symbol", "session_date", "obv", "security_id") if anchor_rows.height else None
    # Computed on the point-in-time total-return series (adj_* = raw / G); level indicators are then
    # put on each session's own price basis (x G(t)): nothing depends on a later corporate action.
    frame = (indicators.to_session_basis(analytics.indicators_for_window(bars, start, end, anchor), bars)
             if bars.height else pl.DataFrame(schema=INDICATORS.schema))
    outcomes = INDICATORS.evaluate(frame)
    passed, details = analytics.no_nan_after_warmup(analytics.observed_sessions(frame, bars))
    details["bars_without_indicators"] = window_bars.height - frame.height
    outcomes.append(INDICATORS.outcome(COMPLETE, passed and window_bars.height == frame.height, details))
    yield from publish.publish(
        context, INDICATORS, frame, (start, end), lake=lake, warehouse=warehouse, outcomes=outcomes,
        preview_columns=["symbol", "session_date", "sma_20", "sma_200", "rsi_14", "macd", "atr_14"],
        metadata={
            "symbols_covered": frame["symbol"].n_unique() if frame.height else 0,
            "history_read_from": str(history_start),
            "rows_after_warmup": int(frame["sma_200"].is_not_null().sum()) if frame.height else 0,
            "bands_chart": _bands_chart(bars, frame, end),
        },
    )


def _bands_chart(bars: pl.DataFrame, frame: pl.DataFrame, end: dt.date) -> Any:
    """One symbol's adjusted close with its Bollinger bands over the last ~120 sessions."""
    if frame.is_empty():
        return "no rows"
    symbol = "AAPL" if "AAPL" in frame["symbol"].to_list() else frame["symbol"][0]
    history = indicators.compute_indicators(bars.filter(pl.col("symbol") == symbol)).tail(120)
    symbol_bars = bars.filter(pl.col("symbol") == symbol).sort("session_date").tail(120)
    series = [symbol_bars["adj_close"].to_list()] + [history[c].fill_null(float("nan")).to_list()
                                                     for c in ("bb_upper_20", "bb_lower_20")]
    return dg.MetadataValue.md(markdown_chart(
        series, ["adjusted close", "upper band", "lower band"], f"{symbol} to {end} with Bollinger bands (20, 2)",
        x_range=(str(symbol_bars["session_date"][0]), str(symbol_bars["session_date"][-1])),
        unit=str(symbol_bars["currency"][0])))


@publish.dataset_asset(
    EXPOSURES,
    deps=[BARS, datasets.REFERENCE["factor_returns"]],
    group_name="analytics",
    kinds={"polars", "parquet", "postgres"},
    owners=OWNERS,
    description=(
        f"Rolling {analytics.EXPOSURE_WINDOW}-session OLS of each security's excess return on the market, size, value "
        f"and momentum factors (at least {analytics.EXPOSURE_MIN_OBS} observations; missing days shrink the window): "
        "daily alpha, betas, R², annualized residual volatility, observation count. Equal to statsmodels RollingOLS. "
        f"Warehouse table: `{EXPOSURES.table}`."
    ),
    tags=ANALYTICS_TAGS,
)
def factor_exposures(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    history_start = analytics.calendar_days_before(start, analytics.EXPOSURE_WINDOW + 1)
    bars = BARS.read(lake, history_start, end)
    factor_history = datasets.REFERENCE["factor_returns"].read(lake, history_start, end)
    frame = (analytics.exposures_for_window(bars, factor_history, start, end) if bars.height and factor_history.height
             else pl.DataFrame(schema=EXPOSURES.schema))
    outcomes = EXPOSURES.evaluate(frame)
    missing = frame.filter((pl.col("n_obs") >= analytics.EXPOSURE_MIN_OBS) & pl.col("beta_market").is_null())
    outcomes.append(EXPOSURES.outcome(EXPOSURES_COMPLETE, missing.is_empty(), {"rows_missing_estimates": missing.height}))
    latest = frame.filter(pl.col("session_date") == frame["session_date"].max()) if frame.height else frame
    betas = latest["beta_market"].drop_nulls() if latest.height else pl.Series([], dtype=pl.Float64)
    yield from publish.publish(
        context, EXPOSURES, frame, (start, end), lake=lake, warehouse=warehouse, outcomes=outcomes,
        preview_columns=["symbol", "session_date", "alpha", "beta_market", "r_squared", "n_obs"],
        metadata={
            "rows_with_estimates": int(frame["beta_market"].is_not_null().sum()) if frame.height else 0,
            "history_read_from": str(history_start),
            "latest_market_beta_median": float(betas.median()) if betas.len() else float("nan"),
            "latest_market_beta_cross_section": dg.MetadataValue.json(betas.describe().to_dicts() if betas.len() else []),
            "market_beta_cross_section": dg.MetadataValue.md(markdown_chart(
                [sorted(betas.to_list())], ["market beta, securities sorted"],
                f"Cross-section of market betas on {latest['session_date'].max()}",
                x_range=("lowest beta", f"highest ({betas.len()} securities)"), unit="(beta, unitless)"))
            if latest.height else "no rows",
        },
    )
