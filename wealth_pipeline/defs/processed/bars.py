"""Processed daily bars: validated, deduplicated, calendar-aligned, point-in-time split/dividend factors.

The compute is ``core/bars.py`` and ``core/adjustments.py``; this module reads the raw tier, the
window's corporate actions and the stored factor table, publishes the window's bars, writes the
window's factor rows (lakehouse ``processed/adjustment_factors`` and the versioned warehouse table
``market.adjustment_factors``, each row with its symbol's ``security_id``, issue 21) and says when
its result makes later stored sessions stale (``restatement`` metadata, which
``defs/processed/restatement.py`` turns into one range run).
Nothing outside the window is rewritten here (ARCHITECTURE.md, "Adjustment model").
"""

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import bars as compute
from wealth_pipeline.core import quality_jumps
from wealth_pipeline.core.schemas import ADJUSTMENT_FACTORS_SCHEMA, CORPORATE_ACTIONS_SCHEMA
from wealth_pipeline.core.universe import with_security_ids
from wealth_pipeline.defs import datasets, lineage, publish
from wealth_pipeline.defs.partitions import partition_window
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse

OWNERS = ["team:market-data"]
WAREHOUSE_TAGS = {"wealth/warehouse": "market", "wealth/tier": "processed"}
BARS = datasets.BARS
FACTORS = datasets.ADJUSTMENT_FACTORS
COMPLETENESS = "complete_against_universe"
RESTATEMENT = "restatement"


