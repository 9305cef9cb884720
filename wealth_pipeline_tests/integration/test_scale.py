"""Dagster bookkeeping at scale: batched event writes and the instance database's commit mode.

The oracle for "batched" is PostgreSQL's own transaction counter (``pg_stat_database.xact_commit``
of the instance database): the per-event path commits at least twice per asset-partition (the
planned event and the materialization, each with its index update), so a run of A assets x P
partitions that commits fewer than A x P transactions cannot have written them one at a time. The
same run without the tuning is measured too, so the counter is shown to see the per-event path.
"""


import contextlib
import itertools
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.cli_location import BACKFILL_STATUS, LAUNCH_BACKFILL
from wealth_pipeline.environment import REPO_ROOT, dagster_storage_url, with_database
from wealth_pipeline.settings import DAGSTER_TUNING, apply_dagster_tuning
from wealth_pipeline.warehouse.localpg import INSTANCE_DATABASE, LocalPostgres
from wealth_pipeline_tests.e2e.conftest import STARTUP_TIMEOUT, DagsterStack, Proc, _executable, free_port

pytestmark = pytest.mark.integration

SESSIONS = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_date="2020-03-01")  # 60 partitions
KEYS = SESSIONS.get_partition_keys()
RANGE_TAGS = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}


def _step(name: str, upstream: list[dg.AssetsDefinition], fail: bool) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=SESSIONS, deps=upstream, backfill_policy=dg.BackfillPolicy.single_run(),
              check_specs=[dg.AssetCheckSpec("window_ok", asset=name)])
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        if fail:
            raise RuntimeError("planned failure")
        return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)},
                                    check_results=[dg.AssetCheckResult(check_name="window_ok", passed=True)])

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
            # each materialization's partition and metadata, in storage-id order, and the asset's latest
            "events": {a.key: [(r.partition_key, r.asset_materialization.metadata["partitions"].value) for r in
                               instance.fetch_materializations(a.key, limit=10_000, ascending=True).records
                               if r.run_id == result.run_id]
                       for a in assets},
            # the run's check executions: (status, partition) of each record the instance keeps
            "checks": {a.key: [(r.status.value, r.partition) for r in storage.get_asset_check_execution_history(
                dg.AssetCheckKey(a.key, "window_ok"), limit=10_000) if r.run_id == result.run_id] for a in assets},
            "latest": {a.key: (lambda e: e and (e.run_id == result.run_id, e.dagster_event.partition))(
                instance.get_latest_materialization_event(a.key)) for a in assets},
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
        # one event per partition, stored in the run's order with the run's metadata; the latest is the last
        assert result["events"][key] == [(k, len(KEYS)) for k in KEYS], key
        assert result["latest"][key] == (True, KEYS[-1]), key
        # the check judged the run's window once: one record, evaluated (no planned row per partition left)
        assert result["checks"][key] == [("SUCCEEDED", None)], key


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
    assert result["checks"][assets[0].key] == [("SUCCEEDED", None)]
    assert result["checks"][assets[2].key] == [("PLANNED", None)], "planned, never evaluated: the step failed"


def test_no_check_of_the_project_is_partitioned() -> None:
    """The event storage writes one planned row per check and run (``instance_storage``): right only
    while every check judges a run's window rather than one partition."""
    from wealth_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.asset_check_keys
    assert [k for k in graph.asset_check_keys if graph.get(k).partitions_def is not None] == []


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


# ---- scale-out backfills: chunks as concurrent runs equal one single run --------------------------
ANALYTICS = "group:ingest or group:processed or group:analytics"
# bookkeeping: when and by which run a row was written (known_at/superseded_at: the knowledge time of a
# factor version, the wall clock of its load)
EXCLUDED_COLUMNS = {"loaded_at", "run_id", "updated_at", "created_at", "ingested_at", "known_at", "superseded_at"}


def _table_checksums(url: str) -> dict[str, tuple[int, str]]:
    """(rows, md5 of the sorted rows) of every table in the data schemas, bookkeeping columns left out."""
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema IN ('ref', 'market', 'analytics') ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            columns = [c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "ORDER BY ordinal_position", (schema, table)).fetchall() if c not in EXCLUDED_COLUMNS]
            row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
            count, digest = conn.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg({r}, '|' ORDER BY {r}), '')) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table), r=row)).fetchone()
            out[f"{schema}.{table}"] = (int(count), digest)
    return out


