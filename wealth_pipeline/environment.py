"""Bring up what the pipeline needs to run: database URLs and a Dagster home.

With ``WEALTH_DATABASE_URL`` set, that server is used and no server is started. Otherwise the
project-local cluster (``$WEALTH_HOME/pg``) is started and holds two databases: ``warehouse`` for
the metric tables and ``dagster`` for Dagster's run, event and schedule storage.

Three warehouse connections, by what they may do (the embedded default sets all three):

* the **administrative** URL (``RuntimeEnvironment.warehouse_url``): migrations, roles, BI logins,
  ``db psql``/``db url``, backups. The cluster's superuser in the embedded default; the
  configured ``WEALTH_DATABASE_URL`` otherwise;
* the **pipeline** URL (exported as ``WEALTH_DATABASE_URL``, what every asset's ``warehouse``
  resource connects with): the ``wealth_loader`` login in the embedded default, which writes rows
  and owns nothing (no DDL, no ``SET ROLE`` to an owner; rollup refreshes go through the owner's
  entry points of migration 0008);
* the **dbt** URL (exported as ``WEALTH_DBT_DATABASE_URL``): the ``wealth_owner`` login, since dbt
  creates and replaces the staging and mart relations. When the variable is not set, dbt uses
  ``WEALTH_DATABASE_URL``, which must then be a login that may ``SET ROLE wealth_owner``.

The loader's and the owner's passwords are generated once per cluster and kept in its
``cluster.json`` (mode 0600; ``WEALTH_LOADER_PASSWORD`` / ``WEALTH_OWNER_PASSWORD`` win, as
``db upgrade`` sets them); they reach child processes through the environment, never through process arguments.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealth_pipeline.settings import Settings
from wealth_pipeline.warehouse.localpg import LocalPostgres

WAREHOUSE_DB = "warehouse"
DBT_URL_VARIABLE = "WEALTH_DBT_DATABASE_URL"
DAGSTER_DB = "dagster"
REPO_ROOT = Path(__file__).resolve().parent.parent


def with_database(url: str, database: str) -> str:
    """The same server and credentials as ``url``, another database."""
    params = conninfo_to_dict(url)
    params["dbname"] = database
    dsn = make_conninfo(**params)
    return dsn_to_url(dsn)


def dsn_to_url(dsn: str) -> str:
    """A ``postgresql://`` URL for a libpq DSN (SQLAlchemy and dagster-postgres want URLs)."""
    from urllib.parse import quote

    params = conninfo_to_dict(dsn)
    user = quote(str(params.get("user", "")), safe="")
    password = params.get("password")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" if user else "")
    host = params.get("host", "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{auth}{host}{port}/{quote(str(params.get('dbname', 'postgres')), safe='')}"


def dagster_storage_url(url: str) -> str:
    """The URL dagster-postgres gets: pinned to psycopg2, the driver its SQL is written for.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, whose server-side parameters break
    dagster-postgres' ``NOTIFY run_events, %(id)s``.
    """
    for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


def _ensure_database_on(url: str, database: str) -> None:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def restrict_instance_database(url: str) -> None:
    """Dagster's instance database: no CONNECT/TEMPORARY for PUBLIC, so BI logins cannot open it.

    Its owner (the role the instance connects as, or the superuser of the local cluster) keeps access.
    """
    from wealth_pipeline.warehouse.roles import restrict_database_access

    with psycopg.connect(url, autocommit=True) as conn:
        restrict_database_access(conn)


def psql_invocation(psql: str, url: str, extra: list[str]) -> tuple[list[str], dict[str, str], Path | None]:
    """(argv, environment, password file) running ``psql`` on ``url`` without the password in argv.

    Process arguments are readable by every local user (``ps``); the password goes into a
    temporary ``PGPASSFILE`` (mode 0600, removed by the caller after psql exits), the other
    connection parameters into a libpq keyword string.
    """
    import tempfile

    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    passfile: Path | None = None
    if password:
        def field(value: object) -> str:
            return str(value).replace("\\", "\\\\").replace(":", "\\:")

        fd, name = tempfile.mkstemp(prefix="wealth-pgpass-")
        passfile = Path(name)
        with os.fdopen(fd, "w") as handle:  # mkstemp: mode 0600, owned by this user
            handle.write(":".join(field(v) for v in ("*", "*", "*", params.get("user", "*"), password)) + "\n")
        env["PGPASSFILE"] = str(passfile)
    return [psql, make_conninfo(**params), *extra], env, passfile


@dataclass(frozen=True)
class RuntimeEnvironment:
    """Where the warehouse, Dagster's storage and Dagster's home are for this process.

    ``warehouse_url`` is the administrative connection (migrations, roles, psql, backups),
    ``pipeline_url`` the one the assets use (``wealth_loader`` in the embedded default) and
    ``dbt_url`` dbt's (an owner login); with ``WEALTH_DATABASE_URL`` set, the first two are that URL.
    """

    warehouse_url: str
    dagster_url: str
    dagster_home: Path
    local_cluster: LocalPostgres | None
    pipeline_url: str = ""
    dbt_url: str = ""


def local_cluster(settings: Settings | None = None) -> LocalPostgres:
    settings = settings or Settings.from_env()
    return LocalPostgres(settings.home / "pg")


def prepare_dagster_home(settings: Settings) -> Path:
    """A Dagster home holding the project's ``dagster.yaml`` (``DAGSTER_HOME`` wins when set)."""
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        home = Path(configured)
        home.mkdir(parents=True, exist_ok=True)
        return home
    home = settings.home / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    source = REPO_ROOT / "dagster.yaml"
    if source.exists():
        shutil.copyfile(source, home / "dagster.yaml")
    return home


def pipeline_logins(cluster: LocalPostgres, admin_url: str | None = None) -> tuple[str, str]:
    """(loader URL, owner URL) on the embedded cluster's warehouse; with ``admin_url``, make them work.

    Both are password logins over TCP. With ``admin_url`` (the superuser), a login that does not
    connect yet gets its group roles created (idempotent) and LOGIN with its password (sent as a
    SCRAM verifier); logins that already connect are left alone, so concurrent commands do not
    rewrite roles.
    """
    from wealth_pipeline.warehouse import roles

    loader_password = os.environ.get(roles.LOGIN_PASSWORD_ENV[roles.LOADER]) or cluster.login_password(roles.LOADER)
    urls = {
        roles.LOADER: (cluster.url(WAREHOUSE_DB, user=roles.LOADER, password=loader_password), loader_password),
    }
    owner_password = os.environ.get(roles.LOGIN_PASSWORD_ENV[roles.OWNER]) or cluster.login_password(roles.OWNER)
    urls[roles.OWNER] = (cluster.url(WAREHOUSE_DB, user=roles.OWNER, password=owner_password), owner_password)
    if admin_url is not None:
        broken = [role for role, (url, _) in urls.items() if not _connects(url)]
        if broken:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                roles.ensure_group_roles(conn)
                for role in broken:
                    roles.set_login_password(conn, role, urls[role][1])
    return urls[roles.LOADER][0], urls[roles.OWNER][0]


def _connects(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.OperationalError:
        return False
    return True


def _is_embedded_pipeline_url(url: str, settings: Settings) -> bool:
    """True for the loader URL a previous :func:`bootstrap` of this process exported for the local cluster.

    So bootstrapping again (a second command in one process) keeps the embedded default's three
    connections instead of taking the loader URL for a configured server.
    """
    from wealth_pipeline.warehouse import roles

    cluster = local_cluster(settings)
    if not cluster.state_file.exists():
        return False
    try:
        params = conninfo_to_dict(url)
        state = cluster.state
    except Exception:  # an unparsable URL or state file is simply not ours
        return False
    return (params.get("user"), params.get("host"), str(params.get("port")), params.get("dbname")) == (
        roles.LOADER, state.host, str(state.port), WAREHOUSE_DB)


def bootstrap(start_database: bool = True, export: bool = True) -> RuntimeEnvironment:
    """Resolve (and, for the embedded default, start) the databases; export the variables Dagster reads.

    Exports ``WEALTH_DATABASE_URL`` (the pipeline's connection), ``WEALTH_DAGSTER_DATABASE_URL``,
    ``DAGSTER_HOME`` and, for the embedded default, ``WEALTH_DBT_DATABASE_URL`` (the owner login)
    unless it is set already.
    """
    settings = Settings.from_env()
    cluster: LocalPostgres | None = None
    if settings.database_url and not _is_embedded_pipeline_url(settings.database_url, settings):
        warehouse_url = pipeline_url = settings.database_url
        dbt_url = os.environ.get(DBT_URL_VARIABLE) or warehouse_url
        dagster_url = settings.dagster_database_url or with_database(warehouse_url, DAGSTER_DB)
        if not settings.dagster_database_url:
            _ensure_database_on(warehouse_url, DAGSTER_DB)
            restrict_instance_database(dagster_url)
    else:
        cluster = local_cluster(settings)
        if start_database:
            cluster.start()
        warehouse_url = cluster.ensure_database(WAREHOUSE_DB)
        dagster_url = cluster.ensure_database(DAGSTER_DB)
        if start_database:
            restrict_instance_database(dagster_url)
        pipeline_url, owner_url = pipeline_logins(cluster, warehouse_url if start_database else None)
        dbt_url = os.environ.get(DBT_URL_VARIABLE) or owner_url
        dagster_url = cluster.socket_url(DAGSTER_DB) or dagster_url
    dagster_home = prepare_dagster_home(settings)
    if export:
        os.environ["WEALTH_DATABASE_URL"] = pipeline_url
        if cluster is not None:
            os.environ.setdefault(DBT_URL_VARIABLE, dbt_url)
        os.environ["WEALTH_DAGSTER_DATABASE_URL"] = dagster_storage_url(dagster_url)
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        os.environ.setdefault("WEALTH_HOME", str(settings.home))
    return RuntimeEnvironment(warehouse_url, dagster_url, dagster_home, cluster, pipeline_url, dbt_url)
