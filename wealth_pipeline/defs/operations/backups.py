"""The nightly backup job (after the daily pipeline), its retention, and the "latest backup restorable" check.

The backup is an op job reporting a materialization of the external asset ``backups``, not an asset
of its own: an asset would be swept into every "materialize everything" selection (the demo, UI
backfills) and back up a half-built state before the data.
"""

import datetime as dt
import os

import dagster as dg

from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.operations import backup as backups
from wealth_pipeline.operations.config import backup_settings, psycopg_url
from wealth_pipeline.operations.location import BackupLocation
from wealth_pipeline.operations.verify import check_latest_backup
from wealth_pipeline.settings import Settings

BACKUPS = dg.AssetKey("backups")
BACKUP_CRON = "30 21 * * *"  # 21:30 New York: after the 18:30 after-close run has finished
TIMEZONE = "America/New_York"

backups_spec = dg.AssetSpec(
    BACKUPS,
    group_name="operations",
    description="Backups of the warehouse, the Dagster instance and the lakehouse in WEALTH_BACKUP_URI "
    "(pg_dump custom format + manifest with per-table checksums); written by the backup job.",
    kinds={"postgres"},
    owners=["team:data-platform"],
)


def _location(settings: Settings) -> BackupLocation:
    return BackupLocation(backup_settings(settings).uri, settings.s3_endpoint_url, settings.s3_region)


def _check_result(now: dt.datetime) -> dg.AssetCheckResult:
    settings = Settings.from_env()
    config = backup_settings(settings)
    result = check_latest_backup(_location(settings), now, config.max_age)
    return dg.AssetCheckResult(
        asset_key=BACKUPS, check_name="latest_backup_restorable", passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(result.problems) or f"backup {result.backup_id} verified",
        metadata={k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in result.as_dict().items() if v is not None},
    )


@dg.asset_check(asset=BACKUPS, name="latest_backup_restorable",
                description="The newest complete backup exists, is younger than WEALTH_BACKUP_MAX_AGE_HOURS, its dumps "
                "match their checksums and pg_restore reads them, and every lakehouse file it references is present.")
def latest_backup_restorable() -> dg.AssetCheckResult:
    return _check_result(dt.datetime.now(dt.UTC))


@dg.op(description="pg_dump the warehouse and the Dagster instance, record the lakehouse, then apply retention.",
       tags={"kind": "postgres"})
def take_backup(context: dg.OpExecutionContext, lakehouse: LakehouseResource) -> dict:
    settings = Settings.from_env()
    config = backup_settings(settings)
    warehouse = os.environ.get("WEALTH_DATABASE_URL")
    if not warehouse:
        raise dg.Failure("WEALTH_DATABASE_URL is not set: the backup job needs the warehouse URL "
                         "(wealth-pipeline commands export it)", allow_retries=False)
    dagster_url = os.environ.get("WEALTH_DAGSTER_DATABASE_URL")
    location = _location(settings)
    mode = "manifest" if lakehouse.uri.startswith("s3://") else "copy"
    result = backups.create_backup(location, warehouse, psycopg_url(dagster_url) if dagster_url else None,
                                   lakehouse.get().store, lakehouse_mode=mode, log=context.log.info)
    pruned = backups.prune(location, config.keep_daily, config.keep_weekly)
    tables = result.manifest["databases"]["warehouse"]["tables"]
    context.log_event(dg.AssetMaterialization(BACKUPS, metadata={
        "backup_id": result.backup_id, "location": result.location, "seconds": result.seconds,
        "warehouse_tables": len(tables), "warehouse_rows": sum(t["rows"] for t in tables.values()),
        "lakehouse_mode": mode, "kept": ", ".join(pruned["kept"]), "dropped": ", ".join(pruned["dropped"]) or "none",
    }))
    check = _check_result(dt.datetime.now(dt.UTC))
    context.log_event(dg.AssetCheckEvaluation(
        asset_key=BACKUPS, check_name="latest_backup_restorable", passed=check.passed,
        severity=check.severity, description=check.description, metadata=check.metadata,
    ))
    if not check.passed:
        raise dg.Failure(f"backup {result.backup_id} failed its check: {check.description}")
    return {"backup_id": result.backup_id, **pruned}


@dg.job(description="Back up the warehouse, the Dagster instance and the lakehouse (WEALTH_BACKUP_URI), then keep "
        "WEALTH_BACKUP_RETENTION (default 7 daily, 4 weekly). Tagged like the daily runs so it never overlaps a load.",
        tags={"wealth/warehouse": "daily"})
def backup_job() -> None:
    take_backup()


backup_check_job = dg.define_asset_job(
    "backup_check", selection=dg.AssetSelection.checks(latest_backup_restorable),
    description="Check that the latest backup exists, is recent and is restorable.",
)

daily_backup = dg.ScheduleDefinition(
    name="daily_backup", job=backup_job, cron_schedule=BACKUP_CRON, execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 21:30 New York, after the after-close run: a backup with retention.",
)
