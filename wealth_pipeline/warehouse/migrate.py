"""Versioned, reversible warehouse migrations.

Migrations are SQL files shipped with the package, ``migrations/NNNN_<name>.up.sql`` and
``NNNN_<name>.down.sql``, numbered from 0001 without gaps. :func:`upgrade` applies the pending ones in
order, :func:`downgrade` reverts applied ones in reverse order; each migration runs in its own
transaction as ``wealth_owner`` (``SET LOCAL ROLE``) and is recorded in ``ops.schema_migrations``.
A session-level advisory lock serializes concurrent runs against the same database; a second run
finds nothing to do.

Before any migration, ``upgrade`` prepares the database (idempotent, not versioned, kept on
downgrade): the group roles (see :mod:`roles`), the TimescaleDB extension when the server has it
(see :mod:`timescale`), database privileges (``wealth_owner`` may create schemas; TEMP only for the
pipeline roles; no CREATE on ``public`` for PUBLIC), the ``ops`` schema and ``ops.schema_migrations``.
The connecting role must be a superuser, or have CREATEROLE and CREATE on the database.

Migrations may branch on ``ops.timescale_enabled()`` and call ``ops.enable_timeseries(...)`` and
``ops.enable_portfolio_rls(...)`` (see the SQL files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from wealth_pipeline.warehouse import roles, timescale

SCHEMAS: tuple[str, ...] = ("ref", "market", "analytics", "portfolio", "models", "marts", "ops")
# pg_advisory_lock key of the migration runner (a fixed constant, unique to this project).
MIGRATION_LOCK_KEY = 0x3B1F_5A2C_77E0_41D9
_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")


class MigrationError(RuntimeError):
    """A migration file is malformed, the database is ahead of the package, or a migration failed."""


@dataclass(frozen=True)
class Migration:
    """One versioned step: forward and backward SQL."""

    version: int
    name: str
    up_sql: str
    down_sql: str


def load_migrations() -> list[Migration]:
    """Read and validate the packaged migration files (pairs, contiguous versions from 1)."""
    folder = resources.files("wealth_pipeline.warehouse") / "migrations"
    found: dict[int, dict[str, Any]] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if not match:
            raise MigrationError(
                f"migration file {entry.name!r} is not named NNNN_<name>.up.sql / NNNN_<name>.down.sql"
            )
        version = int(match["version"])
        slot = found.setdefault(version, {"name": match["name"]})
        if slot["name"] != match["name"]:
            raise MigrationError(f"migration {version:04d} has two names: {slot['name']!r} and {match['name']!r}")
        slot[match["direction"]] = entry.read_text(encoding="utf-8")
    migrations: list[Migration] = []
    for expected, version in enumerate(sorted(found), start=1):
        if version != expected:
            raise MigrationError(f"migration versions must be contiguous from 0001; {expected:04d} is missing")
        slot = found[version]
        for direction in ("up", "down"):
            if direction not in slot:
                raise MigrationError(f"migration {version:04d}_{slot['name']} has no .{direction}.sql file")
        migrations.append(Migration(version, slot["name"], slot["up"], slot["down"]))
    return migrations


def latest_version() -> int:
    """The highest version shipped with the package."""
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


def _applied(conn: psycopg.Connection) -> list[int]:
    exists = conn.execute("SELECT to_regclass('ops.schema_migrations') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        return []
    return [r[0] for r in conn.execute("SELECT version FROM ops.schema_migrations ORDER BY version")]


def current_version(conninfo: str) -> int:
    """The highest applied version (0 for a database never migrated)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        applied = _applied(conn)
    return applied[-1] if applied else 0


