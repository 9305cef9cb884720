"""The dbt project of the marts: where it is, how its manifest is prepared, how dbt connects.

dbt creates and replaces relations, so it connects as an owner login, not as the pipeline's
``wealth_loader``: the ``warehouse`` resource's ``dbt_login`` is ``WEALTH_DBT_DATABASE_URL`` (the
embedded default sets it to the ``wealth_owner`` login), else the resource's URL, and
:func:`require_owner_login` refuses a login that may not ``SET ROLE wealth_owner`` with a one-line
error. dbt-postgres wants host/port/user/password/dbname separately, so :func:`dbt_env` parses that
URL into the ``DBT_PG_*`` variables ``dbt_project/profiles.yml`` reads, passed to dbt through its
environment, never its arguments. Nothing secret is written to disk.

The manifest (``dbt_project/target/manifest.json``, gitignored) is prepared automatically:
every load of the definitions (``dagster dev`` and its reloads, a fresh clone, ``dagster definitions
validate``, a code server, the tests) runs ``dbt parse`` when the manifest is missing or older than a
file of the project, so a newcomer has no manual step.
"""

import contextlib
import datetime as dt
import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version
from psycopg.conninfo import conninfo_to_dict

from wealth_pipeline.environment import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# Role dbt switches to after connecting (profiles.yml `role`): objects are owned by wealth_owner and
# get the default privileges of migration 0001 (wealth_bi: SELECT on marts).
DBT_ROLE = "wealth_owner"
_SOURCE_SUFFIXES = (".sql", ".yml", ".yaml", ".md", ".csv")
_CONNINFO_TO_ENV = {
    "host": "DBT_PG_HOST", "port": "DBT_PG_PORT", "user": "DBT_PG_USER", "password": "DBT_PG_PASSWORD",
    "dbname": "DBT_PG_DBNAME", "sslmode": "DBT_PG_SSLMODE",
}


def dbt_executable() -> str:
    """The dbt next to this interpreter (the project's virtualenv), else the one on PATH."""
    local = Path(sys.executable).parent / "dbt"
    if local.exists():
        return str(local)
    found = shutil.which("dbt")
    if found is None:
        raise FileNotFoundError("dbt is not installed: `pip install dbt-postgres` (see pyproject.toml)")
    return found


DBT_URL_VARIABLE = "WEALTH_DBT_DATABASE_URL"


def require_owner_login(database_url: str, role: str = DBT_ROLE, *, from_dbt_variable: bool = True) -> None:
    """Raise ValueError (one line, naming the variable) unless the URL's login may ``SET ROLE role``.

    ``from_dbt_variable``: the URL is ``WEALTH_DBT_DATABASE_URL``'s (else ``WEALTH_DATABASE_URL``'s).
    """
    import psycopg

    with psycopg.connect(database_url, connect_timeout=10) as conn:
        login, allowed = conn.execute(
            "SELECT current_user, pg_has_role(current_user, %s, 'MEMBER') "
            "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            (role,),
        ).fetchone() or ("?", False)
    if not allowed:
        source = DBT_URL_VARIABLE if from_dbt_variable else f"WEALTH_DATABASE_URL ({DBT_URL_VARIABLE} is unset)"
        raise ValueError(
            f"dbt builds the marts as {role}, but the login of {source} is {login!r}, which may not SET ROLE "
            f"{role}: set {DBT_URL_VARIABLE} to a login that owns the warehouse (a member of {role})"
        )


def dbt_env(database_url: str, role: str = DBT_ROLE) -> dict[str, str]:
    """The ``DBT_PG_*`` variables of ``profiles.yml`` for a PostgreSQL URL or libpq DSN.

    Raises ValueError naming what is missing when the URL has no database or no user.
    """
    if not database_url:
        raise ValueError("no warehouse URL: set WEALTH_DATABASE_URL (or run through `wealth` which sets it)")
    try:
        params = conninfo_to_dict(database_url)
    except Exception as error:  # psycopg raises ProgrammingError with the parse problem
        raise ValueError(f"the warehouse URL cannot be parsed: {error}") from error
    if not params.get("dbname"):
        raise ValueError("the warehouse URL names no database (dbname)")
    params.setdefault("user", os.environ.get("PGUSER") or _current_user())
    params.setdefault("host", "localhost")
    params.setdefault("port", "5432")
    env = {variable: str(params[key]) for key, variable in _CONNINFO_TO_ENV.items() if params.get(key) is not None}
    env.setdefault("DBT_PG_PASSWORD", "")
    env["DBT_PG_ROLE"] = role
    return env


def _current_user() -> str:
    import getpass

    return getpass.getuser()


# The run's session window for dbt (macros/session_window.sql reads them only while executing).
WINDOW_ENV = ("WEALTH_DBT_START_DATE", "WEALTH_DBT_END_DATE")


