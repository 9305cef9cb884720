"""Portfolio assets end to end: the seeded demo over its whole range, oracles, RLS, bad input, TimescaleDB.

The processed tier is seeded directly from the synthetic market (the same rows the market and
analytics assets write, minus their validation runs and warehouse loads) so the whole demo range
runs in seconds; the portfolio assets then run as one single-run backfill through Dagster.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from pathlib import Path

import empyrical
import numpy as np
import polars as pl
import psycopg
import pytest
import pyxirr
from psycopg import sql
from psycopg.conninfo import make_conninfo

from wealth_pipeline.core import adjustments, calendars
from wealth_pipeline.defs.publish import write_window
from wealth_pipeline.environment import with_database
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline.warehouse import migrate
from wealth_pipeline.warehouse.roles import create_bi_user, drop_bi_user
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration

UNIVERSE = 12
DEMO_START, DEMO_END = "2023-03-01", "2024-12-31"  # bob-income's inception (nothing to value before it)
DAILY = ("portfolio_positions portfolio_cash_balances portfolio_valuations portfolio_metrics currency_attribution "
         "portfolio_factor_exposures")
SELECTION = f"portfolio_reference {DAILY}"


def seed_processed(lake_uri: str, start: dt.date, end: dt.date, fx: bool = True) -> SyntheticMarket:
    """Write the processed-tier market datasets the portfolio assets read, straight from the synthetic market.

    Factor exposures come from the analytics asset's own function (``exposures_for_window``) over
    the seeded history, as the ``factor_exposures`` asset would store them. ``fx=False``: no fx_rates.
    """
    from wealth_pipeline.core.analytics import exposures_for_window

    market = SyntheticMarket(seed=7, universe_size=UNIVERSE)
    lake = Lakehouse.from_uri(lake_uri)
    master = market.symbol_master()
    lake.write_dataset("processed", "symbol_master", master)
    actions = market.corporate_actions(start, end)
    bars = adjustments.apply_adjustments(market.bars(start, end), actions).join(
        master.select("symbol", "exchange"), on="symbol")
    factors = market.factor_returns(start, end)
    exposures = exposures_for_window(bars, factors, start, end)
    for name, frame, column in (("bars", bars, "session_date"), ("corporate_actions", actions, "ex_date"),
                                *([("fx_rates", market.fx_rates(start, end), "session_date")] if fx else []),
                                ("factor_returns", factors, "session_date"),
                                ("factor_exposures", exposures, "session_date"),
                                ("benchmark_returns", market.benchmark_returns(start, end), "session_date")):
        write_window(lake, name, frame, column, start, end)
    return market


def _new_database(server: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server, name)
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="module")
def lake_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("portfolio") / "lake")
    seed_processed(uri, dt.date(2022, 9, 1), dt.date(2024, 12, 31))
    return uri


@pytest.fixture(scope="module")
def demo(pg_server_url: str, lake_uri: str) -> Pipeline:
    """The demo's whole range as one single-run backfill."""
    pipeline = Pipeline(_new_database(pg_server_url), lake_uri, None, synthetic_universe=UNIVERSE)
    runs = pipeline.run(DEMO_START, DEMO_END, selection=SELECTION)
    assert all(r["success"] for r in runs)
    pipeline.runs = runs  # type: ignore[attr-defined]
    return pipeline


def _valuation_days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [d for d in calendars.weekdays(start, end) if calendars.open_exchanges(d)]


