"""``wealth-pipeline``: the local database, the demo, the UI, and partition runs."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

from wealth_pipeline import cli_inputs

DEMO_START = "2023-01-02"
DEMO_END = "2024-12-31"
# The demo's model sees data up to here; the sessions after it get predictions from it.
DEMO_MODEL_AS_OF = "2024-06-28"


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


# ---- configuration and databases -----------------------------------------------------------------
DATABASE_VARIABLES = ("WEALTH_DATABASE_URL", "WEALTH_DAGSTER_DATABASE_URL")


def _where(url: str) -> str:
    """host:port/database of a connection string, without credentials (or why it is not one)."""
    from psycopg import conninfo

    try:
        parts = conninfo.conninfo_to_dict(url)
    except Exception:
        return "a string that is not a PostgreSQL URL"
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or '?'}"


def check_database_url(variable: str, url: str, timeout: int = 5) -> str:
    """Connect to ``url`` (the value of ``variable``); an InputError naming the variable when that fails.

    Returns the server's version string.
    """
    import re

    import psycopg

    url = re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)  # SQLAlchemy driver suffixes too
    if not url.startswith("postgresql://"):
        raise cli_inputs.InputError(f"{variable}: not a PostgreSQL URL ({_where(url)}); expected "
                                    "postgresql://user:password@host:port/database")
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
        raise cli_inputs.InputError(f"{variable}: cannot connect to {_where(url)} ({reason}); "
                                    "expected a reachable postgresql://user:password@host:port/database") from None


def _check_configured_databases() -> None:
    """Every database URL variable the user set is a URL and reachable, before anything starts."""
    for variable in DATABASE_VARIABLES:
        value = os.environ.get(variable)
        if value:
            check_database_url(variable, value)


def _bootstrap(start_database: bool = True):
    """``environment.bootstrap`` after checking the configured database URLs (errors name their variable)."""
    from wealth_pipeline import environment

    _check_configured_databases()
    return environment.bootstrap(start_database=start_database)


def _check_migrated(warehouse_url: str) -> None:
    """Runs load the warehouse: refuse to start one on a warehouse behind the code's migrations."""
    from wealth_pipeline.warehouse import migrate

    current, latest = migrate.current_version(warehouse_url), migrate.latest_version()
    if current < latest:
        raise cli_inputs.InputError(f"the warehouse ({_where(warehouse_url)}) is at migration {current}, the code "
                                    f"needs {latest}: run `wealth-pipeline db upgrade` first (or `make demo`)")


def _check_settings() -> None:
    """Every ``WEALTH_*`` value the settings read, at start-up: one line and exit 2 when one is wrong."""
    from wealth_pipeline.settings import Settings, backfill_chunk_sessions

    try:
        Settings.from_env()
        backfill_chunk_sessions()
    except ValueError as exc:  # settings.ConfigurationError is a ValueError with a one-line message
        text = str(exc).strip().splitlines()
        raise cli_inputs.InputError(text[0] if text else type(exc).__name__) from None


# ---- db ------------------------------------------------------------------------------------------
DB_ACTIONS = ["start", "stop", "status", "url", "psql", "upgrade", "downgrade", "history", "current",
              "create-bi-user"]
DB_DATABASES = ("warehouse", "dagster")


def _db_options(args: argparse.Namespace) -> None:
    """Take ``--database``/``--target`` wherever they were written: argparse puts everything after the
    action in the psql REMAINDER. Arguments after a ``--`` are psql's own."""
    rest: list[str] = []
    items = list(args.psql_args or [])
    while items:
        item = items.pop(0)
        if item == "--":
            rest.extend(items)
            break
        name, eq, value = item.partition("=")
        if name in ("--database", "--target"):
            if not eq:
                if not items:
                    raise cli_inputs.InputError(f"db {args.action}: {name} needs a value")
                value = items.pop(0)
            if name == "--database":
                if value not in DB_DATABASES:
                    raise cli_inputs.InputError(f"db {args.action}: --database {value!r}; expected one of "
                                                f"{', '.join(DB_DATABASES)}")
                args.database = value
            else:
                try:
                    args.target = int(value)
                except ValueError:
                    raise cli_inputs.InputError(f"db {args.action}: --target {value!r}; expected a migration "
                                                "number (e.g. 3)") from None
            continue
        rest.append(item)
    args.psql_args = rest


def cmd_db(args: argparse.Namespace) -> int:
    from wealth_pipeline import environment
    from wealth_pipeline.settings import Settings

    _db_options(args)
    settings = Settings.from_env()
    external = settings.database_url
    if args.action == "status" and external:
        variable = "WEALTH_DAGSTER_DATABASE_URL" if args.database == "dagster" else "WEALTH_DATABASE_URL"
        url = (settings.dagster_database_url or environment.with_database(external, environment.DAGSTER_DB)
               if args.database == "dagster" else external)
        try:
            version = check_database_url(variable, url)
        except cli_inputs.InputError as exc:
            _print_json({"server": _where(url), "variable": variable, "reachable": False})
            print(f"wealth-pipeline db status: {exc}", file=sys.stderr)
            return 3
        _print_json({"server": _where(url), "variable": variable, "reachable": True, "server_version": version})
        return 0
    if args.action in ("start", "stop") and external:
        print(f"WEALTH_DATABASE_URL is set: using that server ({_where(external)}); no local cluster to {args.action}.")
        return 0
    cluster = environment.local_cluster(settings)
    if args.action == "start":
        env = _bootstrap()
        state = cluster.state
        print(f"PostgreSQL running on {state.host}:{state.port} (data: {state.data_dir})")
        print(f"warehouse: {env.warehouse_url.split('@')[-1]} (full URL with credentials: wealth-pipeline db url)")
        return 0
    if args.action == "stop":
        print("stopped" if cluster.stop() else "not running")
        return 0
    if args.action == "status":
        _print_json(cluster.status())
        return 0 if cluster.is_running() else 3
    env = _bootstrap(start_database=not external)
    if args.action == "url":
        print(env.dagster_url if args.database == "dagster" else env.warehouse_url)
        return 0
    if args.action == "psql":
        psql = shutil.which("psql") or str(_bindir() / "psql")
        url = env.dagster_url if args.database == "dagster" else env.warehouse_url
        argv, psql_env, passfile = environment.psql_invocation(psql, url, args.psql_args)
        try:  # the password is in a 0600 PGPASSFILE, never in psql's arguments (visible in ps)
            return subprocess.call(argv, env=psql_env)
        finally:
            if passfile is not None:
                passfile.unlink(missing_ok=True)
    if args.action == "create-bi-user":
        return _create_bi_user(args, env.warehouse_url)
    from wealth_pipeline.warehouse import migrate

    try:
        return _db_migrations(args, env.warehouse_url)
    except migrate.MigrationError as exc:
        print(f"wealth-pipeline db {args.action}: {exc}", file=sys.stderr)
        return 2


