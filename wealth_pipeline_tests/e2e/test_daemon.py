"""The automation through the real processes: schedule ticks, the landing sensor, backfills, a daemon crash.

Everything goes through the webserver's GraphQL API; runs are queued (QueuedRunCoordinator) and
launched by the real ``dagster-daemon``; results are read back from the warehouse database.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from wealth_pipeline.cli_location import BACKFILL_STATUS, LAUNCH_BACKFILL
from wealth_pipeline_tests.e2e.conftest import IN_PROCESS, REPO, DagsterStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NY = ZoneInfo("America/New_York")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"

SCHEDULE_DRY_RUN = """
mutation Dry($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick { evaluationResult { skipReason error { message }
        runRequests { runKey jobName tags { key value } runConfigYaml } } }
    ... on PythonError { message stack }
    ... on ScheduleNotFoundError { message }
  }
}"""

START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on PythonError { message stack }
  }
}"""

SENSOR_STATE = """
query S($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status typeSpecificData { ... on SensorData { lastCursor } }
        ticks(limit: 20) { tickId status timestamp runIds skipReason error { message } } } }
  }
}"""

MATERIALIZED_PARTITIONS = """
query P($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { assetPartitionStatuses { __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } } } }
  }
}"""


def _schedule_tick(stack: DagsterStack, day: dt.date) -> dict:
    """A dry-run tick of ``daily_after_close`` at 18:30 New York on ``day``, evaluated by the code server."""
    when = dt.datetime.combine(day, dt.time(18, 30), tzinfo=NY).timestamp()
    result = stack.graphql(
        SCHEDULE_DRY_RUN, {"selector": {**REPO, "scheduleName": "daily_after_close"}, "timestamp": when}
    )["scheduleDryRun"]
    assert result["__typename"] == "DryRunInstigationTick", result
    evaluation = result["evaluationResult"]
    assert evaluation["error"] is None, evaluation["error"]
    return evaluation


def _materialized_ranges(stack: DagsterStack, asset: str) -> list[tuple[str, str]]:
    data = stack.graphql(MATERIALIZED_PARTITIONS, {"key": {"path": [asset]}})["assetNodeOrError"]
    assert data["__typename"] == "AssetNode", data
    return [
        (r["startKey"], r["endKey"])
        for r in data["assetPartitionStatuses"]["ranges"]
        if r["status"] == "MATERIALIZED"
    ]


def _covered(ranges: list[tuple[str, str]], day: str) -> bool:
    return any(start <= day <= end for start, end in ranges)


def _next_weekday(key: str) -> str:
    day = dt.date.fromisoformat(key) + dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day.isoformat()


def _backfill(stack: DagsterStack, assets: list[str], partitions: list[str], title: str) -> str:
    # Each asset's ranges exactly, as the CLI submits them (cli_location.launch_backfill): from
    # partitionNames Dagster would also target bars' partitions after them that read them (warm-up).
    keys = sorted(partitions)
    ranges, start = [], keys[0]
    for i in range(1, len(keys)):
        if _next_weekday(keys[i - 1]) != keys[i]:
            ranges.append({"start": start, "end": keys[i - 1]})
            start = keys[i]
    ranges.append({"start": start, "end": keys[-1]})
    params = {
        "partitionsByAssets": [{"assetKey": {"path": [a]}, "partitions": {"ranges": ranges}} for a in assets],
        "title": title,
        "runConfigData": IN_PROCESS,
    }
    result = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def _wait_backfill(stack: DagsterStack, backfill_id: str, timeout: float = 360.0) -> dict:
    def done() -> dict | None:
        data = stack.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert data["__typename"] == "PartitionBackfill", data
        return data if data["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    return stack.wait_for(f"backfill {backfill_id} to finish", done, timeout)


def _listed(day: dt.date) -> int:
    """How many securities of the stack's 12-name synthetic universe are listed on ``day``.

    The synthetic market plants lifecycle events by default (#21: GEHC is delisted on 2024-03-15),
    so the expected bar count comes from its own symbol master, not a constant.
    """
    import polars as pl

    from wealth_pipeline.providers.synthetic import SyntheticMarket

    master = SyntheticMarket(universe_size=12).symbol_master()
    return master.filter(
        (pl.col("valid_from") <= day) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > day))
    ).height


def _bars_sessions(stack: DagsterStack, symbols: tuple[str, ...] = ()) -> dict[dt.date, int]:
    rows = stack.query(
        "SELECT session_date, count(*) FROM market.bars_daily "
        + ("WHERE symbol = ANY(%s) " if symbols else "")
        + "GROUP BY 1 ORDER BY 1",
        (list(symbols),) if symbols else (),
    )
    return dict(rows)


