"""Lakehouse maintenance: compaction drops the active file count, vacuum the stored one, reads stay the same.

Runs the Dagster job itself (``lakehouse_maintenance``) against a folder and against S3 (moto).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from wealth_pipeline.defs.maintenance import lakehouse_maintenance, weekly_lakehouse_maintenance
from wealth_pipeline.lakehouse import delta, maintenance
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline_tests.integration import test_lakehouse as base
from wealth_pipeline_tests.integration.test_lakehouse import Backend, _bars, _weekdays

pytestmark = pytest.mark.integration
backend = base.backend  # every test runs on a local folder and on S3


def _stored_parquet(lake: object, table: str) -> list[str]:
    return [k for k in lake.store.list_keys(f"{table}/") if k.endswith(".parquet") and "/_delta_log/" not in k]


def _daily_history(lake: object, days: list[dt.date]) -> None:
    """One commit per session, like the daily schedule; the backfill part in two-week chunks."""
    for i in range(0, 20, 10):
        chunk = days[i:i + 10]
        lake.write_window("processed", "bars", pl.concat([_bars(d) for d in chunk]), "session_date", chunk[0], chunk[-1])
    for day in days[20:]:
        lake.write_partition("processed", "bars", _bars(day), day)


def _run(backend: Backend, retention_days: int) -> dg.ExecuteInProcessResult:
    return lakehouse_maintenance.execute_in_process(
        resources={"lakehouse": LakehouseResource(uri=backend.uri, s3_endpoint_url=backend.endpoint)},
        run_config={"ops": {"maintain_tables": {"config": {"retention_days": retention_days}}}},
    )


def test_maintenance_compacts_vacuums_and_keeps_reads_and_retained_versions(backend: Backend) -> None:
    lake = backend.lake
    days = _weekdays(dt.date(2024, 12, 2), 40)  # 2024 and 2025: two year partitions
    _daily_history(lake, days)
    lake.write_dataset("processed", "symbol_master", pl.DataFrame({"symbol": ["AAA", "BBB", "CCC"]}))
    expected = lake.read_partitions("processed", "bars")
    assert expected.height == 40 * 3
    version = lake.version("processed", "bars")
    first = lake.read_partitions("processed", "bars", as_of=0)
    active_before = lake.tables.file_count("processed/bars")
    stored_before = len(_stored_parquet(lake, "processed/bars"))
    assert active_before > 2 and stored_before > 20, "daily copy-on-write commits left many files"

    # Retention of 30 days: every version written just now is inside it.
    result = _run(backend, 30)
    assert result.success
    (report,) = [t for t in result.output_for_node("maintain_tables") if t["table"].endswith("processed/bars")]
    assert report["active_files_before"] == active_before
    assert report["active_files_after"] == lake.tables.file_count("processed/bars") == 2  # one per year
    assert report["files_vacuumed"] == 0
    assert lake.version("processed", "bars") == version + 1  # the compaction commit (tables carry the retention)
    assert lake.read_partitions("processed", "bars").equals(expected)
    assert lake.read_partitions("processed", "bars", as_of=0).equals(first), "old versions still readable"
    assert len(_stored_parquet(lake, "processed/bars")) == stored_before + 2
    config = lake.tables.open("processed/bars").metadata().configuration
    assert config["delta.deletedFileRetentionDuration"] == f"interval {delta.RETENTION_DAYS} days"

    # Retention of zero: every file no current version references goes; the current rows stay.
    result = _run(backend, 0)
    assert result.success
    assert len(_stored_parquet(lake, "processed/bars")) == lake.tables.file_count("processed/bars") == 2
    assert lake.read_partitions("processed", "bars").equals(expected)
    assert lake.read_dataset("processed", "symbol_master")["symbol"].to_list() == ["AAA", "BBB", "CCC"]
    with pytest.raises(Exception, match=r"(?i)not found|no such|does not exist|404"):
        lake.read_partitions("processed", "bars", as_of=0)


def test_uncommitted_files_of_a_failed_writer_are_vacuumed(backend: Backend) -> None:
    lake = backend.lake
    day = dt.date(2024, 1, 2)
    lake.write_partition("processed", "bars", _bars(day), day)
    orphan = "processed/bars/lake_year=2024/part-00000-orphan-of-a-killed-writer.parquet"
    lake.store.put_bytes(orphan, b"PAR1 never committed")
    report = maintenance.maintain_table(lake, "processed", "bars", retention_days=0)
    assert report.files_vacuumed == 1 and not lake.store.exists(orphan)
    assert lake.read_partitions("processed", "bars").equals(_bars(day))
    # Files a Delta vacuum would delete but that are not the table's: vacuum is skipped, and says why.
    old_layout = "processed/bars/date=2024-01-02/data.parquet"
    lake.store.put_bytes(old_layout, b"a file of the parquet layout, not migrated yet")
    report = maintenance.maintain_table(lake, "processed", "bars", retention_days=0)
    assert report.files_vacuumed == 0 and lake.store.exists(old_layout)
    assert report.vacuum_skipped and "date=2024-01-02/data.parquet" in report.vacuum_skipped
    assert "lakehouse migrate" in report.vacuum_skipped
    with pytest.raises(ValueError, match="retention_days must be >= 0"):
        maintenance.maintain_table(lake, "processed", "bars", retention_days=-1)


def test_maintenance_schedule_is_weekly_outside_trading_and_stopped_by_default() -> None:
    assert weekly_lakehouse_maintenance.cron_schedule == "0 5 * * 0"
    assert weekly_lakehouse_maintenance.default_status == dg.DefaultScheduleStatus.STOPPED
    assert weekly_lakehouse_maintenance.job_name == "lakehouse_maintenance"
    assert lakehouse_maintenance.tags["wealth/warehouse"] == "daily"
