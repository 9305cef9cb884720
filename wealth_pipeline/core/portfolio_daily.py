"""The daily portfolio tables of a window, and the independent checks they must pass.

``compute_all`` recomputes every portfolio from its first transaction with the market history
given (bars, FX, corporate actions, risk-free rate, benchmark, factor exposures), then keeps the
window's rows: a session computed alone equals the same session inside a backfill. The checks
recompute what they judge apart from the lot engine (cash from the transactions, value from the
positions). Pure compute: ``defs/portfolio/assets.py`` reads the market data and publishes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from wealth_pipeline.core import calendars, factor_models, universe
from wealth_pipeline.core import portfolio as accounting
from wealth_pipeline.core import portfolio_metrics as perf
from wealth_pipeline.core.portfolio_reference import EXTERNAL_FLOW_TYPES, ReferenceData
from wealth_pipeline.core.schemas import CORPORATE_ACTIONS_SCHEMA, RISK_FREE_FACTOR

EXPOSURE_COLUMNS = ["alpha", "beta_market", "beta_size", "beta_value", "beta_momentum"]
EXPOSURES_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(),
    "session_date": pl.Date(),
    **dict.fromkeys(EXPOSURE_COLUMNS, pl.Float64()),
    "coverage": pl.Float64(),
}
# The security-keyed tables also carry the stable id of their symbol (issue 21; null on the
# attribution's portfolio-total rows, symbol = __portfolio__).
SECURITY_ID: dict[str, pl.DataType] = {"security_id": pl.Utf8()}
# The tables compute_all returns, by asset name, with their schemas.
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "portfolio_positions": {**accounting.POSITIONS_SCHEMA, **SECURITY_ID},
    "portfolio_cash_balances": accounting.CASH_SCHEMA,
    "portfolio_valuations": accounting.VALUATIONS_SCHEMA,
    "portfolio_metrics": perf.METRICS_SCHEMA,
    "currency_attribution": {**accounting.ATTRIBUTION_SCHEMA, **SECURITY_ID},
    "portfolio_factor_exposures": EXPOSURES_SCHEMA,
}
MARKET_INPUTS = (
    "bars",
    "fx_rates",
    "corporate_actions",
    "factor_returns",
    "benchmark_returns",
    "factor_exposures",
)
TOLERANCE = 1e-6


class MissingMarketData(ValueError):
    """The market data the accounting needs has not been materialized; the message names it."""


def _range(frame: pl.DataFrame, column: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    return frame.filter(pl.col(column).is_between(start, end))


def with_security_ids(frame: pl.DataFrame, master: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (with ``symbol``) plus the ``security_id`` of each symbol in the symbol master.

    The lookup the processed bars make (one row per symbol in ``ref.securities``, a former ticker
    keeping its own row with the same id); a symbol the master does not know (the attribution's
    ``__portfolio__`` total) gets null.
    """
    ids = universe.symbol_security_ids(master).unique("symbol")
    return frame.join(ids, on="symbol", how="left", maintain_order="left")


def empty_tables() -> dict[str, pl.DataFrame]:
    """Every table with no rows (no transactions yet)."""
    return {name: pl.DataFrame(schema=schema) for name, schema in SCHEMAS.items()}


