"""dbt marts through dagster-dbt: real `dbt build` runs against a migrated PostgreSQL database.

Market and analytics data come from the pipeline itself (ingest -> processed -> analytics, then the
dbt assets, in one single-run materialization over the window); portfolio and model rows are
inserted contract-shaped as the owner, so the marts are tested independently of those domains.
"""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.cli import materialize_range
from wealth_pipeline.environment import with_database
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration

START, END = "2024-06-03", "2024-06-28"
DOMAINS = ("ingest", "processed", "analytics", "marts")
MARTS = "group:marts"
MODEL_ID = "xgb-test-0001"
# user -> (login suffix, portfolio, base currency); BI logins are created by test_bi_reads.
PORTFOLIOS = {"alice": ("p_alice", "CAD"), "bob": ("p_bob", "USD")}
SESSIONS = [dt.date(2024, 6, 24), dt.date(2024, 6, 25), dt.date(2024, 6, 26), dt.date(2024, 6, 27), dt.date(2024, 6, 28)]
EXPOSURE_DATE = dt.date(2024, 5, 31)  # before the window: every bar of the window shows it (as of)


class MartsPipeline(Pipeline):
    """The pipeline harness with the marts domain: ingest, processed, analytics and dbt."""

    runs: list[dict[str, Any]]

    def definitions(self) -> dg.Definitions:
        found = [importlib.import_module(f"wealth_pipeline.defs.{d}").defs for d in DOMAINS]
        return dg.Definitions.merge(*found, dg.Definitions(resources=self.resources()))

    def run(self, start: str, end: str | None = None, selection: str = "*", raise_on_error: bool = True, **market: Any) -> list[dict[str, Any]]:
        summary = materialize_range(start, end or start, selection, progress=False, definitions=self.definitions(),
                                    instance=self.instance, raise_on_error=raise_on_error)
        return summary["runs"]

    def execute(self, statement: str, params: tuple | list = ()) -> None:
        with psycopg.connect(self.warehouse_url) as conn:
            conn.execute(statement, params)


