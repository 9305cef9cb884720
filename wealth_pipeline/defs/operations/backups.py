"""The nightly backup job (after the daily pipeline), its retention, and the "latest backup restorable" check.

The backup is an op job reporting a materialization of the external asset ``backups``, not an asset
of its own: an asset would be swept into every "materialize everything" selection (the demo, UI
backfills) and back up a half-built state before the data.
"""

import datetime as dt
import os

import dagster as dg

from wealth_pipeline import environment
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.operations import backup as backups
from wealth_pipeline.operations.config import (
    MAX_AGE_VAR,
    RETENTION_VAR,
    URI_VAR,
    BackupSettings,
    make_backup_settings,
    psycopg_url,
)
from wealth_pipeline.operations.location import BackupLocation
from wealth_pipeline.operations.verify import check_latest_backup
from wealth_pipeline.settings import Settings, wealth_home

BACKUPS = dg.AssetKey("backups")
BACKUP_CRON = "30 21 * * *"  # 21:30 New York: after the 18:30 after-close run has finished
TIMEZONE = "America/New_York"
DAGSTER_URL_VAR = "WEALTH_DAGSTER_DATABASE_URL"

backups_spec = dg.AssetSpec(
    BACKUPS,
    group_name="operations",
    description="Backups of the warehouse, the Dagster instance and the lakehouse in WEALTH_BACKUP_URI "
    "(pg_dump custom format + manifest with per-table checksums); written by the backup job.",
    kinds={"postgres"},
    owners=["team:data-platform"],
)


class BackupResource(dg.ConfigurableResource):
    """Where backups go, how many are kept, how old the latest may be, and the Dagster database to dump.

    Built by :func:`backup_resource` with ``dg.EnvVar`` fields, so the values (the Dagster URL carries
    a password) are read from the environment when a run starts and never stored in run config.
    """

    uri: str | None = None  # WEALTH_BACKUP_URI; default $WEALTH_HOME/backups
    retention: str | None = None  # WEALTH_BACKUP_RETENTION, "<N>d,<M>w"
    max_age_hours: str | None = None  # WEALTH_BACKUP_MAX_AGE_HOURS
    dagster_database_url: str | None = None  # WEALTH_DAGSTER_DATABASE_URL (SQLAlchemy or libpq form)
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    def settings(self) -> BackupSettings:
        """Validated settings; a bad value raises ``ValueError`` naming its variable."""
        return make_backup_settings(self.uri, self.retention, self.max_age_hours, wealth_home())

    def location(self) -> BackupLocation:
        return BackupLocation(self.settings().uri, self.s3_endpoint_url, self.s3_region)


def backup_resource(settings: Settings | None = None) -> BackupResource:
    """The resource from the environment: an ``EnvVar`` for each variable that is set, the default otherwise
    (an ``EnvVar`` of an unset variable would fail every run, and these are optional)."""
    settings = settings or Settings.from_env()

    def env(name: str) -> dg.EnvVar | None:
        return dg.EnvVar(name) if os.environ.get(name) else None

    return BackupResource(uri=env(URI_VAR), retention=env(RETENTION_VAR), max_age_hours=env(MAX_AGE_VAR),
                          dagster_database_url=env(DAGSTER_URL_VAR), s3_endpoint_url=settings.s3_endpoint_url,
                          s3_region=settings.s3_region)


def _config_failure(exc: ValueError) -> dg.Failure:
    return dg.Failure(str(exc), allow_retries=False)  # a configuration error is never worth a retry


def _check_result(backup: BackupResource, now: dt.datetime) -> dg.AssetCheckResult:
    try:
        config = backup.settings()
    except ValueError as exc:
        raise _config_failure(exc) from None
    result = check_latest_backup(backup.location(), now, config.max_age)
    return dg.AssetCheckResult(
        asset_key=BACKUPS, check_name="latest_backup_restorable", passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(result.problems) or f"backup {result.backup_id} verified",
        metadata={k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in result.as_dict().items() if v is not None},
    )


@dg.asset_check(asset=BACKUPS, name="latest_backup_restorable",
                description="The newest complete backup exists, is younger than WEALTH_BACKUP_MAX_AGE_HOURS, its dumps "
                "match their checksums and pg_restore reads them, and every lakehouse file it references is present.")
def latest_backup_restorable(backup: BackupResource) -> dg.AssetCheckResult:
    return _check_result(backup, dt.datetime.now(dt.UTC))


@dg.op(description="pg_dump the warehouse and the Dagster instance, record the lakehouse, then apply retention.",
       tags={"kind": "postgres"})
def take_backup(context: dg.OpExecutionContext, lakehouse: LakehouseResource, backup: BackupResource) -> dict:
    try:
        config = backup.settings()
    except ValueError as exc:
        raise _config_failure(exc) from None
    # The administrative warehouse URL, not the pipeline's: in the embedded default the assets connect
    # as wealth_loader, which cannot read the migration history nor dump row-secured tables.
    warehouse_url = environment.bootstrap(start_database=False, export=False).warehouse_url
    location = backup.location()
    dagster_url = backup.dagster_database_url
    mode = "manifest" if lakehouse.uri.startswith("s3://") else "copy"
    result = backups.create_backup(location, psycopg_url(warehouse_url), psycopg_url(dagster_url) if dagster_url else None,
                                   lakehouse.get().store, lakehouse_mode=mode, log=context.log.info)
    pruned = backups.prune(location, config.keep_daily, config.keep_weekly)
    tables = result.manifest["databases"]["warehouse"]["tables"]
    context.log_event(dg.AssetMaterialization(BACKUPS, metadata={
        "backup_id": result.backup_id, "location": result.location, "seconds": result.seconds,
        "warehouse_tables": len(tables), "warehouse_rows": sum(t["rows"] for t in tables.values()),
        "lakehouse_mode": mode, "kept": ", ".join(pruned["kept"]), "dropped": ", ".join(pruned["dropped"]) or "none",
    }))
    check = _check_result(backup, dt.datetime.now(dt.UTC))
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
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 21:30 New York, after the after-close run: a backup with retention.",
)