def _prepare_database(conn: psycopg.Connection) -> None:
    """Idempotent, unversioned preparation: roles, extension, database privileges, ops bootstrap."""
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
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ops.schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def split_statements(script: str) -> list[tuple[int, str]]:
    """Split a SQL script on top-level semicolons: [(first line number, statement)].

    Understands quoted strings (including E'' escapes), quoted identifiers, ``--`` and nested
    ``/* */`` comments and dollar quoting, so function bodies stay whole. Running statements one by
    one lets a failure name the line it came from.
    """
    statements: list[tuple[int, str]] = []
    i, start, n = 0, 0, len(script)
    while i < n:
        ch = script[i]
        if ch == "-" and script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == "/" and script.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if script.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif script.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch in "'\"":
            escapes = ch == "'" and i > 0 and script[i - 1] in "eE" and (i < 2 or not (script[i - 2].isalnum() or script[i - 2] == "_"))
            i += 1
            while i < n:
                if escapes and script[i] == "\\":
                    i += 2
                    continue
                if script[i] == ch:
                    if script.startswith(ch * 2, i):
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == "$" and (match := _DOLLAR_TAG.match(script, i)) and not (i > 0 and (script[i - 1].isalnum() or script[i - 1] == "_")):
            tag = match.group(0)
            end = script.find(tag, match.end())
            i = n if end < 0 else end + len(tag)
        elif ch == ";":
            statements.append((start, script[start : i + 1]))
            i += 1
            start = i
        else:
            i += 1
    statements.append((start, script[start:]))
    result: list[tuple[int, str]] = []
    for offset, text in statements:
        lines = text.split("\n")
        code = [k for k, line in enumerate(lines) if line.strip() and not line.strip().startswith("--")]
        if code and text.strip() != ";":
            first_line = script.count("\n", 0, offset) + 1 + code[0]
            result.append((first_line, text.strip()))
    return result


def _run(conn: psycopg.Connection, migration: Migration, direction: str) -> None:
    text = migration.up_sql if direction == "up" else migration.down_sql
    label = f"{migration.version:04d}_{migration.name}.{direction}.sql"
    line = 0
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(roles.OWNER)))
            for first_line, statement in split_statements(text):
                line = first_line
                conn.execute(statement)  # type: ignore[arg-type]  # trusted, packaged SQL; no parameters
            line = 0
            if direction == "up":
                conn.execute(
                    "INSERT INTO ops.schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            else:
                conn.execute("DELETE FROM ops.schema_migrations WHERE version = %s", (migration.version,))
    except psycopg.Error as exc:
        where = f" (line {line})" if line else ""
        raise MigrationError(f"migration {label} failed{where}: {str(exc).strip()}") from exc


class _Locked:
    """An autocommit connection holding the migration advisory lock."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def __enter__(self) -> psycopg.Connection:
        self.conn = psycopg.connect(self.conninfo, autocommit=True)
        self.conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.conn.closed and not self.conn.broken:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        finally:
            self.conn.close()


def _check_known(applied: list[int], migrations: list[Migration]) -> None:
    known = {m.version for m in migrations}
    unknown = [v for v in applied if v not in known]
    if unknown:
        raise MigrationError(
            f"the database has migrations {unknown} that this package does not ship "
            f"(latest known: {max(known, default=0)}); upgrade the package"
        )


def upgrade(conninfo: str, target: int | None = None) -> list[int]:
    """Apply pending migrations up to ``target`` (default: the latest); return the versions applied."""
    migrations = load_migrations()
    latest = migrations[-1].version if migrations else 0
    if target is None:
        target = latest
    if not 0 <= target <= latest:
        raise MigrationError(f"upgrade target {target} is outside 0..{latest}")
    with _Locked(conninfo) as conn:
        _prepare_database(conn)
        applied = _applied(conn)
        _check_known(applied, migrations)
        done: list[int] = []
        for migration in migrations:
            if migration.version > target or migration.version in applied:
                continue
            _run(conn, migration, "up")
            done.append(migration.version)
        return done


def downgrade(conninfo: str, target: int = 0) -> list[int]:
    """Revert applied migrations above ``target``, newest first; return the versions reverted."""
    migrations = load_migrations()
    latest = migrations[-1].version if migrations else 0
    if not 0 <= target <= latest:
        raise MigrationError(f"downgrade target {target} is outside 0..{latest}")
    with _Locked(conninfo) as conn:
        applied = _applied(conn)
        _check_known(applied, migrations)
        by_version = {m.version: m for m in migrations}
        done: list[int] = []
        for version in sorted(applied, reverse=True):
            if version <= target:
                break
            _run(conn, by_version[version], "down")
            done.append(version)
        return done


# ---- catalog snapshot ----------------------------------------------------------------------------

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
        SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
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
