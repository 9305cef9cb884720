"""Portfolio domain: reference data, then daily positions, cash, valuations, metrics, attribution, exposures.

Every daily run recomputes the accounting from each portfolio's first transaction with the market
history it needs read explicitly from the processed tier (bars, FX, corporate actions, risk-free
rate, benchmark, factor exposures from inception to the window's end), then keeps the window's
rows: a session computed alone equals the same session inside a backfill. Portfolio rows go to the
row-level-secured warehouse only (``portfolio.*``), not to the lakehouse, which has no per-owner
access control. The compute and its checks are ``core/portfolio_daily.py``; the tables are
declared in ``defs/datasets.py``.

Bad input: a bad row (unknown symbol, currency mismatch, non-session date, duplicate id, a sell
larger than the holding, ...) skips its whole portfolio; the error names file, line and field in
the metadata, the rows are quarantined under the Delta table ``quarantine/portfolio_transactions``, the
non-blocking check ``all_portfolios_computed`` fails, and the other portfolios compute and load.
A skipped portfolio's earlier warehouse rows are left as they were.
"""

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import portfolio as accounting
from wealth_pipeline.core import portfolio_daily as daily
from wealth_pipeline.core.portfolio_reference import ReferenceData
from wealth_pipeline.defs import datasets, publish, quality
from wealth_pipeline.defs.partitions import partition_window, single_run, trading_sessions
from wealth_pipeline.defs.portfolio.seeds import read_reference
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse

OWNERS = ["team:wealth-analytics"]
TAGS = {"wealth/warehouse": "portfolio"}
FX_LOOKBACK_DAYS = 14
TABLES = {name: d.table for name, d in datasets.PORTFOLIO.items()}


def securities(lake: Lakehouse) -> pl.DataFrame:
    """The symbol master the market pipeline stored (``symbol_master`` must be materialized)."""
    if not lake.exists(datasets.SYMBOL_MASTER.tier, datasets.SYMBOL_MASTER.lake_dataset):
        raise dg.Failure("portfolio assets need the symbol master: materialize symbol_master first", allow_retries=False)
    return lake.read_dataset(datasets.SYMBOL_MASTER.tier, datasets.SYMBOL_MASTER.lake_dataset)


def _reference(lake: Lakehouse, market_data: MarketDataResource) -> ReferenceData:
    return read_reference(securities(lake), market_data.landing_uri, market_data.s3_endpoint_url, market_data.s3_region)


def _errors_metadata(reference: ReferenceData, extra: dict[str, str] | None = None) -> Any:
    rows = reference.errors.to_dicts() + [{"portfolio_id": k, "reason": v} for k, v in (extra or {}).items()]
    return dg.MetadataValue.json(rows[:50])