def _create_bi_user(args: argparse.Namespace, url: str) -> int:
    """``db create-bi-user USER_ID LOGIN_ROLE``: a BI login mapped to a portfolio user.

    The password is read from stdin (``--password-stdin`` semantics when stdin is not a terminal) or
    asked for without echo; never from the arguments, which other users can see in ``ps``.
    """
    import getpass

    from wealth_pipeline.warehouse.roles import RoleError, create_bi_user, validate_login_role

    if len(args.psql_args) != 2:
        raise cli_inputs.InputError(f"db create-bi-user: expected USER_ID LOGIN_ROLE, got {' '.join(args.psql_args) or 'nothing'} "
                                    "(e.g. db create-bi-user alice alice_bi; the password is read from stdin)")
    user_id, login_role = args.psql_args
    try:
        validate_login_role(login_role)
    except RoleError as exc:
        raise cli_inputs.InputError(f"db create-bi-user: LOGIN_ROLE {login_role!r}: {exc}") from None
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {login_role}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise cli_inputs.InputError("db create-bi-user: the password (read from stdin) must have at least 8 characters")
    try:
        create_bi_user(url, user_id, login_role, password)
    except RoleError as exc:
        raise cli_inputs.InputError(f"db create-bi-user: {exc}") from None
    print(f"BI login {login_role} created for user {user_id}: it reads marts and only {user_id}'s portfolios")
    return 0


def _db_migrations(args: argparse.Namespace, url: str) -> int:
    """``db upgrade|downgrade|history|current``: Alembic through :mod:`wealth_pipeline.warehouse.migrate`."""
    from wealth_pipeline.warehouse import migrate

    if args.psql_args:
        raise cli_inputs.InputError(f"db {args.action}: unexpected arguments {' '.join(args.psql_args)}; "
                                    "valid: --target N, --database warehouse|dagster")
    if args.action == "upgrade":
        applied = migrate.upgrade(url, target=args.target)
        print(f"applied migrations: {applied or 'none (up to date)'}; version {migrate.current_version(url)}")
        _login_roles(url)
        return 0
    if args.action == "downgrade":
        reverted = migrate.downgrade(url, target=args.target or 0)
        print(f"reverted migrations: {reverted or 'none'}; version {migrate.current_version(url)}")
        return 0
    if args.action == "history":  # alembic history --indicate-current
        migrate.history(url)
        return 0
    if args.action == "current":  # alembic current
        migrate.current(url)
        return 0
    raise AssertionError(args.action)


def _login_roles(url: str) -> None:
    """Give wealth_loader / wealth_bi their passwords from WEALTH_LOADER_PASSWORD / WEALTH_BI_PASSWORD."""
    from wealth_pipeline.warehouse.roles import ensure_login_roles

    enabled = ensure_login_roles(url)
    if enabled:
        print(f"login enabled for: {', '.join(enabled)}")


def _bindir():
    from wealth_pipeline.warehouse.localpg import find_pg_bindir

    return find_pg_bindir()


def cmd_dbt(args: argparse.Namespace) -> int:
    """dbt in ``dbt_project/`` with the project's profile on the warehouse (the local cluster by default)."""
    from wealth_pipeline.defs.marts.__main__ import PRINT_ENV, main

    return main([PRINT_ENV] if args.print_env else args.dbt_args)


# ---- runs ----------------------------------------------------------------------------------------
def parse_selection(text: str, graph: object | None = None):
    """A Dagster selection string (``group:ingest``, ``*bars``), or plain asset names separated by spaces/commas.

    With ``graph``, names and groups are checked first (:func:`cli_inputs.check_selection`).
    """
    import dagster as dg

    if graph is not None:
        return cli_inputs.check_selection(text, graph)
    names = [n for n in text.replace(",", " ").split() if n]
    if names and all(n.replace("_", "").isalnum() for n in names):
        return dg.AssetSelection.assets(*names)
    return dg.AssetSelection.from_string(text)


def _job_steps(job_def: object) -> int:
    """Steps of an in-process asset job: one per op (a dbt multi-asset is one step)."""
    return max(1, len(job_def.graph.nodes))


def _execute(job_def: object, label: str, instance: object, partitions: int, follower: object | None, *,
             tags: dict[str, str] | None = None, run_config: object | None = None, location: object | None = None,
             asset_keys: list | None = None):
    """Execute ``job_def`` in process, or (``location``) submit the location's asset job for ``asset_keys``;
    followed through the event log when a follower is given."""
    import dagster as dg

    if location is not None:
        from wealth_pipeline.cli_location import wait_for_run

        config = run_config.to_config_dict() if isinstance(run_config, dg.RunConfig) else run_config
        from wealth_pipeline.cli_location import SubmitFailed

        try:
            run_id = location.submit_run(asset_keys, tags, config)
        except SubmitFailed as exc:
            raise RunFailed(f"{label}: {exc}") from None
        if follower is None:
            return wait_for_run(instance, run_id), None
        result, stats = follower.follow(instance, label, run_id, _job_steps(job_def), partitions,
                                        lambda: wait_for_run(instance, run_id))
        if not result.success:
            seen = location.wait_for_alert_sensor(result.end_time or time.time())
            follower.say(f"[{label}] run_failure_alert {'has seen' if seen else 'did not tick on'} the failed run "
                         f"{run_id} (webhook: WEALTH_ALERT_WEBHOOK_URL, else the sensor's log)", error=not seen)
        return result, stats
    if follower is None:
        return job_def.execute_in_process(instance=instance, tags=tags, run_config=run_config,
                                          raise_on_error=False), None
    run_id = str(uuid.uuid4())  # Dagster run ids are UUID4 strings; known before the run starts
    if run_config is None:
        run_config = dg.RunConfig(loggers=follower.logger_config())
    elif isinstance(run_config, dg.RunConfig):
        run_config = dg.RunConfig(ops=run_config.ops, resources=run_config.resources,
                                  loggers=follower.logger_config(), execution=run_config.execution)
    return follower.follow(instance, label, run_id, _job_steps(job_def), partitions, lambda: job_def.execute_in_process(
        instance=instance, tags=tags, run_config=run_config, raise_on_error=False, run_id=run_id))