@contextlib.contextmanager
def dbt_connection(
    database_url: str, role: str = DBT_ROLE, window: tuple[dt.date, dt.date] | None = None
) -> Iterator[Mapping[str, str]]:
    """Set the ``DBT_PG_*`` variables (and the run's window) for the dbt processes started inside the block.

    dagster-dbt starts dbt with a copy of ``os.environ``, so the variables are set on the process
    for the block's duration, then restored. The window goes through the environment rather than ``--vars``: dbt re-parses the
    whole project whenever its vars change, i.e. on every run of a new session (1.9 s measured).
    """
    env = dbt_env(database_url, role)
    if window is not None:
        env.update(zip(WINDOW_ENV, (window[0].isoformat(), window[1].isoformat()), strict=True))
    saved = {name: os.environ.get(name) for name in (*_CONNINFO_TO_ENV.values(), "DBT_PG_ROLE", *WINDOW_ENV)}
    os.environ.update(env)
    for name in saved:
        if name not in env:
            os.environ.pop(name, None)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def manifest_is_stale(project_dir: Path, manifest_path: Path) -> bool:
    """True when the manifest is missing or older than a model, macro, test or config file."""
    if not manifest_path.exists():
        return True
    built = manifest_path.stat().st_mtime
    for path in project_dir.rglob("*"):
        relative = path.relative_to(project_dir).parts
        if relative and relative[0] in ("target", "logs", "dbt_packages"):
            continue
        if path.suffix in _SOURCE_SUFFIXES and path.stat().st_mtime > built:
            return True
    return False


def prepare_manifest(project: DbtProject) -> Path:
    """Make ``project.manifest_path`` loadable: ``dbt parse`` when missing or stale. Returns it.

    Under ``dagster dev`` (what ``DbtProject.prepare_if_dev`` covers) and everywhere else alike: a
    reload after editing a model re-parses. Parsing needs no database (the profile's variables have
    defaults) and holds a file lock, so concurrent loads (code server, tests) parse once.
    """
    manifest = Path(project.manifest_path)
    project_dir = Path(project.project_dir)
    if manifest_is_stale(project_dir, manifest):
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with open(manifest.parent / ".parse.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if manifest_is_stale(project_dir, manifest):
                    _parse(project)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    if not manifest.exists():
        raise FileNotFoundError(f"dbt parse did not produce {manifest}")
    return manifest


def _parse(project: DbtProject) -> None:
    completed = subprocess.run(
        [dbt_executable(), "parse", "--quiet", "--target-path", str(project.target_path)],
        cwd=project.project_dir, capture_output=True, text=True, check=False,
        env={**os.environ, "DBT_PROFILES_DIR": str(project.profiles_dir), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"`dbt parse` of {project.project_dir} failed:\n{completed.stdout}{completed.stderr}")


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


class ProjectDbtCliResource(DbtCliResource):
    """dagster-dbt's ``DbtCliResource`` without two costs per run that the marts never use.

    Measured on the 2-core box, in a daily session of 17-20 s (py-spy):

    * ``DbtCliResource.cli`` asks the executable for its version (a cached property of the
      resource, which Dagster builds anew for every run) by starting a second Python process that
      imports dbt: 2.7 s. When the executable is this virtualenv's own dbt, its version is the
      installed ``dbt-core``'s, read from the package metadata; any other executable is still asked.
    * It also builds a dbt adapter in this process (profile, project, every macro): 1.8 s. The
      adapter only serves ``fetch_row_counts()`` and ``fetch_column_metadata()``, which
      ``marts_dbt`` does not call (row counts come from the warehouse loads; column schemas from
      the manifest), and dagster-dbt runs without one (its dbt Fusion path), so none is built.

    ``_cli_version`` and ``_initialize_dbt_core_adapter`` are dagster-dbt's private names (0.29),
    pinned by ``test_dbt_marts.py`` so an upgrade that renames them fails a test instead of slowing down.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        local = Path(sys.executable).parent / "dbt"
        if Path(self.dbt_executable) == local:
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def dbt_resource() -> DbtCliResource:
    """The ``dbt`` resource of the marts domain (connection: the ``warehouse`` resource's URL)."""
    return ProjectDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())


def keep_partial_parse(run_target: Path, project: DbtProject = dbt_project) -> None:
    """Make a finished run's ``partial_parse.msgpack`` the one the next run starts from.

    dagster-dbt gives each run its own target folder and copies ``target/partial_parse.msgpack``
    into it; dbt discards that file when the profile it was made with differs (its hash covers the
    connection's variables), which is always the case for the one ``dbt parse`` wrote when the
    definitions loaded without a database. Copying the run's file back (atomically) lets the next
    run on the same warehouse parse only what changed (dbt still checks every file's checksum).
    """
    made = Path(run_target) / "partial_parse.msgpack"
    if not made.exists():
        return
    target = Path(project.project_dir) / project.target_path / "partial_parse.msgpack"
    staging = target.with_name(f".partial_parse.{os.getpid()}.msgpack")
    shutil.copyfile(made, staging)
    os.replace(staging, target)