def seed_portfolios_and_models(p: MartsPipeline) -> None:
    """Contract-shaped portfolio rows (two owners) and one model's predictions, written as the owner."""
    with psycopg.connect(p.warehouse_url) as conn:
        for user, (portfolio, currency) in PORTFOLIOS.items():
            conn.execute("INSERT INTO portfolio.users (user_id, display_name) VALUES (%s, %s)", (user, user.title()))
            conn.execute("INSERT INTO portfolio.portfolios (portfolio_id, owner_id, name, base_currency, benchmark) "
                         "VALUES (%s, %s, %s, %s, 'SYNTH500')", (portfolio, user, f"{user} growth", currency))
            scale = 1.0 if user == "alice" else 2.0
            for i, day in enumerate(SESSIONS):
                value = scale * (100_000.0 + 1_000.0 * i)
                conn.execute("INSERT INTO portfolio.valuations VALUES (%s, %s, %s, %s, %s, %s, %s)",
                             (portfolio, day, currency, value - 5_000.0, 5_000.0, value, 0.0))
                conn.execute("INSERT INTO portfolio.portfolio_metrics VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                             (portfolio, day, 0.01 * scale, 0.02 * (i + 1), 0.05, 0.12, 0.13, 0.15, 1.1, -0.08 * scale, 0.9))
                conn.execute("INSERT INTO portfolio.currency_attribution VALUES (%s, %s, '__portfolio__', %s, %s, %s, %s), "
                             "(%s, %s, 'AAPL', 0.5, 0.5, 0.5, 0.5)",
                             (portfolio, day, 0.006, 0.004, 0.0001, 0.0101, portfolio, day))
        conn.execute(
            "INSERT INTO models.model_registry (model_id, trained_at, train_start, train_end, label_horizon, features, "
            "params, metrics, oos_ic, oos_rank_ic, oos_icir, oos_hit_rate, booster_uri, manifest_uri, data_snapshot) "
            "VALUES (%s, now(), '2023-01-02', '2024-04-30', 5, ARRAY['rsi_14'], '{}', '{}', 0.05, 0.06, 0.4, 0.53, "
            "'file:///b', 'file:///m', '{}')", (MODEL_ID,))
        for day, scores in ((SESSIONS[-2], {"AAPL": 0.9, "MSFT": 0.1}), (SESSIONS[-1], {"AAPL": 0.2, "MSFT": 0.7, "GOOGL": 0.4})):
            ranked = sorted(scores, key=scores.get, reverse=True)
            for symbol, score in scores.items():
                conn.execute("INSERT INTO models.predictions VALUES (%s, %s, %s, %s, %s)",
                             (symbol, day, MODEL_ID, score, ranked.index(symbol) + 1))


def build_marts_warehouse(pg_server_url: str, folder: Path) -> MartsPipeline:
    """A migrated database with the window's market data, portfolio and model rows, and the marts built."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_server_url, name)
    migrate.upgrade(url)
    pipeline = MartsPipeline(url, str(folder / "lake"), None)
    seed_portfolios_and_models(pipeline)
    # Exposures need ~6 months of history the short window does not have: one known row, before it.
    pipeline.execute("INSERT INTO analytics.factor_exposures (symbol, session_date, alpha, beta_market, beta_size, "
                     "beta_value, beta_momentum, r_squared, residual_vol, n_obs) "
                     "VALUES ('AAPL', %s, 0.0001, 1.234, -0.2, 0.3, 0.1, 0.55, 0.18, 252)", (EXPOSURE_DATE,))
    pipeline.runs = pipeline.run(START, END)
    assert all(r["success"] for r in pipeline.runs)
    return pipeline


def check_results(run: dict[str, Any]) -> dict[tuple[str, str], bool]:
    """(asset, check name) -> passed, for every asset check evaluated in the run."""
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in run["result"].get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def marts(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> MartsPipeline:
    return build_marts_warehouse(pg_server_url, tmp_path_factory.mktemp("marts"))


def test_the_pipeline_builds_every_mart_and_its_dbt_tests_pass(marts: MartsPipeline) -> None:
    run = marts.runs[-1]  # the partitioned stage: ingest -> processed -> analytics -> dbt, one run
    assert run["stage"] == "sessions"
    results = check_results(run)
    assert results and all(results.values()), {k: v for k, v in results.items() if not v}
    for asset in ("marts/security_daily", "marts/portfolio_performance", "marts/model_signals"):
        assert any(a == asset for a, _ in results), f"{asset} has dbt tests as asset checks"
    assert ("marts/portfolio_performance", "assert_portfolio_marts_enforce_rls") in results
    materialized = {e.asset_key.to_user_string() for e in run["result"].get_asset_materialization_events()}
    assert {"marts/security_daily", "marts/portfolio_performance", "marts/model_signals", "staging/stg_bars_daily"} <= materialized

    # security_daily: one row per bar of the window, equal to the bar joined with its indicators.
    expected = marts.query(
        "SELECT b.symbol, b.session_date, b.close, b.adj_close, b.volume, i.rsi_14, i.sma_20 "
        "FROM market.bars_daily b LEFT JOIN analytics.indicators_daily i USING (symbol, session_date) ORDER BY 1, 2")
    got = marts.query("SELECT symbol, session_date, close, adj_close, volume, rsi_14, sma_20 FROM marts.security_daily ORDER BY 1, 2")
    assert len(got) > 12 * 15 and got == expected
    # Latest estimated exposures as of each session: the one row known, dated before the window.
    aapl = marts.query("SELECT DISTINCT exposure_date, beta_market FROM marts.security_daily WHERE symbol = 'AAPL'")
    assert aapl == [(EXPOSURE_DATE, 1.234)]
    assert marts.query("SELECT count(*) FROM marts.security_daily WHERE symbol <> 'AAPL' AND exposure_date IS NOT NULL") == [(0,)]

    # portfolio_performance: valuations + metrics + the '__portfolio__' attribution row, per session.
    rows = marts.query("SELECT portfolio_id, session_date, total_value_base, cumulative_twr, max_drawdown, "
                       "attribution_local_return, attribution_fx_return, attribution_base_return "
                       "FROM marts.portfolio_performance ORDER BY 1, 2")
    assert len(rows) == 10
    assert rows[0] == ("p_alice", SESSIONS[0], 100_000.0, 0.02, -0.08, 0.006, 0.004, 0.0101)
    assert rows[-1] == ("p_bob", SESSIONS[-1], 208_000.0, 0.1, -0.16, 0.006, 0.004, 0.0101)

    # model_signals: the latest session's predictions only, ranked, with the model id.
    signals = marts.query("SELECT symbol, session_date, model_id, score, rank FROM marts.model_signals ORDER BY rank")
    assert signals == [("MSFT", SESSIONS[-1], MODEL_ID, 0.7, 1), ("GOOGL", SESSIONS[-1], MODEL_ID, 0.4, 2),
                       ("AAPL", SESSIONS[-1], MODEL_ID, 0.2, 3)]


def test_a_partition_window_deletes_and_inserts_only_that_window(marts: MartsPipeline) -> None:
    inside, outside = dt.date(2024, 6, 13), dt.date(2024, 6, 3)
    gone = dt.date(2024, 6, 14)
    before = dict(marts.query("SELECT session_date, close FROM marts.security_daily WHERE symbol = 'MSFT'"))
    total = marts.query("SELECT count(*) FROM marts.security_daily")[0][0]
    try:
        marts.execute("UPDATE market.bars_daily SET close = close * 2 WHERE symbol = 'MSFT' AND session_date IN (%s, %s)",
                      (inside, outside))
        marts.execute("CREATE TABLE public.saved_bar AS SELECT * FROM market.bars_daily WHERE symbol = 'MSFT' AND session_date = %s", (gone,))
        marts.execute("DELETE FROM market.bars_daily WHERE symbol = 'MSFT' AND session_date = %s", (gone,))
        (run,) = marts.run("2024-06-10", "2024-06-14", selection="marts/security_daily")
        assert run["success"]
        materialization = run["result"].asset_materializations_for_node("marts_dbt")
        assert {m.partition for m in materialization} >= {"2024-06-10", "2024-06-14"}
        after = dict(marts.query("SELECT session_date, close FROM marts.security_daily WHERE symbol = 'MSFT'"))
        assert after[inside] == pytest.approx(2 * before[inside]), "inside the window: rebuilt from the sources"
        assert after[outside] == before[outside], "outside the window: untouched"
        assert gone not in after, "a row that left the sources inside the window leaves the mart"
        assert marts.query("SELECT count(*) FROM marts.security_daily") == [(total - 1,)]
    finally:
        marts.execute("INSERT INTO market.bars_daily SELECT * FROM public.saved_bar")
        marts.execute("DROP TABLE public.saved_bar")
        marts.execute("UPDATE market.bars_daily SET close = close / 2 WHERE symbol = 'MSFT' AND session_date IN (%s, %s)",
                      (inside, outside))
        marts.run("2024-06-03", "2024-06-14", selection="marts/security_daily", raise_on_error=False)
    assert dict(marts.query("SELECT session_date, close FROM marts.security_daily WHERE symbol = 'MSFT'")) == before


def test_failing_dbt_tests_are_failed_asset_checks(marts: MartsPipeline) -> None:
    day = SESSIONS[1]
    try:
        marts.execute("UPDATE market.bars_daily SET close = -close WHERE symbol = 'AAPL' AND session_date = %s", (day,))
        marts.execute("UPDATE portfolio.portfolio_metrics SET max_drawdown = 0.5 WHERE portfolio_id = 'p_bob' AND session_date = %s", (day,))
        (run,) = marts.run(str(day), selection=MARTS, raise_on_error=False)
        assert not run["success"], "dbt build exits non-zero on a failing test, so the step fails"
        results = check_results(run)
        failed = {k for k, passed in results.items() if not passed}
        assert failed == {  # close only: adj_close, low and the indicators are untouched
            ("marts/security_daily", "accepted_range_security_daily_close__False__0"),
            ("marts/portfolio_performance", "accepted_range_portfolio_performance_max_drawdown__0___1"),
        }, failed
        assert ("marts/security_daily", "unique_combination_of_columns_security_daily_symbol__session_date") in results
    finally:
        marts.execute("UPDATE market.bars_daily SET close = -close WHERE symbol = 'AAPL' AND session_date = %s", (day,))
        marts.execute("UPDATE portfolio.portfolio_metrics SET max_drawdown = -0.16 WHERE portfolio_id = 'p_bob' AND session_date = %s", (day,))
    (run,) = marts.run(str(day), selection=MARTS)
    assert run["success"] and all(check_results(run).values())
