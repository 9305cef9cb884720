"""Analytics: technical indicators and rolling factor exposures per security and session.

Both read exactly the history they need before the partition window from the processed tier
(indicators: ``WARMUP_SESSIONS`` observed sessions of each symbol; exposures: the 252-session
regression window), so a partition computed alone equals the same partition inside a backfill.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import calendars, factor_models, indicators
from wealth_pipeline.defs import quality
from wealth_pipeline.defs.charts import markdown_chart
from wealth_pipeline.defs.partitions import partition_window, single_run, trading_sessions
from wealth_pipeline.defs.processed.common import WAREHOUSE_RETRY, preview, reconcile, write_window
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.providers.base import FACTORS, RISK_FREE_FACTOR

ANALYTICS_TAGS = {"wealth/warehouse": "analytics", "wealth/tier": "processed"}
RECONCILE = "warehouse_reconciles"
EXPOSURE_WINDOW = 252
EXPOSURE_MIN_OBS = 126

INDICATOR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(), "session_date": pl.Date(), **dict.fromkeys(indicators.INDICATOR_COLUMNS, pl.Float64())
}
EXPOSURE_SCHEMA = factor_models.factor_exposure_schema(FACTORS)


def _calendar_days_before(day: dt.date, sessions: int) -> dt.date:
    """A date early enough that every exchange has at least ``sessions`` sessions before ``day``."""
    earliest = min(calendars.previous_sessions(exchange, day, sessions + 1)[0] for exchange in calendars.EXCHANGE_CALENDAR_CODES)
    return earliest - dt.timedelta(days=7)


def _history(lake: Lakehouse, dataset: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    return lake.read_partitions("processed", dataset, start, end)


# ---- indicators ------------------------------------------------------------------------------------
def indicators_for_window(history: pl.DataFrame, start: dt.date, end: dt.date,
                          anchor: pl.DataFrame | None = None) -> pl.DataFrame:
    """Indicators of the window's rows from bars that include the warm-up history.

    OBV is a running sum from a symbol's first bar, so it never forgets history: when the stored
    OBV of the session before the window is given (``anchor``: symbol, session_date, obv), the
    window continues from it, exactly as if computed from the first bar.
    """
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
    return window.select(list(INDICATOR_SCHEMA)).sort(["symbol", "session_date"])


def _indicator_ranges(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    problems = {
        "rsi_outside_0_100": frame.filter((pl.col("rsi_14") < 0) | (pl.col("rsi_14") > 100)).height,
        "bands_out_of_order": frame.filter((pl.col("bb_lower_20") > pl.col("bb_middle_20") + 1e-9)
                                           | (pl.col("bb_middle_20") > pl.col("bb_upper_20") + 1e-9)).height,
        "negative_atr": frame.filter(pl.col("atr_14") < 0).height,
        "stochastic_outside_0_100": frame.filter((pl.col("stoch_k") < -1e-9) | (pl.col("stoch_k") > 100 + 1e-9)).height,
        "negative_volatility": frame.filter((pl.col("realized_vol_20") < 0) | (pl.col("realized_vol_60") < 0)).height,
    }
    return not any(problems.values()), problems


def _no_nan_after_warmup(observed: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Rows with at least 200 observed sessions behind them have every indicator."""
    warm = observed.filter(pl.col("observed_sessions") >= 200)
    missing = warm.filter(pl.any_horizontal([pl.col(c).is_null() | pl.col(c).is_nan() for c in indicators.INDICATOR_COLUMNS]))
    return missing.is_empty(), {"rows_after_warmup": warm.height, "rows_with_missing_values": missing.height,
                                "examples": [f"{s} {d}" for s, d in missing.select("symbol", "session_date").head(5).rows()]}


INDICATOR_CHECKS = [
    quality.Check("schema", "indicators has the documented columns and types.", predicate=quality.has_columns(INDICATOR_SCHEMA)),
    quality.Check("keys_unique", "One row per symbol and session.", predicate=quality.unique_keys(["symbol", "session_date"])),
    quality.Check("values_in_range", "RSI and stochastic in [0, 100], Bollinger bands ordered, ATR and volatility >= 0.",
                  predicate=_indicator_ranges),
]
COMPLETE = "complete_after_warmup"