def _read(
    lake: Lakehouse,
    dataset: datasets.Dataset,
    schema: dict[str, pl.DataType],
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    frame = dataset.read(lake, start, end)
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def _vendor_lines(market_data: MarketDataResource, rejects: pl.DataFrame, raw_bars: pl.DataFrame) -> pl.DataFrame:
    """Rejects of rows from landing-zone files name the file and line (``core.bars.name_vendor_lines``)."""
    if rejects.is_empty() or market_data.provider != "vendor" or not market_data.landing_uri:
        return rejects
    from wealth_pipeline.providers.landing import FILE_COLUMN, LINE_COLUMN, VendorFileProvider

    provider = market_data.get()
    days = rejects["session_date"].drop_nulls() if "session_date" in rejects.columns else pl.Series([])
    if not isinstance(provider, VendorFileProvider) or days.is_empty():
        return rejects
    rows = provider.with_files("bars", days.min(), days.max())
    if rows is None or rows.is_empty():
        return rejects
    uris = {key: provider.landing.store.uri(key) for key in rows[FILE_COLUMN].unique().to_list()}
    delivered = rows.with_columns(
        pl.col(FILE_COLUMN).replace_strict(uris, return_dtype=pl.Utf8).alias("file"), pl.col(LINE_COLUMN).alias("line")
    )
    return compute.name_vendor_lines(rejects, raw_bars, delivered)


@publish.dataset_asset(
    BARS,
    deps=[datasets.RAW["bars"], datasets.REFERENCE["corporate_actions"], datasets.SYMBOL_MASTER],
    group_name="processed",
    kinds={"polars", "parquet", "postgres"},
    owners=OWNERS,
    description=(
        "Daily bars validated against the symbol master and each listing's exchange calendar, deduplicated, "
        "one-bar 100x spikes quarantined (a window's last bar is judged again when its next session arrives), "
        "with raw prices as delivered and POINT-IN-TIME split/dividend factors: cum_factor G(t) is the product "
        "of the factors of the actions with ex_date <= t, adj_* = raw / G(t) (total-return basis, never "
        "restated by a later action). Prices adjusted as of now are computed on read (`market.bars_adjusted`, "
        "`market.bars_adjusted_as_of(knowledge_time)`). Also writes the window's rows of "
        f"`{FACTORS.table}`. Warehouse table: `{BARS.table}`."
    ),
    tags=WAREHOUSE_TAGS,
)
def bars(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    warehouse: WarehouseResource,
    market_data: MarketDataResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    universe = lake.read_dataset(datasets.SYMBOL_MASTER.tier, datasets.SYMBOL_MASTER.lake_dataset)
    actions = _read(lake, datasets.REFERENCE["corporate_actions"], CORPORATE_ACTIONS_SCHEMA, start, end)
    lookback = start - dt.timedelta(days=compute.LOOKBACK_DAYS)
    raw_bars = raw.read_current(
        lake.store,
        datasets.RAW["bars"].lake_dataset,
        lookback,
        end + dt.timedelta(days=compute.LOOKAHEAD_DAYS),
        datasets.RAW["bars"].schema,
        with_source=True,
    )
    # Each bar keeps the provider of its raw row (issue 22); raw versions from before rows carried one
    # take their partition's recorded provider when it is a single one, else "unknown".
    raw_bars, filled = lineage.fill_row_sources(context, datasets.RAW["bars"].key, raw_bars, "session_date")
    stored_factors = _read(lake, FACTORS, ADJUSTMENT_FACTORS_SCHEMA)
    built = compute.build_bars(raw_bars, actions, universe, start, end, factors=stored_factors)
    frame = built.frame
    restate_from, reasons = compute.restatement_start(
        built,
        _read(lake, BARS, BARS.schema, start, end),
        stored_factors,
        _read(lake, BARS, BARS.schema, lookback, start - dt.timedelta(days=1)),
        start,
        end,
    )
    later = lake.partitions(BARS.tier, BARS.lake_dataset, end + dt.timedelta(days=1)) if restate_from else []
    restatement: dict[str, Any] | None = None
    if restate_from is not None and (restate_from < start or later):
        restatement = {"from": str(restate_from), "to": str(max([end, *later])), "reasons": reasons}
        context.log.warning(
            f"bars {start}..{end}: stored sessions {restatement['from']}..{restatement['to']} are stale "
            f"({'; '.join(reasons)}); the restatement sensor runs them again as one range"
        )
    outcomes = BARS.evaluate(frame)
    # The jump check with the stored sessions before the window as context (alone, a daily window has no move).
    jumps = quality_jumps.no_unexplained_jumps_in_window(
        frame, _read(lake, BARS, BARS.schema, lookback, start - dt.timedelta(days=1)), compute.JUMP_THRESHOLD
    )
    outcomes = [
        dataclasses.replace(o, passed=jumps[0], metadata=jumps[1]) if o.name == "no_unexplained_jumps" else o
        for o in outcomes
    ]
    outcomes.append(
        BARS.outcome(COMPLETENESS, *compute.completeness(frame, compute.expected_bars(universe, start, end)))
    )
    # The window's factor rows with their symbol's stable id (issue 21); blocking when one has none.
    factors = with_security_ids(built.factors, universe).select(
        [pl.col(c).cast(t) for c, t in FACTORS.schema.items()]
    )
    outcomes.append(BARS.outcome(datasets.FACTORS_SECURITY_ID_KNOWN, *datasets.security_id_known(factors)))

    def factors_and_rollups() -> dict[str, Any]:
        written = publish.write_window(
            lake, FACTORS.lake_dataset, factors, "ex_date", start, end, tier=FACTORS.tier
        )
        from wealth_pipeline.warehouse.adjustments import publish_factors
        from wealth_pipeline.warehouse.timescale import refresh_rollups

        versions = publish_factors(warehouse.url, factors, start, end)
        # Weekly/monthly rollups (continuous aggregates or, on plain PostgreSQL, tables) follow the window's bars,
        # including windows a backfill wrote outside the refresh policy's reach.
        rollups = refresh_rollups(warehouse.url, start, end)
        return {
            "adjustment_factors": dg.MetadataValue.json(
                {
                    "window_rows": factors.height,
                    "lakehouse_version": written.version,
                    "warehouse_versions_inserted": versions.inserted,
                    "warehouse_versions_superseded": versions.superseded,
                }
            ),
            "rollups_refreshed": dg.MetadataValue.json(rollups),
            RESTATEMENT: dg.MetadataValue.json(restatement) if restatement else "none",
        }

    yield from publish.publish(
        context,
        BARS,
        frame,
        (start, end),
        lake=lake,
        warehouse=warehouse,
        outcomes=outcomes,
        rejects=_vendor_lines(market_data, built.rejects, raw_bars),  # spikes name the vendor file and line
        after_load=factors_and_rollups,
        metadata={
            "symbols_covered": frame["symbol"].n_unique() if frame.height else 0,
            "symbols_expected": universe.height,
            **filled,
        },
    )
