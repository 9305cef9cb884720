"""The test session's migrated template: a clone is the same warehouse as a freshly migrated database.

Most integration tests start from ``migrated_pg_url`` / ``migrated_timescale_url`` /
``migrated_flavoured_db`` (conftest.py), a ``CREATE DATABASE ... TEMPLATE`` copy of a database the
session migrated once, instead of running the migrations per test. That is only sound if the copy is
indistinguishable from running the migrations: the oracle here is ``migrate.upgrade`` on an empty
database of the same server, compared catalog by catalog (relations, columns, privileges, row-level
security, functions, default privileges, database privileges, migration history, and on TimescaleDB
its hypertables, continuous aggregates, compression settings and jobs), and the clone's jobs must be
run by TimescaleDB's scheduler (jobs are per database).
"""

from __future__ import annotations

import time

import psycopg
import pytest

from wealth_pipeline.warehouse import migrate

pytestmark = pytest.mark.integration

# Everything a migration can leave in a database, as sorted text rows; object ids and times left out.
CATALOG = {
    "schemas": """
        SELECT nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '')
        FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'""",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), coalesce(c.relacl::text, ''),
               c.relrowsecurity, c.relforcerowsecurity, coalesce(array_to_string(c.reloptions, ','), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'""",
    "columns": """
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(a.attacl::text, ''), coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'""",
    "policies": """
        SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, coalesce(qual, ''),
               coalesce(with_check, '')
        FROM pg_policies""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), pg_get_userbyid(p.proowner),
               coalesce(p.proacl::text, ''), p.prosecdef, md5(p.prosrc)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'""",
    "default privileges": """
        SELECT pg_get_userbyid(defaclrole), coalesce(defaclnamespace::regnamespace::text, ''), defaclobjtype,
               defaclacl::text
        FROM pg_default_acl""",
    "constraints and indexes": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace::regnamespace::text !~ '^pg_'
        UNION ALL
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname !~ '^pg_'""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal""",
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "database privileges": "SELECT coalesce(datacl::text, '') FROM pg_database WHERE datname = current_database()",
    "migration history": "SELECT version, name FROM ops.schema_migrations UNION ALL SELECT 0, version_num FROM ops.alembic_version",
}
TIMESCALE_CATALOG = {
    "hypertables": """
        SELECT hypertable_schema, hypertable_name, owner::text, num_dimensions, compression_enabled
        FROM timescaledb_information.hypertables""",
    "dimensions": """
        SELECT hypertable_schema, hypertable_name, column_name, coalesce(time_interval::text, '')
        FROM timescaledb_information.dimensions""",
    "continuous aggregates": """
        SELECT view_schema, view_name, view_owner::text, materialized_only, md5(view_definition)
        FROM timescaledb_information.continuous_aggregates""",
    "compression settings": """
        SELECT hypertable_schema, hypertable_name, attname, coalesce(segmentby_column_index, 0),
               coalesce(orderby_column_index, 0), coalesce(orderby_asc::text, '')
        FROM timescaledb_information.compression_settings""",
    "jobs": """
        SELECT job_id, proc_schema, proc_name, owner::text, schedule_interval::text, coalesce(config::text, ''),
               scheduled, coalesce(hypertable_schema || '.' || hypertable_name, '')
        FROM timescaledb_information.jobs""",
}


def _snapshot(url: str, queries: dict[str, str]) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {name: sorted(tuple(str(v) for v in row) for row in conn.execute(query)) for name, query in queries.items()}


@pytest.fixture(params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def clone_and_migrated(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(flavour, a template clone, an empty database migrated here) on the same server."""
    flavour = request.param
    clone = request.getfixturevalue("migrated_pg_url" if flavour == "postgres" else "migrated_timescale_url")
    empty = request.getfixturevalue("pg_url" if flavour == "postgres" else "timescale_url")
    assert migrate.upgrade(empty) == list(range(1, migrate.latest_version() + 1))
    return flavour, clone, empty


def test_a_template_clone_has_the_catalog_of_a_freshly_migrated_database(clone_and_migrated: tuple[str, str, str]) -> None:
    flavour, clone, migrated = clone_and_migrated
    queries = {**CATALOG, **(TIMESCALE_CATALOG if flavour == "timescale" else {})}
    expected, got = _snapshot(migrated, queries), _snapshot(clone, queries)
    assert expected["relations"] and expected["policies"] and expected["database privileges"] != [("",)]
    if flavour == "timescale":
        assert expected["hypertables"] and expected["continuous aggregates"] and expected["jobs"]
    for name in queries:
        assert got[name] == expected[name], f"{name}: the clone differs from a migrated database"
    # re-running the migrations on a clone applies nothing: it is at the head
    assert migrate.upgrade(clone) == [] and migrate.current_version(clone) == migrate.latest_version()


@pytest.mark.timescale
def test_timescaledb_runs_the_jobs_of_a_template_clone(migrated_timescale_url: str) -> None:
    """The scheduler serves the clone: a one-shot job added there runs (the loader's rollup refresh is one)."""
    with psycopg.connect(migrated_timescale_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.job_ran (job_id integer, at timestamptz DEFAULT now())")
        conn.execute("CREATE PROCEDURE public.mark(job_id integer, config jsonb) LANGUAGE sql "
                     "AS $$ INSERT INTO public.job_ran (job_id) VALUES (job_id) $$")
        (job,) = conn.execute("SELECT add_job('public.mark'::regproc, interval '1 day', initial_start => now())").fetchone()
        deadline = time.monotonic() + 60
        ran: list[tuple] = []
        while time.monotonic() < deadline and not ran:
            ran = conn.execute("SELECT job_id FROM public.job_ran").fetchall()
            time.sleep(0.2)
        assert ran == [(job,)], f"TimescaleDB's scheduler did not run job {job} of the clone within 60 s"