def test_the_demo_covers_every_session_with_the_contract_quantities_and_costs(demo: Pipeline) -> None:
    for pid, inception in (("alice-growth", dt.date(2024, 1, 15)), ("bob-income", dt.date(2023, 3, 1))):
        expected_days = _valuation_days(inception, dt.date(2024, 12, 31))
        for table in ("valuations", "portfolio_metrics"):
            days = [r[0] for r in demo.query(f"SELECT session_date FROM portfolio.{table} WHERE portfolio_id = %s ORDER BY 1", (pid,))]
            assert days == expected_days, table
    last = {s: r for s, *r in demo.query(
        "SELECT symbol, quantity, cost_basis_local, currency, realized_pnl_base FROM portfolio.positions "
        "WHERE portfolio_id = 'alice-growth' AND session_date = '2024-12-31'")}
    assert last == {"AAPL": [100.0, 15000.0, "USD", 0.0], "MSFT": [50.0, 20000.0, "USD", 0.0],
                    "GOOGL": [30.0, 4500.0, "USD", 0.0], "TD.TO": [200.0, 16000.0, "CAD", 0.0]}
    # 2024-01-15 is Martin Luther King Jr. Day (NASDAQ closed): AAPL is bought on the next session.
    assert demo.query("SELECT count(*) FROM portfolio.positions WHERE portfolio_id='alice-growth' AND session_date='2024-01-15'")[0][0] == 0
    # Bob: FIFO sale of 60 AAPL across the 150 and 180 lots, and GOOGL split 4:1 on 2023-07-17 before 20 are sold.
    bob = {s: r for s, *r in demo.query(
        "SELECT symbol, quantity, cost_basis_local, realized_pnl_base FROM portfolio.positions "
        "WHERE portfolio_id = 'bob-income' AND session_date = '2024-12-31'")}
    assert bob["AAPL"] == pytest.approx([20.0, 20 * 180.0, 50 * 40.0 + 10 * 10.0])
    assert bob["GOOGL"] == pytest.approx([20.0, 20 * 120.0, 20 * (160.0 - 120.0)])
    split = demo.query("SELECT session_date, quantity FROM portfolio.positions WHERE portfolio_id='bob-income' AND symbol='GOOGL' "
                       "AND session_date IN ('2023-07-14', '2023-07-17') ORDER BY 1")
    assert [q for _, q in split] == [10.0, 40.0]
    counts = {t: demo.query(f"SELECT count(DISTINCT portfolio_id) FROM portfolio.{t}")[0][0]
              for t in ("positions", "cash_balances", "currency_attribution", "factor_exposures")}
    assert counts == dict.fromkeys(counts, 2)


def test_cash_reconciles_with_transactions_and_dividends_in_the_market_data(demo: Pipeline) -> None:
    market = SyntheticMarket(seed=7, universe_size=UNIVERSE)
    actions = market.corporate_actions(dt.date(2023, 3, 1), dt.date(2024, 12, 31)).filter(pl.col("action_type") == "dividend")
    # Bob's AAPL holding by date (hand timeline): 50 from 2023-03-01, 80 from 2023-09-01, 20 from 2024-02-15.
    def aapl_held_before(ex: dt.date) -> int:
        return 20 if ex > dt.date(2024, 2, 15) else 80 if ex > dt.date(2023, 9, 1) else 50 if ex > dt.date(2023, 3, 1) else 0
    dividends = sum(aapl_held_before(ex) * amount for ex, amount in
                    actions.filter(pl.col("symbol") == "AAPL").select("ex_date", "amount").iter_rows())
    expected = 30000 - 50 * 150 - 10 * 480 - 30 * 180 + 60 * 190 - 5000 + 20 * 160 - 15 + dividends
    (balance,) = demo.query("SELECT balance FROM portfolio.cash_balances WHERE portfolio_id='bob-income' "
                            "AND currency='USD' AND session_date='2024-12-31'")[0]
    assert dividends > 0 and balance == pytest.approx(expected, rel=1e-12)
    result = demo.runs[-1]["result"]  # type: ignore[attr-defined]
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks[("portfolio_cash_balances", "cash_reconciles")] is True
    assert all(checks.values()), {k: v for k, v in checks.items() if not v}


def test_metrics_equal_empyrical_and_pyxirr_on_the_stored_series(demo: Pipeline) -> None:
    rows = demo.query("SELECT m.session_date, m.daily_twr, m.volatility_30, m.volatility_252, m.sharpe_252, m.max_drawdown, "
                      "m.beta_252, m.mwr_since_inception, v.total_value_base FROM portfolio.portfolio_metrics m "
                      "JOIN portfolio.valuations v USING (portfolio_id, session_date) "
                      "WHERE portfolio_id = 'bob-income' ORDER BY 1")
    days = [r[0] for r in rows]
    r = np.array([np.nan if x[1] is None else x[1] for x in rows])
    market = SyntheticMarket(seed=7, universe_size=UNIVERSE)
    rf_frame = market.factor_returns(days[0], days[-1]).filter(pl.col("factor") == "rf")
    rf_map = dict(rf_frame.select("session_date", "value").iter_rows())
    bench_map = dict(market.benchmark_returns(days[0], days[-1]).select("session_date", "return").iter_rows())
    rf = np.array([rf_map.get(d, 0.0) for d in days])
    bench = np.array([bench_map.get(d, np.nan) for d in days])
    for i in (len(days) - 1, 300, 100):
        assert rows[i][2] == pytest.approx(empyrical.annual_volatility(r[i - 29: i + 1]), rel=1e-9)
        window = slice(max(0, i - 251), i + 1)
        assert rows[i][3] == pytest.approx(empyrical.annual_volatility(r[window]), rel=1e-9)
        assert rows[i][4] == pytest.approx(empyrical.sharpe_ratio(r[window], risk_free=rf[window]), rel=1e-9)
        assert rows[i][5] == pytest.approx(empyrical.max_drawdown(r[: i + 1]), rel=1e-9)
        assert rows[i][6] == pytest.approx(empyrical.beta(r[window], bench[window]), rel=1e-9)
        flows = [(dt.date(2023, 3, 1), -30000.0)] + ([(dt.date(2024, 5, 1), 5000.0)] if days[i] >= dt.date(2024, 5, 1) else [])
        oracle = pyxirr.xirr([d for d, _ in flows] + [days[i]], [a for _, a in flows] + [rows[i][8]])
        assert rows[i][7] == pytest.approx(oracle, rel=1e-7)
    # Bob holds about half his book in cash after the 2024 sales: a positive beta well below 1.
    assert 0.1 < rows[-1][6] < 2.0