def materialize_range(
    start: str,
    end: str,
    selection: object = "*",
    progress: bool = True,
    *,
    definitions: object | None = None,
    instance: object | None = None,
    raise_on_error: bool = True,
    follower: object | None = None,
    location: object | None = None,
) -> dict[str, object]:
    """Materialize the selected assets for an inclusive session range in this process.

    Unpartitioned assets run first, then every partitioned asset over the whole range as one run
    (the single-run backfill policy): the same shape a UI backfill takes. With ``progress`` the runs
    are followed through the event log (``cli_progress.EventFollower``). With ``location``
    (``cli_location.LocationServer``) each run is the code location's asset job, submitted to its
    webserver and executed by its daemon, instead of an ad-hoc job run in this process.
    """
    import dagster as dg

    from wealth_pipeline.defs.partitions import trading_sessions

    if definitions is None:
        from wealth_pipeline.definitions import defs as definitions
    defs = definitions
    instance = instance or dg.DagsterInstance.get()
    if progress and follower is None:
        from wealth_pipeline.cli_progress import EventFollower

        follower = EventFollower()
    keys = trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    if not keys:
        raise cli_inputs.InputError(f"no trading-session partitions between {start} and {end}")
    graph = defs.resolve_asset_graph()
    selected = (parse_selection(selection) if isinstance(selection, str) else selection).resolve(graph)
    unpartitioned = [k for k in selected if graph.get(k).partitions_def is None]
    partitioned = [k for k in selected if graph.get(k).partitions_def is not None]
    summary: dict[str, object] = {"partitions": len(keys), "range": f"{keys[0]}..{keys[-1]}", "runs": []}
    from wealth_pipeline.settings import backfill_chunk_sessions

    # The assets' backfill policy: one run for the range, or WEALTH_BACKFILL_CHUNK_SESSIONS per run.
    chunk = backfill_chunk_sessions() or len(keys)
    chunks = [keys[i:i + chunk] for i in range(0, len(keys), chunk)]
    stages = [("reference", unpartitioned, {}, 1)] + [
        ("sessions" if len(chunks) == 1 else f"sessions {c[0]}..{c[-1]}", partitioned,
         {"dagster/asset_partition_range_start": c[0], "dagster/asset_partition_range_end": c[-1]}, len(c))
        for c in chunks]
    for label, asset_keys, tags, count in stages:
        if not asset_keys:
            continue
        job = dg.define_asset_job(f"demo_{label.split()[0]}", selection=dg.AssetSelection.assets(*asset_keys))
        resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
        if follower is not None:
            follower.say(f"[{label}] materializing {len(asset_keys)} assets over {count} partition(s)")
        started = time.monotonic()
        result, _stats = _execute(resolved, label, instance, count, follower, tags=tags, location=location,
                                  asset_keys=asset_keys)
        elapsed = time.monotonic() - started
        summary["runs"].append({"stage": label, "run_id": result.run_id, "success": result.success,
                                "seconds": round(elapsed, 1), "result": result})
        if follower is not None:
            follower.say(f"[{label}] {'ok' if result.success else 'FAILED'} in {elapsed:.1f}s (run {result.run_id})",
                         error=not result.success)
        if not result.success and raise_on_error:
            if follower is None and location is None:
                for event in result.all_events:
                    if event.is_step_failure:
                        print(event.step_key, event.event_specific_data.error.to_string()
                              if event.event_specific_data else "", file=sys.stderr)
            raise RunFailed(f"run {result.run_id} ({label}) failed")
        if not result.success:
            break
    return summary


class RunFailed(RuntimeError):
    """A run the command started failed (its steps' errors were printed and are in the log file)."""


def _demo_in_order(start: str, end: str, follower: object | None = None,
                   location: object | None = None) -> dict[str, object]:
    """Everything, in the order a user would: data and analytics, a model trained on the first part
    of the range, then predictions (and the marts that show them) for the sessions after it."""
    import dagster as dg

    from wealth_pipeline.definitions import defs

    model = dg.AssetSelection.assets("model")
    scored = dg.AssetSelection.assets("predictions").downstream()
    summary = materialize_range(start, end, dg.AssetSelection.all() - model - scored, progress=follower is not None,
                                follower=follower, location=location)
    as_of = min(DEMO_MODEL_AS_OF, end)
    if follower is not None:
        follower.say(f"[model] training on data up to {as_of}")
    from wealth_pipeline.defs.models.assets import ModelConfig

    job = dg.define_asset_job("demo_model", selection=model)
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
    started = time.monotonic()
    result, _stats = _execute(resolved, "model", dg.DagsterInstance.get(), 1, follower,
                              run_config=dg.RunConfig({"model": ModelConfig(as_of=as_of)}), location=location,
                              asset_keys=list(model.resolve(defs.resolve_asset_graph())))
    elapsed = time.monotonic() - started
    if follower is not None:
        follower.say(f"[model] {'ok' if result.success else 'FAILED'} in {elapsed:.1f}s (run {result.run_id})",
                     error=not result.success)
    summary["runs"].append({"stage": "model", "run_id": result.run_id, "success": result.success,
                            "seconds": round(elapsed, 1), "result": result})
    if not result.success:
        raise RunFailed(f"run {result.run_id} (model) failed")
    first_scored = (dt.date.fromisoformat(as_of) + dt.timedelta(days=1)).isoformat()
    if first_scored <= end:
        scoring = materialize_range(first_scored, end, scored, progress=follower is not None, follower=follower,
                                    location=location)
        summary["runs"].extend(scoring["runs"])
    return summary


