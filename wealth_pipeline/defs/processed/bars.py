"""Processed daily bars: validated, deduplicated, calendar-aligned, split- and dividend-adjusted.

The compute is ``core/bars.py``; this module reads the raw tier and the reference data, restates
earlier adjusted history when a corporate action falls in the window, and publishes.
"""


import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import bars as compute
from wealth_pipeline.core.schemas import CORPORATE_ACTIONS_SCHEMA
from wealth_pipeline.defs import datasets, publish
from wealth_pipeline.defs.partitions import PARTITION_START, partition_window
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.resource import LakehouseResource

OWNERS = ["team:market-data"]
WAREHOUSE_TAGS = {"wealth/warehouse": "market", "wealth/tier": "processed"}
BARS = datasets.BARS
COMPLETENESS = "complete_against_universe"


@publish.dataset_asset(
    BARS,
    deps=[datasets.RAW["bars"], datasets.REFERENCE["corporate_actions"], datasets.SYMBOL_MASTER],
    group_name="processed",
    kinds={"polars", "parquet", "postgres"},
    owners=OWNERS,
    description=(
        "Daily bars validated against the symbol master and each listing's exchange calendar, deduplicated, "
        "one-bar 100x spikes quarantined, with raw prices, split/dividend adjustment factors and adjusted "
        "prices (backward, CRSP-style). A corporate action in the window restates earlier adjusted history "
        f"of that symbol (reported as `restated`). Warehouse table: `{BARS.table}`."
    ),
    tags=WAREHOUSE_TAGS,
)
def bars(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    history_start = PARTITION_START  # the partitions' first session: the history a restatement reaches
    universe = lake.read_dataset(datasets.SYMBOL_MASTER.tier, datasets.SYMBOL_MASTER.lake_dataset)
    actions = datasets.REFERENCE["corporate_actions"].read(lake, history_start, end)
    if actions.is_empty():
        actions = pl.DataFrame(schema=CORPORATE_ACTIONS_SCHEMA)
    raw_bars = raw.read_current(lake.store, datasets.RAW["bars"].lake_dataset, start - dt.timedelta(days=compute.LOOKBACK_DAYS), end,
                                datasets.RAW["bars"].schema, with_source=True)
    frame, rejects = compute.build_bars(raw_bars, actions, universe, start, end, source="raw")
    outcomes = BARS.evaluate(frame)
    outcomes.append(BARS.outcome(COMPLETENESS, *compute.completeness(frame, compute.expected_bars(universe, start, end))))

    def restate_and_refresh() -> dict[str, Any]:
        restated = _restate_history(context, lake, warehouse, actions, frame, history_start, start, end)
        # Weekly/monthly rollups (continuous aggregates or materialized views) follow the new bars,
        # including windows a backfill wrote outside the refresh policy's reach.
        from wealth_pipeline.warehouse.timescale import refresh_rollups

        rollups = refresh_rollups(warehouse.url, history_start if restated else start, end)
        return {"restated": dg.MetadataValue.json(restated), "rollups_refreshed": dg.MetadataValue.json(rollups)}

    yield from publish.publish(
        context, BARS, frame, (start, end), lake=lake, warehouse=warehouse, outcomes=outcomes, rejects=rejects,
        after_load=restate_and_refresh,
        metadata={"symbols_covered": frame["symbol"].n_unique() if frame.height else 0, "symbols_expected": universe.height},
    )


def _restate_history(context: dg.AssetExecutionContext, lake: Any, warehouse: WarehouseResource, actions: pl.DataFrame,
                     window: pl.DataFrame, history_start: dt.date, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Re-adjust processed history before the window for symbols with a corporate action inside it."""
    in_window = actions.filter(pl.col("ex_date").is_between(start, end))
    if in_window.is_empty() or start <= history_start:
        return []
    symbols = sorted(in_window["symbol"].unique().to_list())
    before = start - dt.timedelta(days=1)
    full_history = BARS.read(lake, history_start, before)
    if full_history.is_empty():
        return []
    history = full_history.filter(pl.col("symbol").is_in(symbols))
    if history.is_empty():
        return []
    restated = compute.restate_before(history, window, actions, symbols, start)
    merged = pl.concat([full_history.filter(~pl.col("symbol").is_in(symbols)), restated])
    days = sorted(set(restated["session_date"].to_list()))
    for day, part in merged.filter(pl.col("session_date").is_in(days)).partition_by("session_date", as_dict=True).items():
        lake.write_partition(BARS.tier, BARS.lake_dataset, part.sort("symbol"), day[0])
    warehouse.load_window(BARS.table, restated, time_column="session_date", window_start=days[0], window_end=days[-1],
                          asset="bars", partition_key=f"restatement {start}..{end}", run_id=context.run_id,
                          entity_filter=("symbol", symbols))
    context.log.info(f"restated adjusted history of {symbols} before {start} after corporate actions in the window")
    return [{"symbol": s, "ex_dates": [str(d) for d in in_window.filter(pl.col("symbol") == s)["ex_date"].to_list()],
             "sessions_restated": restated.filter(pl.col("symbol") == s).height} for s in symbols]
