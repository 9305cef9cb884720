"""Warehouse roles and row-level security on a real server, with real logins."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterator

import polars as pl
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealth_pipeline.warehouse import migrate, roles, timescale
from wealth_pipeline.warehouse.loader import load_window
from wealth_pipeline.warehouse.roles import RoleError, create_bi_user, drop_bi_user, ensure_login_roles
from wealth_pipeline_tests.bi_logins import bi_logins

pytestmark = pytest.mark.integration

EVIL = "x'; DROP TABLE market.bars_daily; --"
PORTFOLIO_TABLES = ("portfolio.users", "portfolio.portfolios", "portfolio.transactions")


@pytest.fixture
def wh(migrated_flavoured_db: tuple[str, str]) -> Iterator[str]:
    """A migrated warehouse with two users' portfolios, on the plain or the TimescaleDB server."""
    flavour, url = migrated_flavoured_db
    with psycopg.connect(url) as conn:
        assert timescale.timescale_installed(conn) == (flavour == "timescale")
    _seed(url)
    yield url


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO portfolio.users (user_id, display_name) VALUES ('alice', 'Alice'), ('bob', 'Bob'), (%s, 'Evil')", (EVIL,))
        conn.execute(
            "INSERT INTO portfolio.portfolios (portfolio_id, owner_id, name, base_currency) VALUES "
            "('pa1', 'alice', 'Alice main', 'USD'), ('pa2', 'alice', 'Alice TFSA', 'CAD'), "
            "('pb1', 'bob', 'Bob main', 'USD'), (%s, %s, 'Evil book', 'USD')",
            (EVIL, EVIL),
        )
        conn.execute(
            "INSERT INTO portfolio.transactions (portfolio_id, transaction_id, trade_date, type, symbol, quantity, price, amount, currency) VALUES "
            "('pa1', 't1', '2024-01-02', 'buy', 'AAA', 10, 100, -1000, 'USD'), "
            "('pa2', 't1', '2024-01-03', 'deposit', NULL, NULL, NULL, 5000, 'CAD'), "
            "('pb1', 't1', '2024-01-02', 'buy', 'BBB', 5, 50, -250, 'USD'), "
            "('pb1', 't2', '2024-01-04', 'sell', 'BBB', 5, 55, 275, 'USD'), "
            "(%s, %s, '2024-01-05', 'buy', %s, 1, 1, -1, 'USD')",
            (EVIL, EVIL, EVIL),
        )
        conn.execute("INSERT INTO market.bars_daily (symbol, session_date, currency, open, high, low, close) "
                     "VALUES ('AAA', '2024-01-02', 'USD', 1, 2, 0.5, 1.5)")


@pytest.fixture
def logins(wh: str) -> Iterator[dict[str, str]]:
    """BI logins for alice and bob (unique role names), dropped afterwards. name -> login URL."""
    with bi_logins(wh) as created:
        yield created


