"""The lakehouse maintenance op, job and schedule (compaction + vacuum of every Delta table)."""

import dagster as dg
from pydantic import Field

from wealth_pipeline.lakehouse import delta, maintenance
from wealth_pipeline.lakehouse.resource import LakehouseResource

TIMEZONE = "America/New_York"
# Sunday 05:00 New York: no session closes, no daily run is due.
MAINTENANCE_CRON = "0 5 * * 0"


class MaintenanceConfig(dg.Config):
    """How long removed files and commits are kept (as-of reads work this far back)."""

    retention_days: int = Field(
        default=delta.RETENTION_DAYS, ge=0,
        description="Keep removed data files and commit files this many days: the as-of / model-reproducibility "
                    "window. Lowering it makes older model manifests unreproducible from the lakehouse.")


@dg.op(description="Compact each Delta table's small files, vacuum files removed before the retention, trim the log.",
       tags={"kind": "deltalake"})
def maintain_tables(context: dg.OpExecutionContext, config: MaintenanceConfig,
                    lakehouse: LakehouseResource) -> list[dict[str, object]]:
    done = maintenance.maintain(lakehouse.get(), config.retention_days)
    for table in done:
        if table.vacuum_skipped:
            context.log.warning(f"{table.table}: {table.vacuum_skipped}")
        context.log.info(
            f"{table.table}: {table.active_files_before} -> {table.active_files_after} active files, "
            f"{table.files_vacuumed} vacuumed, version {table.version_before} -> {table.version_after}")
    context.add_output_metadata({
        "tables": len(done),
        "retention_days": config.retention_days,
        "files_vacuumed": sum(t.files_vacuumed for t in done),
        "active_files_before": sum(t.active_files_before for t in done),
        "active_files_after": sum(t.active_files_after for t in done),
    })
    return [t.as_dict() for t in done]


@dg.job(
    description="Compact and vacuum the lakehouse's Delta tables (processed and models tiers), keeping as-of reads "
    f"for the retention (default {delta.RETENTION_DAYS} days). Tagged like the daily runs so it never races a load's commit.",
    tags={"wealth/warehouse": "daily"},
)
def lakehouse_maintenance() -> None:
    maintain_tables()


weekly_lakehouse_maintenance = dg.ScheduleDefinition(
    name="weekly_lakehouse_maintenance", job=lakehouse_maintenance, cron_schedule=MAINTENANCE_CRON,
    execution_timezone=TIMEZONE, default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Sundays 05:00 New York: compact and vacuum the Delta tables (stopped by default; start it in the UI).",
)
