"""Warehouse migrations on a real server: versions, idempotency, up/down/up identity, locking, Timescale."""

from __future__ import annotations

import threading

import psycopg
import pytest

from wealth_pipeline.warehouse import migrate, timescale
from wealth_pipeline.warehouse.migrate import Migration, MigrationError

pytestmark = pytest.mark.integration

@pytest.fixture
def empty_db(flavoured_db: tuple[str, str]) -> tuple[str, str]:
    """(flavour, URL of an empty database) on the plain test server or on the TimescaleDB server."""
    return flavoured_db


def _columns(url: str, schema: str, table: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, table),
            )
        ]


def test_migration_files_are_versioned_pairs() -> None:
    migrations = migrate.load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert [m.name for m in migrations[:3]] == ["foundation", "market", "portfolio"]
    assert all(m.up_sql.strip() and m.down_sql.strip() for m in migrations)
    assert migrate.latest_version() == migrations[-1].version


def test_upgrade_creates_the_contract_and_second_run_does_nothing(empty_db: tuple[str, str]) -> None:
    flavour, url = empty_db
    latest = migrate.latest_version()
    assert migrate.current_version(url) == 0
    assert migrate.upgrade(url) == list(range(1, latest + 1))
    assert migrate.upgrade(url) == []
    assert migrate.current_version(url) == latest

    with psycopg.connect(url) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
        assert set(migrate.SCHEMAS) <= schemas
        recorded = conn.execute("SELECT version, name FROM ops.schema_migrations ORDER BY 1").fetchall()
        assert recorded == [(m.version, m.name) for m in migrate.load_migrations()]
        owners = dict(conn.execute(
            "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ANY(%s)",
            (list(migrate.SCHEMAS),),
        ).fetchall())
        assert set(owners.values()) == {"wealth_owner"}
        assert timescale.timescale_installed(conn) is (flavour == "timescale")

    assert _columns(url, "market", "bars_daily") == [
        ("symbol", "text"), ("session_date", "date"), ("exchange", "text"), ("currency", "text"),
        ("open", "double precision"), ("high", "double precision"), ("low", "double precision"),
        ("close", "double precision"), ("volume", "bigint"), ("split_factor", "double precision"),
        ("dividend_factor", "double precision"), ("adj_factor", "double precision"),
        ("adj_open", "double precision"), ("adj_high", "double precision"), ("adj_low", "double precision"),
        ("adj_close", "double precision"), ("adj_volume", "double precision"), ("source", "text"),
    ]
    assert [c for c, _ in _columns(url, "ref", "securities")] == [
        "symbol", "name", "exchange", "currency", "asset_class", "sector", "is_synthetic", "updated_at"]
    assert [c for c, _ in _columns(url, "market", "benchmark_returns")] == ["benchmark", "session_date", "level", "return"]
    assert [c for c, _ in _columns(url, "portfolio", "transactions")] == [
        "portfolio_id", "transaction_id", "trade_date", "type", "symbol", "quantity", "price", "amount", "currency"]
    assert [c for c, _ in _columns(url, "ops", "loads")] == [
        "load_id", "asset", "partition_key", "table_name", "window_start", "window_end", "rows", "checksum",
        "run_id", "loaded_at"]
    with psycopg.connect(url) as conn:
        pks = dict(conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'p' AND connamespace::regnamespace::text IN ('market', 'portfolio', 'ref')"
        ).fetchall())
    assert pks["market.bars_daily"] == "PRIMARY KEY (symbol, session_date)"
    assert pks["market.corporate_actions"] == "PRIMARY KEY (symbol, ex_date, action_type)"
    assert pks["market.fx_rates"] == "PRIMARY KEY (base_currency, quote_currency, session_date)"
    assert pks["market.factor_returns"] == "PRIMARY KEY (factor, session_date)"
    assert pks["portfolio.transactions"] == "PRIMARY KEY (portfolio_id, transaction_id)"


