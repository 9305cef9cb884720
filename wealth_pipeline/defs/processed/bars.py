"""Processed daily bars: validated, deduplicated, calendar-aligned, split- and dividend-adjusted."""


import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import adjustments, calendars, outliers, validation
from wealth_pipeline.defs import quality
from wealth_pipeline.defs.partitions import partition_window, single_run, trading_sessions
from wealth_pipeline.defs.processed.common import (
    OWNERS,
    WAREHOUSE_RETRY,
    WAREHOUSE_TAGS,
    preview,
    quarantine,
    reconcile,
    write_window,
)
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.providers import base
from wealth_pipeline.settings import Settings

TABLE = "market.bars_daily"
# Calendar days of raw history read before the window: the close before a dividend's ex-date and
# the neighbours a spike is judged against (a suspension longer than this is documented as a gap).
LOOKBACK_DAYS = 14
SPIKE_RATIO = 20.0
JUMP_THRESHOLD = 0.4

BARS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(), "session_date": pl.Date(), "exchange": pl.Utf8(), "currency": pl.Utf8(),
    "open": pl.Float64(), "high": pl.Float64(), "low": pl.Float64(), "close": pl.Float64(), "volume": pl.Int64(),
    "split_factor": pl.Float64(), "dividend_factor": pl.Float64(), "adj_factor": pl.Float64(),
    "adj_open": pl.Float64(), "adj_high": pl.Float64(), "adj_low": pl.Float64(), "adj_close": pl.Float64(),
    "adj_volume": pl.Float64(), "source": pl.Utf8(),
}


def _expectations() -> list:
    import great_expectations as gx

    e = gx.expectations
    return [
        *[e.ExpectColumnValuesToNotBeNull(column=c) for c in ("symbol", "session_date", "open", "high", "low", "close", "adj_close")],
        *[e.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in ("open", "high", "low", "close", "adj_close")],
        e.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="open", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="close", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="open", column_B="low", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close", column_B="low", or_equal=True),
    ]