def test_attribution_terms_sum_to_the_base_return_and_match_the_twr_on_quiet_days(demo: Pipeline) -> None:
    rows = demo.query("SELECT a.session_date, a.local_return, a.fx_return, a.interaction, a.base_return, m.daily_twr "
                      "FROM portfolio.currency_attribution a JOIN portfolio.portfolio_metrics m USING (portfolio_id, session_date) "
                      "WHERE a.portfolio_id = 'alice-growth' AND a.symbol = '__portfolio__' ORDER BY 1")
    for _, local, fx, inter, base, _twr in rows:
        assert local + fx + inter == pytest.approx(base, abs=1e-15)
    quiet = [r for r in rows if r[0] > dt.date(2024, 6, 3) and r[0] != dt.date(2024, 9, 3)]
    assert quiet and all(base == pytest.approx(twr, abs=1e-12) for _, _, _, _, base, twr in quiet)
    # TD.TO is CAD in a CAD portfolio: no FX term; AAPL carries the USD/CAD move.
    td = demo.query("SELECT max(abs(fx_return)) FROM portfolio.currency_attribution WHERE portfolio_id='alice-growth' AND symbol='TD.TO'")
    aapl = demo.query("SELECT max(abs(fx_return)) FROM portfolio.currency_attribution WHERE portfolio_id='alice-growth' AND symbol='AAPL'")
    assert td[0][0] == 0.0 and aapl[0][0] > 0


def test_one_session_alone_equals_the_session_inside_the_backfill(demo: Pipeline) -> None:
    day = "2024-07-04"  # NYSE holiday, TSX open: US prices carried forward
    tables = ("positions", "cash_balances", "valuations", "portfolio_metrics", "currency_attribution", "factor_exposures")
    before = {t: demo.query(f"SELECT * FROM portfolio.{t} WHERE session_date = %s ORDER BY 1, 3", (day,)) for t in tables}
    assert all(before.values())
    demo.run(day, selection=DAILY)
    after = {t: demo.query(f"SELECT * FROM portfolio.{t} WHERE session_date = %s ORDER BY 1, 3", (day,)) for t in tables}
    assert after == before


