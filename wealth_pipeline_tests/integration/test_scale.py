"""Dagster bookkeeping at scale: batched event writes and the instance database's commit mode.

The oracle for "batched" is PostgreSQL's own transaction counter (``pg_stat_database.xact_commit``
of the instance database): the per-event path commits at least twice per asset-partition (the
planned event and the materialization, each with its index update), so a run of A assets x P
partitions that commits fewer than A x P transactions cannot have written them one at a time. The
same run without the tuning is measured too, so the counter is shown to see the per-event path.
"""


import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from wealth_pipeline.environment import REPO_ROOT, dagster_storage_url
from wealth_pipeline.settings import DAGSTER_TUNING, apply_dagster_tuning
from wealth_pipeline.warehouse.localpg import INSTANCE_DATABASE, LocalPostgres

pytestmark = pytest.mark.integration

SESSIONS = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_date="2020-03-01")  # 60 partitions
KEYS = SESSIONS.get_partition_keys()
RANGE_TAGS = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}


def _step(name: str, upstream: list[dg.AssetsDefinition], fail: bool) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=SESSIONS, deps=upstream, backfill_policy=dg.BackfillPolicy.single_run())
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        if fail:
            raise RuntimeError("planned failure")
        return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})

    return _asset


def _chain(fail_last: bool = False) -> list[dg.AssetsDefinition]:
    out: list[dg.AssetsDefinition] = []
    for i, name in enumerate(("first", "second", "third")):
        out.append(_step(name, out[-1:], fail_last and i == 2))
    return out


def _commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0])


def _run(url: str, home: Path, assets: list[dg.AssetsDefinition]) -> dict[str, object]:
    """Execute the chain as one single-run backfill; what the instance then holds, and its commits."""
    job = dg.define_asset_job("chain", selection=dg.AssetSelection.assets(*assets))
    defs = dg.Definitions(assets=assets, jobs=[job], executor=dg.in_process_executor)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        time.sleep(1.2)  # backends that set the instance up have exited and flushed their counters
        before = _commits(url)
        result = defs.resolve_job_def("chain").execute_in_process(instance=instance, tags=RANGE_TAGS, raise_on_error=False)
        time.sleep(1.2)
        committed = _commits(url) - before
        storage = instance.event_log_storage
        return {
            "success": result.success,
            "commits": committed,
            "materialized": {a.key: instance.get_materialized_partitions(a.key) for a in assets},
            # partitions planned by a run and never materialized (what the UI shows as failed/in progress)
            "missing": {a.key: set(storage.get_latest_asset_partition_materialization_attempts_without_materializations(a.key))
                        for a in assets},
        }


@pytest.fixture
def project_home(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster home with the project's dagster.yaml on a fresh database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("WEALTH_DAGSTER_DATABASE_URL", dagster_storage_url(pg_url))
    for name in DAGSTER_TUNING:
        monkeypatch.delenv(name, raising=False)
    return home


def test_the_project_tuning_writes_a_many_partition_run_in_few_transactions(
    project_home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset_partitions = 3 * len(KEYS)
    reference = _run(pg_url, project_home, _chain())
    assert reference["success"]
    assert reference["commits"] >= 2 * asset_partitions, "the reference run writes every event in its own transactions"

    applied = apply_dagster_tuning()
    assert applied == DAGSTER_TUNING
    result = _run(pg_url, project_home, _chain())
    assert result["success"]
    assert result["commits"] < asset_partitions, f"{result['commits']} transactions for {asset_partitions} asset-partitions"
    # Nothing is lost by batching: every partition of every asset is recorded as materialized.
    for key, partitions in result["materialized"].items():
        assert partitions == set(KEYS), key
        assert result["missing"][key] == set()


def test_a_failed_batched_run_still_marks_each_planned_partition(project_home: Path, pg_url: str) -> None:
    """Planned events stay per partition, so the failed asset's partitions show as failed attempts."""
    apply_dagster_tuning()
    assets = _chain(fail_last=True)
    result = _run(pg_url, project_home, assets)
    assert not result["success"]
    assert result["materialized"][assets[0].key] == set(KEYS)
    assert result["missing"][assets[0].key] == set()
    assert result["missing"][assets[2].key] == set(KEYS)
    assert result["materialized"][assets[2].key] == set()


def test_an_existing_batch_size_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "250")
    assert apply_dagster_tuning() == {"DAGSTER_EVENT_BATCH_SIZE": "250"}


def test_local_cluster_instance_database_commits_asynchronously_warehouse_durably() -> None:
    folder = Path(tempfile.mkdtemp(prefix="wealth-scale-pg-"))
    folder.chmod(0o755)
    cluster = LocalPostgres(folder / "pg")
    cluster.start()
    try:
        settings = {}
        for name in (INSTANCE_DATABASE, "warehouse"):
            url = cluster.ensure_database(name)
            with psycopg.connect(url) as conn:
                settings[name] = conn.execute("SHOW synchronous_commit").fetchone()[0]
        assert settings == {INSTANCE_DATABASE: "off", "warehouse": "on"}
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