@dg.asset(
    name="indicators",
    group_name="analytics",
    deps=["bars"],
    partitions_def=trading_sessions,
    backfill_policy=single_run,
    kinds={"polars", "parquet", "postgres"},
    owners=["team:quant-research"],
    description=(
        "Technical indicators on adjusted prices, equal to TA-Lib: SMA 20/50/200, EMA 12/26, RSI 14 (Wilder), "
        "Bollinger 20/2, MACD 12/26/9, ATR 14, stochastic 14/3/3, OBV, simple and log returns, realized "
        f"volatility 20/60 (annualized). Reads {indicators.WARMUP_SESSIONS} sessions of warm-up per symbol. "
        "Warehouse table: `analytics.indicators_daily`."
    ),
    check_specs=[c.spec("indicators") for c in INDICATOR_CHECKS] + [
        dg.AssetCheckSpec(COMPLETE, asset="indicators", description="Every bar has an indicator row, with no missing value once 200 sessions are observed."),
        dg.AssetCheckSpec(RECONCILE, asset="indicators", description="analytics.indicators_daily holds exactly the processed rows of the window."),
    ],
    retry_policy=WAREHOUSE_RETRY,
    tags=ANALYTICS_TAGS,
)
def indicators_asset(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    history_start = _calendar_days_before(start, indicators.WARMUP_SESSIONS)
    bars = _history(lake, "bars", history_start, end)
    window_bars = bars.filter(pl.col("session_date").is_between(start, end)) if bars.height else bars
    anchor_rows = _history(lake, "indicators", start - dt.timedelta(days=14), start - dt.timedelta(days=1))
    anchor = anchor_rows.select("symbol", "session_date", "obv") if anchor_rows.height else None
    frame = (indicators_for_window(bars, start, end, anchor) if bars.height
             else pl.DataFrame(schema=INDICATOR_SCHEMA))
    observed = frame.join(
        bars.sort("session_date").with_columns(pl.int_range(1, pl.len() + 1).over("symbol").alias("observed_sessions"))
        .select("symbol", "session_date", "observed_sessions"), on=["symbol", "session_date"], how="left") if bars.height else frame.with_columns(pl.lit(0).alias("observed_sessions"))
    outcomes = quality.evaluate(frame, INDICATOR_CHECKS, "indicators")
    passed, details = _no_nan_after_warmup(observed)
    details["bars_without_indicators"] = window_bars.height - frame.height
    outcomes.append(quality.CheckOutcome(COMPLETE, passed and window_bars.height == frame.height, True,
                                         "Every bar has an indicator row, complete after warm-up.", details))
    yield from (o.to_result(context.asset_key) for o in outcomes)
    if quality.blocking_failures(outcomes):
        yield dg.AssetCheckResult(check_name=RECONCILE, passed=False, description="not loaded: blocking checks failed")
        raise dg.Failure(quality.failure_message("indicators", outcomes))
    written = write_window(lake, "indicators", frame, "session_date", start, end)
    load = warehouse.load_window("analytics.indicators_daily", frame, time_column="session_date", window_start=start,
                                 window_end=end, asset="indicators", partition_key=f"{start}..{end}", run_id=context.run_id)
    passed, details = reconcile(warehouse.url, "analytics.indicators_daily", "session_date", start, end, frame.height)
    yield dg.AssetCheckResult(check_name=RECONCILE, passed=passed, metadata=details)
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "path": dg.MetadataValue.path(lake.store.uri("processed/indicators")),
        "symbols_covered": frame["symbol"].n_unique() if frame.height else 0,
        "history_read_from": str(history_start),
        "partitions_written": written,
        "rows_after_warmup": int(frame["sma_200"].is_not_null().sum()) if frame.height else 0,
        "warehouse_checksum": load.checksum,
        "preview": preview(frame.select("symbol", "session_date", "sma_20", "sma_200", "rsi_14", "macd", "atr_14")),
        "bands_chart": _bands_chart(bars, frame, history_start, end),
    })


def _bands_chart(bars: pl.DataFrame, frame: pl.DataFrame, start: dt.date, end: dt.date) -> Any:
    """One symbol's adjusted close with its Bollinger bands over the last ~120 sessions."""
    if frame.is_empty():
        return "no rows"
    symbol = "AAPL" if "AAPL" in frame["symbol"].to_list() else frame["symbol"][0]
    history = indicators.compute_indicators(bars.filter(pl.col("symbol") == symbol)).tail(120)
    closes = bars.filter(pl.col("symbol") == symbol).sort("session_date").tail(120)["adj_close"]
    series = [closes.to_list()] + [history[c].fill_null(float("nan")).to_list() for c in ("bb_upper_20", "bb_lower_20")]
    return dg.MetadataValue.md(markdown_chart(series, ["adjusted close", "upper band", "lower band"],
                                              f"{symbol} to {end} with Bollinger bands (20, 2)"))