def test_schedule_tick_queues_a_run_the_daemon_completes_and_skips_a_closed_market(
    dagster_stack: DagsterStack,
) -> None:
    stack = dagster_stack
    evaluation = _schedule_tick(stack, dt.date(2024, 7, 2))
    [request] = evaluation["runRequests"]
    tags = {t["key"]: t["value"] for t in request["tags"]}
    assert request["runKey"] == "2024-07-02" and request["jobName"] in (
        None,
        "daily_session",
    )  # None: the schedule's job
    assert tags["dagster/partition"] == "2024-07-02" and tags["wealth/open_exchanges"] == "NASDAQ,NYSE,TSX"

    run_id = stack.launch("daily_session", tags)
    # QueuedRunCoordinator: the webserver only queues; the daemon dequeues and launches it.
    assert stack.run_status(run_id) in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "SUCCESS")
    stack.wait_for_run(run_id, timeout=360)
    run = next(r for r in stack.runs(job="daily_session") if r["runId"] == run_id)
    assert run["tags"]["dagster/partition"] == "2024-07-02"

    # The partition's rows are in the warehouse: every security of the 12-name synthetic universe
    # listed that day, and nothing from another session.
    assert _bars_sessions(stack) == {dt.date(2024, 7, 2): _listed(dt.date(2024, 7, 2))}
    assert _covered(_materialized_ranges(stack, "bars"), "2024-07-02")

    christmas = _schedule_tick(stack, dt.date(2024, 12, 25))
    assert christmas["runRequests"] == []
    assert "2024-12-25" in christmas["skipReason"] and "market closed" in christmas["skipReason"]


@pytest.fixture(scope="module")
def symbol_master(dagster_stack: DagsterStack) -> None:
    """The universe (unpartitioned) that every daily asset reads, materialized once through the API."""
    if dagster_stack.materialized("symbol_master"):
        return
    run_id = dagster_stack.launch("__ASSET_JOB", {}, assets=["symbol_master"])
    dagster_stack.wait_for_run(run_id, timeout=150)


BACKFILL_ASSETS = ["raw_bars", "raw_corporate_actions", "corporate_actions", "bars"]


def _ranges(runs: list[dict]) -> list[tuple[str, str]]:
    return sorted((r["tags"][RANGE_START], r["tags"][RANGE_END]) for r in runs)


def test_backfill_through_graphql_is_one_run_per_range_and_survives_a_daemon_crash(
    dagster_stack: DagsterStack, symbol_master: None
) -> None:
    """One backfill (about 140 s less than two on the loaded 2-core CI box, each paying a run's code
    load and the backfill daemon's 30 s loops): five consecutive sessions are ONE run (single-run
    policy), a separate block is its own run, and a daemon killed mid-backfill is restarted
    without duplicate runs."""
    stack = dagster_stack
    # Two separate blocks of sessions: single-run policy gives one run per contiguous range, two runs.
    first, second = (
        ["2024-06-17", "2024-06-18"],
        ["2024-07-08", "2024-07-09", "2024-07-10", "2024-07-11", "2024-07-12"],
    )
    backfill_id = _backfill(stack, BACKFILL_ASSETS, first + second, "e2e daemon crash")
    stack.wait_for(
        f"the daemon to launch a first run of backfill {backfill_id}",
        lambda: stack.runs(tags={BACKFILL_TAG: backfill_id}),
        90,
    )
    stack.crash_daemon()
    status = stack.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
    assert status == "REQUESTED", (
        f"the backfill finished before the daemon was killed ({status}); nothing was tested"
    )
    stack.start_daemon()
    stack.wait_for("the restarted daemon's heartbeats", stack.daemons_healthy, 120)

    final = _wait_backfill(stack, backfill_id)
    assert final["status"] == "COMPLETED_SUCCESS", final
    runs = stack.runs(tags={BACKFILL_TAG: backfill_id})
    # No duplicate: exactly one run per contiguous range (the four assets over five sessions are one
    # run, tagged with the range), each succeeded.
    assert _ranges(runs) == [("2024-06-17", "2024-06-18"), ("2024-07-08", "2024-07-12")], runs
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    for asset in BACKFILL_ASSETS:
        ranges = _materialized_ranges(stack, asset)
        assert all(_covered(ranges, day) for day in first + second), (asset, ranges)
    # The warehouse holds the securities listed on each session of both blocks.
    got = {d.isoformat(): n for d, n in _bars_sessions(stack).items()}
    expected = {day: _listed(dt.date.fromisoformat(day)) for day in first + second}
    assert {day: got.get(day) for day in first + second} == expected, got


