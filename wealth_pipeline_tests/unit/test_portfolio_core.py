"""Portfolio core: hand-computed TWR, XIRR against pyxirr, metrics against empyrical, lots, attribution, bad rows."""

from __future__ import annotations

import datetime as dt

import empyrical
import numpy as np
import polars as pl
import pytest
import pyxirr

from wealth_pipeline.core import portfolio as accounting
from wealth_pipeline.core import portfolio_metrics as perf
from wealth_pipeline.core.portfolio_reference import PortfolioInputError, load_reference

D = dt.date
SECURITIES = pl.DataFrame({"symbol": ["AAA", "CCC"], "exchange": ["NYSE", "TSX"], "currency": ["USD", "CAD"]})


def _every_weekday(exchange: str, day: dt.date) -> bool:
    return day.weekday() < 5


# ---- TWR / MWR ------------------------------------------------------------------------------------
def test_twr_neutralizes_a_deposit_mid_period_hand_case() -> None:
    # Day 1: deposit 100 -> 100. Day 2: 110 (+10%). Day 3: deposit 90 at the start, close 220
    # (200 invested -> +10%). Day 4: 198 (-10%).
    values, flows = [100.0, 110.0, 220.0, 198.0], [100.0, 0.0, 90.0, 0.0]
    r = perf.daily_twr(values, flows)
    np.testing.assert_allclose(r, [0.0, 0.10, 0.10, -0.10], atol=1e-15)
    assert perf.cumulative(r)[-1] == pytest.approx(1.1 * 1.1 * 0.9 - 1, abs=1e-15)
    # A withdrawal: 198 -> withdraw 98 at the start, close 110 => 110 / 100 - 1.
    assert perf.daily_twr([198.0, 110.0], [198.0, -98.0])[1] == pytest.approx(0.10)
    # Everything withdrawn: undefined, not infinite.
    assert np.isnan(perf.daily_twr([100.0, 0.0], [100.0, -100.0])[1])


@pytest.mark.parametrize(
    "flows",
    [
        [(D(2023, 1, 3), -1000.0), (D(2023, 7, 3), -500.0), (D(2024, 1, 2), 1700.0)],
        [(D(2023, 1, 3), -1000.0), (D(2023, 2, 1), 300.0), (D(2023, 12, 29), 650.0)],
        [(D(2024, 1, 15), -15000.0), (D(2024, 1, 16), 15300.0)],
    ],
)
def test_xirr_equals_pyxirr(flows: list[tuple[dt.date, float]]) -> None:
    dates, amounts = zip(*flows, strict=True)
    assert perf.xirr(list(dates), list(amounts)) == pytest.approx(pyxirr.xirr(dates, amounts), rel=1e-9)


def test_xirr_is_none_without_elapsed_time_or_sign_change() -> None:
    assert perf.xirr([D(2024, 1, 2), D(2024, 1, 2)], [-100.0, 101.0]) is None
    assert perf.xirr([D(2024, 1, 2), D(2024, 2, 2)], [100.0, 101.0]) is None


