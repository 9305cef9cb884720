"""Portfolio domain: reference data, then daily positions, cash, valuations, metrics, attribution, exposures.

Every daily run recomputes the accounting from each portfolio's first transaction with the market
history it needs read explicitly from the processed tier (bars, FX, corporate actions, risk-free
rate, benchmark, factor exposures from inception to the window's end), then keeps the window's
rows: a session computed alone equals the same session inside a backfill. Portfolio rows go to the
row-level-secured warehouse only (``portfolio.*``), not to the lakehouse, which has no per-owner
access control.

Bad input: a bad row (unknown symbol, currency mismatch, non-session date, duplicate id, a sell
larger than the holding, ...) skips its whole portfolio; the error names file, line and field in
the metadata, the rows are quarantined under ``artifacts/quarantine/portfolio_transactions/``, the
non-blocking check ``all_portfolios_computed`` fails, and the other portfolios compute and load.
A skipped portfolio's earlier warehouse rows are left as they were.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import calendars, factor_models
from wealth_pipeline.core import portfolio as accounting
from wealth_pipeline.core import portfolio_metrics as perf
from wealth_pipeline.core.portfolio_reference import EXTERNAL_FLOW_TYPES, ReferenceData
from wealth_pipeline.defs import quality
from wealth_pipeline.defs.partitions import partition_window, single_run, trading_sessions
from wealth_pipeline.defs.portfolio.seeds import read_reference
from wealth_pipeline.defs.processed.common import WAREHOUSE_RETRY, preview, quarantine
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.providers.base import RISK_FREE_FACTOR

OWNERS = ["team:wealth-analytics"]
TAGS = {"wealth/warehouse": "portfolio"}
FX_LOOKBACK_DAYS = 14
EXPOSURE_COLUMNS = ["alpha", "beta_market", "beta_size", "beta_value", "beta_momentum"]
EXPOSURES_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(), "session_date": pl.Date(), **dict.fromkeys(EXPOSURE_COLUMNS, pl.Float64()),
    "coverage": pl.Float64(),
}
TABLES = {
    "portfolio_positions": "portfolio.positions",
    "portfolio_cash_balances": "portfolio.cash_balances",
    "portfolio_valuations": "portfolio.valuations",
    "portfolio_metrics": "portfolio.portfolio_metrics",
    "currency_attribution": "portfolio.currency_attribution",
    "portfolio_factor_exposures": "portfolio.factor_exposures",
}
TOLERANCE = 1e-6


def securities(lake: Lakehouse) -> pl.DataFrame:
    """The symbol master the market pipeline stored (``symbol_master`` must be materialized)."""
    if not lake.exists("processed", "symbol_master"):
        raise dg.Failure("portfolio assets need the symbol master: materialize symbol_master first")
    return lake.read_dataset("processed", "symbol_master")


def _reference(lake: Lakehouse, market_data: MarketDataResource) -> ReferenceData:
    return read_reference(securities(lake), market_data.landing_uri, market_data.s3_endpoint_url, market_data.s3_region)


def _errors_metadata(reference: ReferenceData, extra: dict[str, str] | None = None) -> Any:
    rows = reference.errors.to_dicts() + [{"portfolio_id": k, "reason": v} for k, v in (extra or {}).items()]
    return dg.MetadataValue.json(rows[:50])


# ---- reference data ----------------------------------------------------------------------------------
@dg.asset(
    group_name="portfolio",
    deps=["symbol_master"],
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
    retry_policy=WAREHOUSE_RETRY,
    tags=TAGS,
)
def portfolio_reference(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource,
                        market_data: MarketDataResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    from wealth_pipeline.warehouse.loader import upsert

    lake = lakehouse.get()
    reference = _reference(lake, market_data)
    yield dg.AssetCheckResult(check_name="rows_valid", passed=reference.errors.is_empty(),
                              metadata={"rejected_rows": reference.errors.height, "errors": _errors_metadata(reference),
                                        "skipped_portfolios": dg.MetadataValue.json(reference.skipped)})
    quarantined = quarantine(lake, "portfolio_reference", reference.errors, dt.date.today(), dt.date.today(), context.run_id)
    upsert(warehouse.url, "portfolio.users", reference.users, asset="portfolio_reference", run_id=context.run_id)
    upsert(warehouse.url, "portfolio.portfolios", reference.portfolios.drop("allow_short"), asset="portfolio_reference",
           run_id=context.run_id)
    warehouse.replace_table("portfolio.transactions", reference.transactions.drop("source_file", "source_line"),
                            asset="portfolio_reference", run_id=context.run_id)
    yield dg.MaterializeResult(metadata={
        "source": reference.source,
        "users": reference.users.height,
        "portfolios": reference.portfolios.height,
        "dagster/row_count": reference.transactions.height,
        "skipped_portfolios": dg.MetadataValue.json(reference.skipped),
        "quarantine": quarantined or "none",
        "preview": preview(reference.portfolios),
    })


# ---- daily accounting and analytics ----------------------------------------------------------------
def _range(frame: pl.DataFrame, column: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    return frame.filter(pl.col(column).is_between(start, end))


def read_market(lake: Lakehouse, inception: dt.date, end: dt.date) -> dict[str, pl.DataFrame]:
    """The processed-tier history the accounting needs, from inception (FX: two weeks earlier) to ``end``."""
    early = inception - dt.timedelta(days=FX_LOOKBACK_DAYS)
    read = lambda name, start: lake.read_partitions("processed", name, start, end)  # noqa: E731
    return {
        "bars": read("bars", early),
        "fx_rates": read("fx_rates", early),
        "corporate_actions": read("corporate_actions", inception),
        "factor_returns": read("factor_returns", inception),
        "benchmark_returns": read("benchmark_returns", inception),
        "factor_exposures": read("factor_exposures", early),
    }


def compute_all(reference: ReferenceData, master: pl.DataFrame, market: dict[str, pl.DataFrame], start: dt.date,
                end: dt.date) -> tuple[dict[str, pl.DataFrame], dict[str, str], int, accounting.PortfolioResult]:
    """Every table's rows for [start, end], the portfolios skipped (id -> error), the FX carry count
    and the whole accounting since inception."""
    need = ("bars", "fx_rates")
    for name in need:
        if market[name].is_empty():
            raise dg.Failure(f"no processed {name} up to {end}: materialize the market data assets for the portfolios' range")
    actions = market["corporate_actions"]
    if actions.is_empty():
        actions = pl.DataFrame(schema={"symbol": pl.Utf8, "ex_date": pl.Date, "action_type": pl.Utf8, "ratio": pl.Float64,
                                       "amount": pl.Float64, "currency": pl.Utf8})
    result = accounting.compute_portfolios(reference.portfolios, reference.transactions.filter(pl.col("trade_date") <= end),
                                           master, market["bars"], market["fx_rates"], actions, end, calendars.is_session)
    skipped = {**reference.skipped, **{k: str(v) for k, v in result.errors.items()}}
    valuations = result.valuations
    fx = accounting.FxTable(market["fx_rates"])
    base_of = dict(reference.portfolios.select("portfolio_id", "base_currency").iter_rows())
    flows = reference.transactions.filter(pl.col("type").is_in(list(EXTERNAL_FLOW_TYPES))
                                          & pl.col("portfolio_id").is_in(valuations["portfolio_id"].unique().to_list())
                                          & (pl.col("trade_date") <= end))
    flows = flows.with_columns(pl.Series("amount_base", [
        (1.0 if kind == "deposit" else -1.0) * amount * fx.rate(currency, base_of[pid], day)
        for pid, kind, amount, currency, day in flows.select("portfolio_id", "type", "amount", "currency", "trade_date").iter_rows()
    ], dtype=pl.Float64))
    factor_returns = market["factor_returns"]
    risk_free = (factor_returns.filter(pl.col("factor") == RISK_FREE_FACTOR).select("session_date", pl.col("value").alias("rf"))
                 if factor_returns.height else pl.DataFrame(schema={"session_date": pl.Date, "rf": pl.Float64}))
    benchmarks = market["benchmark_returns"]
    if benchmarks.is_empty():
        benchmarks = pl.DataFrame(schema={"benchmark": pl.Utf8, "session_date": pl.Date, "return": pl.Float64})
    metrics = perf.portfolio_metrics(valuations, flows.select("portfolio_id", "trade_date", "amount_base"), risk_free,
                                     benchmarks, reference.portfolios)
    positions = _range(result.positions, "session_date", start, end)
    exposures = pl.DataFrame(schema=EXPOSURES_SCHEMA)
    weights = accounting.exposure_weights(positions)
    if weights.height and market["factor_exposures"].height:
        as_of = accounting.as_of_exposures(weights, market["factor_exposures"].select("symbol", "session_date", *EXPOSURE_COLUMNS))
        exposures = factor_models.portfolio_exposures(weights, as_of).select(list(EXPOSURES_SCHEMA))
    frames = {
        "portfolio_positions": positions,
        "portfolio_cash_balances": _range(result.cash_balances, "session_date", start, end),
        "portfolio_valuations": _range(valuations, "session_date", start, end),
        "portfolio_metrics": _range(metrics, "session_date", start, end),
        "currency_attribution": _range(result.attribution, "session_date", start, end),
        "portfolio_factor_exposures": exposures,
    }
    return frames, skipped, result.fx_carried, result


# ---- checks ----------------------------------------------------------------------------------------------
def check_holdings(positions: pl.DataFrame, portfolios: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """No negative quantity in a portfolio that does not allow short selling."""
    longs_only = portfolios.filter(~pl.col("allow_short"))["portfolio_id"].to_list()
    bad = positions.filter(pl.col("portfolio_id").is_in(longs_only) & (pl.col("quantity") < -accounting.QUANTITY_EPS))
    return bad.is_empty(), {"negative_holdings": bad.height,
                            "examples": [str(r) for r in bad.select("portfolio_id", "symbol", "session_date", "quantity").head(5).rows()]}


def check_cash(cash: pl.DataFrame, transactions: pl.DataFrame, positions_all: pl.DataFrame,
               valuations_all: pl.DataFrame, actions: pl.DataFrame, master: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Cash per currency and day equals the running sum of the transactions' cash effects plus dividends.

    Recomputed apart from the lot engine: deposits, sells and dividend rows add; buys, withdrawals
    and fees subtract; a market dividend with ex-date t adds (quantity held at the previous
    valuation day's close) * amount per share, in the listing currency.
    """
    if cash.is_empty():
        return True, {"rows": 0}
    sign = pl.when(pl.col("type").is_in(["deposit", "sell", "dividend"])).then(1.0).otherwise(-1.0)
    deltas = transactions.select("portfolio_id", pl.col("trade_date").alias("session_date"), "currency",
                                 (sign * pl.col("amount")).alias("delta"))
    if actions.height and positions_all.height:
        days = valuations_all.select("portfolio_id", "session_date").sort("portfolio_id", "session_date").with_columns(
            pl.col("session_date").shift(1).over("portfolio_id").alias("prev_day"))
        dividends = actions.filter(pl.col("action_type") == "dividend").select(
            "symbol", pl.col("ex_date").alias("session_date"), "amount")
        credited = days.join(dividends, on="session_date").join(
            positions_all.select("portfolio_id", "symbol", pl.col("session_date").alias("prev_day"), "quantity"),
            on=["portfolio_id", "symbol", "prev_day"]).join(master.select("symbol", "currency"), on="symbol")
        deltas = pl.concat([deltas, credited.select("portfolio_id", "session_date", "currency",
                                                   (pl.col("quantity") * pl.col("amount")).alias("delta"))])
    expected = cash.select("portfolio_id", "session_date", "currency").join(
        deltas.rename({"session_date": "delta_date"}), on=["portfolio_id", "currency"], how="left").filter(
        pl.col("delta_date") <= pl.col("session_date")).group_by("portfolio_id", "session_date", "currency").agg(
        pl.col("delta").sum().alias("expected"))
    joined = cash.join(expected, on=["portfolio_id", "session_date", "currency"], how="left").with_columns(
        pl.col("expected").fill_null(0.0))
    bad = joined.filter((pl.col("balance") - pl.col("expected")).abs() > TOLERANCE * (1 + pl.col("expected").abs()))
    return bad.is_empty(), {"rows": cash.height, "mismatches": bad.height,
                            "examples": [str(r) for r in bad.select("portfolio_id", "session_date", "currency", "balance", "expected").head(5).rows()]}


