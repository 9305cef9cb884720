"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test.

The server is the project's own local cluster helper started in a temporary folder (as an
unprivileged user when the tests run as root), unless WEALTH_TEST_DATABASE_URL points at a server
to use instead (a superuser URL; each test still gets its own database there).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.environment import with_database
from wealth_pipeline.warehouse.localpg import LocalPostgres
from wealth_pipeline_tests.s3_server import s3_endpoint_url  # noqa: F401  (session fixture: moto S3 on loopback)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Superuser URL (database ``postgres``) of a real PostgreSQL server for the test session."""
    external = os.environ.get("WEALTH_TEST_DATABASE_URL")
    if external:
        yield external
        return
    folder = Path(tempfile.mkdtemp(prefix="wealth-test-pg-"))
    folder.chmod(0o755)
    cluster = LocalPostgres(folder / "pg")
    cluster.start()
    try:
        yield cluster.url("postgres")
    finally:
        cluster.stop()


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


NO_TIMESCALE = (
    "WEALTH_TEST_TIMESCALE_URL is not set (superuser URL of a TimescaleDB server), "
    "so the TimescaleDB path cannot run"
)


@pytest.fixture
def timescale_url() -> Iterator[str]:
    """URL of a fresh database on the TimescaleDB server named by WEALTH_TEST_TIMESCALE_URL (else skip)."""
    server = os.environ.get("WEALTH_TEST_TIMESCALE_URL")
    if not server:
        pytest.skip(NO_TIMESCALE)
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