def test_windowed_metrics_equal_empyrical() -> None:
    rng = np.random.default_rng(3)
    n = 300
    r = rng.normal(0.0005, 0.01, n)
    r[17] = np.nan
    bench = r * 0.8 + rng.normal(0, 0.004, n)
    bench[40] = np.nan
    rf = np.full(n, 0.0002)
    days = [D(2023, 1, 2) + dt.timedelta(days=i) for i in range(n)]
    values = np.cumprod(1 + np.nan_to_num(r)) * 1000
    flows = np.zeros(n)
    flows[0] = values[0] / (1 + np.nan_to_num(r[0]))
    frame = pl.DataFrame(
        {
            "portfolio_id": "p",
            "session_date": days,
            "total_value_base": values,
            "net_external_flow_base": flows,
        }
    )
    metrics = perf.portfolio_metrics(
        frame,
        pl.DataFrame({"portfolio_id": ["p"], "trade_date": [days[0]], "amount_base": [flows[0]]}),
        pl.DataFrame({"session_date": days, "rf": rf}),
        pl.DataFrame({"benchmark": "B", "session_date": days, "return": bench}),
        pl.DataFrame({"portfolio_id": ["p"], "benchmark": ["B"]}),
    )
    twr = metrics["daily_twr"].fill_null(np.nan).to_numpy()
    np.testing.assert_allclose(twr[1:], np.nan_to_num(r)[1:], atol=1e-12)
    for i in (29, 89, 250, n - 1):
        row = metrics.row(i, named=True)
        w = slice(max(0, i - 251), i + 1)
        assert row["volatility_30"] == pytest.approx(
            empyrical.annual_volatility(twr[max(0, i - 29) : i + 1]), rel=1e-9
        )
        assert row["volatility_252"] == pytest.approx(empyrical.annual_volatility(twr[w]), rel=1e-9)
        assert row["sharpe_252"] == pytest.approx(empyrical.sharpe_ratio(twr[w], risk_free=rf[w]), rel=1e-9)
        assert row["beta_252"] == pytest.approx(empyrical.beta(twr[w], bench[w]), rel=1e-9)
        assert row["max_drawdown"] == pytest.approx(empyrical.max_drawdown(twr[: i + 1]), rel=1e-9)
    assert metrics.row(10, named=True)["volatility_30"] is None  # fewer than MIN_OBSERVATIONS returns
    # Day 19: 20 returns but bench[17] is NaN, so only 19 (return, benchmark) pairs: no beta yet.
    assert (
        metrics.row(19, named=True)["volatility_30"] is not None
        and metrics.row(19, named=True)["beta_252"] is None
    )


# ---- accounting -----------------------------------------------------------------------------------
def _market(
    closes: dict[str, list[float]], fx: list[float], days: list[dt.date]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    bars = pl.DataFrame(
        [
            {"symbol": s, "session_date": d, "close": c}
            for s, cs in closes.items()
            for d, c in zip(days, cs, strict=True)
        ]
    )
    rates = pl.DataFrame({"session_date": days, "base_currency": "USD", "quote_currency": "CAD", "rate": fx})
    return bars, rates


FX_SCHEMA = {"session_date": pl.Date, "base_currency": pl.Utf8, "quote_currency": pl.Utf8, "rate": pl.Float64}
NO_ACTIONS = pl.DataFrame(
    schema={
        "symbol": pl.Utf8,
        "ex_date": pl.Date,
        "action_type": pl.Utf8,
        "ratio": pl.Float64,
        "amount": pl.Float64,
        "currency": pl.Utf8,
    }
)


def _reference(rows: str, base: str = "CAD", allow_short: str = "false"):
    return load_reference(
        ("users.csv", b"user_id\nu\n"),
        (
            "portfolios.csv",
            f"portfolio_id,owner_id,base_currency,allow_short\np,u,{base},{allow_short}\n".encode(),
        ),
        [
            (
                "t.csv",
                (
                    "portfolio_id,transaction_id,trade_date,type,symbol,quantity,price,amount,currency\n"
                    + rows
                ).encode(),
            )
        ],
        SECURITIES,
        _every_weekday,
    )


END = D(2024, 1, 5)


def _run(ref, bars, fx, actions=NO_ACTIONS, end=END):
    return accounting.compute_portfolios(
        ref.portfolios, ref.transactions, SECURITIES, bars, fx, actions, end, _every_weekday
    )


DAYS = [D(2024, 1, 1), D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 4), D(2024, 1, 5)]