def test_timescale_objects_match_the_flavour(empty_db: tuple[str, str]) -> None:
    flavour, url = empty_db
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        kinds = dict(conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'market'::regnamespace "
            "AND relname IN ('bars_weekly', 'bars_monthly')"
        ).fetchall())
        rollups = conn.execute("SELECT view_name, bucket FROM ops.rollups ORDER BY 1").fetchall()
        assert rollups == [("market.bars_monthly", "month"), ("market.bars_weekly", "week")]
        if flavour == "postgres":
            assert kinds == {"bars_weekly": "m", "bars_monthly": "m"}
            unique = conn.execute(
                "SELECT indrelid::regclass::text FROM pg_index WHERE indisunique "
                "AND indrelid IN ('market.bars_weekly'::regclass, 'market.bars_monthly'::regclass) ORDER BY 1"
            ).fetchall()
            assert unique == [("market.bars_monthly",), ("market.bars_weekly",)]
            return
        hypertables = conn.execute(
            "SELECT hypertable_schema || '.' || hypertable_name, compression_enabled "
            "FROM timescaledb_information.hypertables WHERE hypertable_schema = 'market' ORDER BY 1"
        ).fetchall()
        assert hypertables == [(f"market.{t}", True) for t in sorted(
            ["bars_daily", "corporate_actions", "fx_rates", "factor_returns", "benchmark_returns"])]
        segment = conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings "
            "WHERE hypertable_name = 'bars_daily' AND segmentby_column_index IS NOT NULL"
        ).fetchall()
        assert segment == [("symbol",)]
        interval = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = 'bars_daily'"
        ).fetchone()
        assert interval is not None and interval[0].days == 365
        caggs = conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'market' ORDER BY 1"
        ).fetchall()
        assert caggs == [("bars_monthly", False), ("bars_weekly", False)]
        jobs = conn.execute(
            "SELECT proc_name, owner::text, count(*) FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = 'market' GROUP BY 1, 2 ORDER BY 1"
        ).fetchall()
        assert jobs == [("policy_compression", "wealth_owner", 5), ("policy_refresh_continuous_aggregate", "wealth_owner", 2)]


def test_up_down_up_leaves_an_identical_catalog(empty_db: tuple[str, str]) -> None:
    _, url = empty_db
    latest = migrate.latest_version()
    migrate.upgrade(url)
    first = migrate.catalog_snapshot(url)
    assert first["policies"], "the snapshot must see the row-level security policies"
    assert any(r[1] == "bars_daily" for r in first["indexes"])

    assert migrate.downgrade(url, target=latest - 1) == [latest]
    assert migrate.current_version(url) == latest - 1
    partial = migrate.catalog_snapshot(url)
    assert partial != first
    assert migrate.upgrade(url) == [latest]
    assert migrate.catalog_snapshot(url) == first

    assert migrate.downgrade(url) == list(range(latest, 0, -1))
    assert migrate.current_version(url) == 0
    empty = migrate.catalog_snapshot(url)
    assert [r[0] for r in empty["schemas"]] == ["ops"]
    assert [r[1] for r in empty["relations"]] == ["schema_migrations", "schema_migrations_pkey"]
    assert empty["default_privileges"] == []
    assert migrate.downgrade(url) == []

    assert migrate.upgrade(url) == list(range(1, latest + 1))
    again = migrate.catalog_snapshot(url)
    for key in first:
        assert again[key] == first[key], key
    assert again == first


def test_concurrent_upgrades_serialize(pg_url: str) -> None:
    barrier = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(migrate.upgrade(pg_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], list(range(1, migrate.latest_version() + 1))]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM ops.schema_migrations").fetchone() == (migrate.latest_version(),)


def test_failed_migration_rolls_back_alone_and_names_file_and_line(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrate.load_migrations()
    migrate.upgrade(pg_url)
    broken = Migration(len(real) + 1, "broken", "CREATE TABLE ops.half_done (a int);\nSELECT 1 / 0;\n", "DROP TABLE ops.half_done;")
    monkeypatch.setattr(migrate, "load_migrations", lambda: [*real, broken])
    with pytest.raises(MigrationError, match=rf"{broken.version:04d}_broken\.up\.sql failed \(line 2\): division by zero"):
        migrate.upgrade(pg_url)
    assert migrate.current_version(pg_url) == len(real)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('ops.half_done')").fetchone() == (None,)


def test_bad_targets_and_unknown_versions_are_refused(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    latest = migrate.latest_version()
    with pytest.raises(MigrationError, match="outside"):
        migrate.upgrade(pg_url, target=latest + 1)
    with pytest.raises(MigrationError, match="outside"):
        migrate.downgrade(pg_url, target=-1)
    assert migrate.upgrade(pg_url, target=1) == [1]
    assert migrate.current_version(pg_url) == 1
    assert migrate.upgrade(pg_url) == list(range(2, latest + 1))
    real = migrate.load_migrations()
    monkeypatch.setattr(migrate, "load_migrations", lambda: real[:1])
    with pytest.raises(MigrationError, match="does not ship"):
        migrate.upgrade(pg_url)


def test_split_statements_keeps_quoted_and_dollar_quoted_semicolons() -> None:
    script = (
        "CREATE TABLE a (x text DEFAULT 'a;b''c');\n"
        "-- a comment; with a semicolon\n"
        "/* block; /* nested; */ still; */ SELECT E'\\';x';\n"
        "DO $body$ BEGIN PERFORM 1; END $body$;\n"
        "SELECT $$;$$, \"odd;name\" FROM t\n"
        "-- trailing comment\n"
    )
    assert migrate.split_statements(script) == [
        (1, "CREATE TABLE a (x text DEFAULT 'a;b''c');"),
        (3, "-- a comment; with a semicolon\n/* block; /* nested; */ still; */ SELECT E'\\';x';"),
        (4, "DO $body$ BEGIN PERFORM 1; END $body$;"),
        (5, "SELECT $$;$$, \"odd;name\" FROM t\n-- trailing comment"),
    ]