def test_a_bi_login_sees_only_its_own_portfolios(demo: Pipeline) -> None:
    role, password = f"bi_alice_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    create_bi_user(demo.warehouse_url, "alice", role, password)
    try:
        url = make_conninfo(demo.warehouse_url, user=role, password=password)
        with psycopg.connect(url) as conn:
            for table in ("positions", "cash_balances", "valuations", "portfolio_metrics", "currency_attribution",
                          "factor_exposures", "rolling_volatility_30d", "transactions", "portfolios"):
                seen = {r[0] for r in conn.execute(sql.SQL("SELECT DISTINCT portfolio_id FROM portfolio.{}").format(sql.Identifier(table)))}
                assert seen == {"alice-growth"}, table
            assert conn.execute("SELECT count(*) FROM portfolio.positions WHERE portfolio_id = 'bob-income'").fetchone()[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM portfolio.positions")
        vol = demo.query("SELECT volatility_30 FROM portfolio.rolling_volatility_30d WHERE portfolio_id='alice-growth' "
                         "AND session_date='2024-12-31'")
        assert vol == demo.query("SELECT volatility_30 FROM portfolio.portfolio_metrics WHERE portfolio_id='alice-growth' "
                                 "AND session_date='2024-12-31'")
    finally:
        drop_bi_user(demo.warehouse_url, role)


BAD_TRANSACTIONS = """portfolio_id,transaction_id,trade_date,type,symbol,quantity,price,amount,currency
good,G1,2024-06-03,deposit,,,,10000,USD
good,G2,2024-06-03,buy,MSFT,10,400,,USD
oversell,O1,2024-06-03,deposit,,,,10000,USD
oversell,O2,2024-06-03,buy,AAPL,10,150,,USD
oversell,O3,2024-06-10,sell,AAPL,11,160,,USD
unknown,U1,2024-06-03,deposit,,,,10000,USD
unknown,U2,2024-06-03,buy,NOPE,10,10,,USD
mismatch,M1,2024-06-03,deposit,,,,10000,CAD
mismatch,M2,2024-06-03,buy,TD.TO,10,80,,USD
holiday,H1,2024-06-03,deposit,,,,10000,USD
holiday,H2,2024-06-19,buy,AAPL,10,150,,USD
dupe,D1,2024-06-03,deposit,,,,10000,USD
dupe,D1,2024-06-04,deposit,,,,10000,USD
"""


def test_bad_rows_skip_only_their_portfolio_with_file_line_and_field(pg_server_url: str, lake_uri: str, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "portfolio" / "transactions").mkdir(parents=True)
    (landing / "portfolio" / "users.csv").write_text("user_id,display_name\nu1,User One\n")
    pids = ["good", "oversell", "unknown", "mismatch", "holiday", "dupe"]
    (landing / "portfolio" / "portfolios.csv").write_text(
        "portfolio_id,owner_id,name,base_currency,benchmark\n" + "".join(f"{p},u1,{p},USD,SYNTH500\n" for p in pids))
    (landing / "portfolio" / "transactions" / "2024.csv").write_text(BAD_TRANSACTIONS)
    p = Pipeline(_new_database(pg_server_url), lake_uri, None, synthetic_universe=UNIVERSE, landing_uri=str(landing))
    runs = p.run("2024-06-03", "2024-06-28", selection=f"portfolio_reference {DAILY}")
    assert all(r["success"] for r in runs)
    assert {r[0] for r in p.query("SELECT DISTINCT portfolio_id FROM portfolio.valuations")} == {"good"}
    assert p.query("SELECT quantity FROM portfolio.positions WHERE portfolio_id='good' AND session_date='2024-06-28'") == [(10.0,)]
    result = runs[-1]["result"]
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "all_portfolios_computed")
    assert check.passed is False
    skipped = check.metadata["skipped_portfolios"].value
    assert set(skipped) == set(pids) - {"good"}
    source = str(landing / "portfolio" / "transactions" / "2024.csv")
    assert skipped["oversell"].startswith(f"{source} line 6 field 'quantity': sell of 11 AAPL")
    assert skipped["unknown"].startswith(f"{source} line 8 field 'symbol': unknown symbol 'NOPE'")
    assert skipped["mismatch"].startswith(f"{source} line 10 field 'currency': currency mismatch: TD.TO trades in CAD")
    assert skipped["holiday"].startswith(f"{source} line 12 field 'trade_date': 2024-06-19 (Wednesday) is not a NASDAQ session")
    assert skipped["dupe"].startswith(f"{source} line 14 field 'transaction_id': duplicate transaction id 'D1'")
    quarantined = p.lake.read("quarantine", "portfolio_transactions")
    assert quarantined.height


