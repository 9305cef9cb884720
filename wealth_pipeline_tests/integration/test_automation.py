"""Schedules, sensors and alerts, evaluated with Dagster's own contexts (backfill submission: e2e/test_cli_location.py)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import typing
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from wealth_pipeline.definitions import defs
from wealth_pipeline.defs.automation.alerts import run_failure_alert
from wealth_pipeline.defs.automation.landing_sensor import contiguous_blocks
from wealth_pipeline.defs.resources import AlertsResource, MarketDataResource

NY = ZoneInfo("America/New_York")


def _tick(day: dt.date) -> dg.ScheduleExecutionData:
    schedule = defs.resolve_schedule_def("daily_after_close")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, repository_def=defs.get_repository_def(),
            scheduled_execution_time=dt.datetime.combine(day, dt.time(18, 30), tzinfo=NY),
        )
        return schedule.evaluate_tick(context)


def test_daily_schedule_runs_each_session_after_the_close() -> None:
    schedule = defs.resolve_schedule_def("daily_after_close")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 18 * * 1-5", "America/New_York")
    # Off by default: on the demo's state it would materialize today's session on demo data.
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    result = _tick(dt.date(2024, 7, 2))
    [request] = result.run_requests
    assert request.partition_key == "2024-07-02" and request.run_key == "2024-07-02"
    assert request.tags["wealth/open_exchanges"] == "NASDAQ,NYSE,TSX"


def test_daily_schedule_on_a_us_holiday_still_runs_for_tsx_and_skips_a_day_closed_everywhere() -> None:
    [july4] = _tick(dt.date(2024, 7, 4)).run_requests
    assert july4.tags["wealth/open_exchanges"] == "TSX"
    christmas = _tick(dt.date(2024, 12, 25))
    assert not christmas.run_requests
    assert "market closed" in christmas.skip_message and "2024-12-25" in christmas.skip_message


def test_jobs_cover_the_daily_graph_and_what_depends_on_vendor_files() -> None:
    daily = {k.to_user_string() for k in defs.resolve_job_def("daily_session").asset_layer.executable_asset_keys}
    assert {"symbol_master", "raw_bars", "bars", "fx_rates", "indicators", "factor_exposures"} <= daily
    vendor = {k.to_user_string() for k in defs.resolve_job_def("vendor_ingest").asset_layer.executable_asset_keys}
    assert {"raw_bars", "raw_fx_rates", "bars", "fx_rates", "indicators"} <= vendor
    assert "raw_factor_returns" not in vendor and "raw_benchmark_returns" not in vendor


def test_contiguous_blocks_bridge_weekends_but_not_gaps() -> None:
    d = dt.date
    assert contiguous_blocks([d(2024, 7, 5), d(2024, 7, 8), d(2024, 7, 9), d(2024, 7, 11)]) == [
        (d(2024, 7, 5), d(2024, 7, 9)), (d(2024, 7, 11), d(2024, 7, 11))]


def _landing_sensor_eval(instance: dg.DagsterInstance, cursor: str | None, landing: Path) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("landing_zone_sensor")
    # The landing zone reaches the sensor through the market_data resource (WEALTH_LANDING_URI).
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"market_data": MarketDataResource(landing_uri=str(landing))})
    return sensor.evaluate_tick(context)


def test_landing_sensor_requests_exactly_the_touched_partitions_once(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "bars").mkdir(parents=True)
    assert defs.resolve_sensor_def("landing_zone_sensor").default_status == dg.DefaultSensorStatus.STOPPED
    header = "symbol,session_date,open,high,low,close,volume,currency\n"
    (landing / "bars" / "a.csv").write_text(header + "AAPL,2024-07-01,1,1,1,1,1,USD\nAAPL,2024-07-02,1,1,1,1,1,USD\n"
                                            "AAPL,2024-07-10,1,1,1,1,1,USD\n")
    with dg.instance_for_test() as instance:
        first = _landing_sensor_eval(instance, None, landing)
        ranges = sorted((r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                        for r in first.run_requests)
        assert ranges == [("2024-07-01", "2024-07-02"), ("2024-07-10", "2024-07-10")]
        assert all(r.tags["wealth/landing_file"] == "bars/a.csv" for r in first.run_requests)
        # The cursor is what the daemon stores: evaluating again with it (as after a restart) requests nothing.
        again = _landing_sensor_eval(instance, first.cursor, landing)
        assert again.run_requests == [] and "no new or changed" in again.skip_message
        # A changed file is picked up, with a new run key.
        (landing / "bars" / "a.csv").write_text(header + "AAPL,2024-07-03,1,1,1,1,1,USD\n")
        changed = _landing_sensor_eval(instance, again.cursor, landing)
        [request] = changed.run_requests
        assert request.tags["dagster/asset_partition_range_start"] == "2024-07-03"
        assert request.run_key not in {r.run_key for r in first.run_requests}
        assert json.loads(changed.cursor)["bars/a.csv"]


def test_landing_sensor_reads_gzip_csv_and_logs_an_unknown_file(tmp_path: Path) -> None:
    """Issue 14: a .csv.gz was invisible to the sensor; now it is read, and any other file is named."""
    import gzip

    landing = tmp_path / "landing"
    (landing / "bars").mkdir(parents=True)
    header = "symbol,session_date,open,high,low,close,volume,currency\n"
    (landing / "bars" / "b.csv.gz").write_bytes(gzip.compress((header + "AAPL,2024-07-08,1,1,1,1,1,USD\n").encode()))
    (landing / "bars" / "c.xlsx").write_bytes(b"PK\x03\x04")
    with dg.instance_for_test() as instance:
        result = _landing_sensor_eval(instance, None, landing)
        [request] = result.run_requests
        assert request.tags["wealth/landing_file"] == "bars/b.csv.gz"
        assert request.tags["dagster/asset_partition_range_start"] == "2024-07-08"
        assert set(json.loads(result.cursor)) == {"bars/b.csv.gz", "bars/c.xlsx"}  # seen once, not retried


class _Hook(BaseHTTPRequestHandler):
    received: typing.ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    finally:
        server.shutdown()


@dg.asset
def breaks() -> None:
    raise ValueError("vendor file truncated at line 12")


def test_run_failure_alert_posts_run_step_and_error(webhook: str) -> None:
    assert defs.resolve_sensor_def("run_failure_alert").default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        result = dg.materialize([breaks], instance=instance, raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_instance=instance, dagster_run=run, dagster_event=failure,
        ).for_run_failure()
        # The webhook reaches the sensor through the alerts resource (WEALTH_ALERT_WEBHOOK_URL).
        run_failure_alert(context, alerts=AlertsResource(webhook_url=webhook))
    [alert] = _Hook.received
    assert alert["run_id"] == result.run_id
    assert alert["failed_steps"][0]["step"] == "breaks"
    assert "vendor file truncated at line 12" in alert["failed_steps"][0]["error"]
