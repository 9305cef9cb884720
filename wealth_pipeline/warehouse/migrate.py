"""Warehouse migrations, run by Alembic; this module is the glue around it.

Alembic (SQLAlchemy's migration tool, already installed as a Dagster dependency and the tool the
design references name) does the migration work: the revision graph, the version pointer
(``ops.alembic_version``), one transaction per revision, upgrade/downgrade to a target, stamping,
``history`` and ``current``. It replaced a hand-written runner of about 390 lines that did the same
with less (no graph, no stamping, no history command).

The migrations stay SQL-first. Each step is a pair of packaged SQL files,
``migrations/NNNN_<name>.up.sql`` / ``.down.sql``, and a three-line revision file
``alembic/versions/NNNN_<name>.py`` that names its parent and runs the pair through
:func:`sql_migration`; the revision id is the four-digit number. Adding a migration = the SQL pair
plus a copy of the previous revision file with the two ids changed (:func:`load_migrations`, run
before every upgrade, names what is missing). Statements run one by one, split by ``sqlparse`` (a
dbt dependency), so a failure names its file and line.

What stays here, because it is not Alembic's job:

* **the advisory lock**: every upgrade/downgrade holds ``pg_advisory_lock(MIGRATION_LOCK_KEY)`` on
  its own connection for the whole run, so concurrent runs against one database serialize and the
  second finds nothing to do;
* **the preparation** before an upgrade (idempotent, not versioned, kept on downgrade): the group
  roles (see :mod:`roles`), the TimescaleDB extension when the server offers it (detection in
  :mod:`timescale`), database privileges (``wealth_owner`` may create schemas; TEMP only for the
  pipeline roles; no CREATE on ``public`` for PUBLIC), the ``ops`` schema, ``ops.schema_migrations``
  and ``ops.alembic_version``. The connecting role must be a superuser, or have CREATEROLE and
  CREATE on the database. Revisions then run as ``wealth_owner`` (``SET ROLE`` in ``env.py``);
* **the history**: ``ops.schema_migrations`` (version, name, applied_at) is written in each
  revision's transaction (``on_version_apply``) next to Alembic's single-row pointer;
* **adoption**: a warehouse migrated by the former runner has rows in ``ops.schema_migrations`` and
  no Alembic pointer. The first upgrade or downgrade checks those rows against the shipped files and
  stamps the database at that version (``alembic stamp``): nothing re-runs, data stays.

Migrations may branch on ``ops.timescale_enabled()`` and call ``ops.enable_timeseries(...)`` and
``ops.enable_portfolio_rls(...)`` (see the SQL files).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlparse
from psycopg import sql

from wealth_pipeline.warehouse import roles, timescale

SCHEMAS: tuple[str, ...] = ("ref", "market", "analytics", "portfolio", "models", "marts", "ops")
# pg_advisory_lock key of the migration runner (a fixed constant, unique to this project).
MIGRATION_LOCK_KEY = 0x3B1F_5A2C_77E0_41D9
HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = HERE / "migrations"
ALEMBIC_DIR = HERE / "alembic"
# Where Alembic looks for revision files (tests add a folder with a deliberately broken one).
VERSION_LOCATIONS: list[Path] = [ALEMBIC_DIR / "versions"]
VERSION_TABLE = "alembic_version"
VERSION_SCHEMA = "ops"
APPLICATION_NAME = "wealth-pipeline migrate"

_SQL_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")
_REVISION_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.py$")


class MigrationError(RuntimeError):
    """A migration file is malformed, the database is ahead of the package, or a migration failed."""


@dataclass(frozen=True)
class Migration:
    """One versioned step: its Alembic revision file and its forward and backward SQL."""

    version: int
    name: str
    up_sql: str
    down_sql: str
    revision_file: Path


# ---- Alembic plumbing -----------------------------------------------------------------------------
def alembic_config(conninfo: str | None = None, **attributes: Any) -> Any:
    """An Alembic ``Config`` for the packaged environment (no alembic.ini: everything is set here).

    ``conninfo`` and ``attributes`` reach ``env.py`` through ``config.attributes``.
    """
    from alembic.config import Config

    config = Config(stdout=sys.stdout)  # the current stdout (Alembic's default is bound at import)
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in VERSION_LOCATIONS))
    config.attributes.update(attributes, conninfo=conninfo, applied=[])
    return config


def script_directory() -> Any:
    """Alembic's view of the revision files."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def revision_id(version: int) -> str:
    """The Alembic revision id of a version number (``0`` is Alembic's ``base``)."""
    return "base" if version == 0 else f"{version:04d}"