def compute_all(
    reference: ReferenceData,
    master: pl.DataFrame,
    market: dict[str, pl.DataFrame],
    start: dt.date,
    end: dt.date,
) -> tuple[dict[str, pl.DataFrame], dict[str, str], int, accounting.PortfolioResult]:
    """Every table's rows for [start, end], the portfolios skipped (id -> error), the FX carry count
    and the whole accounting since inception.

    Raises ``MissingMarketData`` when bars up to ``end`` are missing. A portfolio whose history lacks
    a price or a cross rate it needs (``MarketDataGap``, e.g. ``MissingFxRate`` naming the pair and
    the session) is skipped with that one-line reason, like every other gap, and the others are
    computed. FX rates are needed only across currencies: same-currency conversion is the identity
    (issue 14).
    """
    if market["bars"].is_empty():
        raise MissingMarketData(
            f"no processed bars up to {end}: materialize the market data assets for the portfolios' range"
        )
    actions = market["corporate_actions"]
    if actions.is_empty():
        actions = pl.DataFrame(schema=CORPORATE_ACTIONS_SCHEMA)
    result = accounting.compute_portfolios(
        reference.portfolios,
        reference.transactions.filter(pl.col("trade_date") <= end),
        master,
        market["bars"],
        market["fx_rates"],
        actions,
        end,
        calendars.is_session,
    )
    skipped = {**reference.skipped, **{k: str(v) for k, v in result.errors.items()}}
    valuations = result.valuations
    fx = accounting.FxTable(market["fx_rates"])
    base_of = dict(reference.portfolios.select("portfolio_id", "base_currency").iter_rows())
    flows = reference.transactions.filter(
        pl.col("type").is_in(list(EXTERNAL_FLOW_TYPES))
        & pl.col("portfolio_id").is_in(valuations["portfolio_id"].unique().to_list())
        & (pl.col("trade_date") <= end)
    )
    flows = flows.with_columns(
        pl.Series(
            "amount_base",
            [
                (1.0 if kind == "deposit" else -1.0) * amount * fx.rate(currency, base_of[pid], day)
                for pid, kind, amount, currency, day in flows.select(
                    "portfolio_id", "type", "amount", "currency", "trade_date"
                ).iter_rows()
            ],
            dtype=pl.Float64,
        )
    )
    factor_returns = market["factor_returns"]
    risk_free = (
        factor_returns.filter(pl.col("factor") == RISK_FREE_FACTOR).select(
            "session_date", pl.col("value").alias("rf")
        )
        if factor_returns.height
        else pl.DataFrame(schema={"session_date": pl.Date, "rf": pl.Float64})
    )
    benchmarks = market["benchmark_returns"]
    if benchmarks.is_empty():
        benchmarks = pl.DataFrame(
            schema={"benchmark": pl.Utf8, "session_date": pl.Date, "return": pl.Float64}
        )
    metrics = perf.portfolio_metrics(
        valuations,
        flows.select("portfolio_id", "trade_date", "amount_base"),
        risk_free,
        benchmarks,
        reference.portfolios,
    )
    positions = _range(result.positions, "session_date", start, end)
    exposures = pl.DataFrame(schema=EXPOSURES_SCHEMA)
    weights = accounting.exposure_weights(positions)
    if weights.height and market["factor_exposures"].height:
        as_of = accounting.as_of_exposures(
            weights, market["factor_exposures"].select("symbol", "session_date", *EXPOSURE_COLUMNS)
        )
        exposures = factor_models.portfolio_exposures(weights, as_of).select(list(EXPOSURES_SCHEMA))
    frames = {
        "portfolio_positions": with_security_ids(positions, master),
        "portfolio_cash_balances": _range(result.cash_balances, "session_date", start, end),
        "portfolio_valuations": _range(valuations, "session_date", start, end),
        "portfolio_metrics": _range(metrics, "session_date", start, end),
        "currency_attribution": with_security_ids(_range(result.attribution, "session_date", start, end), master),
        "portfolio_factor_exposures": exposures,
    }
    return frames, skipped, result.fx_carried, result