def check_valuation(valuations: pl.DataFrame, positions: pl.DataFrame, cash: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Total value = sum of position market values + sum of cash, both in base currency."""
    pos = positions.group_by("portfolio_id", "session_date").agg(pl.col("market_value_base").sum().alias("pos"))
    cas = cash.group_by("portfolio_id", "session_date").agg(pl.col("balance_base").sum().alias("cash"))
    joined = valuations.join(pos, on=["portfolio_id", "session_date"], how="left").join(
        cas, on=["portfolio_id", "session_date"], how="left").with_columns(
        (pl.col("pos").fill_null(0.0) + pl.col("cash").fill_null(0.0)).alias("sum"))
    bad = joined.filter((pl.col("total_value_base") - pl.col("sum")).abs() > TOLERANCE * (1 + pl.col("sum").abs()))
    return bad.is_empty(), {"days": valuations.height, "mismatches": bad.height}


def check_attribution(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """local + fx + interaction = base for every row, and the interaction is local * fx."""
    gap = (pl.col("local_return") + pl.col("fx_return") + pl.col("interaction") - pl.col("base_return")).abs()
    bad = frame.filter((gap > 1e-12) | (pl.col("interaction") - pl.col("local_return") * pl.col("fx_return")).abs().gt(1e-12)
                       & (pl.col("symbol") != accounting.PORTFOLIO_TOTAL))
    return bad.is_empty(), {"rows": frame.height, "violations": bad.height}


def check_metrics(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Returns > -100%, volatilities in [0, 500%], drawdown in [-1, 0], |beta| < 10, |Sharpe| < 20."""
    problems = {
        "twr_at_or_below_minus_one": frame.filter((pl.col("daily_twr") <= -1) | (pl.col("cumulative_twr") <= -1)).height,
        "mwr_at_or_below_minus_one": frame.filter(pl.col("mwr_since_inception") <= -1).height,
        "volatility_out_of_range": frame.filter(pl.any_horizontal(
            [(pl.col(f"volatility_{n}") < 0) | (pl.col(f"volatility_{n}") > 5) for n in perf.VOL_WINDOWS])).height,
        "drawdown_out_of_range": frame.filter((pl.col("max_drawdown") < -1) | (pl.col("max_drawdown") > 0)).height,
        "beta_out_of_range": frame.filter(pl.col("beta_252").abs() > 10).height,
        "sharpe_out_of_range": frame.filter(pl.col("sharpe_252").abs() > 20).height,
    }
    return not any(problems.values()), problems


def _key_check(frame: pl.DataFrame, keys: list[str]) -> tuple[bool, dict[str, Any]]:
    return quality.unique_keys(keys)(frame)


KEYS = {
    "portfolio_positions": ["portfolio_id", "symbol", "session_date"],
    "portfolio_cash_balances": ["portfolio_id", "currency", "session_date"],
    "portfolio_valuations": ["portfolio_id", "session_date"],
    "portfolio_metrics": ["portfolio_id", "session_date"],
    "currency_attribution": ["portfolio_id", "symbol", "session_date"],
    "portfolio_factor_exposures": ["portfolio_id", "session_date"],
}
CHECKS: dict[str, list[tuple[str, str, bool]]] = {
    "portfolio_positions": [("holdings_not_negative", "No negative quantity unless the portfolio allows short selling.", True)],
    "portfolio_cash_balances": [("cash_reconciles", "Cash per currency equals the running sum of transactions and dividends.", True)],
    "portfolio_valuations": [("valuation_equals_sum_of_positions", "Total value = positions + cash in base currency.", True)],
    "portfolio_metrics": [("metrics_in_sane_bounds", "Returns > -100%, volatility in [0, 5], drawdown in [-1, 0], |beta| < 10, |Sharpe| < 20.", True),
                          ("all_portfolios_computed", "Every portfolio computed (a bad input row skips its portfolio; errors in metadata).", False)],
    "currency_attribution": [("terms_sum_to_total", "local + fx + interaction = base return for every row.", True)],
    "portfolio_factor_exposures": [("coverage_in_range", "Coverage in [0, 1].", True)],
}
RECONCILE = "warehouse_reconciles"


def _specs() -> list[dg.AssetCheckSpec]:
    specs = []
    for asset, checks in CHECKS.items():
        specs.append(dg.AssetCheckSpec("keys_unique", asset=asset, description="One row per key."))
        specs += [dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)
                  for name, description, blocking in checks]
        specs.append(dg.AssetCheckSpec(RECONCILE, asset=asset, description=f"{TABLES[asset]} holds exactly the window's rows."))
    return specs