def _warehouse_counts(url: str) -> list[tuple[str, int]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || relname FROM pg_stat_user_tables "
            "WHERE schemaname IN ('ref','market','analytics','portfolio','models','marts') ORDER BY 1"
        ).fetchall()
        from psycopg import sql

        counts = []
        for (qualified,) in rows:
            schema, table = qualified.split(".")
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))).fetchone()[0]
            counts.append((qualified, int(count)))
    return counts


def _verbosity(args: argparse.Namespace) -> int:
    from wealth_pipeline.cli_progress import NORMAL, QUIET, VERBOSE

    return VERBOSE if getattr(args, "verbose", False) else QUIET if getattr(args, "quiet", False) else NORMAL


def _follower(args: argparse.Namespace, command: str):
    """The event follower of a run command, with its log file under ``$WEALTH_HOME/logs/`` (path printed)."""
    from wealth_pipeline.cli_progress import EventFollower
    from wealth_pipeline.settings import wealth_home

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    log_path = wealth_home() / "logs" / f"{command}-{stamp}.log"
    follower = EventFollower(log_path=log_path, verbosity=_verbosity(args))
    follower.console.print(f"Dagster's full event stream: {log_path}", highlight=False, markup=False)
    return follower


def _print_summary(follower: object, title: str, tables: list[tuple[str, int]] | None = None) -> None:
    follower.console.print(f"\n=== {title} ===", highlight=False, markup=False)
    for table in follower.summary_table(tables):
        follower.console.print(table)
    if follower.log_path is not None:
        follower.console.print(f"full event log: {follower.log_path}", highlight=False, markup=False)


def _bounds():
    from wealth_pipeline.settings import Settings

    return cli_inputs.bounds_from_settings(Settings.from_env())


def _graph():
    from wealth_pipeline.definitions import defs

    return defs, defs.resolve_asset_graph()


@contextlib.contextmanager
def _location(args: argparse.Namespace, follower: object, daemon: bool = True):
    """The code location's webserver and daemon for this command's runs, or None with ``--in-process``.

    ``daemon=False``: a submission nobody follows; without a running webserver, ``dagster-webserver``
    alone is started for it (and stopped), so nothing is launched here.
    """
    if getattr(args, "in_process", False):
        follower.say("--in-process: runs execute here as ad-hoc jobs (quicker to start; not in the UI's timeline, "
                     "and run_failure_alert does not see them)")
        yield None
        return
    import dagster as dg

    from wealth_pipeline.cli_location import LocationServer, RunningUI

    if getattr(args, "webserver", None):
        yield RunningUI.find(follower.say, args.webserver)
        return
    if _daemon_alive(dg.DagsterInstance.get()):
        # One daemon per instance: a second one would launch the same queued runs. Use the UI's webserver.
        yield RunningUI.find(follower.say)
        return
    log = follower.log_path.with_name(follower.log_path.stem + ("-dagster-dev.log" if daemon else "-webserver.log"))
    with LocationServer(log, say=follower.say, daemon=daemon) as server:
        yield server


def cmd_demo(args: argparse.Namespace) -> int:
    from wealth_pipeline.settings import Settings
    from wealth_pipeline.warehouse import migrate

    cli_inputs.parse_date("--start", args.start)  # before it becomes WEALTH_PARTITION_START
    os.environ.setdefault("WEALTH_PARTITION_START", args.start)
    first, last = cli_inputs.check_range("--start", args.start, "--end", args.end,
                                         cli_inputs.bounds_from_settings(Settings.from_env()))
    os.environ.setdefault("WEALTH_PARTITION_END", str(last))  # partitions end where the demo's data ends
    if args.select != "*":
        _defs, graph = _graph()
        selection = cli_inputs.check_selection(args.select, graph)
    follower = _follower(args, "demo")
    env = _bootstrap()
    cli_inputs.record_demo_range(Settings.from_env().home, os.environ["WEALTH_PARTITION_START"],
                                 os.environ["WEALTH_PARTITION_END"])
    applied = migrate.upgrade(env.warehouse_url)
    follower.say(f"warehouse migrations applied: {applied or 'none (up to date)'}")
    _login_roles(env.warehouse_url)
    try:
        with _location(args, follower) as location:
            if args.select == "*":
                summary = _demo_in_order(first, last, follower, location)
            else:
                summary = materialize_range(first, last, selection, follower=follower, location=location)
    except RunFailed as exc:
        _print_summary(follower, "wealth_pipeline demo: FAILED")
        follower.say(f"demo: {exc}; the failed steps' errors are above and in {follower.log_path}", error=True)
        return 1
    finally:
        follower.close()
    settings = Settings.from_env()
    _print_summary(follower, f"wealth_pipeline demo: done, {summary['partitions']} sessions ({summary['range']})",
                   _warehouse_counts(env.warehouse_url))
    print(f"lakehouse:  {settings.lakehouse_uri}")
    print(f"warehouse:  {env.warehouse_url.split('@')[-1]}  (psql: wealth-pipeline db psql)")
    print(f"dagster:    DAGSTER_HOME={env.dagster_home}, storage in database 'dagster'")
    print("open the UI on this state:  make ui   (then http://127.0.0.1:3000)")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    bounds = _bounds()
    if args.end is None:
        first = last = cli_inputs.check_partition_key("--partition", args.partition, bounds, single=True)
    else:
        first, last = cli_inputs.check_range("--partition", args.partition, "--end", args.end, bounds)
    _defs, graph = _graph()
    selection = cli_inputs.check_selection(args.select, graph)
    _check_migrated(_bootstrap().warehouse_url)
    follower = _follower(args, "materialize")
    return _run_range("materialize", "materialize", first, last, selection, follower, lambda s: f"materialize {first}..{last}: done",
                      location=lambda: _location(args, follower))