# ---- checks ----------------------------------------------------------------------------------------------
def check_holdings(positions: pl.DataFrame, portfolios: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """No negative quantity in a portfolio that does not allow short selling."""
    longs_only = portfolios.filter(~pl.col("allow_short"))["portfolio_id"].to_list()
    bad = positions.filter(
        pl.col("portfolio_id").is_in(longs_only) & (pl.col("quantity") < -accounting.QUANTITY_EPS)
    )
    return bad.is_empty(), {
        "negative_holdings": bad.height,
        "examples": [
            str(r) for r in bad.select("portfolio_id", "symbol", "session_date", "quantity").head(5).rows()
        ],
    }


def check_cash(
    cash: pl.DataFrame,
    transactions: pl.DataFrame,
    positions_all: pl.DataFrame,
    valuations_all: pl.DataFrame,
    actions: pl.DataFrame,
    master: pl.DataFrame,
) -> tuple[bool, dict[str, Any]]:
    """Cash per currency and day equals the running sum of the transactions' cash effects plus dividends.

    Recomputed apart from the lot engine: deposits, sells and dividend rows add; buys, withdrawals
    and fees subtract; a market dividend with ex-date t adds (quantity held at the previous
    valuation day's close) * amount per share, in the listing currency.
    """
    if cash.is_empty():
        return True, {"rows": 0}
    sign = pl.when(pl.col("type").is_in(["deposit", "sell", "dividend"])).then(1.0).otherwise(-1.0)
    deltas = transactions.select(
        "portfolio_id",
        pl.col("trade_date").alias("session_date"),
        "currency",
        (sign * pl.col("amount")).alias("delta"),
    )
    if actions.height and positions_all.height:
        days = (
            valuations_all.select("portfolio_id", "session_date")
            .sort("portfolio_id", "session_date")
            .with_columns(pl.col("session_date").shift(1).over("portfolio_id").alias("prev_day"))
        )
        dividends = actions.filter(pl.col("action_type") == "dividend").select(
            "symbol", pl.col("ex_date").alias("session_date"), "amount"
        )
        credited = (
            days.join(dividends, on="session_date")
            .join(
                positions_all.select(
                    "portfolio_id", "symbol", pl.col("session_date").alias("prev_day"), "quantity"
                ),
                on=["portfolio_id", "symbol", "prev_day"],
            )
            .join(master.select("symbol", "currency"), on="symbol")
        )
        deltas = pl.concat(
            [
                deltas,
                credited.select(
                    "portfolio_id",
                    "session_date",
                    "currency",
                    (pl.col("quantity") * pl.col("amount")).alias("delta"),
                ),
            ]
        )
    expected = (
        cash.select("portfolio_id", "session_date", "currency")
        .join(deltas.rename({"session_date": "delta_date"}), on=["portfolio_id", "currency"], how="left")
        .filter(pl.col("delta_date") <= pl.col("session_date"))
        .group_by("portfolio_id", "session_date", "currency")
        .agg(pl.col("delta").sum().alias("expected"))
    )
    joined = cash.join(expected, on=["portfolio_id", "session_date", "currency"], how="left").with_columns(
        pl.col("expected").fill_null(0.0)
    )
    bad = joined.filter(
        (pl.col("balance") - pl.col("expected")).abs() > TOLERANCE * (1 + pl.col("expected").abs())
    )
    return bad.is_empty(), {
        "rows": cash.height,
        "mismatches": bad.height,
        "examples": [
            str(r)
            for r in bad.select("portfolio_id", "session_date", "currency", "balance", "expected")
            .head(5)
            .rows()
        ],
    }


def check_valuation(
    valuations: pl.DataFrame, positions: pl.DataFrame, cash: pl.DataFrame
) -> tuple[bool, dict[str, Any]]:
    """Total value = sum of position market values + sum of cash, both in base currency."""
    pos = positions.group_by("portfolio_id", "session_date").agg(
        pl.col("market_value_base").sum().alias("pos")
    )
    cas = cash.group_by("portfolio_id", "session_date").agg(pl.col("balance_base").sum().alias("cash"))
    joined = (
        valuations.join(pos, on=["portfolio_id", "session_date"], how="left")
        .join(cas, on=["portfolio_id", "session_date"], how="left")
        .with_columns((pl.col("pos").fill_null(0.0) + pl.col("cash").fill_null(0.0)).alias("sum"))
    )
    bad = joined.filter(
        (pl.col("total_value_base") - pl.col("sum")).abs() > TOLERANCE * (1 + pl.col("sum").abs())
    )
    return bad.is_empty(), {"days": valuations.height, "mismatches": bad.height}


def check_attribution(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """local + fx + interaction = base for every row, and the interaction is local * fx."""
    gap = (pl.col("local_return") + pl.col("fx_return") + pl.col("interaction") - pl.col("base_return")).abs()
    bad = frame.filter(
        (gap > 1e-12)
        | (pl.col("interaction") - pl.col("local_return") * pl.col("fx_return")).abs().gt(1e-12)
        & (pl.col("symbol") != accounting.PORTFOLIO_TOTAL)
    )
    return bad.is_empty(), {"rows": frame.height, "violations": bad.height}


def check_metrics(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Returns > -100%, volatilities in [0, 500%], drawdown in [-1, 0], |beta| < 10, |Sharpe| < 20."""
    problems = {
        "twr_at_or_below_minus_one": frame.filter(
            (pl.col("daily_twr") <= -1) | (pl.col("cumulative_twr") <= -1)
        ).height,
        "mwr_at_or_below_minus_one": frame.filter(pl.col("mwr_since_inception") <= -1).height,
        "volatility_out_of_range": frame.filter(
            pl.any_horizontal(
                [(pl.col(f"volatility_{n}") < 0) | (pl.col(f"volatility_{n}") > 5) for n in perf.VOL_WINDOWS]
            )
        ).height,
        "drawdown_out_of_range": frame.filter(
            (pl.col("max_drawdown") < -1) | (pl.col("max_drawdown") > 0)
        ).height,
        "beta_out_of_range": frame.filter(pl.col("beta_252").abs() > 10).height,
        "sharpe_out_of_range": frame.filter(pl.col("sharpe_252").abs() > 20).height,
    }
    return not any(problems.values()), problems


def check_coverage(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Factor-exposure coverage (share of the invested value with estimates) lies in [0, 1]."""
    bad = frame.filter((pl.col("coverage") < 0) | (pl.col("coverage") > 1))
    return bad.is_empty(), {"rows_out_of_range": bad.height}