def _revisions() -> list[Any]:
    """The revision scripts from base to head; ids must be the file's number, the chain linear."""
    scripts = list(reversed(list(script_directory().walk_revisions())))
    previous: str | None = None
    for script in scripts:
        match = _REVISION_RE.match(Path(script.path).name)
        if not match or script.revision != match["version"]:
            raise MigrationError(
                f"revision file {script.path} must be named NNNN_<name>.py with revision = 'NNNN' (got {script.revision!r})"
            )
        if script.down_revision != previous:
            raise MigrationError(
                f"revision {script.revision} ({script.path}) has down_revision {script.down_revision!r}; "
                f"expected {previous!r} (migrations form one line)"
            )
        previous = script.revision
    return scripts


def load_migrations() -> list[Migration]:
    """The packaged SQL pairs with their revision files, checked against each other.

    Pairs must be complete and numbered from 0001 without gaps, and each needs a revision file of
    the same stem; a revision file without a pair (a pure-Python revision) is allowed.
    """
    found: dict[int, dict[str, Any]] = {}
    for entry in sorted(MIGRATIONS_DIR.iterdir()):
        if not entry.name.endswith(".sql"):
            continue
        match = _SQL_RE.match(entry.name)
        if not match:
            raise MigrationError(
                f"migration file {entry.name!r} is not named NNNN_<name>.up.sql / NNNN_<name>.down.sql"
            )
        version = int(match["version"])
        slot = found.setdefault(version, {"name": match["name"]})
        if slot["name"] != match["name"]:
            raise MigrationError(f"migration {version:04d} has two names: {slot['name']!r} and {match['name']!r}")
        slot[match["direction"]] = entry.read_text(encoding="utf-8")
    revisions = {int(s.revision): Path(s.path) for s in _revisions()}
    migrations: list[Migration] = []
    for expected, version in enumerate(sorted(found), start=1):
        if version != expected:
            raise MigrationError(f"migration versions must be contiguous from 0001; {expected:04d} is missing")
        slot = found[version]
        stem = f"{version:04d}_{slot['name']}"
        for direction in ("up", "down"):
            if direction not in slot:
                raise MigrationError(f"migration {stem} has no .{direction}.sql file")
        revision_file = revisions.get(version)
        if revision_file is None or revision_file.stem != stem:
            parent = revision_id(version - 1) if version > 1 else None
            raise MigrationError(
                f"migration {stem} has SQL files but no Alembic revision {ALEMBIC_DIR / 'versions' / (stem + '.py')}: "
                f"copy the previous revision file and set revision = '{version:04d}', down_revision = {parent!r}"
            )
        migrations.append(Migration(version, slot["name"], slot["up"], slot["down"], revision_file))
    return migrations


def latest_version() -> int:
    """The head revision shipped with the package (0 when there is none)."""
    head = script_directory().get_current_head()
    return int(head) if head else 0


# ---- running SQL inside a revision ----------------------------------------------------------------
def split_statements(script: str) -> list[tuple[int, str]]:
    """[(line of the statement's first code line, statement)] of a SQL script, split by sqlparse.

    sqlparse keeps quoted strings, quoted identifiers, comments and dollar-quoted bodies whole; it
    does not know PostgreSQL's nested ``/* /* */ */`` comments (do not nest comments in migrations:
    such a file fails loudly with a syntax error naming its line).
    """
    result: list[tuple[int, str]] = []
    position = 0
    for statement in sqlparse.split(script):
        text = statement.strip()
        if not text or text == ";":
            continue
        start = script.find(text, position)
        position = start + len(text)
        lines = text.split("\n")
        code = [k for k, line in enumerate(lines) if line.strip() and not line.strip().startswith("--")]
        if code:
            result.append((script.count("\n", 0, start) + 1 + code[0], text))
    return result


