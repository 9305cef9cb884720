"""Warehouse migrations through Alembic on a real server: versions, idempotency, up/down/up identity,
locking, TimescaleDB, and adoption of a warehouse migrated by the former hand-written runner."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.warehouse import migrate, roles, timescale
from wealth_pipeline.warehouse.catalog import catalog_snapshot
from wealth_pipeline.warehouse.migrate import MigrationError

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


def _query(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]


def test_migration_files_are_versioned_pairs_with_one_revision_each() -> None:
    migrations = migrate.load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert [m.name for m in migrations[:3]] == ["foundation", "market", "portfolio"]
    assert all(m.up_sql.strip() and m.down_sql.strip() for m in migrations)
    assert migrate.latest_version() == migrations[-1].version
    revisions = {s.revision: s for s in migrate.script_directory().walk_revisions()}
    assert sorted(revisions) == [f"{m.version:04d}" for m in migrations]
    for m in migrations:
        script = revisions[f"{m.version:04d}"]
        assert Path(script.path).name == f"{m.version:04d}_{m.name}.py"
        assert script.down_revision == (None if m.version == 1 else f"{m.version - 1:04d}")


def test_a_sql_pair_without_a_revision_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, folder)
    latest = migrate.latest_version()
    (folder / f"{latest + 1:04d}_extra.up.sql").write_text("SELECT 1;\n")
    (folder / f"{latest + 1:04d}_extra.down.sql").write_text("SELECT 1;\n")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", folder)
    with pytest.raises(MigrationError, match=rf"{latest + 1:04d}_extra has SQL files but no Alembic revision .*"
                                             rf"down_revision = '{latest:04d}'"):
        migrate.load_migrations()


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
        assert conn.execute("SELECT version_num FROM ops.alembic_version").fetchall() == [(f"{latest:04d}",)]
        owners = dict(conn.execute(
            "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ANY(%s)",
            (list(migrate.SCHEMAS),),
        ).fetchall())
        assert set(owners.values()) == {"wealth_owner"}
        pointer = conn.execute(
            "SELECT pg_get_userbyid(relowner), has_table_privilege('wealth_loader', oid, 'UPDATE') "
            "FROM pg_class WHERE oid = 'ops.alembic_version'::regclass").fetchone()
        assert pointer == ("wealth_owner", False)
        assert timescale.timescale_installed(conn) is (flavour == "timescale")

    assert _columns(url, "market", "bars_daily") == [
        ("symbol", "text"), ("session_date", "date"), ("exchange", "text"), ("currency", "text"),
        ("open", "double precision"), ("high", "double precision"), ("low", "double precision"),
        ("close", "double precision"), ("volume", "bigint"), ("split_factor", "double precision"),
        ("dividend_factor", "double precision"), ("adj_factor", "double precision"),
        ("adj_open", "double precision"), ("adj_high", "double precision"), ("adj_low", "double precision"),
        ("adj_close", "double precision"), ("adj_volume", "double precision"), ("source", "text"),
        ("cum_factor", "double precision"), ("security_id", "text"),
    ]
    assert [c for c, _ in _columns(url, "ref", "securities")] == [
        "symbol", "name", "exchange", "currency", "asset_class", "sector", "is_synthetic", "updated_at",
        "security_id", "isin", "cusip", "figi", "mic", "country", "security_type", "industry", "dividend_currency",
        "valid_from", "valid_to"]
    assert [c for c, _ in _columns(url, "market", "benchmark_returns")] == ["benchmark", "session_date", "level", "return", "source"]
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
    assert pks["market.corporate_actions"] == "PRIMARY KEY (symbol, ex_date, action_type, distribution_type)"
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
            # Tables refreshed per window since 0017 (materialized views refreshed whole before).
            assert kinds == {"bars_weekly": "r", "bars_monthly": "r"}
            unique = conn.execute(
                "SELECT indrelid::regclass::text FROM pg_index WHERE indisprimary "
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
    first = catalog_snapshot(url)
    assert first["policies"], "the snapshot must see the row-level security policies"
    assert any(r[1] == "bars_daily" for r in first["indexes"])

    assert migrate.downgrade(url, target=latest - 1) == [latest]
    assert migrate.current_version(url) == latest - 1
    assert _query(url, "SELECT max(version) FROM ops.schema_migrations") == [(latest - 1,)]
    partial = catalog_snapshot(url)
    assert partial != first
    assert migrate.upgrade(url) == [latest]
    assert catalog_snapshot(url) == first

    assert migrate.downgrade(url) == list(range(latest, 0, -1))
    assert migrate.current_version(url) == 0
    empty = catalog_snapshot(url)
    assert [r[0] for r in empty["schemas"]] == ["ops"]
    assert [r[1] for r in empty["relations"]] == [
        "alembic_version", "alembic_version_pkc", "schema_migrations", "schema_migrations_pkey"]
    assert empty["default_privileges"] == []
    assert _query(url, "SELECT count(*) FROM ops.alembic_version") == [(0,)]
    assert _query(url, "SELECT count(*) FROM ops.schema_migrations") == [(0,)]
    assert migrate.downgrade(url) == []

    assert migrate.upgrade(url) == list(range(1, latest + 1))
    again = catalog_snapshot(url)
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


def test_the_lock_is_held_while_alembic_runs(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a revision runs, the advisory lock is held by the migrating session (an oracle from pg_locks)."""
    seen: list[tuple] = []
    real = migrate.run_sql

    def spy(script: str, label: str) -> None:
        if not seen:
            seen.extend(_query(pg_url,
                "SELECT a.application_name, l.granted FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                (migrate.MIGRATION_LOCK_KEY,)))
        real(script, label)

    monkeypatch.setattr(migrate, "run_sql", spy)
    migrate.upgrade(pg_url, target=1)
    assert seen == [(migrate.APPLICATION_NAME, True)]


def _broken_revision(folder: Path, version: int) -> None:
    (folder / f"{version:04d}_broken.up.sql").write_text("CREATE TABLE ops.half_done (a int);\nSELECT 1 / 0;\n")
    (folder / f"{version:04d}_broken.down.sql").write_text("DROP TABLE ops.half_done;\n")
    (folder / f"{version:04d}_broken.py").write_text(
        "from pathlib import Path\n\n"
        "from wealth_pipeline.warehouse.migrate import sql_migration\n\n"
        f"revision = '{version:04d}'\n"
        f"down_revision = '{version - 1:04d}'\n"
        "upgrade, downgrade = sql_migration(__file__, sql_dir=Path(__file__).parent)\n"
    )


def test_failed_migration_rolls_back_alone_and_names_file_and_line(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latest = migrate.latest_version()
    migrate.upgrade(pg_url)
    _broken_revision(tmp_path, latest + 1)
    monkeypatch.setattr(migrate, "VERSION_LOCATIONS", [*migrate.VERSION_LOCATIONS, tmp_path])
    assert migrate.latest_version() == latest + 1
    with pytest.raises(MigrationError, match=rf"{latest + 1:04d}_broken\.up\.sql failed \(line 2\): division by zero"):
        migrate.upgrade(pg_url)
    assert migrate.current_version(pg_url) == latest
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('ops.half_done')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM ops.schema_migrations").fetchone() == (latest,)


def test_bad_targets_and_unknown_versions_are_refused(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latest = migrate.latest_version()
    with pytest.raises(MigrationError, match="outside"):
        migrate.upgrade(pg_url, target=latest + 1)
    with pytest.raises(MigrationError, match="outside"):
        migrate.downgrade(pg_url, target=-1)
    assert migrate.upgrade(pg_url, target=1) == [1]
    assert migrate.current_version(pg_url) == 1
    assert migrate.upgrade(pg_url, target=1) == []
    assert migrate.downgrade(pg_url, target=1) == []
    assert migrate.upgrade(pg_url) == list(range(2, latest + 1))
    only_first = tmp_path / "versions"
    only_first.mkdir()
    shutil.copy(migrate.load_migrations()[0].revision_file, only_first)
    monkeypatch.setattr(migrate, "VERSION_LOCATIONS", [only_first])
    with pytest.raises(MigrationError, match=rf"at migration {latest:04d}, which this package does not ship \(latest known: 0001\)"):
        migrate.downgrade(pg_url)
    assert migrate.current_version(pg_url) == latest


def test_split_statements_keeps_quoted_and_dollar_quoted_semicolons() -> None:
    script = (
        "CREATE TABLE a (x text DEFAULT 'a;b''c');\n"
        "-- a comment; with a semicolon\n"
        "/* block; comment */ SELECT E'\\';x';\n"
        "DO $body$ BEGIN PERFORM 1; END $body$;\n"
        "SELECT $$;$$, \"odd;name\" FROM t\n"
        "-- trailing comment\n"
    )
    assert migrate.split_statements(script) == [
        (1, "CREATE TABLE a (x text DEFAULT 'a;b''c');"),
        (3, "-- a comment; with a semicolon\n/* block; comment */ SELECT E'\\';x';"),
        (4, "DO $body$ BEGIN PERFORM 1; END $body$;"),
        (5, "SELECT $$;$$, \"odd;name\" FROM t\n-- trailing comment"),
    ]


def test_sql_reaches_the_server_untouched_by_bind_parameter_parsing(pg_url: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``:name`` and ``%`` inside SQL are data, not placeholders (SQLAlchemy's text() would bind them)."""
    latest = migrate.latest_version()
    migrate.upgrade(pg_url)
    version = latest + 1
    (tmp_path / f"{version:04d}_literals.up.sql").write_text(
        "CREATE TABLE ops.literals AS SELECT 'at :name 100%'::text AS v, format('%s:%s', 'a', 'b') AS w;\n")
    (tmp_path / f"{version:04d}_literals.down.sql").write_text("DROP TABLE ops.literals;\n")
    (tmp_path / f"{version:04d}_literals.py").write_text(
        "from pathlib import Path\n\nfrom wealth_pipeline.warehouse.migrate import sql_migration\n\n"
        f"revision = '{version:04d}'\ndown_revision = '{latest:04d}'\n"
        "upgrade, downgrade = sql_migration(__file__, sql_dir=Path(__file__).parent)\n")
    monkeypatch.setattr(migrate, "VERSION_LOCATIONS", [*migrate.VERSION_LOCATIONS, tmp_path])
    assert migrate.upgrade(pg_url) == [version]
    assert _query(pg_url, "SELECT v, w FROM ops.literals") == [("at :name 100%", "a:b")]
    assert _query(pg_url, "SELECT name FROM ops.schema_migrations WHERE version = %s", (version,)) == [("literals",)]
    assert migrate.downgrade(pg_url, target=latest) == [version]
    assert _query(pg_url, "SELECT to_regclass('ops.literals')") == [(None,)]


# ---- a warehouse migrated by the former runner ----------------------------------------------------
def former_runner_upgrade(url: str, upto: int) -> None:
    """Leave a database the way the former hand-written runner did (``migrate.upgrade`` before Alembic).

    The same preparation (roles, extension, database privileges, ``ops`` and
    ``ops.schema_migrations``, no Alembic table), then each SQL pair up to ``upto`` in its own
    transaction as ``wealth_owner``, statement by statement, recorded as (version, name).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        installed = timescale.ensure_timescale(conn)
        roles.ensure_group_roles(conn, owner_login=installed)
        db = sql.Identifier(conn.info.dbname)
        owner, loader, bi = (sql.Identifier(r) for r in roles.GROUP_ROLES)
        conn.execute(sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(db, owner))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, loader))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, bi))
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS ops AUTHORIZATION {}").format(owner))
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
            conn.execute("CREATE TABLE IF NOT EXISTS ops.schema_migrations (version integer PRIMARY KEY,"
                         " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for m in migrate.load_migrations()[:upto]:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
                for _, statement in migrate.split_statements(m.up_sql):
                    conn.execute(statement)  # type: ignore[arg-type]  # packaged SQL, no parameters
                conn.execute("INSERT INTO ops.schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
        assert not conn.execute("SELECT to_regclass('ops.alembic_version')").fetchone()[0]  # type: ignore[index]


_DDL_AUDIT = """
CREATE SCHEMA ddl_audit;
CREATE TABLE ddl_audit.log (event text, command_tag text, object_type text, object_identity text, app text);
CREATE FUNCTION ddl_audit.on_end() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  INSERT INTO ddl_audit.log SELECT 'end', command_tag, object_type, object_identity, current_setting('application_name')
  FROM pg_event_trigger_ddl_commands();
END $$;
CREATE FUNCTION ddl_audit.on_drop() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  INSERT INTO ddl_audit.log SELECT 'drop', tg_tag, object_type, object_identity, current_setting('application_name')
  FROM pg_event_trigger_dropped_objects();
END $$;
CREATE EVENT TRIGGER ddl_audit_end ON ddl_command_end EXECUTE FUNCTION ddl_audit.on_end();
CREATE EVENT TRIGGER ddl_audit_drop ON sql_drop EXECUTE FUNCTION ddl_audit.on_drop();
"""


def _audited_ddl(url: str) -> set[tuple[str, str, str | None]]:
    """DDL that the migration sessions ran since the audit started (GRANT/REVOKE excluded)."""
    rows = _query(url, "SELECT event, command_tag, object_identity FROM ddl_audit.log WHERE app = %s "
                       "AND command_tag NOT IN ('GRANT', 'REVOKE')", (migrate.APPLICATION_NAME,))
    return {(r[0], r[1], r[2]) for r in rows}


def _content(url: str) -> dict[str, object]:
    return {
        "bars": _query(url, "SELECT count(*), md5(string_agg(symbol || session_date || close || adj_close, ',' "
                            "ORDER BY symbol, session_date)) FROM market.bars_daily"),
        "securities": _query(url, "SELECT symbol, name FROM ref.securities ORDER BY 1"),
        "fx": _query(url, "SELECT count(*), sum(rate) FROM market.fx_rates"),
        "loads": _query(url, "SELECT load_id, asset, table_name, rows, checksum FROM ops.loads ORDER BY 1"),
        "history": _query(url, "SELECT version, name, applied_at FROM ops.schema_migrations ORDER BY 1"),
        "oids": _query(url, "SELECT c.oid, c.relname FROM pg_class c WHERE c.relnamespace = ANY("
                            "SELECT oid FROM pg_namespace WHERE nspname = ANY(%s)) AND c.relname <> ALL(%s) ORDER BY 1",
                       (list(migrate.SCHEMAS), ["alembic_version", "alembic_version_pkc"])),
    }


def _demo_like_loads(url: str, lake: Path) -> None:
    """The demo's ingest and processed assets for a few sessions, through Dagster into this warehouse."""
    import dagster as dg

    from wealth_pipeline.cli import materialize_range
    from wealth_pipeline.definitions import build_definitions
    from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
    from wealth_pipeline.lakehouse.resource import LakehouseResource

    resources = {
        "warehouse": WarehouseResource(url=url),
        "lakehouse": LakehouseResource(uri=str(lake)),
        "market_data": MarketDataResource(synthetic_universe=8),
    }
    summary = materialize_range("2024-07-01", "2024-07-05", "group:ingest or group:processed", progress=False,
                                definitions=build_definitions(resources), instance=dg.DagsterInstance.ephemeral())
    assert all(r["success"] for r in summary["runs"])


def _without_pointer(snapshot: dict[str, list]) -> dict[str, list]:
    return {k: [r for r in rows if "alembic_version" not in repr(r)] for k, rows in snapshot.items()}


def test_a_warehouse_migrated_by_the_former_runner_is_stamped_without_rerunning_anything(
    empty_db: tuple[str, str], tmp_path: Path
) -> None:
    _, url = empty_db
    latest = migrate.latest_version()
    former_runner_upgrade(url, latest)
    _demo_like_loads(url, tmp_path / "lake")
    before = _content(url)
    assert before["bars"][0][0] > 0 and before["loads"], "the demo-like loads wrote rows"  # type: ignore[index]
    catalog_before = catalog_snapshot(url)
    assert migrate.current_version(url) == latest

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_DDL_AUDIT)  # type: ignore[arg-type]
    assert migrate.upgrade(url) == [], "nothing is applied again"
    assert _query(url, "SELECT version_num FROM ops.alembic_version") == [(f"{latest:04d}",)]
    assert _audited_ddl(url) == {("end", "CREATE TABLE", "ops.alembic_version"),
                                 ("end", "CREATE INDEX", "ops.alembic_version_pkc")}, \
        "the only DDL is the creation of Alembic's pointer"
    assert _content(url) == before, "rows, load audit, history and table identities survive"
    assert _without_pointer(catalog_snapshot(url)) == _without_pointer(catalog_before)
    assert migrate.upgrade(url) == []

    # The audit sees migration DDL when there is some, and the adopted warehouse migrates on through Alembic.
    assert migrate.downgrade(url, target=latest - 1) == [latest]
    assert migrate.upgrade(url) == [latest]
    assert any(e == "drop" for e, _, _ in _audited_ddl(url)) and len(_audited_ddl(url)) > 2
    assert _content(url)["bars"] == before["bars"]
    assert _without_pointer(catalog_snapshot(url)) == _without_pointer(catalog_before)


def test_a_partly_migrated_former_warehouse_upgrades_to_the_fresh_catalog(empty_db: tuple[str, str]) -> None:
    _, url = empty_db
    latest = migrate.latest_version()
    former_runner_upgrade(url, 3)
    applied_before = _query(url, "SELECT version, applied_at FROM ops.schema_migrations ORDER BY 1")
    assert migrate.upgrade(url) == list(range(4, latest + 1))
    assert _query(url, "SELECT version, applied_at FROM ops.schema_migrations WHERE version <= 3 ORDER BY 1") == applied_before
    adopted = catalog_snapshot(url)
    assert migrate.downgrade(url) == list(range(latest, 0, -1))
    assert migrate.upgrade(url) == list(range(1, latest + 1))
    assert catalog_snapshot(url) == adopted, "adopted-then-upgraded equals migrated from scratch"


def test_a_former_history_that_does_not_match_the_files_is_refused(pg_url: str) -> None:
    former_runner_upgrade(pg_url, 2)
    _query(pg_url, "UPDATE ops.schema_migrations SET name = 'renamed' WHERE version = 2 RETURNING 1")
    with pytest.raises(MigrationError, match="records 0002_renamed where the package ships 0002_market"):
        migrate.upgrade(pg_url)
    assert _query(pg_url, "SELECT count(*) FROM ops.alembic_version") == [(0,)]


def test_history_and_current_report_through_alembic(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    latest = migrate.latest_version()
    former_runner_upgrade(pg_url, 2)
    migrate.current(pg_url)
    out = capsys.readouterr().out
    assert "ops.schema_migrations (former runner) records 0001..0002" in out
    migrate.upgrade(pg_url)
    migrate.current(pg_url)
    assert capsys.readouterr().out.strip() == f"{latest:04d} (head)"
    migrate.history(pg_url)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == latest
    assert lines[0].startswith(f"{latest - 1:04d} -> {latest:04d} (head) (current), ")
    assert lines[-1].startswith("<base> -> 0001, 0001_foundation")


def test_cli_db_upgrade_history_current_downgrade(pg_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    latest = migrate.latest_version()
    env = {**os.environ, "WEALTH_HOME": str(tmp_path), "WEALTH_DATABASE_URL": pg_url,
           "WEALTH_DAGSTER_DATABASE_URL": pg_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wealth_pipeline.cli", "db", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    up = cli("upgrade", "--target", "2")
    assert up.returncode == 0, up.stderr
    assert "applied migrations: [1, 2]; version 2" in up.stdout
    assert cli("current").stdout.strip() == "0002"
    history = cli("history").stdout.strip().splitlines()
    assert history[0].startswith(f"{latest - 1:04d} -> {latest:04d} (head), ")
    assert any(line.startswith("0001 -> 0002 (current), ") for line in history)
    bad = cli("upgrade", "--target", str(latest + 1))
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"wealth-pipeline db upgrade: upgrade target {latest + 1} is outside 0..{latest}"
    down = cli("downgrade", "--target", "1")
    assert down.returncode == 0, down.stderr
    assert "reverted migrations: [2]; version 1" in down.stdout