def test_fifo_lots_realized_pnl_split_and_dividend() -> None:
    ref = _reference(
        "p,1,2024-01-01,deposit,,,,10000,USD\n"
        "p,2,2024-01-01,buy,AAA,10,100,,USD\n"
        "p,3,2024-01-02,buy,AAA,10,120,,USD\n"
        "p,4,2024-01-04,sell,AAA,30,70,,USD\n",
        base="USD",
    )
    bars, fx = _market({"AAA": [100.0, 120.0, 60.0, 70.0, 72.0]}, [1.3] * 5, DAYS)
    actions = pl.DataFrame(
        {
            "symbol": ["AAA", "AAA"],
            "ex_date": [D(2024, 1, 3), D(2024, 1, 5)],
            "action_type": ["split", "dividend"],
            "ratio": [2.0, None],
            "amount": [None, 0.5],
            "currency": ["USD", "USD"],
        }
    )
    result = _run(ref, bars, fx, actions)
    assert not result.errors
    pos = {r["session_date"]: r for r in result.positions.iter_rows(named=True)}
    assert pos[D(2024, 1, 3)]["quantity"] == 40.0 and pos[D(2024, 1, 3)]["cost_basis_local"] == pytest.approx(
        2200.0
    )
    # Sell 30 FIFO after the 2:1 split: 20 of the 50-cost lot and 10 of the 60-cost lot at 70.
    assert pos[D(2024, 1, 4)]["realized_pnl_base"] == pytest.approx(20 * 20 + 10 * 10)
    assert pos[D(2024, 1, 5)]["quantity"] == 10.0 and pos[D(2024, 1, 5)]["cost_basis_base"] == pytest.approx(
        600.0
    )
    cash = {r["session_date"]: r["balance"] for r in result.cash_balances.iter_rows(named=True)}
    assert cash[D(2024, 1, 5)] == pytest.approx(10000 - 1000 - 1200 + 30 * 70 + 10 * 0.5)
    val = result.valuations.filter(pl.col("session_date") == D(2024, 1, 5)).row(0, named=True)
    assert val["total_value_base"] == pytest.approx(cash[D(2024, 1, 5)] + 10 * 72.0)


def test_two_distributions_on_one_ex_date_are_both_credited() -> None:
    # MSFT 2004-11-15 (issue 14): a 3.00 special and the 0.08 regular dividend on 10 shares.
    ref = _reference("p,1,2024-01-01,deposit,,,,1000,USD\np,2,2024-01-01,buy,AAA,10,100,,USD\n", base="USD")
    bars, fx = _market({"AAA": [100.0] * 5}, [1.3] * 5, DAYS)
    actions = pl.DataFrame(
        {
            "symbol": ["AAA", "AAA"],
            "ex_date": [D(2024, 1, 3)] * 2,
            "action_type": ["dividend"] * 2,
            "ratio": [None, None],
            "amount": [3.00, 0.08],
            "currency": ["USD", "USD"],
            "distribution_type": ["special", "regular"],
        }
    )
    result = _run(ref, bars, fx, actions)
    assert not result.errors
    cash = {r["session_date"]: r["balance"] for r in result.cash_balances.iter_rows(named=True)}
    assert cash[D(2024, 1, 2)] == pytest.approx(0.0)
    assert cash[D(2024, 1, 3)] == pytest.approx(10 * 3.08, abs=1e-12)


def test_a_single_currency_portfolio_needs_no_fx_rates() -> None:
    rows = "p,1,2024-01-01,deposit,,,,1000,USD\np,2,2024-01-02,buy,AAA,5,100,,USD\n"
    bars, _ = _market({"AAA": [100.0, 100.0, 110.0, 110.0, 120.0]}, [1.3] * 5, DAYS)
    for no_fx in (pl.DataFrame(), pl.DataFrame(schema=FX_SCHEMA)):  # nothing materialized / no rows
        result = _run(_reference(rows, base="USD"), bars, no_fx)
        assert not result.errors
        values = result.valuations["total_value_base"].to_list()
        assert values == pytest.approx([1000.0, 1000.0, 1050.0, 1050.0, 1100.0])  # 500 cash + 5 x close
        assert result.fx_carried == 0