def _no_unexplained_jumps(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    jumps = outliers.unexplained_jumps(frame, JUMP_THRESHOLD)
    return jumps.is_empty(), {
        "threshold": JUMP_THRESHOLD,
        "jumps": jumps.height,
        "examples": [f"{r[0]} {r[1]}: {r[4]:+.1%}" for r in jumps.head(10).rows()],
    }


CHECKS = [
    quality.Check("schema", "bars has the documented columns and types.", predicate=quality.has_columns(BARS_SCHEMA)),
    quality.Check("keys_unique", "One bar per symbol and session.", predicate=quality.unique_keys(["symbol", "session_date"])),
    quality.Check("ohlcv_valid", "Prices > 0, high >= max(open, close), low <= min(open, close), volume >= 0, no nulls (GX suite).",
                  expectations=_expectations),
    quality.Check("no_unexplained_jumps", f"No adjusted move above {JUMP_THRESHOLD:.0%} that no split or dividend explains.",
                  blocking=False, predicate=_no_unexplained_jumps),
]
COMPLETENESS = "complete_against_universe"
RECONCILE = "warehouse_reconciles"


def expected_bars(universe: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """(symbol, session_date) pairs the universe should trade: each listing on its exchange's sessions."""
    rows = []
    for exchange, symbols in universe.group_by("exchange"):
        days = calendars.sessions(str(exchange[0]), start, end)
        rows.append(pl.DataFrame({"symbol": symbols["symbol"]}).join(pl.DataFrame({"session_date": days}, schema={"session_date": pl.Date()}), how="cross"))
    return pl.concat(rows) if rows else pl.DataFrame(schema={"symbol": pl.Utf8(), "session_date": pl.Date()})


def trace_rejects(rejects: pl.DataFrame, numbered: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Rejects with the raw file and row they came from and the row's key: what quarantine keeps."""
    context = [c for c in ("source_file", "source_row", "symbol", "session_date", "ex_date", "base_currency") if c in numbered.columns]
    traced = rejects.join(numbered.select("row_number", *context), on="row_number", how="left")
    return traced.with_columns(pl.lit(dataset).alias("dataset"))


def build_bars(raw_bars: pl.DataFrame, actions: pl.DataFrame, universe: pl.DataFrame, start: dt.date, end: dt.date,
               source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validated, deduplicated, adjusted bars of the window, and the rejected rows with their reasons.

    ``raw_bars`` may carry ``source_file``/``source_row`` (see ``raw.read_current``); rejects then
    name the raw file and row of every problem.
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
    return window.select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()]).sort(["symbol", "session_date"]), in_window


def _completeness(frame: pl.DataFrame, expected: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    missing = expected.join(frame.select("symbol", "session_date"), on=["symbol", "session_date"], how="anti")
    return missing.is_empty(), {
        "expected_bars": expected.height,
        "present_bars": frame.height,
        "missing_bars": missing.height,
        "examples": [f"{s} {d}" for s, d in missing.head(10).rows()],
    }


@dg.asset(
    group_name="processed",
    deps=["raw_bars", "corporate_actions", "symbol_master"],
    partitions_def=trading_sessions,
    backfill_policy=single_run,
    kinds={"polars", "parquet", "postgres"},
    owners=OWNERS,
    description=(
        "Daily bars validated against the symbol master and each listing's exchange calendar, deduplicated, "
        "one-bar 100x spikes quarantined, with raw prices, split/dividend adjustment factors and adjusted "
        "prices (backward, CRSP-style). A corporate action in the window restates earlier adjusted history "
        f"of that symbol (reported as `restated`). Warehouse table: `{TABLE}`."
    ),
    check_specs=[c.spec("bars") for c in CHECKS] + [
        dg.AssetCheckSpec(COMPLETENESS, asset="bars", description="Every listing has a bar on every session of its exchange."),
        dg.AssetCheckSpec(RECONCILE, asset="bars", description=f"{TABLE} holds exactly the processed rows of the window."),
    ],
    retry_policy=WAREHOUSE_RETRY,
    tags=WAREHOUSE_TAGS,
)
def bars(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    history_start = Settings.from_env().partition_start
    universe = lake.read_dataset("processed", "symbol_master")
    actions = lake.read_partitions("processed", "corporate_actions", history_start, end)
    if actions.is_empty():
        actions = pl.DataFrame(schema=base.CORPORATE_ACTIONS_SCHEMA)
    raw_bars = raw.read_current(lake.store, "bars", start - dt.timedelta(days=LOOKBACK_DAYS), end, base.BARS_SCHEMA, with_source=True)
    frame, rejects = build_bars(raw_bars, actions, universe, start, end, source="raw")
    outcomes = quality.evaluate(frame, CHECKS, "bars")
    passed, details = _completeness(frame, expected_bars(universe, start, end))
    outcomes.append(quality.CheckOutcome(COMPLETENESS, passed, False, "Every listing has a bar on every session of its exchange.", details))
    yield from (o.to_result(context.asset_key) for o in outcomes)
    if quality.blocking_failures(outcomes):
        yield dg.AssetCheckResult(check_name=RECONCILE, passed=False, description="not loaded: blocking checks failed")
        raise dg.Failure(quality.failure_message("bars", outcomes))

    quarantined = quarantine(lake, "bars", rejects, start, end, context.run_id)
    written = write_window(lake, "bars", frame, "session_date", start, end)
    load = warehouse.load_window(TABLE, frame, time_column="session_date", window_start=start, window_end=end,
                                 asset="bars", partition_key=f"{start}..{end}", run_id=context.run_id)
    restated = _restate_history(context, lake, warehouse, actions, frame, history_start, start, end)
    # Weekly/monthly rollups (continuous aggregates or materialized views) follow the new bars,
    # including windows a backfill wrote outside the refresh policy's reach.
    from wealth_pipeline.warehouse.timescale import refresh_rollups

    rollups = refresh_rollups(warehouse.url, history_start if restated else start, end)
    passed, details = reconcile(warehouse.url, TABLE, "session_date", start, end, frame.height)
    yield dg.AssetCheckResult(check_name=RECONCILE, passed=passed, metadata=details)
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "path": dg.MetadataValue.path(lake.store.uri("processed/bars")),
        "symbols_covered": frame["symbol"].n_unique() if frame.height else 0,
        "symbols_expected": universe.height,
        "partitions_written": written,
        "rejected_rows": rejects.height,
        "quarantine": quarantined or "none",
        "restated": dg.MetadataValue.json(restated),
        "rollups_refreshed": dg.MetadataValue.json(rollups),
        "warehouse_checksum": load.checksum,
        "preview": preview(frame),
    })


def _restate_history(context: dg.AssetExecutionContext, lake: Any, warehouse: WarehouseResource, actions: pl.DataFrame,
                     window: pl.DataFrame, history_start: dt.date, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Re-adjust processed history before the window for symbols with a corporate action inside it."""
    in_window = actions.filter(pl.col("ex_date").is_between(start, end))
    if in_window.is_empty() or start <= history_start:
        return []
    symbols = sorted(in_window["symbol"].unique().to_list())
    before = start - dt.timedelta(days=1)
    full_history = lake.read_partitions("processed", "bars", history_start, before)
    if full_history.is_empty():
        return []
    history = full_history.filter(pl.col("symbol").is_in(symbols))
    if history.is_empty():
        return []
    adjusted_cols = [c for c in BARS_SCHEMA if c.startswith("adj_") or c.endswith("_factor")]
    raw_cols = ["symbol", "session_date", "open", "high", "low", "close", "volume", "currency"]
    # The window's bars come along: an action only applies once a bar on or after its ex-date exists.
    with_window = pl.concat([history.select(raw_cols), window.filter(pl.col("symbol").is_in(symbols)).select(raw_cols)])
    readjusted = adjustments.apply_adjustments(with_window, actions).filter(pl.col("session_date") < start)
    restated = (
        history.drop(adjusted_cols)
        .join(readjusted.select("symbol", "session_date", *adjusted_cols), on=["symbol", "session_date"], how="left")
        .select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])
    )
    merged = pl.concat([full_history.filter(~pl.col("symbol").is_in(symbols)), restated])
    days = sorted(set(restated["session_date"].to_list()))
    for day, part in merged.filter(pl.col("session_date").is_in(days)).partition_by("session_date", as_dict=True).items():
        lake.write_partition("processed", "bars", part.sort("symbol"), day[0])
    warehouse.load_window(TABLE, restated, time_column="session_date", window_start=days[0], window_end=days[-1],
                          asset="bars", partition_key=f"restatement {start}..{end}", run_id=context.run_id,
                          entity_filter=("symbol", symbols))
    context.log.info(f"restated adjusted history of {symbols} before {start} after corporate actions in the window")
    return [{"symbol": s, "ex_dates": [str(d) for d in in_window.filter(pl.col("symbol") == s)["ex_date"].to_list()],
             "sessions_restated": restated.filter(pl.col("symbol") == s).height} for s in symbols]