def _run_range(title: str, command: str, first: str, last: str, selection: object, follower: object,
               done: object, location: object = None) -> int:
    """Materialize a range (through the code location when ``location`` makes one), then one summary; 1 on a failed run."""
    try:
        with (location() if location else contextlib.nullcontext()) as server:
            summary = materialize_range(first, last, selection, follower=follower, location=server)
    except RunFailed as exc:
        _print_summary(follower, f"{title}: FAILED")
        follower.say(f"{command}: {exc}", error=True)
        return 1
    finally:
        follower.close()
    _print_summary(follower, done(summary))
    return 0


def backfill_targets(first: str, last: str, selection: object, graph: object, text: str) -> tuple[list, list[str]]:
    """(daily-partitioned asset keys of ``selection``, session keys ``first``..``last``) of a backfill.

    ``text`` is the ``--select`` value the errors name.
    """
    import dagster as dg

    from wealth_pipeline.defs.partitions import trading_sessions

    keys = trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    if not keys:
        raise cli_inputs.InputError(f"no trading-session partitions between {first} and {last}")
    selected = [k for k in selection.resolve(graph) if graph.get(k).partitions_def == trading_sessions]
    if not selected:
        raise cli_inputs.InputError(f"--select {text!r}: holds no daily-partitioned asset (backfills run those)")
    return selected, keys


def submit_backfill(server: object, selected: list, keys: list[str], title: str | None = None) -> str:
    """Submit an asset backfill through the webserver's GraphQL API (as the UI does); returns its id.

    Partitioned assets have single-run backfill policies, so the daemon launches one run per
    range instead of one per partition.
    """
    return server.launch_backfill(selected, keys, title or f"{keys[0]}..{keys[-1]}",
                                  f"{len(selected)} assets x {len(keys)} sessions",
                                  {"wealth/submitted_by": "wealth-pipeline backfill"})


def _daemon_alive(instance: object) -> bool:
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL") or beats.get("ASSET")
    return beat is not None and time.time() - beat.timestamp < 120


BACKFILL_DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


def cmd_backfill(args: argparse.Namespace) -> int:
    import dagster as dg

    first, last = cli_inputs.check_range("--start", args.start, "--end", args.end, _bounds())
    _defs, graph = _graph()
    selection = cli_inputs.check_selection(args.select, graph)
    _check_migrated(_bootstrap().warehouse_url)
    follower = _follower(args, "backfill")
    if args.in_process:
        return _run_range("backfill (in process)", "backfill", first, last, selection, follower,
                          lambda s: f"backfill {s['range']} done in process")
    from wealth_pipeline.cli_location import RunningUI

    selected, keys = backfill_targets(first, last, selection, graph, args.select)
    instance = dg.DagsterInstance.get()
    try:
        # --no-wait follows nothing: a webserver alone stores the backfill (no daemon is started here)
        # for whichever daemon runs next; a running one (`make ui`'s, --webserver's) launches it at once.
        with _location(args, follower, daemon=not args.no_wait) as server:
            backfill_id = submit_backfill(server, selected, keys)
            follower.say(f"backfill {backfill_id} submitted ({first}..{last}); the UI shows it under Runs > Backfills")
            if args.no_wait:
                status, done, failed, total = server.backfill_status(backfill_id)
                running = isinstance(server, RunningUI)
                follower.say(f"backfill {backfill_id}: {status}, {done}/{total} asset-partitions materialized, "
                             f"{failed} failed; " + ("the running daemon launches it" if running
                                                     else "it starts when a dagster-daemon runs (`make ui` starts one)"))
                return 0
            status, done, failed, total = _follow_backfill(follower, instance, backfill_id, server)
    finally:
        follower.close()
    _print_summary(follower, f"backfill {backfill_id}: {status}, {done}/{total} asset-partitions materialized, "
                   f"{failed} failed")
    return 0 if failed == 0 and status.startswith("COMPLETED") else 1


def _follow_backfill(follower: object, instance: object, backfill_id: str, server: object) -> tuple[str, int, int, int]:
    """Follow a submitted backfill: each of its runs through the event log, until the backfill ends."""
    import dagster as dg

    from wealth_pipeline.cli_progress import RunStats

    followed: dict[str, tuple[RunStats, str | None]] = {}
    started = time.monotonic()
    last = ""
    while True:
        status, done, failed, total = server.backfill_status(backfill_id)
        for run in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})):
            if run.run_id not in followed:
                stats = RunStats(f"run {run.run_id[:8]}", run.run_id, len(run.step_keys_to_execute or []) or 0, 0)
                follower.runs.append(stats)
                followed[run.run_id] = (stats, None)
                follower.say(f"[backfill] run {run.run_id} launched ({run.tags.get('dagster/asset_partition_range_start', '')}"
                             f"..{run.tags.get('dagster/asset_partition_range_end', '')})")
            stats, cursor = followed[run.run_id]
            cursor = follower._drain(instance, stats, cursor, started)
            stats.total_steps = max(stats.total_steps, stats.steps_done + stats.steps_failed + (1 if stats.current else 0))
            if run.is_finished and stats.success is None:
                stats.success = run.status == dg.DagsterRunStatus.SUCCESS
                record = instance.get_run_record_by_id(run.run_id)
                if record is not None and record.start_time and record.end_time:
                    stats.seconds = record.end_time - record.start_time
            followed[run.run_id] = (stats, cursor)
        steps = sum(s.steps_done for s, _ in followed.values())
        current = ", ".join(s.current for s, _ in followed.values() if s.success is None and s.current)
        line = (f"[backfill] {status}: {done}/{total} asset-partitions, {failed} failed; {len(followed)} run(s), "
                f"{steps} step(s) done{', running ' + current if current else ''}")
        if line != last:  # a line when something changed, not every poll
            follower.say(f"{line}; elapsed {time.monotonic() - started:.0f}s")
            last = line
        if status in BACKFILL_DONE:
            return status, done, failed, total
        time.sleep(2)