def test_landing_sensor_requests_runs_for_exactly_the_files_sessions_once(
    dagster_stack: DagsterStack, symbol_master: None
) -> None:
    stack = dagster_stack
    selector = {**REPO, "sensorName": "landing_zone_sensor"}
    (stack.landing / "bars").mkdir(exist_ok=True)
    (stack.landing / "bars" / "2024-07-20T2200Z-e2e.csv").write_text(
        "symbol,session_date,open,high,low,close,volume,currency\n"
        "AAPL,2024-07-15,100,102,99,101,1000,USD\n"
        "AAPL,2024-07-16,101,103,100,102,1100,USD\n"
        "TD.TO,2024-07-15,80,81,79,80.5,500,CAD\n"
        "TD.TO,2024-07-16,80.5,82,80,81,600,CAD\n"
        "AAPL,2024-07-18,102,104,101,103,1200,USD\n"
    )
    # WEALTH_PROVIDER is synthetic in this stack, so the sensor's default status is STOPPED: start it
    # as an operator would. The daemon evaluates a started sensor on its next loop.
    started = stack.graphql(START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started

    def ticks() -> list[dict]:
        data = stack.graphql(SENSOR_STATE, {"selector": selector})["sensorOrError"]
        assert data["__typename"] == "Sensor", data
        return data["sensorState"]["ticks"]

    first = stack.wait_for(
        "the daemon's first landing_zone_sensor tick with runs",
        lambda: [t for t in ticks() if t["status"] == "SUCCESS"],
        120,
    )[-1]
    runs = [r for r in stack.runs(job="vendor_ingest") if r["runId"] in first["runIds"]]
    assert len(runs) == len(first["runIds"]) == 2, (first, runs)
    # Exactly the sessions of the file: a contiguous block (15-16 July) and a separate session (18 July).
    assert _ranges(runs) == [("2024-07-15", "2024-07-16"), ("2024-07-18", "2024-07-18")]
    assert {r["tags"]["wealth/landing_file"] for r in runs} == {"bars/2024-07-20T2200Z-e2e.csv"}
    # The daemon stores the cursor just after recording the tick: wait for it rather than race it.
    stored = stack.wait_for(
        "the sensor's cursor to be stored",
        lambda: stack.graphql(SENSOR_STATE, {"selector": selector})["sensorOrError"]["sensorState"][
            "typeSpecificData"
        ]["lastCursor"],
        60,
    )
    cursor = json.loads(stored)
    assert list(cursor) == ["bars/2024-07-20T2200Z-e2e.csv"]
    # The QueuedRunCoordinator daemon dequeues and launches them (one at a time: wealth/warehouse limit 1).
    # Checked while the sensor's 60 s minimum interval runs down, rather than after it.
    stack.wait_for(
        "the daemon to launch a sensor run",
        lambda: any(stack.run_status(r["runId"]) in ("STARTING", "STARTED", "SUCCESS") for r in runs),
        90,
    )
    _stop_sensor_runs(stack, [r["runId"] for r in runs])

    # The next evaluation (after the sensor's 60 s minimum interval) finds nothing new: no second run.
    later = stack.wait_for(
        "a second landing_zone_sensor tick",
        lambda: [
            t
            for t in ticks()
            if t["tickId"] != first["tickId"]
            and t["timestamp"] > first["timestamp"]
            and t["status"] in ("SKIPPED", "SUCCESS", "FAILURE")
        ],
        150,
    )
    assert all(t["status"] == "SKIPPED" and not t["runIds"] for t in later), later
    assert "no new or changed landing files" in later[0]["skipReason"]
    assert len(stack.runs(job="vendor_ingest")) == 2


def _stop_sensor_runs(stack: DagsterStack, run_ids: list[str]) -> None:
    """Stop the sensor's runs: ingestion of the file is covered by test_landing_zone.py."""
    stack.graphql(
        """mutation T($ids: [String!]!) { terminateRuns(runIds: $ids) { __typename } }""", {"ids": run_ids}
    )
    # A run already executing may finish its steps before it sees the termination: at load ~20 on the
    # 2-core box one ran to its last step (marts_dbt) and 180 s were not enough, hence 420 s.
    stack.wait_for(
        "the sensor's runs to stop",
        lambda: all(stack.run_status(i) in ("CANCELED", "SUCCESS", "FAILURE") for i in run_ids),
        420,
    )
