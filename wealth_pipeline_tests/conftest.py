"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test.

The server is the project's own local cluster helper started in a temporary folder (as an
unprivileged user when the tests run as root), unless WEALTH_TEST_DATABASE_URL points at a server
to use instead (a superuser URL; each test still gets its own database there). A second server,
with TimescaleDB preloaded, is started on first use of ``timescale_url`` when ``../shared/timescaledb``
exists beside the repository (or named by WEALTH_TEST_TIMESCALE_URL); ``flavoured_db`` runs a test on
both. The session's own clusters run without fsync (``TEST_SERVER_SETTINGS``): they are thrown away
at the end, and durability is PostgreSQL's concern, not this project's. A database that several
modules share (built once, read by many) is registered with ``keep_for_session`` and dropped when its
server's fixture ends.

Most tests want a freshly migrated warehouse, not a test of migrating: ``migrated_pg_url``,
``migrated_timescale_url`` and ``migrated_flavoured_db`` (and ``migrated_database`` for module-scoped
fixtures) clone a template database that the session migrates once per server by running the current
migrations (``migrate.upgrade``; never a dump, so new migrations flow in). ``CREATE DATABASE ...
TEMPLATE`` copies everything inside the database (schemas, grants, row-level security, TimescaleDB
hypertables, continuous aggregates and their jobs, which TimescaleDB's scheduler then runs for the
clone); what lives outside it (database privileges) is restored by ``migrate.upgrade`` on the clone,
which applies nothing and re-runs its idempotent preparation, exactly as on a migrated warehouse. The
template is marked ``datistemplate`` so TimescaleDB starts no scheduler on it (a connection to it
would make the copy fail). Tests about migrating (test_warehouse_migrations, the bootstrap and CLI
tests) still start from an empty database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.environment import with_database
from wealth_pipeline.warehouse import migrate
from wealth_pipeline.warehouse.localpg import LocalPostgres
from wealth_pipeline_tests.s3_server import s3_endpoint_url  # noqa: F401  (session fixture: moto S3 on loopback)

# Throwaway clusters: no flush to disk on commit, checkpoint, CREATE/DROP DATABASE. On the 2-core CI
# machine the suite creates and drops hundreds of databases; nothing here survives the session.
TEST_SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# server URL -> names of databases shared by several modules, dropped when that server's fixture ends
_SESSION_DATABASES: dict[str, list[str]] = {}


def keep_for_session(server_url: str, name: str) -> None:
    """Drop database ``name`` on ``server_url`` when the session's fixture of that server ends."""
    _SESSION_DATABASES.setdefault(server_url, []).append(name)


def _drop_session_databases(server_url: str) -> None:
    _TEMPLATES.pop(server_url, None)
    for name in _SESSION_DATABASES.pop(server_url, []):
        with psycopg.connect(server_url, autocommit=True) as conn:
            exists = conn.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists and exists[0]:  # a template cannot be dropped
                conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# server URL -> name of the session's migrated template database on it (see the module docstring)
_TEMPLATES: dict[str, str] = {}
# CREATE DATABASE ... TEMPLATE fails while anything is connected to the template; PostgreSQL itself
# waits 5 s for other sessions to leave, this is how many more times it is tried. Before each retry
# the sessions on the template are ended: the only ones are TimescaleDB's scheduler, which its
# launcher restarts now and then (three plain retries were not enough on the loaded 2-core box).
CLONE_ATTEMPTS = 6


def _migrated_template(server_url: str) -> str:
    """The session's migrated template on ``server_url``, built on first use by running the migrations."""
    name = _TEMPLATES.get(server_url)
    if name is not None:
        return name
    name = f"tpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    keep_for_session(server_url, name)
    migrate.upgrade(with_database(server_url, name))
    with psycopg.connect(server_url, autocommit=True) as conn:
        # TimescaleDB stops the template's scheduler when it is copied. Its launcher restarts it at times
        # (a copy then waits PostgreSQL's 5 s and is retried); refusing connections or ending the scheduler
        # instead delayed the scheduler of every clone by the launcher's 60 s poll.
        conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true").format(sql.Identifier(name)))
    _TEMPLATES[server_url] = name
    return name