def test_a_needed_cross_rate_that_is_missing_names_the_pair_and_the_session() -> None:
    rows = "p,1,2024-01-01,deposit,,,,1000,USD\np,2,2024-01-03,buy,CCC,5,100,,CAD\n"
    bars, fx = _market({"AAA": [100.0] * 5, "CCC": [100.0] * 5}, [1.3] * 5, DAYS)
    result = _run(_reference(rows, base="USD"), bars, pl.DataFrame(schema=FX_SCHEMA))
    error = result.errors["p"]
    assert isinstance(error, accounting.MissingFxRate)
    assert str(error) == (
        "no CAD/USD FX rate on or before 2024-01-03: the processed fx_rates hold none for the "
        "pair; deliver and materialize CAD/USD (or USD/CAD) rates"
    )
    late = _run(
        _reference(rows, base="USD"), bars, fx.filter(pl.col("session_date") >= D(2024, 1, 4))
    ).errors["p"]
    assert str(late) == (
        "no CAD/USD FX rate on or before 2024-01-03: the first is on 2024-01-04; "
        "materialize fx_rates from 2024-01-03 on"
    )


def test_a_sell_larger_than_the_holding_names_the_row_unless_shorts_are_allowed() -> None:
    rows = "p,1,2024-01-01,deposit,,,,1000,USD\np,2,2024-01-02,buy,AAA,5,100,,USD\np,3,2024-01-03,sell,AAA,6,100,,USD\n"
    bars, fx = _market({"AAA": [100.0] * 5}, [1.3] * 5, DAYS)
    result = _run(_reference(rows, base="USD"), bars, fx)
    err = result.errors["p"]
    assert isinstance(err, PortfolioInputError) and (err.file, err.line, err.field) == (
        "t.csv",
        4,
        "quantity",
    )
    shorted = _run(_reference(rows, base="USD", allow_short="true"), bars, fx)
    assert not shorted.errors
    assert shorted.positions.filter(pl.col("session_date") == D(2024, 1, 5))["quantity"].to_list() == [-1.0]


def test_attribution_pure_fx_move_and_pure_price_move() -> None:
    rows = "p,1,2024-01-01,deposit,,,,1000,USD\np,2,2024-01-01,buy,AAA,10,100,,USD\n"
    # Pure FX: USD/CAD 1.30 -> 1.43 (+10% for a CAD investor), price flat.
    bars, fx = _market({"AAA": [100.0] * 5}, [1.30, 1.43, 1.43, 1.43, 1.43], DAYS)
    att = _run(_reference(rows), bars, fx).attribution.filter(pl.col("session_date") == D(2024, 1, 2))
    for row in att.iter_rows(named=True):
        assert (
            row["local_return"] == 0.0
            and row["fx_return"] == pytest.approx(0.1)
            and row["base_return"] == pytest.approx(0.1)
        )
    # Pure price: +5%, FX flat.
    bars, fx = _market({"AAA": [100.0, 105.0, 105.0, 105.0, 105.0]}, [1.3] * 5, DAYS)
    att = _run(_reference(rows), bars, fx).attribution.filter(pl.col("session_date") == D(2024, 1, 2))
    sec = att.filter(pl.col("symbol") == "AAA").row(0, named=True)
    assert (
        sec["local_return"] == pytest.approx(0.05) and sec["fx_return"] == 0.0 and sec["interaction"] == 0.0
    )
    total = att.filter(pl.col("symbol") == accounting.PORTFOLIO_TOTAL).row(0, named=True)
    assert total["base_return"] == pytest.approx(0.05)  # all invested: 1000 USD in AAA, no cash left
    # Both: terms sum exactly and match the valuation change.
    bars, fx = _market({"AAA": [100.0, 103.0, 99.0, 101.0, 102.0]}, [1.30, 1.32, 1.29, 1.31, 1.30], DAYS)
    result = _run(_reference(rows), bars, fx)
    values = result.valuations["total_value_base"].to_list()
    total = result.attribution.filter(pl.col("symbol") == accounting.PORTFOLIO_TOTAL)
    for i, row in enumerate(total.iter_rows(named=True), start=1):
        assert row["local_return"] + row["fx_return"] + row["interaction"] == pytest.approx(
            row["base_return"], abs=1e-15
        )
        assert row["base_return"] == pytest.approx(values[i] / values[i - 1] - 1, rel=1e-12)


