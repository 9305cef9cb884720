"""BI reads through the marts: a per-user BI login (SQLAlchemy and psql) runs the README's example
queries, sees only its own portfolios through marts.portfolio_performance, and cannot write."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo

from wealth_pipeline.environment import dsn_to_url
from wealth_pipeline.warehouse.roles import create_bi_user, drop_bi_user
from wealth_pipeline_tests.integration.test_dbt_marts import (
    MODEL_ID,
    SESSIONS,
    MartsPipeline,
    build_marts_warehouse,
)

pytestmark = pytest.mark.integration

# The README's example queries ("Query it from SQL/BI").
LATEST_SIGNALS = "SELECT symbol, session_date, model_id, score, rank FROM marts.model_signals ORDER BY rank"
PORTFOLIO_PERFORMANCE = (
    "SELECT portfolio_id, session_date, total_value_base, daily_twr, cumulative_twr, volatility_30, sharpe_252, "
    "max_drawdown, beta_252, attribution_fx_return FROM marts.portfolio_performance ORDER BY portfolio_id, session_date"
)
SECURITY_INDICATORS = (
    "SELECT session_date, close, rsi_14, sma_20, macd, beta_market FROM marts.security_daily "
    "WHERE symbol = 'AAPL' AND session_date BETWEEN '2024-06-24' AND '2024-06-28' ORDER BY session_date"
)


@pytest.fixture(scope="module", params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def bi(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MartsPipeline, dict[str, str]]]:
    """The built marts and a BI login URL per user (alice owns p_alice, bob owns p_bob), on each flavour."""
    server = request.getfixturevalue("pg_server_url" if request.param == "postgres" else "timescale_server_url")
    marts = build_marts_warehouse(server, tmp_path_factory.mktemp(f"bi-{request.param}"))
    suffix = uuid.uuid4().hex[:8]
    logins = {user: (f"bi_{user}_{suffix}", f"pw-{uuid.uuid4().hex}") for user in ("alice", "bob")}
    urls = {}
    try:
        for user, (role, password) in logins.items():
            create_bi_user(marts.warehouse_url, user, role, password)
            urls[user] = dsn_to_url(make_conninfo(marts.warehouse_url, user=role, password=password))
        yield marts, urls
    finally:
        for role, _ in logins.values():
            drop_bi_user(marts.warehouse_url, role)


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool)


def test_example_queries_as_a_bi_login_with_sqlalchemy(bi: tuple[MartsPipeline, dict[str, str]]) -> None:
    marts, urls = bi
    with _engine(urls["alice"]).connect() as conn:
        signals = [tuple(r) for r in conn.execute(sa.text(LATEST_SIGNALS))]
        performance = [tuple(r) for r in conn.execute(sa.text(PORTFOLIO_PERFORMANCE))]
        indicators = [tuple(r) for r in conn.execute(sa.text(SECURITY_INDICATORS))]
    assert signals == [("MSFT", SESSIONS[-1], MODEL_ID, 0.7, 1), ("GOOGL", SESSIONS[-1], MODEL_ID, 0.4, 2),
                       ("AAPL", SESSIONS[-1], MODEL_ID, 0.2, 3)]
    assert [r[:3] for r in performance] == [("p_alice", day, 100_000.0 + 1_000.0 * i) for i, day in enumerate(SESSIONS)]
    assert performance[0][3:] == (0.01, 0.02, 0.12, 1.1, -0.08, 0.9, 0.004)
    oracle = marts.query("SELECT b.session_date, b.close, i.rsi_14, i.sma_20, i.macd FROM market.bars_daily b "
                         "LEFT JOIN analytics.indicators_daily i USING (symbol, session_date) WHERE b.symbol = 'AAPL' "
                         "AND b.session_date BETWEEN '2024-06-24' AND '2024-06-28' ORDER BY 1")
    assert len(indicators) == 5 and [r[:5] for r in indicators] == oracle
    assert {r[5] for r in indicators} == {1.234}


def test_psql_with_the_bi_url(bi: tuple[MartsPipeline, dict[str, str]]) -> None:
    _, urls = bi
    out = subprocess.run(["psql", urls["bob"], "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                          "-c", "SELECT portfolio_id, count(*), max(total_value_base) FROM marts.portfolio_performance GROUP BY 1",
                          "-c", "SELECT symbol || ':' || rank FROM marts.model_signals ORDER BY rank"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["p_bob|5|208000", "MSFT:1", "GOOGL:2", "AAPL:3"]


def test_each_login_sees_only_its_own_portfolios_through_the_marts(bi: tuple[MartsPipeline, dict[str, str]]) -> None:
    marts, urls = bi
    assert {r[0] for r in marts.query("SELECT portfolio_id FROM marts.portfolio_performance")} == {"p_alice", "p_bob"}
    for user, own, other in (("alice", "p_alice", "p_bob"), ("bob", "p_bob", "p_alice")):
        with _engine(urls[user]).connect() as conn:
            seen = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT portfolio_id FROM marts.portfolio_performance"))}
            guessed = conn.execute(sa.text("SELECT * FROM marts.portfolio_performance WHERE portfolio_id = :p"), {"p": other}).all()
            direct = conn.execute(sa.text("SELECT count(*) FROM portfolio.portfolio_metrics WHERE portfolio_id = :p"), {"p": other}).scalar()
        assert seen == {own} and guessed == [] and direct == 0


@pytest.mark.parametrize("statement", [
    "INSERT INTO marts.security_daily (symbol, session_date, close) VALUES ('AAPL', '2030-01-01', 1)",
    "UPDATE marts.security_daily SET close = 0",
    "DELETE FROM marts.security_daily",
    "INSERT INTO marts.portfolio_performance (portfolio_id, session_date) VALUES ('p_alice', '2030-01-01')",
    "UPDATE marts.portfolio_performance SET total_value_base = 0",
    "DELETE FROM marts.model_signals",
    "CREATE TABLE marts.mine (x int)",
    "CREATE VIEW marts.mine AS SELECT 1 AS x",
    "SELECT count(*) FROM staging.stg_bars_daily",
])
def test_a_bi_login_cannot_write_create_or_read_staging(bi: tuple[MartsPipeline, dict[str, str]], statement: str) -> None:
    marts, urls = bi
    before = marts.query("SELECT count(*) FROM marts.security_daily")
    with _engine(urls["alice"]).connect() as conn, pytest.raises(sa.exc.DBAPIError, match=r"permission denied|not automatically updatable"):
        conn.execute(sa.text(statement))
    assert marts.query("SELECT count(*) FROM marts.security_daily") == before


def test_rolling_volatility_is_the_same_secured_view_on_both_flavours(bi: tuple[MartsPipeline, dict[str, str]]) -> None:
    """portfolio.rolling_volatility_30d: same columns and rows per login on both flavours (a continuous
    aggregate behind it on TimescaleDB, a view without), each login seeing its own portfolios only."""
    marts, urls = bi
    every = marts.query("SELECT portfolio_id, session_date, volatility_30 FROM portfolio.portfolio_metrics ORDER BY 1, 2")
    assert {r[0] for r in every} == {"p_alice", "p_bob"}
    for user, own in (("alice", "p_alice"), ("bob", "p_bob")):
        with _engine(urls[user]).connect() as conn:
            rows = [tuple(r) for r in conn.execute(sa.text(
                "SELECT portfolio_id, session_date, volatility_30 FROM portfolio.rolling_volatility_30d ORDER BY 1, 2"))]
            guessed = conn.execute(sa.text("SELECT count(*) FROM portfolio.rolling_volatility_30d "
                                           "WHERE portfolio_id <> :p OR portfolio_id IS NULL"), {"p": own}).scalar()
            with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
                conn.execute(sa.text("SELECT * FROM portfolio.rolling_volatility_30d_agg"))
        assert rows == [r for r in every if r[0] == own] and rows and guessed == 0
