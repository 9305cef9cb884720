"""``wealth-pipeline``: the local database, the demo, the UI, and partition runs."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

DEMO_START = "2023-01-02"
DEMO_END = "2024-12-31"
# The demo's model sees data up to here; the sessions after it get predictions from it.
DEMO_MODEL_AS_OF = "2024-06-28"


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


# ---- db ------------------------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace) -> int:
    from wealth_pipeline import environment
    from wealth_pipeline.settings import Settings

    settings = Settings.from_env()
    external = settings.database_url
    if args.action in ("start", "stop", "status") and external:
        print(f"WEALTH_DATABASE_URL is set: using that server, no local cluster is {args.action}ed.")
        return 0
    cluster = environment.local_cluster(settings)
    if args.action == "start":
        env = environment.bootstrap()
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
    env = environment.bootstrap(start_database=not external)
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
    from wealth_pipeline.warehouse import migrate

    try:
        return _db_migrations(args, env.warehouse_url)
    except migrate.MigrationError as exc:
        print(f"wealth-pipeline db {args.action}: {exc}", file=sys.stderr)
        return 2


def _db_migrations(args: argparse.Namespace, url: str) -> int:
    """``db upgrade|downgrade|history|current``: Alembic through :mod:`wealth_pipeline.warehouse.migrate`."""
    from wealth_pipeline.warehouse import migrate

    if args.psql_args:  # the psql REMAINDER after the action also takes `upgrade --target N`
        extra = argparse.ArgumentParser(prog=f"wealth-pipeline db {args.action}")
        extra.add_argument("--target", type=int, default=args.target)
        args.target = extra.parse_args(args.psql_args).target
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
def parse_selection(text: str):
    """A Dagster selection string (``group:ingest``, ``*bars``), or plain asset names separated by spaces/commas."""
    import dagster as dg

    names = [n for n in text.replace(",", " ").split() if n]
    if names and all(n.replace("_", "").isalnum() for n in names):
        return dg.AssetSelection.assets(*names)
    return dg.AssetSelection.from_string(text)


def materialize_range(
    start: str,
    end: str,
    selection: object = "*",
    progress: bool = True,
    *,
    definitions: object | None = None,
    instance: object | None = None,
    raise_on_error: bool = True,
) -> dict[str, object]:
    """Materialize the selected assets for an inclusive session range in this process.

    Unpartitioned assets run first, then every partitioned asset over the whole range as one run
    (the single-run backfill policy): the same shape a UI backfill takes.
    """
    import dagster as dg

    from wealth_pipeline.defs.partitions import trading_sessions

    if definitions is None:
        from wealth_pipeline.definitions import defs as definitions
    defs = definitions
    instance = instance or dg.DagsterInstance.get()
    keys = trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    if not keys:
        raise SystemExit(f"no trading-session partitions between {start} and {end}")
    graph = defs.resolve_asset_graph()
    selected = (parse_selection(selection) if isinstance(selection, str) else selection).resolve(graph)
    unpartitioned = [k for k in selected if graph.get(k).partitions_def is None]
    partitioned = [k for k in selected if graph.get(k).partitions_def is not None]
    summary: dict[str, object] = {"partitions": len(keys), "range": f"{keys[0]}..{keys[-1]}", "runs": []}
    from wealth_pipeline.settings import backfill_chunk_sessions

    # The assets' backfill policy: one run for the range, or WEALTH_BACKFILL_CHUNK_SESSIONS per run.
    chunk = backfill_chunk_sessions() or len(keys)
    chunks = [keys[i:i + chunk] for i in range(0, len(keys), chunk)]
    stages = [("reference", unpartitioned, {})] + [
        ("sessions" if len(chunks) == 1 else f"sessions {c[0]}..{c[-1]}", partitioned,
         {"dagster/asset_partition_range_start": c[0], "dagster/asset_partition_range_end": c[-1]})
        for c in chunks]
    for label, asset_keys, tags in stages:
        if not asset_keys:
            continue
        job = dg.define_asset_job(f"demo_{label.split()[0]}", selection=dg.AssetSelection.assets(*asset_keys))
        resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
        started = time.monotonic()
        if progress:
            count = len(trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(
                tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]))) if tags else 1
            print(f"[{label}] materializing {len(asset_keys)} assets over {count} partition(s)...", flush=True)
        result = resolved.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        elapsed = time.monotonic() - started
        summary["runs"].append({"stage": label, "run_id": result.run_id, "success": result.success,
                                "seconds": round(elapsed, 1), "result": result})
        if progress:
            print(f"[{label}] {'ok' if result.success else 'FAILED'} in {elapsed:.1f}s (run {result.run_id})", flush=True)
        if not result.success and raise_on_error:
            for event in result.all_events:
                if event.is_step_failure:
                    print(event.step_key, event.event_specific_data.error.to_string() if event.event_specific_data else "", file=sys.stderr)
            raise SystemExit(f"run {result.run_id} failed")
        if not result.success:
            break
    return summary


def _demo_in_order(start: str, end: str) -> dict[str, object]:
    """Everything, in the order a user would: data and analytics, a model trained on the first part
    of the range, then predictions (and the marts that show them) for the sessions after it."""
    import dagster as dg

    from wealth_pipeline.definitions import defs

    model = dg.AssetSelection.assets("model")
    scored = dg.AssetSelection.assets("predictions").downstream()
    summary = materialize_range(start, end, dg.AssetSelection.all() - model - scored)
    as_of = min(DEMO_MODEL_AS_OF, end)
    print(f"[model] training on data up to {as_of}...", flush=True)
    from wealth_pipeline.defs.models.assets import ModelConfig

    job = dg.define_asset_job("demo_model", selection=model)
    result = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name).execute_in_process(
        instance=dg.DagsterInstance.get(), run_config=dg.RunConfig({"model": ModelConfig(as_of=as_of)}))
    print(f"[model] ok (run {result.run_id})", flush=True)
    summary["runs"].append({"stage": "model", "run_id": result.run_id, "success": result.success, "seconds": 0.0})
    first_scored = (dt.date.fromisoformat(as_of) + dt.timedelta(days=1)).isoformat()
    if first_scored <= end:
        scoring = materialize_range(first_scored, end, scored)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from wealth_pipeline import environment
    from wealth_pipeline.settings import Settings
    from wealth_pipeline.warehouse import migrate

    os.environ.setdefault("WEALTH_PARTITION_START", args.start)
    env = environment.bootstrap()
    applied = migrate.upgrade(env.warehouse_url)
    print(f"warehouse migrations applied: {applied or 'none (up to date)'}")
    _login_roles(env.warehouse_url)
    if args.select == "*":
        summary = _demo_in_order(args.start, args.end)
    else:
        summary = materialize_range(args.start, args.end, args.select)
    settings = Settings.from_env()
    print("\n=== wealth_pipeline demo: done ===")
    print(f"sessions materialized: {summary['partitions']} ({summary['range']})")
    for run in summary["runs"]:
        print(f"  run {run['run_id']} ({run['stage']}): {'success' if run['success'] else 'failed'} in {run['seconds']}s")
    print("warehouse tables (rows):")
    for table, count in _warehouse_counts(env.warehouse_url):
        print(f"  {table:40s} {count:>10,}")
    print(f"lakehouse:  {settings.lakehouse_uri}")
    print(f"warehouse:  {env.warehouse_url.split('@')[-1]}  (psql: wealth-pipeline db psql)")
    print(f"dagster:    DAGSTER_HOME={env.dagster_home}, storage in database 'dagster'")
    print("open the UI on this state:  make ui   (then http://127.0.0.1:3000)")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    from wealth_pipeline import environment

    environment.bootstrap()
    end = args.end or args.partition
    materialize_range(args.partition, end, args.select)
    return 0


def submit_backfill(start: str, end: str, selection: str = "*", *, definitions: object | None = None,
                    instance: object | None = None, title: str | None = None) -> str:
    """Submit an asset backfill to the instance (the daemon runs it, as for a UI backfill); returns its id.

    Partitioned assets have single-run backfill policies, so the daemon launches one run per
    range instead of one per partition.
    """
    import dagster as dg
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from wealth_pipeline.defs.partitions import trading_sessions

    if definitions is None:
        from wealth_pipeline.definitions import defs as definitions
    instance = instance or dg.DagsterInstance.get()
    graph = definitions.resolve_asset_graph()
    keys = trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    if not keys:
        raise SystemExit(f"no trading-session partitions between {start} and {end}")
    selected = [k for k in parse_selection(selection).resolve(graph) if graph.get(k).partitions_def == trading_sessions]
    if not selected:
        raise SystemExit(f"selection {selection!r} holds no daily-partitioned asset")
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(), asset_graph=graph, partition_names=keys, asset_selection=selected,
        backfill_timestamp=time.time(), tags={"wealth/submitted_by": "wealth-pipeline backfill"},
        dynamic_partitions_store=instance, all_partitions=False,
        title=title or f"{keys[0]}..{keys[-1]}", description=f"{len(selected)} assets x {len(keys)} sessions", run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def backfill_progress(instance: object, backfill_id: str, graph: object) -> tuple[str, int, int, int]:
    """(status, materialized, failed, total) asset-partitions of a submitted backfill."""
    backfill = instance.get_backfill(backfill_id)
    data = backfill.get_asset_backfill_data(graph)
    return (
        backfill.status.value,
        data.materialized_subset.num_partitions_and_non_partitioned_assets,
        data.failed_and_downstream_subset.num_partitions_and_non_partitioned_assets,
        data.target_subset.num_partitions_and_non_partitioned_assets,
    )


def _daemon_alive(instance: object) -> bool:
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL") or beats.get("ASSET")
    return beat is not None and time.time() - beat.timestamp < 120


def cmd_backfill(args: argparse.Namespace) -> int:
    from wealth_pipeline import environment

    environment.bootstrap()
    if args.in_process:
        summary = materialize_range(args.start, args.end, args.select)
        print(f"backfill {summary['range']} done in process: {[r['run_id'] for r in summary['runs']]}")
        return 0
    import dagster as dg
    from tqdm import tqdm

    from wealth_pipeline.definitions import defs

    instance = dg.DagsterInstance.get()
    backfill_id = submit_backfill(args.start, args.end, args.select, definitions=defs, instance=instance)
    print(f"backfill {backfill_id} submitted ({args.start}..{args.end}); it is also visible in the UI under Overview > Backfills")
    if args.no_wait:
        return 0
    if not _daemon_alive(instance):
        print("no dagster-daemon is running: the backfill starts when one does (`make ui` starts one), "
              "or use --in-process to run it here")
        return 0
    graph = defs.resolve_asset_graph()
    status, done, failed, total = backfill_progress(instance, backfill_id, graph)
    with tqdm(total=total, unit="asset-partition", desc="backfill") as bar:
        while True:
            status, done, failed, total = backfill_progress(instance, backfill_id, graph)
            bar.total = total
            bar.n = done + failed
            bar.set_postfix(status=status, failed=failed)
            bar.refresh()
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                break
            time.sleep(2)
    print(f"backfill {backfill_id}: {status}, {done}/{total} materialized, {failed} failed")
    return 0 if failed == 0 and status.startswith("COMPLETED") else 1


def cmd_ui(args: argparse.Namespace) -> int:
    from wealth_pipeline import environment

    env = environment.bootstrap()
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={env.dagster_home})", flush=True)
    dagster = shutil.which("dagster") or os.path.join(os.path.dirname(sys.executable), "dagster")
    return subprocess.call([dagster, "dev", "-w", args.workspace, "-h", args.host, "-p", str(args.port)])


# ---- operations: backup, restore, status ----------------------------------------------------------
def _ops_targets() -> tuple[str, str]:
    """(warehouse URL, Dagster storage URL) of the configured databases (the local cluster by default)."""
    from wealth_pipeline import environment
    from wealth_pipeline.operations.config import psycopg_url
    from wealth_pipeline.settings import Settings

    settings = Settings.from_env()
    env = environment.bootstrap(start_database=not settings.database_url)
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
    warehouse, dagster = _ops_targets()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wealth-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the local PostgreSQL cluster and warehouse migrations")
    db.add_argument("action", choices=["start", "stop", "status", "url", "psql", "upgrade", "downgrade", "history", "current"])
    db.add_argument("--database", choices=["warehouse", "dagster"], default="warehouse")
    db.add_argument("--target", type=int, default=None,
                    help="migration version (Alembic revision NNNN) for upgrade (default: head) / downgrade (default: 0 = base)")
    db.add_argument("psql_args", nargs=argparse.REMAINDER, help="extra arguments passed to psql")
    db.set_defaults(func=cmd_db)

    dbt = sub.add_parser("dbt", help="run dbt in dbt_project/ on the warehouse: docs generate, test, source freshness, build")
    dbt.add_argument("--print-env", action="store_true", help="print the DBT_PG_* variables as shell exports instead")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, help="dbt's own arguments")
    dbt.set_defaults(func=cmd_dbt)

    demo = sub.add_parser("demo", help="start everything and materialize the asset graph for a default range")
    demo.add_argument("--start", default=DEMO_START)
    demo.add_argument("--end", default=DEMO_END)
    demo.add_argument("--select", default="*", help="Dagster asset selection (default: everything)")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("materialize", help="materialize one partition (or a range) in this process")
    run.add_argument("--partition", required=True, help="session date YYYY-MM-DD")
    run.add_argument("--end", default=None, help="last session of a range (single run)")
    run.add_argument("--select", default="*")
    run.set_defaults(func=cmd_materialize)

    backfill = sub.add_parser("backfill", help="submit a backfill to the instance (the daemon runs it) and show progress")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--select", default="*", help="asset names or a Dagster selection (daily assets only)")
    backfill.add_argument("--in-process", action="store_true", help="run it in this process instead of submitting it")
    backfill.add_argument("--no-wait", action="store_true", help="submit and return without following progress")
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

    ui = sub.add_parser("ui", help="start the local database and `dagster dev` on the same state")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--workspace", default="workspace.yaml")
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from wealth_pipeline.settings import apply_dagster_tuning

    # Before any instance exists: in-process runs, and `ui`'s webserver and daemon, which inherit it.
    apply_dagster_tuning()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def _today() -> dt.date:
    return dt.date.today()


if __name__ == "__main__":
    sys.exit(main())