def test_a_single_currency_portfolio_runs_without_fx_data_and_a_needed_cross_rate_skips_it_naming_the_pair(
        pg_server_url: str, tmp_path: Path) -> None:
    """Issue 14: USD holdings in a USD portfolio need no FX file; a CAD holding names CAD/USD and the day."""
    lake_uri = str(tmp_path / "lake")
    seed_processed(lake_uri, dt.date(2024, 5, 1), dt.date(2024, 6, 28), fx=False)
    assert not Lakehouse.from_uri(lake_uri).read_partitions("processed", "fx_rates", None, None).height

    def landing(name: str, transactions: str) -> str:
        root = tmp_path / name
        (root / "portfolio" / "transactions").mkdir(parents=True)
        (root / "portfolio" / "users.csv").write_text("user_id,display_name\nu1,User One\n")
        (root / "portfolio" / "portfolios.csv").write_text(
            "portfolio_id,owner_id,name,base_currency,benchmark\nusd,u1,usd,USD,SYNTH500\n")
        (root / "portfolio" / "transactions" / "t.csv").write_text(
            "portfolio_id,transaction_id,trade_date,type,symbol,quantity,price,amount,currency\n" + transactions)
        return str(root)

    usd_only = landing("usd", "usd,1,2024-06-03,deposit,,,,10000,USD\nusd,2,2024-06-03,buy,AAPL,10,150,,USD\n")
    p = Pipeline(_new_database(pg_server_url), lake_uri, None, synthetic_universe=UNIVERSE, landing_uri=usd_only)
    runs = p.run("2024-06-03", "2024-06-28", selection=SELECTION)
    assert all(r["success"] for r in runs)
    lake_bars = Lakehouse.from_uri(lake_uri).read_partitions("processed", "bars", dt.date(2024, 6, 3), dt.date(2024, 6, 28))
    closes = dict(lake_bars.filter(pl.col("symbol") == "AAPL").select("session_date", "close").iter_rows())
    values = p.query("SELECT session_date, total_value_base FROM portfolio.valuations WHERE portfolio_id = 'usd' ORDER BY 1")
    assert [d for d, _ in values] == _valuation_days(dt.date(2024, 6, 3), dt.date(2024, 6, 28))
    for day, value in values:  # 8500 USD cash + 10 AAPL at the last close (Juneteenth: TSX trades), no conversion
        close = closes[max(d for d in closes if d <= day)]
        assert value == pytest.approx(8500.0 + 10 * close, rel=1e-12)

    cad_holding = landing("cad", "usd,1,2024-06-03,deposit,,,,10000,USD\nusd,2,2024-06-04,buy,TD.TO,10,80,,CAD\n")
    p = Pipeline(_new_database(pg_server_url), lake_uri, None, synthetic_universe=UNIVERSE, landing_uri=cad_holding)
    runs = p.run("2024-06-03", "2024-06-28", selection=SELECTION, raise_on_error=False)
    result = runs[-1]["result"]
    # The gap is the portfolio's, like a missing price: it is skipped with one line naming the pair and
    # the day, the failed skipped-portfolios check shows it, and nothing is retried.
    assert result.success and not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "all_portfolios_computed")
    assert not check.passed
    message = check.metadata["skipped_portfolios"].value["usd"]
    assert message == ("no CAD/USD FX rate on or before 2024-06-04: the processed fx_rates hold "
                       "none for the pair; deliver and materialize CAD/USD (or USD/CAD) rates")
    assert "\n" not in message
    assert p.query("SELECT count(*) FROM portfolio.valuations") == [(0,)]


@pytest.mark.timescale
def test_the_portfolio_tables_on_timescaledb_with_the_continuous_aggregate(timescale_url: str, lake_uri: str) -> None:
    migrate.upgrade(timescale_url)
    p = Pipeline(timescale_url, lake_uri, None, synthetic_universe=UNIVERSE)
    hypertables = {r[0] for r in p.query("SELECT hypertable_schema || '.' || hypertable_name FROM timescaledb_information.hypertables")}
    assert {"portfolio.positions", "portfolio.portfolio_metrics", "portfolio.currency_attribution"} <= hypertables
    caggs = p.query("SELECT view_schema || '.' || view_name FROM timescaledb_information.continuous_aggregates")
    assert ("portfolio.rolling_volatility_30d_agg",) in caggs  # owner-only; BI reads the secured view
    runs = p.run("2024-01-15", "2024-04-30", selection=f"portfolio_reference {DAILY}")
    assert all(r["success"] for r in runs)
    metrics = p.query("SELECT portfolio_id, session_date, volatility_30 FROM portfolio.portfolio_metrics ORDER BY 1, 2")
    assert p.query("SELECT portfolio_id, session_date, volatility_30 FROM portfolio.rolling_volatility_30d ORDER BY 1, 2") == metrics
    assert any(v is not None for _, _, v in metrics)
    role, password = f"bi_bob_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    create_bi_user(timescale_url, "bob", role, password)
    try:
        with psycopg.connect(make_conninfo(timescale_url, user=role, password=password)) as conn:
            seen = {r[0] for r in conn.execute("SELECT DISTINCT portfolio_id FROM portfolio.positions")}
            assert seen == {"bob-income"}
            # The secured view over the owner-only aggregate: bob's rows, equal to his metrics.
            rolling = conn.execute("SELECT portfolio_id, session_date, volatility_30 FROM "
                                   "portfolio.rolling_volatility_30d ORDER BY 1, 2").fetchall()
            assert rolling == [m for m in metrics if m[0] == "bob-income"] and rolling
            # The aggregate itself (every portfolio, no row security possible) is not readable.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM portfolio.rolling_volatility_30d_agg")
    finally:
        drop_bi_user(timescale_url, role)