def _rows(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_bi_users_see_only_their_own_portfolios(wh: str, logins: dict[str, str]) -> None:
    alice, bob = logins["alice"], logins["bob"]
    assert _rows(alice, "SELECT user_id FROM portfolio.users") == [("alice",)]
    assert _rows(alice, "SELECT portfolio_id FROM portfolio.portfolios ORDER BY 1") == [("pa1",), ("pa2",)]
    assert _rows(alice, "SELECT portfolio_id, transaction_id FROM portfolio.transactions ORDER BY 1, 2") == [
        ("pa1", "t1"), ("pa2", "t1")]
    assert _rows(bob, "SELECT portfolio_id, transaction_id FROM portfolio.transactions ORDER BY 1, 2") == [
        ("pb1", "t1"), ("pb1", "t2")]
    # Guessing another user's ids (IDOR) returns nothing, in every portfolio table.
    assert _rows(alice, "SELECT * FROM portfolio.portfolios WHERE portfolio_id = %s", ("pb1",)) == []
    assert _rows(alice, "SELECT * FROM portfolio.transactions WHERE portfolio_id = %s", ("pb1",)) == []
    assert _rows(alice, "SELECT * FROM portfolio.users WHERE user_id = %s", ("bob",)) == []
    assert _rows(alice, "SELECT count(*) FROM portfolio.transactions") == [(2,)]
    assert _rows(alice, "SELECT portfolio.visible_portfolio_ids() ORDER BY 1") == [("pa1",), ("pa2",)]
    # SET ROLE to the group does not change session_user, hence not the visible rows.
    with psycopg.connect(alice) as conn:
        conn.execute("SET ROLE wealth_bi")
        assert conn.execute("SELECT portfolio_id FROM portfolio.portfolios ORDER BY 1").fetchall() == [("pa1",), ("pa2",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(conninfo_to_dict(bob)["user"])))
    # Market data and rollups are readable by every BI login.
    assert _rows(alice, "SELECT symbol, close FROM market.bars_daily") == [("AAA", 1.5)]
    timescale.refresh_rollups(wh, dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert _rows(alice, "SELECT symbol, week_start, close FROM market.bars_weekly") == [("AAA", dt.date(2024, 1, 1), 1.5)]
    assert _rows(bob, "SELECT symbol, month_start FROM market.bars_monthly") == [("AAA", dt.date(2024, 1, 1))]


def test_a_login_without_mapping_sees_no_portfolio_rows(wh: str) -> None:
    role, password = f"bi_nomap_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    create_bi_user(wh, "carol", role, password)
    url = make_conninfo(wh, user=role, password=password)
    try:
        assert _rows(url, "SELECT user_id FROM portfolio.users") == [("carol",)]  # mapped, but no portfolios
        assert _rows(url, "SELECT count(*) FROM portfolio.portfolios") == [(0,)]
        with psycopg.connect(wh) as conn:
            conn.execute("UPDATE portfolio.users SET login_role = NULL WHERE user_id = 'carol'")
        for table in PORTFOLIO_TABLES:
            assert _rows(url, f"SELECT count(*) FROM {table}") == [(0,)], table
        assert _rows(url, "SELECT count(*) FROM market.bars_daily") == [(1,)]
    finally:
        drop_bi_user(wh, role)


def test_bi_cannot_write_or_create_anything(wh: str, logins: dict[str, str]) -> None:
    alice = logins["alice"]
    tables = [f"{s}.{t}" for s, t in _rows(
        wh, "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s) ORDER BY 1, 2",
        (list(migrate.SCHEMAS),))]
    assert "market.bars_daily" in tables and "portfolio.transactions" in tables and "ops.loads" in tables
    first_column = dict(_rows(wh, "SELECT attrelid::regclass::text, attname FROM pg_attribute "
                                  "WHERE attrelid = ANY(%s::regclass[]) AND attnum = 1", (tables,)))
    denied = (psycopg.errors.InsufficientPrivilege,)
    with psycopg.connect(alice, autocommit=True) as conn:
        for table in tables:
            col = sql.Identifier(first_column[table])
            ident = sql.Identifier(*table.split("."))
            for statement in (
                sql.SQL("INSERT INTO {} DEFAULT VALUES").format(ident),
                sql.SQL("UPDATE {} SET {} = {}").format(ident, col, col),
                sql.SQL("DELETE FROM {}").format(ident),
                sql.SQL("TRUNCATE {}").format(ident),
            ):
                with pytest.raises(denied):
                    conn.execute(statement)
        for schema in (*migrate.SCHEMAS, "public"):
            with pytest.raises(denied):
                conn.execute(sql.SQL("CREATE TABLE {}.bi_probe (a int)").format(sql.Identifier(schema)))
            with pytest.raises(denied):
                conn.execute(sql.SQL("CREATE VIEW {}.bi_probe AS SELECT 1").format(sql.Identifier(schema)))
        with pytest.raises(denied):
            conn.execute("CREATE SCHEMA bi_probe")
        with pytest.raises(denied):
            conn.execute("CREATE TEMP TABLE bi_probe (a int)")
        with pytest.raises(denied):
            conn.execute("SELECT ops.enable_portfolio_rls('portfolio.transactions')")
        with pytest.raises(denied):
            conn.execute("DROP TABLE market.bars_daily")
        with pytest.raises(denied):
            conn.execute("SELECT count(*) FROM ops.loads")
    assert _rows(wh, "SELECT count(*) FROM portfolio.transactions") == [(5,)]


def test_hostile_strings_are_stored_and_compared_literally(wh: str) -> None:
    role, password = f"{EVIL}{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(12)
    create_bi_user(wh, EVIL, role, password)
    url = make_conninfo(wh, user=role, password=password)
    try:
        assert _rows(wh, "SELECT user_id FROM portfolio.users WHERE login_role = %s", (role,)) == [(EVIL,)]
        assert _rows(url, "SELECT portfolio_id, name FROM portfolio.portfolios") == [(EVIL, "Evil book")]
        assert _rows(url, "SELECT symbol FROM portfolio.transactions WHERE portfolio_id = %s", (EVIL,)) == [(EVIL,)]
        assert _rows(url, "SELECT count(*) FROM portfolio.transactions WHERE portfolio_id = 'x'") == [(0,)]
        load_window(wh, "market.bars_daily",
                    pl.DataFrame({"symbol": [EVIL], "session_date": [dt.date(2024, 1, 3)], "currency": ["USD"],
                                  "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}),
                    time_column="session_date", window_start=dt.date(2024, 1, 3), window_end=dt.date(2024, 1, 3),
                    asset=EVIL, partition_key=EVIL, run_id=EVIL)
        assert _rows(url, "SELECT symbol FROM market.bars_daily WHERE symbol = %s", (EVIL,)) == [(EVIL,)]
        assert _rows(wh, "SELECT asset, partition_key, run_id FROM ops.loads") == [(EVIL, EVIL, EVIL)]
        assert _rows(wh, "SELECT count(*) FROM market.bars_daily") == [(2,)]
    finally:
        drop_bi_user(wh, role)
    assert _rows(wh, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == [(0,)]
    assert _rows(wh, "SELECT login_role FROM portfolio.users WHERE user_id = %s", (EVIL,)) == [(None,)]


def test_loader_login_writes_everything_and_creates_nothing(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    password = secrets.token_urlsafe(12)
    monkeypatch.setenv("WEALTH_LOADER_PASSWORD", password)
    monkeypatch.delenv("WEALTH_BI_PASSWORD", raising=False)
    assert ensure_login_roles(wh) == ["wealth_loader"]
    url = make_conninfo(wh, user="wealth_loader", password=password)
    assert _rows(url, "SELECT count(*) FROM portfolio.transactions") == [(5,)]  # pipeline_all policy
    frame = pl.DataFrame({"portfolio_id": ["pb1"], "transaction_id": ["t3"], "trade_date": [dt.date(2024, 1, 5)],
                          "type": ["dividend"], "amount": [1.25], "currency": ["USD"]})
    result = load_window(url, "portfolio.transactions", frame, time_column="trade_date",
                         window_start=dt.date(2024, 1, 5), window_end=dt.date(2024, 1, 5), asset="transactions",
                         partition_key="2024-01-05", run_id="r", entity_filter=("portfolio_id", ["pb1"]))
    assert result.rows == 1
    assert _rows(wh, "SELECT portfolio_id, transaction_id FROM portfolio.transactions ORDER BY 1, 2") == [
        ("pa1", "t1"), ("pa2", "t1"), ("pb1", "t1"), ("pb1", "t2"), ("pb1", "t3"), (EVIL, EVIL)]
    # The loader owns no rollup: on PostgreSQL ops.refresh_rollup refreshes as the owner; on TimescaleDB
    # ops.request_rollup_refresh has a job owned by wealth_owner refresh the window (migration 0008).
    assert timescale.refresh_rollups(url, dt.date(2024, 1, 1), dt.date(2024, 1, 31)) == [
        "market.bars_monthly", "market.bars_weekly"]
    assert _rows(url, "SELECT symbol, close FROM market.bars_weekly") == [("AAA", 1.5)]
    if _ts(wh):  # the rows are materialized (not only served by real-time aggregation), and the job is gone
        hypertable = _rows(wh, "SELECT quote_ident(materialization_hypertable_schema) || '.' || quote_ident(materialization_hypertable_name) "
                               "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'bars_weekly'")[0][0]
        assert _rows(wh, f"SELECT symbol, close FROM {hypertable}") == [("AAA", 1.5)]
        assert _rows(wh, "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'run_rollup_refresh'") == [(0,)]
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in ("CREATE TABLE market.loader_probe (a int)", "DROP TABLE market.bars_daily",
                          "ALTER TABLE portfolio.transactions DISABLE ROW LEVEL SECURITY"):
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedObject)):
                conn.execute(statement)


def _ts(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return timescale.timescale_installed(conn)


def test_new_portfolio_tables_get_the_same_rls_with_one_call(wh: str, logins: dict[str, str]) -> None:
    with psycopg.connect(wh) as conn:
        conn.execute("SET ROLE wealth_owner")
        conn.execute("CREATE TABLE portfolio.rls_probe (portfolio_id text NOT NULL, symbol text NOT NULL, quantity double precision)")
        assert conn.execute("SELECT has_table_privilege('wealth_bi', 'portfolio.rls_probe', 'SELECT')").fetchone() == (False,)
        conn.execute("SELECT ops.enable_portfolio_rls('portfolio.rls_probe')")
        conn.execute("INSERT INTO portfolio.rls_probe VALUES ('pa1', 'AAA', 10), ('pb1', 'BBB', 5)")
        conn.execute("CREATE VIEW marts.portfolio_summary AS SELECT portfolio_id, count(*) AS n FROM portfolio.transactions GROUP BY 1")
        conn.execute("SELECT ops.enable_portfolio_rls('marts.portfolio_summary')")
        conn.execute("CREATE MATERIALIZED VIEW marts.leaky AS SELECT portfolio_id FROM portfolio.transactions")
        with pytest.raises(psycopg.errors.RaiseException, match="materialized views cannot enforce"), conn.transaction():
            conn.execute("SELECT ops.enable_portfolio_rls('marts.leaky')")
    assert _rows(logins["alice"], "SELECT portfolio_id, symbol FROM portfolio.rls_probe") == [("pa1", "AAA")]
    assert _rows(logins["bob"], "SELECT portfolio_id, n FROM marts.portfolio_summary") == [("pb1", 2)]


def test_create_bi_user_refuses_privileged_or_reserved_roles(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        superuser = conn.execute("SELECT current_user").fetchone()
    assert superuser is not None
    with pytest.raises(RoleError, match="elevated attributes"):
        create_bi_user(wh, "mallory", superuser[0], "pw")
    for name in ("wealth_owner", "wealth_loader", "pg_read_all_data", "public", ""):
        with pytest.raises(RoleError):
            create_bi_user(wh, "mallory", name, "pw")
    with pytest.raises(RoleError, match="longer than 63 bytes"):
        create_bi_user(wh, "mallory", "r" * 64, "pw")
    assert _rows(wh, "SELECT count(*) FROM portfolio.users WHERE user_id = 'mallory'") == [(0,)]
    attrs = _rows(wh, "SELECT rolname, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
                  (list(roles.GROUP_ROLES),))
    assert attrs == [(r, False, False, False) for r in sorted(roles.GROUP_ROLES)]