def cmd_ui(args: argparse.Namespace) -> int:

    from wealth_pipeline.settings import Settings

    env = _bootstrap()
    bounds = cli_inputs.demo_partition_env(Settings.from_env().home, dict(os.environ))
    if bounds:
        os.environ.update(bounds)
        print(f"partitions {bounds.get('WEALTH_PARTITION_START', '...')} .. {bounds.get('WEALTH_PARTITION_END', '...')}: "
              "the demo's range (WEALTH_PARTITION_START/END override it)", flush=True)
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={env.dagster_home})", flush=True)
    dagster = shutil.which("dagster") or os.path.join(os.path.dirname(sys.executable), "dagster")
    return subprocess.call([dagster, "dev", "-w", args.workspace, "-h", args.host, "-p", str(args.port)])


# ---- operations: backup, restore, status ----------------------------------------------------------
def _ops_targets(restore_target: bool = False) -> tuple[str, str]:
    """(warehouse URL, Dagster storage URL) of the configured databases (the local cluster by default).

    ``restore_target``: the databases may not exist yet (a restore creates them), so only their
    servers must be reachable.
    """
    from wealth_pipeline import environment
    from wealth_pipeline.operations.config import psycopg_url
    from wealth_pipeline.settings import Settings

    settings = Settings.from_env()
    if restore_target:
        for variable in DATABASE_VARIABLES:
            value = os.environ.get(variable)
            if value:
                check_database_url(variable, environment.with_database(psycopg_url(value), "postgres"))
        env = environment.bootstrap(start_database=not settings.database_url)
    else:
        env = _bootstrap(start_database=not settings.database_url)
    dagster = settings.dagster_database_url or environment.with_database(env.warehouse_url, environment.DAGSTER_DB)
    return env.warehouse_url, psycopg_url(dagster)


def _backup_location(uri: str):
    from wealth_pipeline.operations.location import BackupLocation
    from wealth_pipeline.settings import Settings

    settings = Settings.from_env()
    return BackupLocation(uri, settings.s3_endpoint_url, settings.s3_region)


def cmd_backup(args: argparse.Namespace) -> int:
    from wealth_pipeline.lakehouse.store import open_store
    from wealth_pipeline.operations import backup
    from wealth_pipeline.operations.config import backup_settings
    from wealth_pipeline.settings import Settings

    warehouse, dagster = _ops_targets()
    settings = Settings.from_env()
    config = backup_settings(settings)
    location = _backup_location(args.to or config.uri)
    mode = args.lakehouse or ("manifest" if settings.lakehouse_uri.startswith("s3://") else "copy")
    lake = open_store(settings.lakehouse_uri, settings.s3_endpoint_url, settings.s3_region)
    result = backup.create_backup(location, warehouse, dagster, lake, lakehouse_mode=mode,
                                  log=(lambda m: None) if args.json else (lambda m: print(m, flush=True)))
    pruned = backup.prune(location, config.keep_daily, config.keep_weekly) if args.prune else None
    databases = result.manifest["databases"]
    summary = {
        "backup_id": result.backup_id, "location": result.location, "seconds": result.seconds,
        "warehouse_tables": len(databases["warehouse"]["tables"]),
        "warehouse_rows": sum(t["rows"] for t in databases["warehouse"]["tables"].values()),
        "dagster_runs": databases.get("dagster", {}).get("dagster", {}).get("runs", 0),
        "lakehouse": {"mode": mode, "files": result.manifest["lakehouse"]["manifest"]["file_count"],
                      "objects_copied": result.manifest["lakehouse"]["objects_copied"]},
        "versions": {k: {"postgresql": v["server_version"], "timescaledb": v["timescaledb"]} for k, v in databases.items()},
        "retention": pruned,
    }
    if args.json:
        _print_json(summary)
    else:
        print(f"backup {result.backup_id} written to {result.location} in {result.seconds:.1f}s: "
              f"{summary['warehouse_tables']} warehouse tables ({summary['warehouse_rows']:,} rows), "
              f"{summary['dagster_runs']} Dagster runs, lakehouse {mode} ({summary['lakehouse']['files']} files, "
              f"{summary['lakehouse']['objects_copied']} new)")
        if pruned:
            print(f"retention: kept {len(pruned['kept'])}, dropped {', '.join(pruned['dropped']) or 'none'}")
    return 0


def _split_backup_source(source: str, backup_id: str | None) -> tuple[str, str | None]:
    """A location URI and an id: ``FROM`` may name the location or one backup inside it."""
    from wealth_pipeline.operations.location import BACKUP_ID

    head, _, last = source.rstrip("/").rpartition("/")
    if BACKUP_ID.match(last) and head:
        if backup_id and backup_id != last:
            raise SystemExit(f"restore: {source} names backup {last} but --backup says {backup_id}")
        return head, last
    return source, backup_id


