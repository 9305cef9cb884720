"""What the BI story promises beyond row-level security: SCRAM over TCP only for BI logins, no
PUBLIC grants, no access to Dagster's instance database, no password in process arguments, and
``.env`` kept out of git."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealth_pipeline import environment
from wealth_pipeline.environment import REPO_ROOT
from wealth_pipeline.warehouse import migrate
from wealth_pipeline.warehouse.roles import create_bi_user, drop_bi_user

pytestmark = pytest.mark.integration


@pytest.fixture
def bi_login(migrated_flavoured_db: tuple[str, str]) -> Iterator[tuple[str, str, str]]:
    """(flavour, migrated warehouse URL, BI login URL of alice)."""
    flavour, url = migrated_flavoured_db
    role, password = f"bi_alice_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    create_bi_user(url, "alice", role, password)
    try:
        yield flavour, url, make_conninfo(url, user=role, password=password)
    finally:
        drop_bi_user(url, role)


def test_bi_logins_use_scram_over_tcp(bi_login: tuple[str, str, str]) -> None:
    _, url, login = bi_login
    role = conninfo_to_dict(login)["user"]
    with psycopg.connect(url) as conn:
        (verifier,) = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()  # type: ignore[misc]
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    # libpq refuses to go on unless the server authenticates the client with SCRAM.
    with psycopg.connect(login, require_auth="scram-sha-256") as conn:
        assert conn.execute("SELECT session_user").fetchone() == (role,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(make_conninfo(login, password="wrong")).close()


def test_a_bi_login_is_rejected_on_the_local_socket(pg_server_url: str, bi_login: tuple[str, str, str]) -> None:
    flavour, url, login = bi_login
    with psycopg.connect(url) as conn:
        (socket_dir,) = conn.execute("SHOW unix_socket_directories").fetchone()  # type: ignore[misc]
        (port,) = conn.execute("SHOW port").fetchone()  # type: ignore[misc]
    if not socket_dir or os.environ.get("WEALTH_TEST_DATABASE_URL" if flavour == "postgres" else "WEALTH_TEST_TIMESCALE_URL"):
        pytest.skip("the server is not the project's local cluster with a private socket")
    params = conninfo_to_dict(login)
    over_socket = make_conninfo(login, host=socket_dir.split(",")[0], port=port)
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects connection"):
        psycopg.connect(over_socket).close()
    # The superuser (the pipeline's role on this cluster) still uses the socket.
    with psycopg.connect(make_conninfo(url, host=socket_dir.split(",")[0], port=port, password="")) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    assert params["host"] == "127.0.0.1"


def test_no_public_grants_on_the_warehouse(bi_login: tuple[str, str, str]) -> None:
    _, url, login = bi_login
    with psycopg.connect(url) as conn:
        (datacl,) = conn.execute("SELECT datacl::text[] FROM pg_database WHERE datname = current_database()").fetchone()  # type: ignore[misc]
        public = conn.execute(
            "SELECT kind, name, privilege_type FROM ("
            " SELECT 'schema' AS kind, n.nspname::text AS name, n.nspacl AS acl FROM pg_namespace n"
            " UNION ALL SELECT 'relation', c.oid::regclass::text, c.relacl FROM pg_class c"
            "  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s)"
            " UNION ALL SELECT 'function', p.oid::regprocedure::text, p.proacl FROM pg_proc p"
            "  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%(s)s)"
            " UNION ALL SELECT 'type', t.oid::regtype::text, t.typacl FROM pg_type t"
            "  JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = ANY(%(s)s)"
            ") o, aclexplode(o.acl) a WHERE a.grantee = 0 AND (o.kind <> 'schema' OR o.name = ANY(%(s)s))",
            {"s": list(migrate.SCHEMAS)},
        ).fetchall()
    assert public == []
    assert not [entry for entry in datacl if entry.startswith("=")], datacl
    # Functions default to EXECUTE for PUBLIC in PostgreSQL: none of the warehouse's has it.
    with psycopg.connect(login, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE probe (a int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT ops.secure_timescale_access()")


def test_bi_logins_cannot_open_the_dagster_instance_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded default end to end: a fresh local cluster, migrated, with a BI login."""
    home = Path(tempfile.mkdtemp(prefix="wealth-hardening-"))
    home.chmod(0o755)
    monkeypatch.setenv("WEALTH_HOME", str(home / "home"))
    for variable in ("WEALTH_DATABASE_URL", "WEALTH_DAGSTER_DATABASE_URL", "WEALTH_PG_PORT", "DAGSTER_HOME"):
        monkeypatch.delenv(variable, raising=False)
    env = environment.bootstrap(export=False)
    assert env.local_cluster is not None
    try:
        migrate.upgrade(env.warehouse_url)
        role, password = f"bi_carol_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
        create_bi_user(env.warehouse_url, "carol", role, password)
        login = make_conninfo(env.warehouse_url, user=role, password=password)
        with psycopg.connect(login) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("warehouse",)
        with pytest.raises(psycopg.OperationalError, match='permission denied for database "dagster"'):
            psycopg.connect(make_conninfo(login, dbname="dagster")).close()
        with psycopg.connect(env.warehouse_url) as conn:
            acl = dict(conn.execute("SELECT datname, datacl::text[] FROM pg_database "
                                    "WHERE datname IN ('dagster', 'warehouse')").fetchall())
        assert set(acl) == {"dagster", "warehouse"}
        assert not [e for entries in acl.values() for e in entries if e.startswith("=")], acl  # no PUBLIC entry
    finally:
        env.local_cluster.stop()


def test_db_psql_keeps_the_password_out_of_the_process_arguments(migrated_pg_url: str) -> None:
    password = conninfo_to_dict(migrated_pg_url)["password"]
    assert password
    env = {**os.environ, "WEALTH_DATABASE_URL": migrated_pg_url}
    env.pop("PGPASSWORD", None)
    cli = subprocess.Popen(
        [str(Path(sys.executable).parent / "wealth-pipeline"), "db", "psql", "-X", "-A", "-t", "-c",
         "SELECT current_database(), pg_sleep(1.5)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT,
    )
    seen: list[tuple[str, dict[str, str]]] = []
    deadline = time.monotonic() + 60
    while cli.poll() is None and time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == cli.pid and Path(cmdline[0]).name == "psql":
                environ = dict(e.split("=", 1) for e in (proc / "environ").read_bytes().decode().split("\0") if "=" in e)
                seen.append((" ".join(cmdline), environ))
        time.sleep(0.05)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    assert out.strip().startswith(conninfo_to_dict(migrated_pg_url)["dbname"] + "|")
    assert seen, "psql was not observed running"
    cmdline, environ = seen[0]
    assert password not in cmdline and "PGPASSWORD" not in environ
    passfile = Path(environ["PGPASSFILE"])
    assert not passfile.exists(), "the temporary password file is removed after psql exits"


def test_dot_env_is_ignored_by_git() -> None:
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for name in (".env", ".env.local"):
        assert subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO_ROOT).returncode == 0, name
    assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=REPO_ROOT).returncode == 1
