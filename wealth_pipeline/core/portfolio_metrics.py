"""Portfolio performance metrics per valuation day: TWR, MWR (XIRR), volatility, Sharpe, drawdown, beta.

Conventions (the oracles in the tests: empyrical-reloaded and pyxirr on the same series):

* Daily time-weighted return with the day's external flow F_t (deposits +, withdrawals -, base
  currency) available from the start of the day: ``r_t = V_t / (V_{t-1} + F_t) - 1`` with
  ``V_{-1} = 0`` (the first day's return is V / F - 1). Null when ``V_{t-1} + F_t <= 0``.
  Cumulative TWR = prod(1 + r) - 1 since inception (null days count as 0).
* Money-weighted return: the annualized XIRR (actual/365 days, as pyxirr's default) of the flows
  from the investor's side (deposits negative, withdrawals positive) plus the day's total value
  as a final positive flow. Null on the inception day (no elapsed time) or when no rate solves it.
* Volatility over N = 30/90/252: sample standard deviation (ddof = 1) of the last N daily returns
  times sqrt(252) (empyrical ``annual_volatility``). Sharpe over 252: mean / sample std of the
  excess returns r_t - rf_t times sqrt(252) (empyrical ``sharpe_ratio`` with the rf series; rf is
  0 on a day with no risk-free observation). Beta over 252: cov(r, b) / var(b) on the days both the
  portfolio and its benchmark have a return (empyrical ``beta``, risk-free 0). A window holds the
  last N returns since inception; with fewer than ``MIN_OBSERVATIONS`` the metric is null.
* Maximum drawdown since inception: min over days of wealth / running peak - 1, wealth starting
  at 1 before the first return (empyrical ``max_drawdown`` on the whole series so far); <= 0.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

TRADING_DAYS = 252
VOL_WINDOWS: tuple[int, ...] = (30, 90, 252)
RATIO_WINDOW = 252
MIN_OBSERVATIONS = 20

METRICS_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(), "session_date": pl.Date(), "daily_twr": pl.Float64(), "cumulative_twr": pl.Float64(),
    "mwr_since_inception": pl.Float64(), "volatility_30": pl.Float64(), "volatility_90": pl.Float64(),
    "volatility_252": pl.Float64(), "sharpe_252": pl.Float64(), "max_drawdown": pl.Float64(), "beta_252": pl.Float64(),
}


def daily_twr(values: Sequence[float], flows: Sequence[float]) -> np.ndarray:
    """Daily time-weighted returns (flows at the start of the day); NaN where undefined."""
    v = np.asarray(values, dtype=float)
    f = np.asarray(flows, dtype=float)
    prev = np.concatenate([[0.0], v[:-1]])
    denominator = prev + f
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, v / denominator - 1.0, np.nan)


def cumulative(returns: np.ndarray) -> np.ndarray:
    """prod(1 + r) - 1 so far, NaN returns counting as 0."""
    return np.cumprod(1.0 + np.nan_to_num(returns, nan=0.0)) - 1.0


def xirr(dates: Sequence[dt.date], amounts: Sequence[float]) -> float | None:
    """Annualized internal rate of return (actual/365): the rate x with sum a_i (1+x)^-(t_i/365) = 0.

    Bracketed bisection (Brent's method) on (-1, 1e9]; None when no sign change brackets a root
    (e.g. every flow has the same sign or no time has elapsed).
    """
    from scipy.optimize import brentq

    if not dates:
        return None
    t0 = min(dates)
    years = np.array([(d - t0).days / 365.0 for d in dates])
    a = np.asarray(amounts, dtype=float)
    if years.max() <= 0 or not (a > 0).any() or not (a < 0).any():
        return None

    def npv(rate: float) -> float:
        return float(np.sum(a * np.exp(-years * math.log1p(rate))))

    lo, hi = -1.0 + 1e-9, 1.0
    f_lo = npv(lo)
    f_hi = npv(hi)
    while f_lo * f_hi > 0 and hi < 1e9:
        hi *= 10.0
        f_hi = npv(hi)
    if f_lo * f_hi > 0:
        return None
    return float(brentq(npv, lo, hi, xtol=1e-14, rtol=1e-13, maxiter=500))


def max_drawdown(returns: np.ndarray) -> float:
    """Minimum of wealth / running peak - 1 with wealth 1 before the first return (NaN as 0)."""
    wealth = np.concatenate([[1.0], np.cumprod(1.0 + np.nan_to_num(returns, nan=0.0))])
    peak = np.maximum.accumulate(wealth)
    return float(np.min(wealth / peak - 1.0))


def _window(values: np.ndarray, i: int, n: int) -> np.ndarray:
    return values[max(0, i - n + 1): i + 1]


def _volatility(window: np.ndarray) -> float | None:
    x = window[~np.isnan(window)]
    if len(x) < MIN_OBSERVATIONS:
        return None
    return float(np.std(x, ddof=1) * math.sqrt(TRADING_DAYS))


def _sharpe(window: np.ndarray, rf: np.ndarray) -> float | None:
    excess = (window - rf)[~np.isnan(window)]
    if len(excess) < MIN_OBSERVATIONS:
        return None
    std = np.std(excess, ddof=1)
    if std == 0:
        return None
    return float(np.mean(excess) / std * math.sqrt(TRADING_DAYS))


def _beta(window: np.ndarray, bench: np.ndarray) -> float | None:
    ok = ~np.isnan(window) & ~np.isnan(bench)
    if ok.sum() < MIN_OBSERVATIONS:
        return None
    r, b = window[ok], bench[ok]
    residual = b - b.mean()
    variance = np.mean(residual ** 2)
    if variance == 0:
        return None
    return float(np.mean(residual * r) / variance)


def portfolio_metrics(valuations: pl.DataFrame, flows: pl.DataFrame, risk_free: pl.DataFrame,
                      benchmarks: pl.DataFrame, portfolios: pl.DataFrame) -> pl.DataFrame:
    """``METRICS_SCHEMA`` rows for every valuation day of every portfolio.

    ``valuations``: ``portfolio_id, session_date, total_value_base, net_external_flow_base`` from
    inception. ``flows``: ``portfolio_id, trade_date, amount_base`` of the external flows (deposits
    +, withdrawals -). ``risk_free``: ``session_date, rf`` (daily). ``benchmarks``:
    ``benchmark, session_date, return``. ``portfolios``: ``portfolio_id, benchmark``.
    """
    benchmark_of = dict(portfolios.select("portfolio_id", "benchmark").iter_rows())
    rf_map = dict(risk_free.select("session_date", "rf").iter_rows())
    rows: list[dict] = []
    for (pid,), part in valuations.sort("portfolio_id", "session_date").partition_by("portfolio_id", as_dict=True).items():
        days = part["session_date"].to_list()
        r = daily_twr(part["total_value_base"].to_numpy(), part["net_external_flow_base"].to_numpy())
        cum = cumulative(r)
        rf = np.array([rf_map.get(d, 0.0) for d in days])
        bench_rows = benchmarks.filter(pl.col("benchmark") == benchmark_of.get(pid))
        bench_map = dict(bench_rows.select("session_date", "return").iter_rows())
        bench = np.array([bench_map.get(d, np.nan) for d in days], dtype=float)
        own_flows = flows.filter(pl.col("portfolio_id") == pid).sort("trade_date")
        flow_dates, flow_amounts = own_flows["trade_date"].to_list(), (-own_flows["amount_base"]).to_list()
        values = part["total_value_base"].to_list()
        for i, day in enumerate(days):
            upto = [k for k, d in enumerate(flow_dates) if d <= day]
            mwr = xirr([flow_dates[k] for k in upto] + [day], [flow_amounts[k] for k in upto] + [values[i]])
            rows.append({
                "portfolio_id": pid, "session_date": day,
                "daily_twr": None if np.isnan(r[i]) else float(r[i]), "cumulative_twr": float(cum[i]),
                "mwr_since_inception": mwr,
                **{f"volatility_{n}": _volatility(_window(r, i, n)) for n in VOL_WINDOWS},
                "sharpe_252": _sharpe(_window(r, i, RATIO_WINDOW), _window(rf, i, RATIO_WINDOW)),
                "max_drawdown": max_drawdown(r[: i + 1]),
                "beta_252": _beta(_window(r, i, RATIO_WINDOW), _window(bench, i, RATIO_WINDOW)),
            })
    return pl.DataFrame(rows, schema=METRICS_SCHEMA)
