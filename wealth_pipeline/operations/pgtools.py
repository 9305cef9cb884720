"""Running ``pg_dump`` / ``pg_restore`` safely: matching binaries, no password in process arguments.

A process's arguments are readable by every user on the machine (``/proc/<pid>/cmdline``), so the
connection is handed to libpq through ``PG*`` variables and a password file (mode 0600, deleted after
the call), never as a URL on the command line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from wealth_pipeline.warehouse import timescale

# libpq connection parameters and the variables that carry them.
_PG_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE",
           "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "connect_timeout": "PGCONNECT_TIMEOUT"}


class ToolError(RuntimeError):
    """A PostgreSQL client program is missing, too old for the server, or failed."""


@dataclass(frozen=True)
class ServerVersions:
    """What a backup must record to be restorable: PostgreSQL and TimescaleDB versions."""

    server_version: str
    server_version_num: int
    timescaledb: str | None

    @property
    def major(self) -> int:
        return self.server_version_num // 10000

    def as_dict(self) -> dict[str, object]:
        return {"server_version": self.server_version, "server_version_num": self.server_version_num,
                "timescaledb": self.timescaledb}


def server_versions(conn: psycopg.Connection) -> ServerVersions:
    """The server's version and the TimescaleDB extension version in the connected database (or None)."""
    version, number = conn.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int").fetchone()
    ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (timescale.EXTENSION,)).fetchone()
    return ServerVersions(str(version).split()[0], int(number), ts[0] if ts else None)


def _escape_passfile(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def libpq_env(url: str) -> Iterator[dict[str, str]]:
    """Environment for a client program connecting to ``url``: PG* variables and a temporary PGPASSFILE."""
    params = conninfo_to_dict(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    for key, variable in _PG_ENV.items():
        if params.get(key):
            env[variable] = str(params[key])
    password = params.get("password")
    if not password:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="wealth-pgpass-") as folder:
        passfile = Path(folder) / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"*:*:*:{_escape_passfile(str(params.get('user', '*')))}:{_escape_passfile(str(password))}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env


def _candidate_bindirs() -> list[Path]:
    """Where the project's server binaries come from (``cli._bindir``/``localpg``), then PATH."""
    from wealth_pipeline.warehouse.localpg import LocalPostgresError, find_pg_bindir

    folders: list[Path] = []
    configured = os.environ.get("WEALTH_PG_BINDIR")
    if configured:
        folders.append(Path(configured))
    with contextlib.suppress(LocalPostgresError):
        folders.append(find_pg_bindir())
    for tool in ("pg_dump", "pg_restore"):
        found = shutil.which(tool)
        if found:
            folders.append(Path(found).resolve().parent)
    return list(dict.fromkeys(folders))


def tool_major(path: Path) -> int:
    """The major version of a client program (``pg_dump (PostgreSQL) 15.18`` -> 15)."""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True, timeout=30).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise ToolError(f"cannot read the version of {path}: {out.strip()!r}")
    return int(match.group(1))


def find_tool(tool: str, server_major: int, bindir: Path | None = None) -> Path:
    """``tool`` (pg_dump, pg_restore) of the same major version as the server.

    pg_dump refuses a newer server and a newer pg_dump writes archives an older pg_restore cannot
    read, so the major versions must match; the same bindir as the local cluster comes first.
    """
    folders = [bindir] if bindir else _candidate_bindirs()
    seen = []
    for folder in folders:
        path = folder / tool
        if not path.is_file():
            continue
        major = tool_major(path)
        seen.append(f"{path} ({major})")
        if major == server_major:
            return path
    raise ToolError(
        f"no {tool} of PostgreSQL {server_major} found (server major version {server_major}; tried: "
        f"{', '.join(seen) or ', '.join(str(f) for f in folders) or 'nothing'}); set WEALTH_PG_BINDIR to the folder "
        "holding the server's client programs"
    )


def run_tool(args: list[str], url: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run a client program against ``url`` (connection via the environment); raise with its stderr on failure."""
    with libpq_env(url) as env:
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise ToolError(f"{Path(args[0]).name} failed (exit {result.returncode}): {' | '.join(message[-5:])}")
    return result