# ---- factor exposures ------------------------------------------------------------------------------
def exposures_for_window(bars: pl.DataFrame, factor_returns: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Rolling exposures of the window's rows from bars and factor returns that include the regression window."""
    returns = (
        bars.sort(["symbol", "session_date"])
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
    return exposures.filter(pl.col("session_date").is_between(start, end)).select(
        [pl.col(c).cast(t) for c, t in EXPOSURE_SCHEMA.items()]).sort(["symbol", "session_date"])


def _exposure_ranges(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    problems = {
        "r_squared_outside_0_1": frame.filter((pl.col("r_squared") < -1e-12) | (pl.col("r_squared") > 1 + 1e-12)).height,
        "negative_residual_vol": frame.filter(pl.col("residual_vol") < 0).height,
        "n_obs_above_window": frame.filter(pl.col("n_obs") > EXPOSURE_WINDOW).height,
        "estimates_below_min_obs": frame.filter((pl.col("n_obs") < EXPOSURE_MIN_OBS) & pl.col("beta_market").is_not_null()).height,
    }
    return not any(problems.values()), problems


EXPOSURE_CHECKS = [
    quality.Check("schema", "factor_exposures has the documented columns and types.", predicate=quality.has_columns(EXPOSURE_SCHEMA)),
    quality.Check("keys_unique", "One row per symbol and session.", predicate=quality.unique_keys(["symbol", "session_date"])),
    quality.Check("values_in_range", f"R² in [0, 1], residual vol >= 0, n_obs <= {EXPOSURE_WINDOW}, estimates only with >= {EXPOSURE_MIN_OBS} observations.",
                  predicate=_exposure_ranges),
]
EXPOSURES_COMPLETE = "complete_once_window_filled"


@dg.asset(
    group_name="analytics",
    deps=["bars", "factor_returns"],
    partitions_def=trading_sessions,
    backfill_policy=single_run,
    kinds={"polars", "parquet", "postgres"},
    owners=["team:quant-research"],
    description=(
        f"Rolling {EXPOSURE_WINDOW}-session OLS of each security's excess return on the market, size, value and momentum "
        f"factors (at least {EXPOSURE_MIN_OBS} observations; missing days shrink the window): daily alpha, betas, R², "
        "annualized residual volatility, observation count. Equal to statsmodels RollingOLS. "
        "Warehouse table: `analytics.factor_exposures`."
    ),
    check_specs=[c.spec("factor_exposures") for c in EXPOSURE_CHECKS] + [
        dg.AssetCheckSpec(EXPOSURES_COMPLETE, asset="factor_exposures", blocking=False,
                          description=f"Every security with {EXPOSURE_MIN_OBS}+ observations has estimates on every factor session."),
        dg.AssetCheckSpec(RECONCILE, asset="factor_exposures", description="analytics.factor_exposures holds exactly the processed rows of the window."),
    ],
    retry_policy=WAREHOUSE_RETRY,
    tags=ANALYTICS_TAGS,
)
def factor_exposures(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    history_start = _calendar_days_before(start, EXPOSURE_WINDOW + 1)
    bars = _history(lake, "bars", history_start, end)
    factor_history = _history(lake, "factor_returns", history_start, end)
    frame = (exposures_for_window(bars, factor_history, start, end) if bars.height and factor_history.height
             else pl.DataFrame(schema=EXPOSURE_SCHEMA))
    outcomes = quality.evaluate(frame, EXPOSURE_CHECKS, "factor_exposures")
    missing = frame.filter((pl.col("n_obs") >= EXPOSURE_MIN_OBS) & pl.col("beta_market").is_null())
    outcomes.append(quality.CheckOutcome(EXPOSURES_COMPLETE, missing.is_empty(), False,
                                         "Estimates wherever the window holds enough observations.",
                                         {"rows_missing_estimates": missing.height}))
    yield from (o.to_result(context.asset_key) for o in outcomes)
    if quality.blocking_failures(outcomes):
        yield dg.AssetCheckResult(check_name=RECONCILE, passed=False, description="not loaded: blocking checks failed")
        raise dg.Failure(quality.failure_message("factor_exposures", outcomes))
    written = write_window(lake, "factor_exposures", frame, "session_date", start, end)
    load = warehouse.load_window("analytics.factor_exposures", frame, time_column="session_date", window_start=start,
                                 window_end=end, asset="factor_exposures", partition_key=f"{start}..{end}", run_id=context.run_id)
    passed, details = reconcile(warehouse.url, "analytics.factor_exposures", "session_date", start, end, frame.height)
    yield dg.AssetCheckResult(check_name=RECONCILE, passed=passed, metadata=details)
    latest = frame.filter(pl.col("session_date") == frame["session_date"].max()) if frame.height else frame
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "path": dg.MetadataValue.path(lake.store.uri("processed/factor_exposures")),
        "rows_with_estimates": int(frame["beta_market"].is_not_null().sum()) if frame.height else 0,
        "history_read_from": str(history_start),
        "partitions_written": written,
        "warehouse_checksum": load.checksum,
        "latest_market_beta_cross_section": dg.MetadataValue.json(
            latest["beta_market"].drop_nulls().describe().to_dicts() if latest.height else []),
        "preview": preview(latest.drop_nulls("beta_market").select("symbol", "session_date", "alpha", "beta_market", "r_squared", "n_obs")),
        "market_beta_cross_section": dg.MetadataValue.md(markdown_chart(
            [sorted(latest["beta_market"].drop_nulls().to_list())], ["market beta, securities sorted"],
            f"Cross-section of market betas on {latest['session_date'].max()}")) if latest.height else "no rows",
    })