def run_sql(script: str, label: str) -> None:
    """Execute a packaged SQL script in the running revision's transaction, statement by statement.

    The statements go to the driver as they are (no bind-parameter parsing of ``:name`` or ``%``);
    a failure raises :class:`MigrationError` naming ``label`` and the statement's line.
    """
    from alembic import op
    from sqlalchemy.exc import DBAPIError

    bind = op.get_bind()
    for line, statement in split_statements(script):
        try:
            bind.exec_driver_sql(statement, execution_options={"no_parameters": True})
        except DBAPIError as exc:
            raise MigrationError(f"migration {label} failed (line {line}): {str(exc.orig).strip()}") from exc


def sql_migration(revision_file: str, sql_dir: Path | None = None) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(upgrade, downgrade)`` of a revision file ``NNNN_<name>.py``: run ``NNNN_<name>.{up,down}.sql``."""
    stem = Path(revision_file).stem
    folder = sql_dir or MIGRATIONS_DIR

    def step(direction: str) -> Callable[[], None]:
        path = folder / f"{stem}.{direction}.sql"

        def run() -> None:
            run_sql(path.read_text(encoding="utf-8"), path.name)

        run.__name__ = "upgrade" if direction == "up" else "downgrade"
        return run

    return step("up"), step("down")


def record_history(ctx: Any, step: Any, heads: set[str], run_args: dict[str, Any]) -> None:
    """Alembic ``on_version_apply`` hook: keep ``ops.schema_migrations`` in the revision's transaction."""
    from sqlalchemy import text

    if step.is_stamp or step.up_revision_id is None:
        return
    version = int(step.up_revision_id)
    if step.is_upgrade:
        path = Path(ctx.environment_context.script.get_revision(step.up_revision_id).path)
        match = _REVISION_RE.match(path.name)
        name = match["name"] if match else path.stem
        ctx.connection.execute(
            text("INSERT INTO ops.schema_migrations (version, name) VALUES (:v, :n)"), {"v": version, "n": name}
        )
    else:
        ctx.connection.execute(text("DELETE FROM ops.schema_migrations WHERE version = :v"), {"v": version})
    ctx.environment_context.config.attributes["applied"].append(version)