_DESCRIPTIONS = {
    "portfolio_positions": "Positions by symbol and valuation day: FIFO lots, split-adjusted quantity, cost basis (local, and base at purchase FX), market value in local and base currency at the day's FX (last rate carried over FX holidays), realized and unrealized P&L, weight. `portfolio.positions`.",
    "portfolio_cash_balances": "Cash per currency and valuation day (deposits, withdrawals, fees, trades, dividends from corporate actions). `portfolio.cash_balances`.",
    "portfolio_valuations": "Total value in base currency and the day's external flow. `portfolio.valuations`.",
    "portfolio_metrics": "Daily and cumulative TWR, XIRR since inception, volatility 30/90/252, Sharpe 252 over rf, max drawdown, beta 252 to the benchmark. `portfolio.portfolio_metrics`.",
    "currency_attribution": "Local, FX and interaction terms of each position's and the portfolio's base return (symbol __portfolio__). `portfolio.currency_attribution`.",
    "portfolio_factor_exposures": "Value-weighted factor exposures of the invested holdings (latest security estimates on or before the day). `portfolio.factor_exposures`.",
}
_MARKET_DEPS = ["bars", "fx_rates", "corporate_actions", "factor_returns", "benchmark_returns", "factor_exposures", "portfolio_reference"]


