"""The nightly backup job, the ``latest_backup_restorable`` check, and a backup location on S3 (moto on loopback).

The check is run the way Dagster runs it (the ``backup_check`` job, in process, on a real instance)
against backups made by the real ``pg_dump`` of a migrated warehouse; the S3 round trip goes through
the ``wealth-pipeline`` commands the runbook gives, and the bucket is inspected with boto3 directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from wealth_pipeline import cli
from wealth_pipeline.defs.operations.backups import (
    BackupResource,
    backup_check_job,
    backup_job,
    backups_spec,
    latest_backup_restorable,
)
from wealth_pipeline.environment import with_database
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import open_store
from wealth_pipeline.operations.backup import create_backup, prune
from wealth_pipeline.operations.location import BackupLocation, object_key
from wealth_pipeline_tests.s3_server import create_bucket, s3_test_client

pytestmark = pytest.mark.integration

SECURITIES = [("AAA", "Alpha", "NYSE", "USD"), ("BBB", "Beta", "NASDAQ", "USD"), ("CCC", "Gamma", "TSX", "CAD")]


def _seed(url: str) -> list[tuple]:
    """A few reference rows in the migrated warehouse ``url``; returns them as read back."""
    with psycopg.connect(url) as conn:
        conn.cursor().executemany("INSERT INTO ref.securities (symbol, name, exchange, currency) VALUES (%s, %s, %s, %s)", SECURITIES)
    return _securities(url)


def _securities(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT symbol, name, exchange, currency FROM ref.securities ORDER BY symbol").fetchall()


def _drop(url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _run_check(location: Path, **resource: str) -> dg.AssetCheckEvaluation:
    """Run the ``backup_check`` job on a fresh instance; the one evaluation it records."""
    defs = dg.Definitions(assets=[backups_spec], asset_checks=[latest_backup_restorable], jobs=[backup_check_job],
                          resources={"backup": BackupResource(uri=str(location), **resource)})
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("backup_check").execute_in_process(instance=instance)
    assert result.success  # a failing ERROR check is a result, not a crash
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "latest_backup_restorable" and evaluation.asset_key == dg.AssetKey("backups")
    return evaluation


def test_latest_backup_restorable_passes_a_good_backup_and_fails_a_missing_corrupt_old_or_unreadable_one(
        migrated_pg_url: str, tmp_path: Path) -> None:
    _seed(migrated_pg_url)
    lake = open_store(str(tmp_path / "lake"))
    lake.put_bytes_if_absent("raw/bars/date=2024-07-01/v0001-abc.parquet", b"delivered bytes")
    backups = tmp_path / "backups"

    missing = _run_check(backups)
    assert not missing.passed and f"no complete backup in {backups}" in missing.description

    location = BackupLocation(str(backups))
    result = create_backup(location, migrated_pg_url, None, lake)
    good = _run_check(backups)
    assert good.passed, good.description
    assert good.description == f"backup {result.backup_id} verified"
    assert good.metadata["backup_id"].value == result.backup_id
    assert good.metadata["lakehouse_files"].value == 1
    assert good.metadata["warehouse_archive_entries"].value > 20  # pg_restore --list read the archive

    # Older than WEALTH_BACKUP_MAX_AGE_HOURS allows: the age is named.
    old = _run_check(backups, max_age_hours="0.0001")
    assert not old.passed and f"latest backup {result.backup_id} is" in old.description and "h old" in old.description

    # A flipped byte in the dump: its checksum no longer matches.
    dump = backups / result.backup_id / "warehouse.dump"
    original = dump.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    dump.write_bytes(bytes(flipped))
    corrupt = _run_check(backups)
    assert not corrupt.passed
    assert corrupt.description == "warehouse: warehouse.dump does not match its checksum in the manifest"

    # Bytes that match the manifest but are no archive: pg_restore itself refuses them.
    dump.write_bytes(b"not a pg_dump archive")
    manifest = location.read_manifest(result.backup_id)
    manifest["databases"]["warehouse"]["file_sha256"] = hashlib.sha256(b"not a pg_dump archive").hexdigest()
    location.write_manifest(result.backup_id, manifest)
    unreadable = _run_check(backups)
    assert not unreadable.passed and unreadable.description.startswith("warehouse: pg_restore failed")

    # The dump deleted, and a lakehouse object the backup references gone.
    dump.unlink()
    (backups / object_key(hashlib.sha256(b"delivered bytes").hexdigest())).unlink()
    gone = _run_check(backups)
    assert not gone.passed
    assert f"warehouse: {dump} is missing" in gone.description
    assert "lakehouse: 1 object(s) the backup references are missing" in gone.description


def test_the_backup_job_backs_up_prunes_and_checks_and_refuses_bad_settings_without_retry(
        migrated_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _seed(migrated_pg_url)
    for name, value in {"WEALTH_HOME": str(tmp_path / "wealth"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
                        "WEALTH_DATABASE_URL": migrated_pg_url, "WEALTH_DAGSTER_DATABASE_URL": migrated_pg_url}.items():
        monkeypatch.setenv(name, value)
    backups = tmp_path / "backups"
    stale = create_backup(BackupLocation(str(backups)), migrated_pg_url, None, None, now=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))

    def job_defs(**resource: str) -> dg.Definitions:
        return dg.Definitions(jobs=[backup_job], assets=[backups_spec], resources={
            "lakehouse": LakehouseResource(uri=str(tmp_path / "lake")),
            "backup": BackupResource(uri=str(backups), **resource)})

    with dg.instance_for_test() as instance:
        result = job_defs(retention="1d,0w").resolve_job_def("backup_job").execute_in_process(instance=instance)
        assert result.success
        (materialization,) = result.asset_materializations_for_node("take_backup")
        (evaluation,) = result.get_asset_check_evaluations()
        record = instance.get_latest_materialization_event(dg.AssetKey("backups"))
    meta = {k: v.value for k, v in materialization.metadata.items()}
    new_id = result.output_for_node("take_backup")["backup_id"]
    tables = BackupLocation(str(backups)).read_manifest(new_id)["databases"]["warehouse"]["tables"]
    assert meta["backup_id"] == new_id and meta["dropped"] == stale.backup_id
    assert tables["ref.securities"]["rows"] == len(rows) and meta["warehouse_rows"] == sum(t["rows"] for t in tables.values())
    assert evaluation.passed and record is not None
    assert BackupLocation(str(backups)).backup_ids() == [new_id]  # 1 daily, 0 weekly: only the newest is kept
    assert not (backups / stale.backup_id).exists()

    with dg.instance_for_test() as instance:
        bad = job_defs(retention="7 days").resolve_job_def("backup_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not bad.success
    (failure,) = [e for e in bad.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert "WEALTH_BACKUP_RETENTION='7 days' is not of the form '<N>d,<M>w'" in error.message
    assert failure.step_failure_data.user_failure_data is not None  # a dg.Failure, not a crash
    assert BackupLocation(str(backups)).backup_ids() == [new_id]  # nothing written by the refused run


def test_backup_to_s3_lists_prunes_and_restores_from_the_bucket(
        migrated_pg_url: str, s3_endpoint_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = _seed(migrated_pg_url)
    bucket = create_bucket(s3_endpoint_url)
    uri = f"s3://{bucket}/backups"
    s3 = s3_test_client(s3_endpoint_url)
    lake_root = tmp_path / "lake"
    lake = open_store(str(lake_root))
    lake.put_bytes_if_absent("raw/bars/date=2024-07-01/v0001-aaa.parquet", b"day one")
    lake.put_bytes("processed/bars/date=2024-07-01/part-0.parquet", b"processed one")
    location = BackupLocation(uri, s3_endpoint_url)

    def keys(prefix: str = "backups/") -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", ())}

    # Three backups on Mon 2024-07-01, Tue 07-02 (ISO week 27) and Tue 07-09 (week 28); the processed
    # file of the first is replaced before the second, so only the first references its bytes.
    first = create_backup(location, migrated_pg_url, None, lake, now=dt.datetime(2024, 7, 1, 23, tzinfo=dt.UTC))
    lake.put_bytes("processed/bars/date=2024-07-01/part-0.parquet", b"processed one, corrected")
    second = create_backup(location, migrated_pg_url, None, lake, now=dt.datetime(2024, 7, 2, 23, tzinfo=dt.UTC))
    third = create_backup(location, migrated_pg_url, None, lake, now=dt.datetime(2024, 7, 9, 23, tzinfo=dt.UTC))
    ids = [first.backup_id, second.backup_id, third.backup_id]
    assert ids == ["20240701T230000Z", "20240702T230000Z", "20240709T230000Z"]
    assert location.backup_ids() == ids
    assert {f"backups/{i}/{n}" for i in ids for n in ("manifest.json", "warehouse.dump")} <= keys()
    only_first = f"backups/{object_key(hashlib.sha256(b'processed one').hexdigest())}"
    assert only_first in keys()

    # Keep 1 daily and 2 weekly: the newest day (07-09) and the newest of weeks 28 and 27 (07-09, 07-02).
    pruned = prune(location, keep_daily=1, keep_weekly=2)
    assert pruned["kept"] == ids[1:] and pruned["dropped"] == ids[:1] and pruned["objects_removed"] == 1
    assert not any(k.startswith(f"backups/{ids[0]}/") for k in keys()) and only_first not in keys()
    assert location.backup_ids() == ids[1:]

    # Lose the warehouse and the lakehouse; restore the latest backup from the bucket with the command.
    _drop(migrated_pg_url)
    for path in sorted(lake_root.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    target_dagster = with_database(migrated_pg_url, f"d_{uuid.uuid4().hex[:10]}")  # not in the backup: left alone
    for name, value in {"WEALTH_HOME": str(tmp_path / "wealth"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
                        "WEALTH_DATABASE_URL": migrated_pg_url,
                        "WEALTH_DAGSTER_DATABASE_URL": target_dagster, "WEALTH_LAKEHOUSE_URI": str(lake_root),
                        "WEALTH_S3_ENDPOINT_URL": s3_endpoint_url}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert cli.main(["restore", uri, "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{"):])
    assert report["backup_id"] == third.backup_id and report["verified"] and report["checks"]["lakehouse"] == "identical"
    assert _securities(migrated_pg_url) == rows
    assert {p.relative_to(lake_root).as_posix(): p.read_bytes() for p in lake_root.rglob("*") if p.is_file()} == {
        "raw/bars/date=2024-07-01/v0001-aaa.parquet": b"day one",
        "processed/bars/date=2024-07-01/part-0.parquet": b"processed one, corrected",
    }

    # A named backup that retention removed is refused with what is available.
    assert cli.main(["restore", f"{uri}/{ids[0]}", "--force"]) == 2
    err = capsys.readouterr().err
    assert f"no complete backup {ids[0]} in s3://{bucket}/backups" in err and ids[1] in err