def cmd_restore(args: argparse.Namespace) -> int:
    from wealth_pipeline.lakehouse.store import open_store
    from wealth_pipeline.operations.location import BackupNotFoundError
    from wealth_pipeline.operations.restore import (
        RestoreRefusedError,
        RestoreVerificationError,
        restore_backup,
    )
    from wealth_pipeline.settings import Settings

    uri, backup_id = _split_backup_source(args.source, args.backup)
    location = _backup_location(uri)
    warehouse, dagster = _ops_targets(restore_target=True)
    settings = Settings.from_env()
    lake = open_store(settings.lakehouse_uri, settings.s3_endpoint_url, settings.s3_region)
    try:
        report = restore_backup(location, backup_id, warehouse, dagster, lake, force=args.force,
                                log=(lambda m: None) if args.json else (lambda m: print(m, flush=True)))
    except (RestoreRefusedError, BackupNotFoundError) as exc:
        print(f"restore refused: {exc}", file=sys.stderr)
        return 2
    except RestoreVerificationError as exc:
        print(f"restore FAILED verification: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(report.as_dict())
    else:
        checks = report.checks
        print(f"restored backup {report.backup_id} in {report.seconds:.1f}s (RTO of this state) and verified: "
              f"{checks.get('warehouse_tables', {}).get('matching', 0)} warehouse tables match their checksums, "
              f"{checks.get('dagster_runs', 0)} Dagster runs, lakehouse {checks.get('lakehouse', 'not checked')}")
        for name, seconds in report.steps.items():
            print(f"  {name:32s} {seconds:8.1f}s")
        for note in report.notes:
            print(f"  note: {note}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from wealth_pipeline.lakehouse.store import open_store
    from wealth_pipeline.operations import freshness, status
    from wealth_pipeline.operations.config import backup_settings
    from wealth_pipeline.settings import Settings

    warehouse, _dagster = _ops_targets()
    settings = Settings.from_env()
    from wealth_pipeline.definitions import defs

    now = dt.datetime.fromisoformat(args.as_of) if args.as_of else dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise SystemExit(f"status: --as-of {args.as_of!r} needs a UTC offset (e.g. 2024-07-03T02:00:00+00:00)")
    config = backup_settings(settings)
    try:
        with status.open_instance() as instance:
            doc = status.collect(status.StatusInputs(
                instance=instance, asset_graph=defs.resolve_asset_graph(), warehouse_url=warehouse,
                lakehouse=open_store(settings.lakehouse_uri, settings.s3_endpoint_url, settings.s3_region),
                backups=_backup_location(config.uri), now=now, lag=freshness.lag_from_env(),
                max_backup_age=config.max_age, first_partition=settings.partition_start, days=args.days,
            ))
    except status.InstanceUnreachableError as exc:
        doc = status.unreachable_document(now, str(exc))
    print(json.dumps(doc, indent=2, default=str) if args.json else status.render(doc))
    return 1 if doc["attention"] else 0


# ---- export (issue 22) -----------------------------------------------------------------------------
EXPORT_PASSWORD_VARIABLE = "WEALTH_EXPORT_PASSWORD"


def cmd_export(args: argparse.Namespace) -> int:
    """``export --mart NAME --format csv|parquet --out PATH --login ROLE [--where COND]...``.

    Reads the mart as the BI login ``--login`` (its row-level security), whose password comes from
    ``WEALTH_EXPORT_PASSWORD`` or stdin, never from the arguments; lineage, entitlements and the
    ``ops.exports`` audit row go through the pipeline's connection. Exit 2 on a bad input, 3 when the
    rights registry and the entitlements refuse the export (nothing is written).
    """
    import getpass

    from psycopg.conninfo import make_conninfo

    from wealth_pipeline.rights import export, registry
    from wealth_pipeline.warehouse.roles import RoleError, validate_login_role

    try:
        validate_login_role(args.login)
        conditions = cli_inputs.check_where(args.where or [])
        rights = registry.load()
        registry.entitlements_from_env(rights)
    except (RoleError, registry.RegistryError) as exc:
        raise cli_inputs.InputError(f"{'--login ' + repr(args.login) + ': ' if isinstance(exc, RoleError) else ''}{exc}") from None
    password = os.environ.get(EXPORT_PASSWORD_VARIABLE)
    if not password:
        password = getpass.getpass(f"password for {args.login}: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        raise cli_inputs.InputError(f"--login {args.login}: no password ({EXPORT_PASSWORD_VARIABLE} or stdin)")
    env = _bootstrap()
    _check_migrated(env.warehouse_url)
    from wealth_pipeline.defs.marts.project import dbt_project, prepare_manifest

    manifest = prepare_manifest(dbt_project)
    read_url = make_conninfo(env.warehouse_url, user=args.login, password=password)
    import psycopg

    try:
        psycopg.connect(read_url, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
        raise cli_inputs.InputError(f"--login {args.login}: cannot log in to {_where(env.warehouse_url)} ({reason}); "
                                    f"expected a BI login (db create-bi-user) and its password in "
                                    f"{EXPORT_PASSWORD_VARIABLE} or on stdin") from None
    try:
        result = export.export_mart(args.mart, args.out, args.format, read_url=read_url,
                                    audit_url=env.pipeline_url or env.warehouse_url, where=conditions,
                                    manifest=manifest, rights=rights)
    except export.ExportError as exc:
        raise cli_inputs.InputError(str(exc)) from None
    except export.ExportRefused as exc:
        print(f"wealth-pipeline export: {exc}", file=sys.stderr)
        return 3
    print(f"exported {result.rows} row(s) of marts.{args.mart} as {result.exported_by} to {result.path} "
          f"(export {result.export_id}; sources: {', '.join(result.sources) or 'none'}"
          f"{'; watermarked' if result.watermark else ''}"
          f"{f'; {result.excluded_rows} row(s) of metadata-only providers left out' if result.excluded_rows else ''}); "
          f"attributions in {result.sidecar}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Assets (with group and partitioning), groups, jobs, schedules and sensors of the code location."""
    defs, graph = _graph()
    repo = defs.get_repository_def()
    assets = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets.append({"asset": key.to_user_string(), "group": node.group_name,
                       "partitioned": node.partitions_def is not None,
                       "description": (node.description or "").strip().split("\n")[0][:100]})
    doc = {
        "assets": assets,
        "groups": sorted({a["group"] for a in assets if a["group"]}),
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": [{"name": d.name, "cron": d.cron_schedule, "job": d.job_name,
                       "default_status": d.default_status.value} for d in repo.schedule_defs],
        "sensors": [{"name": d.name, "default_status": d.default_status.value} for d in repo.sensor_defs],
    }
    if args.json:
        _print_json(doc)
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title="assets", title_justify="left")
    for column in ("asset", "group", "daily"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", no_wrap=True, overflow="ellipsis", max_width=70)
    for a in assets:
        table.add_row(a["asset"], a["group"] or "", "yes" if a["partitioned"] else "", a["description"])
    console.print(table)
    console.print(f"groups: {', '.join(doc['groups'])}")
    console.print(f"jobs: {', '.join(doc['jobs'])}")
    for kind in ("schedules", "sensors"):
        table = Table(title=kind, title_justify="left")
        keys = list(doc[kind][0]) if doc[kind] else ["name"]
        for column in keys:
            table.add_column(column)
        for item in doc[kind]:
            table.add_row(*(str(item[k]) for k in keys))
        console.print(table)
    return 0


def _verbosity_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--webserver", default=None, metavar="URL",
                        help="submit the runs to this running Dagster webserver (its daemon runs them) instead of "
                        "starting `dagster dev` for the command")
    group = parent.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true",
                       help="print every Dagster event (as the log file has them) instead of progress")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress: errors and the summary only")
    return parent


IN_PROCESS_HELP = ("run here as ad-hoc jobs instead of the code location's asset job through `dagster dev` "
                   "(starts sooner; such runs are not in the UI's timeline and raise no failure alert)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wealth-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    verbosity = _verbosity_options()

    db = sub.add_parser("db", help="the local PostgreSQL cluster and warehouse migrations")
    db.add_argument("action", choices=DB_ACTIONS,
                    help="create-bi-user USER_ID LOGIN_ROLE: a BI login mapped to a portfolio user (password on stdin)")
    db.add_argument("--database", choices=["warehouse", "dagster"], default="warehouse")
    db.add_argument("--target", type=int, default=None,
                    help="migration version (Alembic revision NNNN) for upgrade (default: head) / downgrade (default: 0 = base)")
    db.add_argument("psql_args", nargs=argparse.REMAINDER,
                    help="psql's arguments (after `--` when they could be read as ours); --database/--target work here too")
    db.set_defaults(func=cmd_db)

    dbt = sub.add_parser("dbt", help="run dbt in dbt_project/ on the warehouse: docs generate, test, source freshness, build")
    dbt.add_argument("--print-env", action="store_true", help="print the DBT_PG_* variables as shell exports instead")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, help="dbt's own arguments")
    dbt.set_defaults(func=cmd_dbt)

    demo = sub.add_parser("demo", parents=[verbosity],
                          help="start everything and materialize the asset graph for a default range")
    demo.add_argument("--start", default=DEMO_START)
    demo.add_argument("--end", default=DEMO_END)
    demo.add_argument("--select", default="*", help="Dagster asset selection (default: everything)")
    demo.add_argument("--in-process", action="store_true", help=IN_PROCESS_HELP)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("materialize", parents=[verbosity],
                         help="materialize one partition (or a range) in this process")
    run.add_argument("--partition", required=True, help="session date YYYY-MM-DD")
    run.add_argument("--end", default=None, help="last session of a range (single run)")
    run.add_argument("--select", default="*")
    run.add_argument("--in-process", action="store_true", help=IN_PROCESS_HELP)
    run.set_defaults(func=cmd_materialize)

    backfill = sub.add_parser("backfill", parents=[verbosity],
                              help="submit a backfill to the instance (the daemon runs it) and show progress")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--select", default="*", help="asset names or a Dagster selection (daily assets only)")
    backfill.add_argument("--in-process", action="store_true", help="run it in this process instead of submitting it")
    backfill.add_argument("--no-wait", action="store_true",
                          help="submit and return without following progress (through the running webserver, or a "
                          "dagster-webserver started for the submission without a daemon: the next daemon runs it)")
    backfill.set_defaults(func=cmd_backfill)

    bk = sub.add_parser("backup", help="back up the warehouse, the Dagster instance and the lakehouse")
    bk.add_argument("--to", default=None, help="backup location: a folder or s3://bucket/prefix (default: WEALTH_BACKUP_URI)")
    bk.add_argument("--lakehouse", choices=["copy", "manifest"], default=None,
                    help="copy the lakehouse files into the backup (default for a local lakehouse) or only record "
                    "their manifest (default for S3, whose bucket versioning keeps the bytes)")
    bk.add_argument("--prune", action="store_true", help="then apply WEALTH_BACKUP_RETENTION to the location")
    bk.add_argument("--json", action="store_true")
    bk.set_defaults(func=cmd_backup)

    rs = sub.add_parser("restore", help="restore a backup into the configured (empty) databases and lakehouse, then verify it")
    rs.add_argument("source", help="backup location (folder or s3://...), or one backup inside it (.../<id>)")
    rs.add_argument("--backup", default=None, help="backup id (default: the latest complete one)")
    rs.add_argument("--force", action="store_true", help="replace non-empty target databases and lakehouse files")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_restore)

    st = sub.add_parser("status", help="one screen of the pipeline's health; exit 1 when something needs attention")
    st.add_argument("--json", action="store_true")
    st.add_argument("--days", type=int, default=7, help="window for failed runs and quarantined rows (days)")
    st.add_argument("--as-of", default=None, help="evaluate freshness and backup age at this ISO time (default: now)")
    st.set_defaults(func=cmd_status)

    ls = sub.add_parser("list", help="assets (group, daily or not), groups, jobs, schedules and sensors")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    from wealth_pipeline.lakehouse.cli import (
        add_lakehouse_parser,  # `lakehouse migrate` (lakehouse/migrate.py)
    )

    add_lakehouse_parser(sub)

    ex = sub.add_parser("export", help="export a mart to CSV or parquet as a BI login, when its sources' licences allow it")
    ex.add_argument("--mart", required=True, help="mart name (a model of the marts schema, e.g. security_daily)")
    ex.add_argument("--format", required=True, choices=["csv", "parquet"])
    ex.add_argument("--out", required=True, help="file to write (attributions also in <file>.rights.json)")
    ex.add_argument("--login", required=True, help="BI login to read as (row-level security); password: "
                    "WEALTH_EXPORT_PASSWORD or stdin")
    ex.add_argument("--where", action="append", default=[], metavar="COND",
                    help="COLUMN OP VALUE filter (OP: = != < <= > >=); repeat for AND")
    ex.set_defaults(func=cmd_export)

    ui = sub.add_parser("ui", help="start the local database and `dagster dev` on the same state")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--workspace", default="workspace.yaml")
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    # platformdirs (via a dependency's import) warns on every start in containers without a session.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from wealth_pipeline.settings import apply_dagster_tuning, restore_interrupt_handler

    # Before any instance exists: in-process runs, and `ui`'s webserver and daemon, which inherit it.
    apply_dagster_tuning()
    restore_interrupt_handler()
    try:
        _check_settings()
        return int(args.func(args) or 0)
    except cli_inputs.InputError as exc:
        print(f"wealth-pipeline {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