# ---- the glue: lock, preparation, adoption ---------------------------------------------------------
@contextmanager
def _locked(conninfo: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection holding the migration advisory lock for the whole run."""
    with psycopg.connect(conninfo, autocommit=True, application_name=APPLICATION_NAME) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            yield conn
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def _ensure_ops_tables(conn: psycopg.Connection) -> None:
    """``ops.schema_migrations`` (history) and ``ops.alembic_version`` (Alembic's pointer), owned by wealth_owner.

    The pointer has the layout Alembic creates; it is made here so that it is owned by wealth_owner
    and has the same privileges whether it comes before 0001 (fresh database) or after it (adopted
    one, where 0001's default privileges would otherwise give the loader write access).
    """
    owner = sql.Identifier(roles.OWNER)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ops.schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ops.alembic_version ("
            " version_num varchar(32) NOT NULL,"
            " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.execute(
            sql.SQL("REVOKE ALL ON ops.alembic_version FROM {}, {}").format(
                sql.Identifier(roles.LOADER), sql.Identifier(roles.BI)
            )
        )


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
    _ensure_ops_tables(conn)


def _exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def _pointer(conn: psycopg.Connection) -> str | None:
    """Alembic's current revision, read from ``ops.alembic_version`` (None: not stamped)."""
    if not _exists(conn, f"{VERSION_SCHEMA}.{VERSION_TABLE}"):
        return None
    rows = conn.execute(sql.SQL("SELECT version_num FROM {}.{}").format(
        sql.Identifier(VERSION_SCHEMA), sql.Identifier(VERSION_TABLE))).fetchall()
    if len(rows) > 1:
        raise MigrationError(f"ops.alembic_version holds several heads {sorted(r[0] for r in rows)}; expected one")
    return rows[0][0] if rows else None


def _history(conn: psycopg.Connection) -> list[tuple[int, str]]:
    if not _exists(conn, "ops.schema_migrations"):
        return []
    return [(r[0], r[1]) for r in conn.execute("SELECT version, name FROM ops.schema_migrations ORDER BY version")]


def _adopt_former_runner(conn: psycopg.Connection, conninfo: str) -> None:
    """Stamp a warehouse migrated by the former runner (history rows, no pointer) at its version."""
    if _pointer(conn) is not None:
        return
    history = _history(conn)
    if not history:
        return
    shipped = {m.version: m.name for m in load_migrations()}
    for expected, (version, name) in enumerate(history, start=1):
        if version != expected or shipped.get(version) != name:
            known = f"{version:04d}_{shipped[version]}" if version in shipped else "nothing"
            raise MigrationError(
                f"ops.schema_migrations records {version:04d}_{name} where the package ships {known} "
                f"(versions must be 0001..N with the shipped names); cannot adopt this warehouse"
            )
    from alembic import command

    _ensure_ops_tables(conn)
    command.stamp(alembic_config(conninfo, as_owner=True), revision_id(history[-1][0]))


def _check_known(conn: psycopg.Connection) -> None:
    current = _pointer(conn)
    known = {s.revision for s in _revisions()}
    if current is not None and current not in known:
        raise MigrationError(
            f"the database is at migration {current}, which this package does not ship "
            f"(latest known: {max(known, default='none')}); upgrade the package"
        )


def _version_of(conn: psycopg.Connection) -> int:
    current = _pointer(conn)
    if current is not None:
        return int(current)
    history = _history(conn)
    return history[-1][0] if history else 0


def current_version(conninfo: str) -> int:
    """The applied version (0 for a database never migrated; the former runner's history counts)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return _version_of(conn)


def upgrade(conninfo: str, target: int | None = None) -> list[int]:
    """Prepare the database, then ``alembic upgrade`` to ``target`` (default: head); return the versions applied."""
    from alembic import command

    load_migrations()
    latest = latest_version()
    if target is None:
        target = latest
    if not 0 <= target <= latest:
        raise MigrationError(f"upgrade target {target} is outside 0..{latest}")
    with _locked(conninfo) as conn:
        _prepare_database(conn)
        _adopt_former_runner(conn, conninfo)
        _check_known(conn)
        if _version_of(conn) >= target:
            return []
        config = alembic_config(conninfo, as_owner=True)
        command.upgrade(config, revision_id(target))
        return list(config.attributes["applied"])


def downgrade(conninfo: str, target: int = 0) -> list[int]:
    """``alembic downgrade`` to ``target`` (0: base), newest first; return the versions reverted."""
    from alembic import command

    latest = latest_version()
    if not 0 <= target <= latest:
        raise MigrationError(f"downgrade target {target} is outside 0..{latest}")
    with _locked(conninfo) as conn:
        if not _exists(conn, "ops.schema_migrations"):
            return []
        _adopt_former_runner(conn, conninfo)
        _check_known(conn)
        if _version_of(conn) <= target:
            return []
        config = alembic_config(conninfo, as_owner=True)
        command.downgrade(config, revision_id(target))
        return list(config.attributes["applied"])


def history(conninfo: str) -> None:
    """``alembic history --indicate-current``, printed to stdout."""
    from alembic import command

    command.history(alembic_config(conninfo), indicate_current=True)


def current(conninfo: str) -> None:
    """``alembic current``, printed to stdout, plus a note on a warehouse not adopted yet."""
    from alembic import command

    command.current(alembic_config(conninfo))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if _pointer(conn) is None and (recorded := _history(conn)):
            print(
                f"no Alembic revision recorded; ops.schema_migrations (former runner) records "
                f"{recorded[0][0]:04d}..{recorded[-1][0]:04d}: the next `db upgrade` stamps it without running anything"
            )
