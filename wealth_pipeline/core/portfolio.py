"""Portfolio accounting: lots (FIFO), cash per currency, valuations in base currency, attribution.

Conventions (documented in README / ``docs/portfolio-file-layouts.md``):

* Valuation days are the weekdays on which at least one listing exchange is open, from the
  portfolio's first transaction. A security is valued at its last raw close on or before the day
  (a US name on a TSX-only day keeps its previous close); money converts to the base currency at
  that day's FX rate, and over FX holidays the last known rate is carried forward (counted in
  ``PortfolioResult.fx_carried``).
* Order within a day: corporate actions first (they apply to the holdings at the previous close),
  then the day's transactions in file order, then the close valuation.
* A split of ratio r multiplies each lot's quantity by r and divides its unit cost by r (value and
  cost unchanged). A cash dividend of D per share credits ``quantity * D`` of the listing currency
  to cash on the ex-date (pay date = ex-date); a short position pays it.
* Lots are closed first in, first out. Realized P&L (base) = proceeds at the trade day's FX - cost
  of the closed lots at their purchase days' FX; it accumulates per symbol. Cost basis in base uses
  the FX rate of each lot's purchase day. Unrealized P&L (base) = market value (base) - cost basis.
* A sell larger than the holding is rejected (``PortfolioInputError`` naming the row) unless the
  portfolio allows short selling, in which case the excess opens a short lot (negative quantity).
* Deposits and withdrawals are the only external flows; fees and dividends are internal (they are
  part of the return). ``net_external_flow_base`` converts them at the day's FX rate.
* Currency attribution of day t, for the holdings at the close of the previous valuation day:
  ``local = (q' * P_t + q * D_t) / (q * P_{t-1}) - 1`` (q' = split-adjusted quantity, D = dividend),
  ``fx = X_t / X_{t-1} - 1`` (X = base per unit of local currency), ``interaction = local * fx``,
  ``base = local + fx + interaction`` (= (1 + local)(1 + fx) - 1). The portfolio row weights each
  position and each cash balance (local return 0) by its share of the previous close's total value,
  so its terms also sum exactly; on days without trades or flows its base return equals the TWR.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from wealth_pipeline.core.portfolio_reference import PortfolioInputError

PORTFOLIO_TOTAL = "__portfolio__"

POSITIONS_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(),
    "session_date": pl.Date(),
    "symbol": pl.Utf8(),
    "currency": pl.Utf8(),
    "quantity": pl.Float64(),
    "cost_basis_local": pl.Float64(),
    "cost_basis_base": pl.Float64(),
    "market_value_local": pl.Float64(),
    "market_value_base": pl.Float64(),
    "unrealized_pnl_base": pl.Float64(),
    "realized_pnl_base": pl.Float64(),
    "weight": pl.Float64(),
}
CASH_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(),
    "session_date": pl.Date(),
    "currency": pl.Utf8(),
    "balance": pl.Float64(),
    "balance_base": pl.Float64(),
}
VALUATIONS_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(),
    "session_date": pl.Date(),
    "base_currency": pl.Utf8(),
    "positions_value_base": pl.Float64(),
    "cash_base": pl.Float64(),
    "total_value_base": pl.Float64(),
    "net_external_flow_base": pl.Float64(),
}
ATTRIBUTION_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(),
    "session_date": pl.Date(),
    "symbol": pl.Utf8(),
    "local_return": pl.Float64(),
    "fx_return": pl.Float64(),
    "interaction": pl.Float64(),
    "base_return": pl.Float64(),
}
QUANTITY_EPS = 1e-9


class MarketDataGap(ValueError):
    """A price or FX rate the accounting needs is not in the market data read."""


class MissingFxRate(MarketDataGap):
    """A conversion the accounting needs (currency != base) has no rate on or before the session."""


class FxTable:
    """Base-per-unit conversion rates from ``FX_RATES_SCHEMA`` rows, last rate carried forward.

    Same-currency conversion is the identity and needs no rows: a portfolio whose holdings and cash
    are all in its base currency values without any FX data (issue 14). ``fx_rates`` may be empty,
    even without columns (nothing materialized).
    """

    def __init__(self, fx_rates: pl.DataFrame) -> None:
        series: dict[tuple[str, str], dict[dt.date, float]] = defaultdict(dict)
        rows = (
            fx_rates.select("session_date", "base_currency", "quote_currency", "rate").iter_rows()
            if fx_rates.height
            else ()
        )
        for day, base, quote, rate in rows:
            series[(base, quote)][day] = rate  # 1 base = rate quote
            series[(quote, base)].setdefault(day, 1.0 / rate)
        self._dates = {k: sorted(v) for k, v in series.items()}
        self._rates = {k: [v[d] for d in self._dates[k]] for k, v in series.items()}
        self.carried: set[tuple[str, str, dt.date]] = set()

    def rate(self, currency: str, base: str, day: dt.date) -> float:
        """Units of ``base`` per unit of ``currency`` on ``day`` (carrying the last known rate forward)."""
        if currency == base:
            return 1.0
        key = (currency, base)
        dates = self._dates.get(key)
        if not dates:
            raise MissingFxRate(
                f"no {currency}/{base} FX rate on or before {day}: the processed fx_rates hold none "
                f"for the pair; deliver and materialize {currency}/{base} (or {base}/{currency}) rates"
            )
        i = bisect.bisect_right(dates, day) - 1
        if i < 0:
            raise MissingFxRate(
                f"no {currency}/{base} FX rate on or before {day}: the first is on {dates[0]}; "
                f"materialize fx_rates from {day} on"
            )
        if dates[i] != day:
            self.carried.add((currency, base, day))
        return self._rates[key][i]


class PriceTable:
    """Raw closes per symbol, last close carried forward to days its exchange is closed."""

    def __init__(self, bars: pl.DataFrame) -> None:
        self._dates: dict[str, list[dt.date]] = {}
        self._closes: dict[str, list[float]] = {}
        for (symbol,), part in (
            bars.select("symbol", "session_date", "close")
            .sort("symbol", "session_date")
            .partition_by("symbol", as_dict=True)
            .items()
        ):
            self._dates[symbol] = part["session_date"].to_list()
            self._closes[symbol] = part["close"].to_list()

    def close(self, symbol: str, day: dt.date) -> float:
        dates = self._dates.get(symbol)
        i = bisect.bisect_right(dates, day) - 1 if dates else -1
        if i < 0:
            raise MarketDataGap(
                f"no bar for {symbol} on or before {day}: materialize bars for that range first"
            )
        return self._closes[symbol][i]


@dataclass
class _Lot:
    quantity: float  # signed: negative for a short lot
    unit_cost_local: float
    unit_cost_base: float


@dataclass
class PortfolioResult:
    """Every daily frame of the accounting, for all the portfolios computed."""

    positions: pl.DataFrame
    cash_balances: pl.DataFrame
    valuations: pl.DataFrame
    attribution: pl.DataFrame
    fx_carried: int = 0
    errors: dict[str, PortfolioInputError | MarketDataGap] = field(default_factory=dict)


def valuation_days(start: dt.date, end: dt.date, open_on: Sequence[str], is_session) -> list[dt.date]:
    """Weekdays in [start, end] on which at least one of ``open_on`` exchanges holds a session."""
    days, day = [], start
    while day <= end:
        if day.weekday() < 5 and any(is_session(e, day) for e in open_on):
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def _trade(lots: deque[_Lot], signed_qty: float, unit_cash_local: float, fx: float) -> tuple[float, float]:
    """Apply a trade of ``signed_qty`` (buy > 0, sell < 0) at ``unit_cash_local`` per share.

    Opposite lots are closed FIFO; the remainder opens a new lot. Returns (realized P&L base,
    quantity that opened a lot in the trade's direction).
    """
    realized = 0.0
    remaining = signed_qty
    while lots and abs(remaining) > QUANTITY_EPS and (lots[0].quantity > 0) != (remaining > 0):
        lot = lots[0]
        closed = min(abs(lot.quantity), abs(remaining))
        sign = 1.0 if lot.quantity > 0 else -1.0  # long lot closed by a sell, short lot by a buy
        realized += sign * closed * (unit_cash_local * fx - lot.unit_cost_base)
        lot.quantity -= sign * closed
        remaining += sign * closed
        if abs(lot.quantity) <= QUANTITY_EPS:
            lots.popleft()
    if abs(remaining) > QUANTITY_EPS:
        lots.append(_Lot(remaining, unit_cash_local, unit_cash_local * fx))
    return realized, remaining


def compute_portfolio(
    portfolio: dict,
    transactions: pl.DataFrame,
    securities: dict[str, str],
    prices: PriceTable,
    fx: FxTable,
    actions: pl.DataFrame,
    days: Sequence[dt.date],
) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """Daily positions, cash, valuation and attribution rows of one portfolio over ``days``.

    ``portfolio``: a row of ``PORTFOLIOS_SCHEMA``; ``transactions``: its validated rows (file order);
    ``securities``: symbol -> listing currency; ``actions``: ``CORPORATE_ACTIONS_SCHEMA`` rows.
    Raises ``PortfolioInputError`` (a sell larger than the holding, naming the row) or
    ``MarketDataGap``.
    """
    pid, base = portfolio["portfolio_id"], portfolio["base_currency"]
    allow_short = bool(portfolio.get("allow_short"))
    by_day: dict[dt.date, list[dict]] = defaultdict(list)
    for row in transactions.iter_rows(named=True):
        by_day[row["trade_date"]].append(row)
    held_symbols = set(transactions.filter(pl.col("symbol").is_not_null())["symbol"].to_list())
    splits: dict[dt.date, list[tuple[str, float]]] = defaultdict(list)
    dividends: dict[dt.date, list[tuple[str, float]]] = defaultdict(list)
    for symbol, ex_date, kind, ratio, amount in (
        actions.filter(pl.col("symbol").is_in(list(held_symbols)))
        .select("symbol", "ex_date", "action_type", "ratio", "amount")
        .iter_rows()
    ):
        (splits if kind == "split" else dividends)[ex_date].append(
            (symbol, ratio if kind == "split" else amount)
        )

    lots: dict[str, deque[_Lot]] = defaultdict(deque)
    cash: dict[str, float] = {}
    realized: dict[str, float] = defaultdict(float)
    positions, cash_rows, valuations, attribution = [], [], [], []
    prev: dict | None = (
        None  # previous close: {"value", "positions": {sym: (q, price, fxr)}, "cash": {c: (bal, fxr)}}
    )
    for day in days:
        split_today = dict(splits.get(day, []))
        div_today: dict[str, float] = defaultdict(float)
        for symbol, per_share in dividends.get(day, []):  # several distributions of a day add up (issue 14)
            div_today[symbol] += per_share
        for symbol, ratio in split_today.items():
            for lot in lots.get(symbol, ()):
                lot.quantity *= ratio
                lot.unit_cost_local /= ratio
                lot.unit_cost_base /= ratio
        for symbol, per_share in div_today.items():
            quantity = sum(lot.quantity for lot in lots.get(symbol, ()))
            if abs(quantity) > QUANTITY_EPS:
                currency = securities[symbol]
                cash[currency] = cash.get(currency, 0.0) + quantity * per_share
        flow_base = 0.0
        traded: set[str] = set()
        for row in by_day.get(day, []):
            kind, currency, amount = row["type"], row["currency"], row["amount"]
            rate = fx.rate(currency, base, day)
            cash.setdefault(currency, 0.0)
            if kind == "deposit":
                cash[currency] += amount
                flow_base += amount * rate
            elif kind == "withdrawal":
                cash[currency] -= amount
                flow_base -= amount * rate
            elif kind == "fee":
                cash[currency] -= amount
            elif kind == "dividend":
                cash[currency] += amount
            else:
                symbol, quantity = row["symbol"], row["quantity"]
                held = sum(lot.quantity for lot in lots[symbol])
                if kind == "sell" and not allow_short and quantity > held + QUANTITY_EPS:
                    raise PortfolioInputError(
                        row["source_file"],
                        row["source_line"],
                        "quantity",
                        f"sell of {quantity:g} {symbol} on {day} is larger than the holding of {held:g} "
                        f"(portfolio {pid} does not allow short selling)",
                        pid,
                    )
                signed = quantity if kind == "buy" else -quantity
                unit = amount / quantity
                gain, _ = _trade(lots[symbol], signed, unit, rate)
                realized[symbol] += gain
                cash[currency] += -amount if kind == "buy" else amount
                traded.add(symbol)
        # close valuation
        snapshot_positions: dict[str, tuple[float, float, float, str]] = {}
        day_positions = []
        for symbol in sorted(set(lots) | traded):
            quantity = sum(lot.quantity for lot in lots[symbol])
            if abs(quantity) <= QUANTITY_EPS and symbol not in traded:
                continue
            currency = securities[symbol]
            price = prices.close(symbol, day)
            rate = fx.rate(currency, base, day)
            cost_local = sum(lot.quantity * lot.unit_cost_local for lot in lots[symbol])
            cost_base = sum(lot.quantity * lot.unit_cost_base for lot in lots[symbol])
            mv_local = quantity * price
            mv_base = mv_local * rate
            if abs(quantity) > QUANTITY_EPS:
                snapshot_positions[symbol] = (quantity, price, rate, currency)
            day_positions.append(
                {
                    "portfolio_id": pid,
                    "session_date": day,
                    "symbol": symbol,
                    "currency": currency,
                    "quantity": quantity if abs(quantity) > QUANTITY_EPS else 0.0,
                    "cost_basis_local": cost_local,
                    "cost_basis_base": cost_base,
                    "market_value_local": mv_local,
                    "market_value_base": mv_base,
                    "unrealized_pnl_base": mv_base - cost_base,
                    "realized_pnl_base": realized[symbol],
                    "weight": None,
                }
            )
        snapshot_cash: dict[str, tuple[float, float]] = {}
        cash_base = 0.0
        for currency in sorted(cash):
            rate = fx.rate(currency, base, day)
            snapshot_cash[currency] = (cash[currency], rate)
            cash_base += cash[currency] * rate
            cash_rows.append(
                {
                    "portfolio_id": pid,
                    "session_date": day,
                    "currency": currency,
                    "balance": cash[currency],
                    "balance_base": cash[currency] * rate,
                }
            )
        positions_base = sum(p["market_value_base"] for p in day_positions)
        total = positions_base + cash_base
        for p in day_positions:
            p["weight"] = p["market_value_base"] / total if total > 0 else None
        positions.extend(day_positions)
        valuations.append(
            {
                "portfolio_id": pid,
                "session_date": day,
                "base_currency": base,
                "positions_value_base": positions_base,
                "cash_base": cash_base,
                "total_value_base": total,
                "net_external_flow_base": flow_base,
            }
        )
        if prev is not None and prev["value"] > 0:
            attribution.extend(_attribution(pid, day, prev, prices, fx, base, split_today, div_today))
        prev = {"value": total, "positions": snapshot_positions, "cash": snapshot_cash}
    return positions, cash_rows, valuations, attribution


def _attribution(
    pid: str,
    day: dt.date,
    prev: dict,
    prices: PriceTable,
    fx: FxTable,
    base: str,
    split_today: dict[str, float],
    div_today: dict[str, float],
) -> list[dict]:
    """Attribution rows of ``day`` for the holdings at the previous close (see the module docstring)."""
    out = []
    totals = {"local_return": 0.0, "fx_return": 0.0, "interaction": 0.0}
    for symbol, (quantity, price_prev, rate_prev, currency) in prev["positions"].items():
        ratio = split_today.get(symbol, 1.0)
        price = prices.close(symbol, day)
        rate = fx.rate(currency, base, day)
        local = (quantity * ratio * price + quantity * div_today.get(symbol, 0.0)) / (
            quantity * price_prev
        ) - 1.0
        fx_ret = rate / rate_prev - 1.0
        inter = local * fx_ret
        weight = quantity * price_prev * rate_prev / prev["value"]
        out.append(
            {
                "portfolio_id": pid,
                "session_date": day,
                "symbol": symbol,
                "local_return": local,
                "fx_return": fx_ret,
                "interaction": inter,
                "base_return": local + fx_ret + inter,
            }
        )
        totals["local_return"] += weight * local
        totals["fx_return"] += weight * fx_ret
        totals["interaction"] += weight * inter
    for currency, (balance, rate_prev) in prev["cash"].items():
        rate = fx.rate(currency, base, day)
        totals["fx_return"] += balance * rate_prev / prev["value"] * (rate / rate_prev - 1.0)
    out.append(
        {
            "portfolio_id": pid,
            "session_date": day,
            "symbol": PORTFOLIO_TOTAL,
            **totals,
            "base_return": totals["local_return"] + totals["fx_return"] + totals["interaction"],
        }
    )
    return out


def compute_portfolios(
    portfolios: pl.DataFrame,
    transactions: pl.DataFrame,
    securities: pl.DataFrame,
    bars: pl.DataFrame,
    fx_rates: pl.DataFrame,
    actions: pl.DataFrame,
    end: dt.date,
    is_session,
) -> PortfolioResult:
    """Accounting of every portfolio from its first transaction to ``end``.

    A portfolio that fails (a sell larger than its holding, a missing price or FX rate) is left out
    and its error kept in ``errors``; the others still compute.
    """
    listing = dict(securities.select("symbol", "currency").iter_rows())
    exchanges = sorted(set(securities["exchange"].to_list()))
    prices, fx = PriceTable(bars), FxTable(fx_rates)
    frames: dict[str, list[dict]] = {"positions": [], "cash": [], "valuations": [], "attribution": []}
    errors: dict[str, PortfolioInputError | MarketDataGap] = {}
    for portfolio in portfolios.sort("portfolio_id").iter_rows(named=True):
        own = transactions.filter(pl.col("portfolio_id") == portfolio["portfolio_id"])
        if own.is_empty():
            continue
        days = valuation_days(own["trade_date"].min(), end, exchanges, is_session)
        try:
            result = compute_portfolio(portfolio, own, listing, prices, fx, actions, days)
        except (PortfolioInputError, MarketDataGap) as exc:
            errors[portfolio["portfolio_id"]] = exc
            continue
        for rows, computed in zip(frames.values(), result, strict=True):
            rows.extend(computed)
    return PortfolioResult(
        positions=pl.DataFrame(frames["positions"], schema=POSITIONS_SCHEMA),
        cash_balances=pl.DataFrame(frames["cash"], schema=CASH_SCHEMA),
        valuations=pl.DataFrame(frames["valuations"], schema=VALUATIONS_SCHEMA),
        attribution=pl.DataFrame(frames["attribution"], schema=ATTRIBUTION_SCHEMA),
        fx_carried=len(fx.carried),
        errors=errors,
    )


def exposure_weights(positions: pl.DataFrame) -> pl.DataFrame:
    """``portfolio_id, symbol, session_date, weight`` of the held securities (cash left out)."""
    return positions.filter(pl.col("quantity").abs() > QUANTITY_EPS).select(
        "portfolio_id", "symbol", "session_date", pl.col("weight").fill_null(0.0)
    )


def as_of_exposures(weights: pl.DataFrame, exposures: pl.DataFrame, tolerance_days: int = 10) -> pl.DataFrame:
    """Each held security's latest exposure row on or before the valuation day (within ``tolerance_days``).

    A US name on a TSX-only day has no row of that day: its previous session's estimates apply.
    """
    keys = weights.select("symbol", "session_date").unique().sort("session_date")
    found = keys.join_asof(
        exposures.rename({"session_date": "exposure_date"}).sort("exposure_date"),
        left_on="session_date",
        right_on="exposure_date",
        by="symbol",
        strategy="backward",
        tolerance=dt.timedelta(days=tolerance_days),
        check_sortedness=False,
    )
    return found.drop("exposure_date").drop_nulls("alpha") if "alpha" in found.columns else found
