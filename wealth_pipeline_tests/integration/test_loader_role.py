"""The pipeline connects as ``wealth_loader``: it writes rows and refreshes rollups, and can do nothing else.

On both flavours: the market, analytics and marts graph and the portfolio assets run with the
loader's login as the ``warehouse`` resource (dbt with the owner's URL, as the embedded default
wires it); the loader cannot alter or drop any object the catalogs list, cannot become an owner,
cannot read what it has no business with; migrations run as the owner. The embedded default's
``bootstrap`` hands out the three connections, and dbt's credentials never appear in process arguments.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealth_pipeline import environment
from wealth_pipeline.environment import dsn_to_url
from wealth_pipeline.warehouse import migrate, roles, timescale
from wealth_pipeline.warehouse.roles import ensure_login_roles
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "wealth-pipeline"
GRAPH = "group:ingest or group:processed or group:analytics or group:marts"
WAREHOUSE_SCHEMAS = ("ref", "market", "analytics", "portfolio", "models", "marts", "ops", "staging")


class Warehouse:
    """A migrated warehouse with its administrative (superuser) URL and the loader's login URL."""

    def __init__(self, flavour: str, admin: str, loader: str) -> None:
        self.flavour, self.admin, self.loader = flavour, admin, loader

    def rows(self, url: str, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(url) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture
def warehouse(flavoured_db: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """Migrated by the superuser; ``wealth_loader`` given a password login; dbt pointed at the owner side."""
    flavour, admin = flavoured_db
    migrate.upgrade(admin)
    password = secrets.token_urlsafe(12)
    monkeypatch.setenv("WEALTH_LOADER_PASSWORD", password)
    monkeypatch.delenv("WEALTH_BI_PASSWORD", raising=False)
    monkeypatch.delenv("WEALTH_OWNER_PASSWORD", raising=False)
    assert ensure_login_roles(admin) == [roles.LOADER]
    monkeypatch.setenv("WEALTH_DBT_DATABASE_URL", admin)
    return Warehouse(flavour, admin, dsn_to_url(make_conninfo(admin, user=roles.LOADER, password=password)))


def test_the_pipeline_runs_as_the_loader_with_rollups_and_marts(warehouse: Warehouse, tmp_path: Path) -> None:
    pipeline = Pipeline(warehouse.loader, str(tmp_path / "lake"), None)
    runs = pipeline.run("2024-06-03", "2024-06-14", selection=GRAPH)
    assert runs and all(r["success"] for r in runs), runs
    assert pipeline.query("SELECT current_user")[0] == (roles.LOADER,)
    # Every audit row of the run was written by the loader's session.
    audits = warehouse.rows(warehouse.admin, "SELECT count(*), count(DISTINCT table_name) FROM ops.loads")[0]
    assert audits[0] > 0 and audits[1] >= 5
    # The weekly rollup was refreshed for the window by the loader's request (on TimescaleDB by the
    # owner's one-shot job): the materialized rows equal the daily bars rolled up by hand.
    daily = warehouse.rows(warehouse.admin, "SELECT session_date, open, high, low, close, volume FROM market.bars_daily "
                                            "WHERE symbol = 'AAPL' AND session_date BETWEEN '2024-06-10' AND '2024-06-14' "
                                            "ORDER BY session_date")
    expected = [(daily[0][1], max(r[2] for r in daily), min(r[3] for r in daily), daily[-1][4], sum(r[5] for r in daily))]
    weekly_query = "SELECT open, high, low, close, volume FROM {} WHERE symbol = 'AAPL' AND week_start = '2024-06-10'"
    assert warehouse.rows(warehouse.loader, weekly_query.format("market.bars_weekly")) == expected
    if warehouse.flavour == "timescale":
        (table,) = warehouse.rows(warehouse.admin, "SELECT quote_ident(materialization_hypertable_schema) || '.' || "
                                  "quote_ident(materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates "
                                  "WHERE view_name = 'bars_weekly'")[0]
        assert warehouse.rows(warehouse.admin, weekly_query.format(table)) == expected, "materialized, not only real-time"
        requests = warehouse.rows(warehouse.admin, "SELECT requested_by, finished_at IS NOT NULL FROM ops.rollup_refreshes")
        assert requests and set(requests) == {(roles.LOADER, True)}
        assert warehouse.rows(warehouse.admin, "SELECT count(*) FROM timescaledb_information.jobs "
                                               "WHERE proc_name = 'run_rollup_refresh'") == [(0,)]
    # dbt built the marts as the owner (WEALTH_DBT_DATABASE_URL): owned by wealth_owner, readable by the loader.
    owners = warehouse.rows(warehouse.admin, "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
                                             "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                             "WHERE n.nspname IN ('marts', 'staging') AND c.relkind IN ('r', 'v', 'm')")
    assert owners == [(roles.OWNER,)]
    assert warehouse.rows(warehouse.loader, "SELECT count(*) > 0 FROM marts.security_daily") == [(True,)]
    # A run of one mart looks for its unselected upstream views as dbt's login: the loader has no
    # USAGE on the staging schema (the demo's predictions stage failed on "permission denied").
    [partial] = pipeline.run("2024-06-14", selection="marts/security_daily")
    assert partial["success"]


def test_portfolio_assets_run_as_the_loader(warehouse: Warehouse, tmp_path: Path) -> None:
    from wealth_pipeline_tests.integration.test_portfolio_pipeline import SELECTION, seed_processed

    lake = str(tmp_path / "lake")
    seed_processed(lake, dt.date(2022, 9, 1), dt.date(2024, 2, 29))
    pipeline = Pipeline(warehouse.loader, lake, None, synthetic_universe=12)
    runs = pipeline.run("2024-01-15", "2024-02-29", selection=SELECTION)
    assert runs and all(r["success"] for r in runs), runs
    counts = warehouse.rows(warehouse.admin, "SELECT portfolio_id, count(*) FROM portfolio.valuations GROUP BY 1 ORDER BY 1")
    assert [p for p, _ in counts] == ["alice-growth", "bob-income"] and all(n > 20 for _, n in counts)


def test_a_dbt_login_that_cannot_act_as_the_owner_fails_once_naming_the_variable(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEALTH_DBT_DATABASE_URL", warehouse.loader)
    pipeline = Pipeline(warehouse.loader, str(tmp_path / "lake"), None)
    assert all(r["success"] for r in pipeline.run("2024-06-03", selection="group:ingest or group:processed or group:analytics"))
    runs = pipeline.run("2024-06-03", selection="group:marts", raise_on_error=False)
    assert runs and not any(r["success"] for r in runs)
    events = pipeline.instance.all_logs(runs[-1]["run_id"])
    failures = [e.dagster_event.event_specific_data.error.message for e in events
                if e.dagster_event is not None and e.dagster_event.is_step_failure]
    assert any("WEALTH_DBT_DATABASE_URL" in f and "'wealth_loader'" in f and "may not SET ROLE wealth_owner" in f
               for f in failures), failures
    assert not [e for e in events if e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"]


def _relations(url: str) -> list[tuple[str, str, str]]:
    """(kind keyword, qualified name, schema) of every relation the loader could name, from the catalogs."""
    with psycopg.connect(url) as conn:
        caggs: set[str] = set()
        if timescale.timescale_installed(conn):
            caggs = {r[0] for r in conn.execute("SELECT quote_ident(view_schema) || '.' || quote_ident(view_name) "
                                                "FROM timescaledb_information.continuous_aggregates")}
        rows = conn.execute(
            "SELECT c.relkind::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname), n.nspname "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 2").fetchall()
    keyword = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "i": "INDEX",
               "f": "FOREIGN TABLE"}
    return [("MATERIALIZED VIEW" if name in caggs else keyword[kind], name, schema) for kind, name, schema in rows]


def test_the_loader_cannot_alter_drop_or_become_an_owner(warehouse: Warehouse, tmp_path: Path) -> None:
    # Real loads first, so hypertables have chunks (and TimescaleDB compressed ones after compress_chunk).
    pipeline = Pipeline(warehouse.loader, str(tmp_path / "lake"), None)
    assert all(r["success"] for r in pipeline.run("2024-06-03", "2024-06-07", selection="group:ingest or group:processed"))
    with psycopg.connect(warehouse.admin, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.superuser_notes (secret text)")
        conn.execute("INSERT INTO public.superuser_notes VALUES ('not for the loader')")
        if warehouse.flavour == "timescale":
            conn.execute("SELECT compress_chunk(c) FROM show_chunks('market.bars_daily') c")
    relations = _relations(warehouse.admin)
    kinds = {k for k, _, _ in relations}
    # Rollups are continuous aggregates on TimescaleDB, tables on plain PostgreSQL (migration 0017).
    assert {"TABLE", "VIEW", "SEQUENCE", "INDEX"} | ({"MATERIALIZED VIEW"} if warehouse.flavour == "timescale" else set()) <= kinds
    if warehouse.flavour == "timescale":  # chunks, compressed chunks and aggregate internals are among them
        assert sum(1 for _, n, s in relations if s == "_timescaledb_internal") > 10
    refused: list[str] = []
    with psycopg.connect(warehouse.loader, autocommit=True) as conn:
        attributes = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
                                  "FROM pg_roles WHERE rolname = current_user").fetchone()
        assert attributes == (False, False, False, False, False)
        memberships = conn.execute("SELECT array_agg(b.rolname ORDER BY b.rolname) FROM pg_auth_members m "
                                   "JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = 'wealth_loader'::regrole").fetchone()
        assert memberships == (None,), "the loader is a member of no role"

        def refuse(statement: str | sql.Composable) -> None:
            text = statement if isinstance(statement, str) else statement.as_string(conn)
            try:
                conn.execute(text)
            except psycopg.errors.InsufficientPrivilege:
                refused.append(text)
                return
            except psycopg.errors.FeatureNotSupported:
                # TimescaleDB refuses dropping a compressed hypertable's internal twin before checking
                # privileges; ownership (checked below from the catalogs) is what would allow it.
                refused.append(text)
                return
            pytest.fail(f"the loader could run {text!r}")

        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE pg_has_role(current_user, c.relowner, 'USAGE') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        assert owned == (0,), "the loader owns (or may act as the owner of) no relation"
        for kind, name, _ in relations:
            refuse(f"DROP {kind} {name}")
            if kind == "TABLE":
                refuse(f"ALTER TABLE {name} ADD COLUMN loader_probe integer")
        functions = conn.execute(
            "SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%s) AND p.prokind <> 'a'",
            (list(WAREHOUSE_SCHEMAS),)).fetchall()
        assert len(functions) >= 8
        for kind, signature in functions:
            refuse(f"DROP {kind} {signature}")
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                                              "AND nspname <> 'information_schema'")]
        creatable = [s for s in schemas if conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", (s,)).fetchone()[0]]
        assert creatable == [], "the loader may create objects in no schema"
        for schema in WAREHOUSE_SCHEMAS:
            if schema in schemas:
                refuse(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        # Owner-only routines and bookkeeping.
        for statement in ("SELECT ops.secure_timescale_access()",
                          "SELECT ops.enable_portfolio_rls('portfolio.transactions')",
                          "CALL ops.run_rollup_refresh(1, '{\"request_id\": 1}')",
                          "INSERT INTO ops.rollups VALUES ('market.bars_daily', 'week')",
                          "DELETE FROM ops.schema_migrations",
                          "UPDATE ops.rollup_refreshes SET finished_at = now()",
                          "SELECT * FROM ops.alembic_version",
                          "SELECT * FROM public.superuser_notes",
                          "SELECT rolpassword FROM pg_authid",
                          "TRUNCATE market.bars_daily",
                          "ALTER TABLE portfolio.transactions DISABLE ROW LEVEL SECURITY",
                          "ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner GRANT ALL ON TABLES TO wealth_loader"):
            refuse(statement)
        if warehouse.flavour == "timescale":
            jobs = [r[0] for r in conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE owner = 'wealth_owner'::regrole")]
            assert jobs, "the policies are listed"
            for job in jobs:
                refuse(f"SELECT alter_job({job}, scheduled => false)")
                refuse(f"SELECT delete_job({job})")
            for statement in ("SELECT drop_chunks('market.bars_daily', older_than => DATE '2100-01-01')",
                              "SELECT remove_compression_policy('market.bars_daily')",
                              "SELECT decompress_chunk(c) FROM show_chunks('market.bars_daily') c",
                              "CALL refresh_continuous_aggregate('market.bars_weekly', NULL, NULL)"):
                refuse(statement)
        for target in (roles.OWNER, conninfo_to_dict(warehouse.admin)["user"], roles.BI):
            refuse(sql.SQL("SET ROLE {}").format(sql.Identifier(target)))
            refuse(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(target)))
        assert conn.execute("SELECT current_user, session_user").fetchone() == (roles.LOADER, roles.LOADER)
    assert len(refused) > len(relations) + len(functions)  # every relation and routine, plus the rest
    # Nothing changed: every relation is still there, owned as before.
    assert _relations(warehouse.admin) == relations


def test_migrations_run_as_the_owner_and_refuse_the_loader(warehouse: Warehouse) -> None:
    version = migrate.current_version(warehouse.admin)
    assert version == migrate.latest_version()
    for attempt in (lambda: migrate.downgrade(warehouse.loader, 0), lambda: migrate.upgrade(warehouse.loader)):
        with pytest.raises((psycopg.errors.InsufficientPrivilege, migrate.MigrationError)):
            attempt()
    assert migrate.current_version(warehouse.admin) == version
    # Every object of the warehouse schemas belongs to the owner, none to the loader or the superuser.
    owners = warehouse.rows(warehouse.admin, "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
                                             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s)",
                            (list(WAREHOUSE_SCHEMAS),))
    assert owners == [(roles.OWNER,)]
    functions = warehouse.rows(warehouse.admin, "SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p "
                                                "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%s)",
                               (list(WAREHOUSE_SCHEMAS),))
    assert functions == [(roles.OWNER,)]


def test_the_embedded_default_hands_the_pipeline_the_loader_and_dbt_the_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(tempfile.mkdtemp(prefix="wealth-loader-home-"))
    home.chmod(0o755)
    monkeypatch.setenv("WEALTH_HOME", str(home / "home"))
    for variable in ("WEALTH_DATABASE_URL", "WEALTH_DAGSTER_DATABASE_URL", "WEALTH_DBT_DATABASE_URL",
                     "WEALTH_LOADER_PASSWORD", "WEALTH_OWNER_PASSWORD", "WEALTH_PG_PORT", "DAGSTER_HOME"):
        monkeypatch.setenv(variable, "")  # recorded, so what bootstrap exports is undone after the test
        monkeypatch.delenv(variable)
    env = environment.bootstrap()
    assert env.local_cluster is not None
    try:
        users = {name: conninfo_to_dict(url)["user"] for name, url in
                 (("admin", env.warehouse_url), ("pipeline", env.pipeline_url), ("dbt", env.dbt_url))}
        assert users == {"admin": "wealth", "pipeline": roles.LOADER, "dbt": roles.OWNER}
        assert os.environ["WEALTH_DATABASE_URL"] == env.pipeline_url
        assert os.environ["WEALTH_DBT_DATABASE_URL"] == env.dbt_url
        # A second bootstrap in the same process sees its own export and keeps the three connections.
        again = environment.bootstrap()
        assert (again.warehouse_url, again.pipeline_url, again.dbt_url) == (env.warehouse_url, env.pipeline_url, env.dbt_url)
        migrate.upgrade(env.warehouse_url)
        with psycopg.connect(env.pipeline_url) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (roles.LOADER, "warehouse")
            assert conn.execute("SELECT pg_has_role(current_user, 'wealth_owner', 'MEMBER')").fetchone() == (False,)
        with psycopg.connect(env.dbt_url) as conn:
            conn.execute("SET ROLE wealth_owner")
            assert conn.execute("SELECT current_user").fetchone() == (roles.OWNER,)
        for url in (env.pipeline_url, env.dbt_url):  # neither pipeline login opens Dagster's instance database
            with pytest.raises(psycopg.OperationalError, match='permission denied for database "dagster"'):
                psycopg.connect(make_conninfo(url, dbname="dagster")).close()
        # dbt by hand on the embedded default: the owner login, its password only in the environment.
        secrets_seen = {conninfo_to_dict(u)["password"] for u in (env.warehouse_url, env.pipeline_url, env.dbt_url)}
        child = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
        child["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        dbt = subprocess.Popen([str(CLI), "dbt", "debug"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=child, cwd=REPO_ROOT)
        leaked: list[str] = []
        scanned = 0
        deadline = time.monotonic() + 300
        while dbt.poll() is None and time.monotonic() < deadline:
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if "dbt" in cmdline:
                    scanned += 1
                    leaked += [cmdline for secret in secrets_seen if secret in cmdline]
            time.sleep(0.05)
        output = dbt.communicate(timeout=60)[0]
        assert dbt.returncode == 0 and "All checks passed" in output, output
        assert f"user: {roles.OWNER}" in output, output
        assert scanned > 0 and leaked == []
    finally:
        env.local_cluster.stop()


def test_the_runbooks_password_rotation_gives_the_loader_and_bi_new_passwords(warehouse: Warehouse, tmp_path: Path) -> None:
    """docs/operations.md section 10, as printed: ``db upgrade`` with the new passwords in the environment."""
    old = conninfo_to_dict(warehouse.loader)["password"]
    new_loader, new_bi = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEALTH_", "PG"))}
    env.update(WEALTH_HOME=str(tmp_path), WEALTH_DATABASE_URL=warehouse.admin,
               WEALTH_LOADER_PASSWORD=new_loader, WEALTH_BI_PASSWORD=new_bi)
    done = subprocess.run([str(Path(sys.executable).with_name("wealth-pipeline")), "db", "upgrade"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "login enabled for: wealth_loader, wealth_bi" in done.stdout
    for login, password in ((roles.LOADER, new_loader), (roles.BI, new_bi)):
        url = make_conninfo(warehouse.admin, user=login, password=password)
        assert warehouse.rows(url, "SELECT current_user") == [(login,)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(make_conninfo(warehouse.admin, user=roles.LOADER, password=old), connect_timeout=10).close()
    assert new_loader not in done.stdout + done.stderr and new_bi not in done.stdout + done.stderr
