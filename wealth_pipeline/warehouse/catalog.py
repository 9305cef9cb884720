"""A comparable snapshot of the warehouse catalogue, for checking that migrations are reversible.

Used by the migration tests (up/down/up must give the same catalogue) and handy to compare two
warehouses. Moved here from the former hand-written migration runner; Alembic has no equivalent
(its autogenerate compares against SQLAlchemy models, which this SQL-first warehouse does not have).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from wealth_pipeline.warehouse import roles, timescale
from wealth_pipeline.warehouse.migrate import SCHEMAS

_TS_IDS = re.compile(r"(_materialized_hypertable|_partial_view|_direct_view|_hyper|_compressed_hypertable)_\d+(_\d+)?")


_TS_WATERMARK = re.compile(r"cagg_watermark\(\d+\)")


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return _TS_WATERMARK.sub("cagg_watermark(N)", _TS_IDS.sub(r"\1_N", value))
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    return value


_SNAPSHOT_QUERIES: dict[str, str] = {
    "schemas": """
        SELECT n.nspname, pg_get_userbyid(n.nspowner),
               ARRAY(SELECT a::text FROM unnest(coalesce(n.nspacl, '{}')) a ORDER BY 1)
        FROM pg_namespace n WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1""",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner),
               c.relrowsecurity, c.relforcerowsecurity, c.reloptions::text,
               ARRAY(SELECT a::text FROM unnest(coalesce(c.relacl, '{}')) a ORDER BY 1)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "columns": """
        SELECT n.nspname, c.relname,
               -- the logical position: a column dropped by a down migration leaves an attnum gap
               row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS position,
               a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 2, 3""",
    "constraints": """
        SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
    "policies": """
        SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check
        FROM pg_policies WHERE schemaname = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
    "views": """
        SELECT n.nspname, c.relname, pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('v', 'm') ORDER BY 1, 2""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_userbyid(p.proowner), p.prosecdef, md5(pg_get_functiondef(p.oid)),
               ARRAY(SELECT a::text FROM unnest(coalesce(p.proacl, '{}')) a ORDER BY 1)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND NOT t.tgisinternal ORDER BY 1, 2, 3""",
    "default_privileges": """
        SELECT pg_get_userbyid(d.defaclrole), coalesce(n.nspname, ''), d.defaclobjtype,
               ARRAY(SELECT a::text FROM unnest(d.defaclacl) a ORDER BY 1)
        FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
        WHERE pg_get_userbyid(d.defaclrole) = ANY(%(roles)s) ORDER BY 1, 2, 3""",
}

_TIMESCALE_QUERIES: dict[str, str] = {
    "hypertables": """
        SELECT d.hypertable_schema, d.hypertable_name, d.column_name, d.column_type::text,
               d.time_interval::text, h.compression_enabled
        FROM timescaledb_information.dimensions d
        JOIN timescaledb_information.hypertables h
          ON h.hypertable_schema = d.hypertable_schema AND h.hypertable_name = d.hypertable_name
        WHERE d.hypertable_schema = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
    "compression": """
        SELECT hypertable_schema, hypertable_name, attname, segmentby_column_index,
               orderby_column_index, orderby_asc
        FROM timescaledb_information.compression_settings
        WHERE hypertable_schema = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
    "continuous_aggregates": """
        SELECT view_schema, view_name, materialized_only, view_definition
        FROM timescaledb_information.continuous_aggregates
        WHERE view_schema = ANY(%(schemas)s) ORDER BY 1, 2""",
    "jobs": """
        SELECT proc_name, hypertable_schema, hypertable_name, schedule_interval::text, owner::text,
               (config - 'mat_hypertable_id' - 'hypertable_id')::text
        FROM timescaledb_information.jobs
        WHERE hypertable_schema = ANY(%(schemas)s) OR hypertable_schema = '_timescaledb_internal'
        ORDER BY 1, 2, 3""",
}


def catalog_snapshot(conninfo: str, schemas: tuple[str, ...] = SCHEMAS) -> dict[str, list[Any]]:
    """A comparable description of the warehouse schemas from the system catalogs.

    Tables, columns and types, constraints, indexes, policies, views, functions, triggers, grants,
    default privileges and (with TimescaleDB) hypertables, compression settings, continuous
    aggregates and jobs. Internal TimescaleDB ids (materialization hypertable numbers) are
    normalized so that two equivalent schemas compare equal.
    """
    params = {
        "schemas": list(schemas),
        "roles": list(roles.GROUP_ROLES),
    }
    snapshot: dict[str, list[Any]] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for key, query in _SNAPSHOT_QUERIES.items():
            snapshot[key] = [_normalize(list(r)) for r in conn.execute(query, params).fetchall()]
        if timescale.timescale_installed(conn):
            for key, query in _TIMESCALE_QUERIES.items():
                rows = [_normalize(list(r)) for r in conn.execute(query, params).fetchall()]
                snapshot[f"timescale_{key}"] = sorted(rows, key=repr)
    return snapshot