def _fresh_database(server_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def test_backfill_chunk_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from wealth_pipeline.defs.partitions import daily_backfill_policy

    monkeypatch.delenv("WEALTH_BACKFILL_CHUNK_SESSIONS", raising=False)
    assert daily_backfill_policy().max_partitions_per_run is None  # single run
    monkeypatch.setenv("WEALTH_BACKFILL_CHUNK_SESSIONS", "252")
    assert daily_backfill_policy().max_partitions_per_run == 252
    monkeypatch.setenv("WEALTH_BACKFILL_CHUNK_SESSIONS", "a year")
    with pytest.raises(ValueError, match="WEALTH_BACKFILL_CHUNK_SESSIONS='a year'"):
        daily_backfill_policy()


BACKFILL_RUNS = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId status startTime endTime tags { key value } assetSelection { path } } }
  ... on PythonError { message } } }"""


@contextlib.contextmanager
def _daemon_stack(server_url: str, warehouse_url: str, lake: Path, home: Path, chunk: int) -> Iterator[DagsterStack]:
    """``dagster-webserver`` + ``dagster-daemon`` (the real run queue) with backfills in chunks of ``chunk`` sessions."""
    dagster_url = _fresh_database(server_url)
    (home / "dagster_home").mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEALTH_", "DAGSTER_"))}
    env.update({
        "DAGSTER_HOME": str(home / "dagster_home"), "WEALTH_HOME": str(home / "wealth_home"),
        "WEALTH_DATABASE_URL": warehouse_url, "WEALTH_DAGSTER_DATABASE_URL": dagster_storage_url(dagster_url),
        "WEALTH_LAKEHOUSE_URI": str(lake), "WEALTH_PROVIDER": "synthetic", "WEALTH_SYNTHETIC_UNIVERSE": str(UNIVERSE),
        "WEALTH_BACKFILL_CHUNK_SESSIONS": str(chunk), "PYTHONUNBUFFERED": "1", **DAGSTER_TUNING,
    })
    port, workspace, logs = free_port(), str(REPO_ROOT / "workspace.yaml"), home / "logs"
    logs.mkdir()
    daemon = Proc("dagster-daemon", [_executable("dagster-daemon"), "run", "-w", workspace], logs / "daemon.log")
    webserver = Proc("dagster-webserver", [_executable("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                                           "-w", workspace], logs / "webserver.log")
    stack = DagsterStack(port, env, home, warehouse_url, dagster_url, home, daemon, webserver)
    try:
        webserver.start(env, REPO_ROOT)
        daemon.start(env, REPO_ROOT)

        def server_up() -> bool:
            try:
                return httpx.get(f"{stack.base_url}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        stack.wait_for("the webserver", server_up, STARTUP_TIMEOUT)
        stack.wait_for("the daemons' heartbeats", stack.daemons_healthy, STARTUP_TIMEOUT)
        # What runs by default launches no run (run_failure_alert only posts a failure), so it stays on.
        yield stack
    finally:
        for proc in (webserver, daemon):
            proc.kill()


def _timeline(stack: DagsterStack, backfill_id: str) -> list[dict[str, object]]:
    data = stack.graphql(BACKFILL_RUNS, {"filter": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}})
    runs = data["runsOrError"]["results"]
    return [{"id": r["runId"], "status": r["status"], "start": r["startTime"], "end": r["endTime"],
             "first": next(t["value"] for t in r["tags"] if t["key"] == "dagster/asset_partition_range_start"),
             "last": next(t["value"] for t in r["tags"] if t["key"] == "dagster/asset_partition_range_end"),
             "assets": {"/".join(a["path"]) for a in r["assetSelection"] or []}} for r in runs]


UNIVERSE = 12


@pytest.mark.timeout(2400)  # about 8 runs, each a process that loads the code location, on a shared 2-core box
def test_a_two_chunk_daemon_backfill_runs_concurrently_in_warmup_order_and_equals_one_single_run(
    pg_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks as concurrent runs on the real run queue (webserver + daemon, QueuedRunCoordinator).

    The warm-up partition mappings (``datasets.warmup``) make the daemon launch a chunk of an
    asset only once the partitions its warm-up reads are materialized, so the chunks are
    independent runs and the result equals the single-run backfill, table by table.
    """
    from wealth_pipeline.cli import materialize_range
    from wealth_pipeline.definitions import build_definitions
    from wealth_pipeline.defs.partitions import trading_sessions
    from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
    from wealth_pipeline.lakehouse.resource import LakehouseResource
    from wealth_pipeline.warehouse import migrate

    monkeypatch.delenv("WEALTH_BACKFILL_CHUNK_SESSIONS", raising=False)
    start, end = "2024-03-01", "2024-04-30"
    keys = trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    half = (len(keys) + 1) // 2

    def definitions(url: str, lake: Path) -> dg.Definitions:
        return build_definitions({"warehouse": WarehouseResource(url=url), "lakehouse": LakehouseResource(uri=str(lake)),
                                  "market_data": MarketDataResource(synthetic_universe=UNIVERSE)})

    single_url, chunked_url = _fresh_database(pg_server_url), _fresh_database(pg_server_url)
    for url in (single_url, chunked_url):
        migrate.upgrade(url)
    runs = materialize_range(start, end, ANALYTICS, progress=False, definitions=definitions(single_url, tmp_path / "single"),
                             instance=dg.DagsterInstance.ephemeral())["runs"]
    assert [r["stage"] for r in runs] == ["reference", "sessions"] and all(r["success"] for r in runs)

    chunked = definitions(chunked_url, tmp_path / "chunked")
    graph = chunked.resolve_asset_graph()
    selected = dg.AssetSelection.from_string(ANALYTICS).resolve(graph)
    unpartitioned = [k for k in selected if graph.get(k).partitions_def is None]
    partitioned = sorted(k.to_user_string() for k in selected if graph.get(k).partitions_def is not None)
    materialize_range(start, end, dg.AssetSelection.assets(*unpartitioned), progress=False, definitions=chunked,
                      instance=dg.DagsterInstance.ephemeral())

    with _daemon_stack(pg_server_url, chunked_url, tmp_path / "chunked", tmp_path / "stack", half) as stack:
        # Each asset's range exactly (partitionNames would make Dagster target, downstream of the
        # roots' range, the child partitions after it that read it through the warm-up mappings).
        params = {"partitionsByAssets": [{"assetKey": {"path": [a]}, "partitions": {"range": {"start": keys[0], "end": keys[-1]}}}
                                         for a in partitioned], "title": "two chunks"}
        result = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        backfill_id = result["backfillId"]

        def finished() -> dict | None:
            data = stack.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            return data if data["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

        final = stack.wait_for(f"backfill {backfill_id}", finished, 2100, interval=2)
        timeline = _timeline(stack, backfill_id)
        assert final["status"] == "COMPLETED_SUCCESS", (final, [(r["id"], r["status"]) for r in timeline],
                                                        "\n".join(stack.run_errors(r["id"]) for r in timeline
                                                                  if r["status"] != "SUCCESS"))

    chunks = [(keys[0], keys[half - 1]), (keys[half], keys[-1])]
    assert all(r["status"] == "SUCCESS" for r in timeline)
    # Each asset ran as one run per chunk, never over both chunks at once.
    for asset in partitioned:
        ranges = sorted((r["first"], r["last"]) for r in timeline if asset in r["assets"])
        assert ranges == chunks, (asset, ranges)
    # The run queue ran chunks side by side: two runs were executing at the same moment.
    spans = sorted((r["start"], r["end"]) for r in timeline)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans)), spans

    # Warm-up order: a run holding the second chunk of a dataset started after every run holding the
    # first chunk of what its warm-up reads had ended (bars before indicators and exposures, indicators
    # before their own next chunk).
    def ended(asset: str, chunk: tuple[str, str]) -> float:
        return max(r["end"] for r in timeline if asset in r["assets"] and (r["first"], r["last"]) == chunk)

    for asset, upstream in (("bars", "raw_bars"), ("indicators", "bars"), ("indicators", "indicators"),
                            ("factor_exposures", "bars"), ("factor_exposures", "factor_returns")):
        later = next(r for r in timeline if asset in r["assets"] and (r["first"], r["last"]) == chunks[1])
        assert later["start"] >= ended(upstream, chunks[0]), (asset, upstream, timeline)

    expected, got = _table_checksums(single_url), _table_checksums(chunked_url)
    assert expected["market.bars_daily"][0] > 0 and expected["analytics.indicators_daily"][0] > 0
    assert expected["analytics.factor_exposures"][0] > 0
    assert got == expected