@dg.multi_asset(
    name="portfolio_daily",
    specs=[dg.AssetSpec(name, group_name="portfolio", deps=_MARKET_DEPS, description=_DESCRIPTIONS[name],
                        kinds={"polars", "postgres"}, owners=OWNERS, tags=TAGS) for name in TABLES],
    check_specs=_specs(),
    partitions_def=trading_sessions,
    backfill_policy=single_run,
    retry_policy=WAREHOUSE_RETRY,
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
        frames, skipped, fx_carried, history = compute_all(reference, master, market, start, end)
    else:
        history = None
        market = {"corporate_actions": pl.DataFrame()}
        skipped, fx_carried = dict(reference.skipped), 0
        frames = {name: pl.DataFrame(schema=schema) for name, schema in zip(TABLES, (
            accounting.POSITIONS_SCHEMA, accounting.CASH_SCHEMA, accounting.VALUATIONS_SCHEMA, perf.METRICS_SCHEMA,
            accounting.ATTRIBUTION_SCHEMA, EXPOSURES_SCHEMA), strict=True)}
    computed = sorted(set(reference.portfolios["portfolio_id"].to_list()) - set(skipped))
    good_txns = reference.transactions.filter(pl.col("portfolio_id").is_in(computed) & (pl.col("trade_date") <= end))
    outcomes: dict[str, list[quality.CheckOutcome]] = {}
    results = {
        "portfolio_positions": [check_holdings(frames["portfolio_positions"], reference.portfolios)],
        "portfolio_cash_balances": [check_cash(
            frames["portfolio_cash_balances"], good_txns,
            history.positions if history else pl.DataFrame(schema=accounting.POSITIONS_SCHEMA),
            history.valuations if history else pl.DataFrame(schema=accounting.VALUATIONS_SCHEMA),
            market["corporate_actions"], master)],
        "portfolio_valuations": [check_valuation(frames["portfolio_valuations"], frames["portfolio_positions"],
                                                 frames["portfolio_cash_balances"])],
        "portfolio_metrics": [check_metrics(frames["portfolio_metrics"]),
                              (not skipped, {"skipped_portfolios": skipped, "errors": reference.errors.to_dicts()[:50]})],
        "currency_attribution": [check_attribution(frames["currency_attribution"])],
        "portfolio_factor_exposures": [(frames["portfolio_factor_exposures"].filter(
            (pl.col("coverage") < 0) | (pl.col("coverage") > 1)).is_empty(), {})],
    }
    for asset, checks in CHECKS.items():
        passed, details = _key_check(frames[asset], KEYS[asset])
        outcomes[asset] = [quality.CheckOutcome("keys_unique", passed, True, "One row per key.", details)]
        for (name, description, blocking), (ok, meta) in zip(checks, results[asset], strict=True):
            outcomes[asset].append(quality.CheckOutcome(name, ok, blocking, description, meta))
    for asset, asset_outcomes in outcomes.items():
        yield from (o.to_result(dg.AssetKey(asset)) for o in asset_outcomes)
    failed = [o for outs in outcomes.values() for o in quality.blocking_failures(outs)]
    if failed:
        for asset in TABLES:
            yield dg.AssetCheckResult(asset_key=dg.AssetKey(asset), check_name=RECONCILE, passed=False,
                                      description="not loaded: blocking checks failed")
        raise dg.Failure(quality.failure_message("portfolio_daily", failed))
    if skipped and not reference.errors.is_empty():
        quarantine(lake, "portfolio_transactions", reference.errors, start, end, context.run_id)
    for asset, table in TABLES.items():
        frame = frames[asset]
        load = warehouse.load_window(table, frame, time_column="session_date", window_start=start, window_end=end,
                                     asset=asset, partition_key=f"{start}..{end}", run_id=context.run_id,
                                     entity_filter=("portfolio_id", computed))
        passed, details = _reconcile(warehouse.url, table, start, end, computed, frame.height)
        yield dg.AssetCheckResult(asset_key=dg.AssetKey(asset), check_name=RECONCILE, passed=passed, metadata=details)
        metadata: dict[str, Any] = {
            "dagster/row_count": frame.height,
            "portfolios": dg.MetadataValue.json(computed),
            "warehouse_table": table,
            "warehouse_checksum": load.checksum,
            "preview": preview(frame.sort("session_date", descending=True) if frame.height else frame),
        }
        if asset == "portfolio_valuations":
            metadata["fx_rate_carried_forward_days"] = fx_carried
        if skipped:
            metadata["skipped_portfolios"] = dg.MetadataValue.json(skipped)
        yield dg.MaterializeResult(asset_key=dg.AssetKey(asset), metadata=metadata)


def _reconcile(url: str, table: str, start: dt.date, end: dt.date, portfolios: list[str], expected: int) -> tuple[bool, dict[str, Any]]:
    import psycopg
    from psycopg import sql

    schema, name = table.split(".")
    query = sql.SQL("SELECT count(*) FROM {}.{} WHERE session_date BETWEEN %s AND %s AND portfolio_id = ANY(%s)").format(
        sql.Identifier(schema), sql.Identifier(name))
    with psycopg.connect(url) as conn:
        found = conn.execute(query, (start, end, portfolios)).fetchone()[0]
    return found == expected, {"computed_rows": expected, "warehouse_rows": int(found), "table": table}