# ---- reference data ----------------------------------------------------------------------------------
@dg.asset(
    group_name="portfolio",
    deps=datasets.keys(datasets.SYMBOL_MASTER),
    kinds={"polars", "csv", "postgres"},
    owners=OWNERS,
    description=(
        "Users, portfolios and transactions from the landing zone (`portfolio/users.csv`, `portfolio/portfolios.csv`, "
        "`portfolio/transactions/*.csv`; see docs/portfolio-file-layouts.md), or the seeded demo when the landing zone "
        "has none. Validated row by row; a portfolio with a bad row is skipped with file/line/field in the metadata. "
        "Warehouse tables: `portfolio.users`, `portfolio.portfolios`, `portfolio.transactions` (row-level-secured)."
    ),
    check_specs=[dg.AssetCheckSpec("rows_valid", asset="portfolio_reference", blocking=False,
                                   description="Every reference row is valid (rejected rows are named with file, line and field).")],
    retry_policy=publish.WAREHOUSE_RETRY,
    tags=TAGS,
)
def portfolio_reference(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource,
                        market_data: MarketDataResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    from wealth_pipeline.warehouse.loader import upsert

    lake = lakehouse.get()
    reference = _reference(lake, market_data)
    rows_valid = dg.AssetCheckResult(check_name="rows_valid", passed=reference.errors.is_empty(),
                                     metadata={"rejected_rows": reference.errors.height, "errors": _errors_metadata(reference),
                                               "skipped_portfolios": dg.MetadataValue.json(reference.skipped)})
    quarantined = publish.quarantine(lake, "portfolio_reference", reference.errors, dt.date.today(), dt.date.today(), context.run_id)
    upsert(warehouse.url, "portfolio.users", reference.users, asset="portfolio_reference", run_id=context.run_id)
    upsert(warehouse.url, "portfolio.portfolios", reference.portfolios.drop("allow_short"), asset="portfolio_reference",
           run_id=context.run_id)
    warehouse.replace_table("portfolio.transactions", reference.transactions.drop("source_file", "source_line"),
                            asset="portfolio_reference", run_id=context.run_id)
    yield dg.MaterializeResult(check_results=[rows_valid], metadata={
        "source": reference.source,
        "users": reference.users.height,
        "portfolios": reference.portfolios.height,
        "dagster/row_count": reference.transactions.height,
        "rejected_rows": reference.errors.height,
        "skipped_portfolios": dg.MetadataValue.json(reference.skipped),
        "quarantine": str(quarantined) if quarantined else "none",
        "preview": publish.preview(reference.portfolios),
    })


# ---- daily accounting and analytics ----------------------------------------------------------------
def read_market(lake: Lakehouse, inception: dt.date, end: dt.date) -> dict[str, pl.DataFrame]:
    """The processed-tier history the accounting needs, from inception (FX: two weeks earlier) to ``end``."""
    early = inception - dt.timedelta(days=FX_LOOKBACK_DAYS)
    starts = {"bars": early, "fx_rates": early, "factor_exposures": early}
    return {name: datasets.get(name).read(lake, starts.get(name, inception), end) for name in daily.MARKET_INPUTS}


_DESCRIPTIONS = {
    "portfolio_positions": "Positions by symbol and valuation day: FIFO lots, split-adjusted quantity, cost basis (local, and base at purchase FX), market value in local and base currency at the day's FX (last rate carried over FX holidays), realized and unrealized P&L, weight. `portfolio.positions`.",
    "portfolio_cash_balances": "Cash per currency and valuation day (deposits, withdrawals, fees, trades, dividends from corporate actions). `portfolio.cash_balances`.",
    "portfolio_valuations": "Total value in base currency and the day's external flow. `portfolio.valuations`.",
    "portfolio_metrics": "Daily and cumulative TWR, XIRR since inception, volatility 30/90/252, Sharpe 252 over rf, max drawdown, beta 252 to the benchmark. `portfolio.portfolio_metrics`.",
    "currency_attribution": "Local, FX and interaction terms of each position's and the portfolio's base return (symbol __portfolio__). `portfolio.currency_attribution`.",
    "portfolio_factor_exposures": "Value-weighted factor exposures of the invested holdings (latest security estimates on or before the day). `portfolio.factor_exposures`.",
}
_MARKET_DEPS = [*datasets.keys(*(datasets.get(n) for n in daily.MARKET_INPUTS)), dg.AssetKey("portfolio_reference")]


def _twr_metadata(metrics: pl.DataFrame) -> dict[str, Any]:
    """The latest cumulative TWR of each portfolio as numbers Dagster plots across runs."""
    if metrics.is_empty():
        return {}
    latest = metrics.sort("session_date").group_by("portfolio_id", maintain_order=True).last().sort("portfolio_id")
    return {f"cumulative_twr/{pid}": (float(v) if v is not None and math.isfinite(v) else float("nan"))
            for pid, v in latest.select("portfolio_id", "cumulative_twr").head(20).iter_rows()}


@dg.multi_asset(
    name="portfolio_daily",
    specs=[dg.AssetSpec(name, group_name="portfolio", deps=_MARKET_DEPS, description=_DESCRIPTIONS[name],
                        kinds={"polars", "postgres"}, owners=OWNERS, tags=TAGS, metadata=d.definition_metadata())
           for name, d in datasets.PORTFOLIO.items()],
    check_specs=[spec for d in datasets.PORTFOLIO.values() for spec in d.check_specs()],
    partitions_def=trading_sessions,
    backfill_policy=single_run,
    retry_policy=publish.WAREHOUSE_RETRY,
    can_subset=False,
)
def portfolio_daily(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource,
                    market_data: MarketDataResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    master = securities(lake)
    reference = _reference(lake, market_data)
    if reference.transactions.height:
        inception = reference.transactions["trade_date"].min()
        market = read_market(lake, min(inception, start), end)
        try:
            frames, skipped, fx_carried, history = daily.compute_all(reference, master, market, start, end)
        except daily.MissingMarketData as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
    else:
        history = None
        market = {"corporate_actions": pl.DataFrame()}
        skipped, fx_carried = dict(reference.skipped), 0
        frames = daily.empty_tables()
    computed = sorted(set(reference.portfolios["portfolio_id"].to_list()) - set(skipped))
    good_txns = reference.transactions.filter(pl.col("portfolio_id").is_in(computed) & (pl.col("trade_date") <= end))
    results = {
        "portfolio_positions": [daily.check_holdings(frames["portfolio_positions"], reference.portfolios)],
        "portfolio_cash_balances": [daily.check_cash(
            frames["portfolio_cash_balances"], good_txns,
            history.positions if history else pl.DataFrame(schema=accounting.POSITIONS_SCHEMA),
            history.valuations if history else pl.DataFrame(schema=accounting.VALUATIONS_SCHEMA),
            market["corporate_actions"], master)],
        "portfolio_valuations": [daily.check_valuation(frames["portfolio_valuations"], frames["portfolio_positions"],
                                                       frames["portfolio_cash_balances"])],
        "portfolio_metrics": [daily.check_metrics(frames["portfolio_metrics"]),
                              (not skipped, {"skipped_portfolios": skipped, "errors": reference.errors.to_dicts()[:50]})],
        "currency_attribution": [daily.check_attribution(frames["currency_attribution"])],
        "portfolio_factor_exposures": [daily.check_coverage(frames["portfolio_factor_exposures"])],
    }
    outcomes: dict[dg.AssetKey, list[quality.CheckOutcome]] = {}
    for name, dataset in datasets.PORTFOLIO.items():
        outcomes[dataset.key] = dataset.evaluate(frames[name]) + [
            dataset.outcome(check, ok, meta) for (check, _, _), (ok, meta) in zip(dataset.computed, results[name], strict=True)]
    yield from publish.stop_if_blocked("portfolio_daily", outcomes, [d.key for d in datasets.PORTFOLIO.values()])
    if skipped and not reference.errors.is_empty():
        publish.quarantine(lake, "portfolio_transactions", reference.errors, start, end, context.run_id)
    for name, dataset in datasets.PORTFOLIO.items():
        metadata: dict[str, Any] = {"portfolios": dg.MetadataValue.json(computed)}
        if name == "portfolio_valuations":
            metadata["fx_rate_carried_forward_days"] = fx_carried
        if name == "portfolio_metrics":
            metadata.update(_twr_metadata(frames[name]))
        if skipped:
            metadata["skipped_portfolios"] = dg.MetadataValue.json(skipped)
        yield from publish.publish(context, dataset, frames[name], (start, end), lake=lake, warehouse=warehouse,
                                   outcomes=outcomes[dataset.key], metadata=metadata, entities=computed, gated=True)