def migrated_database(server_url: str, name: str | None = None) -> str:
    """A new database on ``server_url``, cloned from the session's migrated template; returns its URL.

    The caller drops it (``drop_database``, or ``keep_for_session``). ``migrate.upgrade`` on the clone
    applies nothing (the template is at the head) and restores the database privileges, which a
    copy does not carry.
    """
    template = _migrated_template(server_url)
    name = name or f"t_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
    for attempt in range(1, CLONE_ATTEMPTS + 1):
        try:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(statement)
            break
        except psycopg.errors.ObjectInUse as exc:
            if attempt == CLONE_ATTEMPTS:
                raise RuntimeError(
                    f"cannot clone the migrated template {template} on {server_url}: something stays connected "
                    f"to it ({exc}); it must have no sessions"
                ) from exc
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (template,),
                )
    url = with_database(server_url, name)
    applied = migrate.upgrade(url)
    if applied:
        raise RuntimeError(f"the migrated template {template} was not at the head: cloning it applied {applied}")
    return url


def drop_database(server_url: str, url: str) -> None:
    """Drop the database of ``url`` on ``server_url`` (a superuser URL), whoever is connected to it."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``): each worker starts
# its own clusters, so a module's fixtures must stay on one worker. Every module is its own group;
# modules that share a session-wide built state are one group: the e2e modules share one Dagster
# stack, the marts modules one marts warehouse per flavour (``build_marts_warehouse``).
SHARED_STATE_GROUPS = {
    "e2e": ("wealth_pipeline_tests/e2e/",),
    "marts": (
        "wealth_pipeline_tests/integration/test_dbt_marts.py",
        "wealth_pipeline_tests/integration/test_bi_reads.py",
        "wealth_pipeline_tests/integration/test_data_rights.py",
    ),
}
# Modules whose tests share no fixture wider than a test and each take minutes: every test is its
# own group, so the two flavours of the restatement scenario (5-10 min each) run side by side.
ONE_GROUP_PER_TEST = ("wealth_pipeline_tests/integration/test_restatement.py",)
# Longest groups first (measured on the 2-core CI box), so neither worker starts one near the end.
LONGEST_FIRST = ("e2e", "marts", "wealth_pipeline_tests/integration/test_restatement.py")


def xdist_group_of(nodeid: str) -> str:
    """The xdist group of a test: its shared-state group, else itself (ONE_GROUP_PER_TEST), else its module."""
    module = nodeid.split("::", 1)[0]
    for group, prefixes in SHARED_STATE_GROUPS.items():
        if module.startswith(prefixes):
            return group
    return nodeid if module in ONE_GROUP_PER_TEST else module


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background (SIGINT ignored) would make every in-process Dagster run
    after the first wait 60 s for its compute-log tails, and pass the ignore on to the webserver,
    daemon and CLI processes it starts: give SIGINT its handler back first (before xdist's workers)."""
    from wealth_pipeline.settings import restore_interrupt_handler

    restore_interrupt_handler()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its xdist group and run the longest groups first (stable otherwise)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group_of(item.nodeid)))
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], rank.get(xdist_group_of(item.nodeid), len(rank))))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Superuser URL (database ``postgres``) of a real PostgreSQL server for the test session."""
    external = os.environ.get("WEALTH_TEST_DATABASE_URL")
    if external:
        try:
            yield external
        finally:
            _drop_session_databases(external)
        return
    folder = Path(tempfile.mkdtemp(prefix="wealth-test-pg-"))
    folder.chmod(0o755)
    cluster = LocalPostgres(folder / "pg", server_settings=TEST_SERVER_SETTINGS)
    cluster.start()
    try:
        yield cluster.url("postgres")
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the session's server; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


REPO_ROOT = Path(__file__).resolve().parent.parent
# TimescaleDB built for PostgreSQL 15, shipped beside the repository on CI and development machines
# (``shared/`` next to the clone, read-only): its script lays out a PostgreSQL 15 installation with
# the extension added and prints the bin folder.
TIMESCALE_LAYOUT_SCRIPT = REPO_ROOT.parent / "shared" / "timescaledb" / "pg-with-timescaledb"
TIMESCALE_SERVER_SETTINGS = {
    "shared_preload_libraries": "timescaledb",
    "timescaledb.telemetry_level": "off",
    # one scheduler per database with the extension; tests create and drop many databases
    "max_worker_processes": "24",
    "timescaledb.max_background_workers": "16",
}
NO_TIMESCALE = (
    f"WEALTH_TEST_TIMESCALE_URL is not set (superuser URL of a TimescaleDB server) and "
    f"{TIMESCALE_LAYOUT_SCRIPT} does not exist, so the TimescaleDB path cannot run"
)


@pytest.fixture(scope="session")
def timescale_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Superuser URL of a TimescaleDB server for the session, started on first use (else skip).

    ``WEALTH_TEST_TIMESCALE_URL`` wins; otherwise, when ``../shared/timescaledb`` exists, its script
    lays out PostgreSQL 15 + TimescaleDB in a temporary folder and the project's local cluster helper
    starts a second cluster from it with ``shared_preload_libraries = 'timescaledb'``.
    """
    external = os.environ.get("WEALTH_TEST_TIMESCALE_URL")
    if external:
        try:
            yield external
        finally:
            _drop_session_databases(external)
        return
    if not TIMESCALE_LAYOUT_SCRIPT.is_file():
        pytest.skip(NO_TIMESCALE)
    folder = Path(tempfile.mkdtemp(prefix="wealth-test-tsdb-"))
    folder.chmod(0o755)
    laid_out = subprocess.run(
        [str(TIMESCALE_LAYOUT_SCRIPT), str(folder / "install")], capture_output=True, text=True, timeout=300
    )
    if laid_out.returncode != 0:
        raise RuntimeError(f"{TIMESCALE_LAYOUT_SCRIPT} failed (exit {laid_out.returncode}): {laid_out.stderr.strip()}")
    bindir = Path(laid_out.stdout.strip().splitlines()[-1])
    cluster = LocalPostgres(folder / "pg", bindir=bindir, server_settings={**TEST_SERVER_SETTINGS, **TIMESCALE_SERVER_SETTINGS})
    cluster.start()
    try:
        yield cluster.url("postgres")
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def timescale_url(timescale_server_url: str) -> Iterator[str]:
    """URL of a fresh database on the session's TimescaleDB server (see ``timescale_server_url``)."""
    server = timescale_server_url
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(autouse=True)
def _isolated_defs_state_storage() -> Iterator[None]:
    """Each test starts with no "current" Dagster defs-state storage and leaves none behind.

    DagsterInstance.__enter__ replaces its exit stack, so an instance entered twice (as Dagster's
    sensor and schedule test contexts do) never resets the context variable holding the current
    state storage; a later Definitions load in the same process then hits the disposed instance
    ("Attempted to resolve undefined DagsterInstance weakref").
    """
    from dagster._core.storage.defs_state.base import _current_storage

    token = _current_storage.set(None)
    try:
        yield
    finally:
        _current_storage.reset(token)


@pytest.fixture(params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def flavoured_db(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(flavour, URL of a fresh empty database) on the plain server, then on the TimescaleDB server."""
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("pg_url")
    return "timescale", request.getfixturevalue("timescale_url")


@pytest.fixture
def migrated_pg_url(pg_server_url: str) -> Iterator[str]:
    """URL of a fresh database at the current migration head on the plain server (a template clone)."""
    url = migrated_database(pg_server_url)
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest.fixture
def migrated_timescale_url(timescale_server_url: str) -> Iterator[str]:
    """URL of a fresh database at the current migration head on the TimescaleDB server (a template clone)."""
    url = migrated_database(timescale_server_url)
    try:
        yield url
    finally:
        drop_database(timescale_server_url, url)


@pytest.fixture(params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def migrated_flavoured_db(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(flavour, URL of a fresh migrated database): ``flavoured_db``, cloned from the migrated template."""
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("migrated_pg_url")
    return "timescale", request.getfixturevalue("migrated_timescale_url")