def test_fx_rate_is_carried_forward_over_fx_holidays() -> None:
    rows = "p,1,2024-01-01,deposit,,,,1000,USD\n"
    bars, fx = _market({"AAA": [100.0] * 5}, [1.30, 1.40, 1.50, 1.60, 1.70], DAYS)
    result = _run(_reference(rows), bars, fx.filter(pl.col("session_date") != D(2024, 1, 3)))
    cash = {r["session_date"]: r["balance_base"] for r in result.cash_balances.iter_rows(named=True)}
    assert cash[D(2024, 1, 3)] == pytest.approx(1400.0) and result.fx_carried == 1


# ---- bad rows -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ("p,1,2024-01-02,buy,ZZZ,1,1,,USD", "symbol", "unknown symbol 'ZZZ'"),
        ("p,1,2024-01-02,buy,CCC,1,1,,USD", "currency", "currency mismatch: CCC trades in CAD"),
        ("p,1,2024-01-06,buy,AAA,1,1,,USD", "trade_date", "2024-01-06 (Saturday) is not a NYSE session"),
        ("p,1,2024-01-02,buy,AAA,-1,1,,USD", "quantity", "must be > 0"),
        ("p,1,2024-01-02,transfer,,,,1,USD", "type", "'transfer' is not one of"),
        ("p,1,2024-13-02,deposit,,,,1,USD", "trade_date", "is not a date"),
        ("q,1,2024-01-02,deposit,,,,1,USD", "portfolio_id", "unknown portfolio 'q'"),
    ],
)
def test_bad_rows_are_named_by_file_line_and_field(row: str, field: str, reason: str) -> None:
    ref = _reference("p,0,2024-01-02,deposit,,,,100,USD\n" + row + "\n")
    error = ref.errors.row(0, named=True)
    assert (error["file"], error["line"], error["field"]) == ("t.csv", 3, field)
    assert reason in error["reason"]
    if row.startswith("p,"):
        assert ref.portfolios.is_empty() and "p" in ref.skipped and ref.transactions.is_empty()


def test_a_duplicate_transaction_id_names_both_lines() -> None:
    ref = _reference("p,7,2024-01-02,deposit,,,,100,USD\np,7,2024-01-03,deposit,,,,100,USD\n")
    assert ref.skipped["p"] == (
        "t.csv line 3 field 'transaction_id': duplicate transaction id '7' in portfolio 'p' "
        "(first at t.csv line 2)"
    )


def test_the_demo_files_are_valid_against_the_synthetic_symbol_master() -> None:
    from wealth_pipeline.core import calendars
    from wealth_pipeline.defs.portfolio.seeds import demo_files
    from wealth_pipeline.providers.synthetic import SyntheticMarket

    users, portfolios, transactions = demo_files()
    ref = load_reference(
        users,
        portfolios,
        transactions,
        SyntheticMarket(seed=7, universe_size=4).symbol_master(),
        calendars.is_session,
    )
    assert ref.errors.is_empty() and set(ref.portfolios["portfolio_id"]) == {"alice-growth", "bob-income"}
    alice = ref.transactions.filter((pl.col("portfolio_id") == "alice-growth") & (pl.col("type") == "buy"))
    assert {
        (s, q, a, c, str(d))
        for s, q, a, c, d in alice.select(
            "symbol", "quantity", "amount", "currency", "trade_date"
        ).iter_rows()
    } == {
        ("AAPL", 100.0, 15000.0, "USD", "2024-01-16"),
        ("MSFT", 50.0, 20000.0, "USD", "2024-02-01"),
        ("GOOGL", 30.0, 4500.0, "USD", "2024-03-11"),
        ("TD.TO", 200.0, 16000.0, "CAD", "2024-01-22"),
    }
