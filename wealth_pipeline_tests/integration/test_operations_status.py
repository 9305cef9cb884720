"""Late-data alerts to a real webhook on loopback, and ``wealth-pipeline status`` (text, ``--json``, exit codes).

Freshness: the ``freshness_checks`` job (what the hourly schedule launches) runs in process on a
real Dagster instance at a fake clock; a ``ThreadingHTTPServer`` on 127.0.0.1 records what the
alert posts. Status: the real command over a migrated warehouse, a Postgres-backed Dagster
instance holding the materializations, a backup taken by ``pg_dump``, and a lakehouse folder.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest
from psycopg import sql

from wealth_pipeline import cli
from wealth_pipeline.defs.operations.freshness import ALERTED_KEY, CHECK_NAME, JOB_NAME, build_freshness
from wealth_pipeline.defs.partitions import trading_sessions
from wealth_pipeline.defs.resources import AlertsResource
from wealth_pipeline.environment import REPO_ROOT, dagster_storage_url, with_database
from wealth_pipeline.lakehouse import quarantine
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.operations.backup import create_backup
from wealth_pipeline.operations.location import BackupLocation
from wealth_pipeline.warehouse import migrate

pytestmark = pytest.mark.integration
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# ---- a webhook receiver on loopback ----------------------------------------------------------------
class Webhook:
    """Records every JSON body POSTed to it; answers ``status`` (200 unless told otherwise)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.bodies.append(json.loads(body))
                self.send_response(received.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


@dg.asset(partitions_def=trading_sessions, group_name="processed")
def prices() -> None:
    """A daily asset (the checks cover every asset on the trading-session partitions)."""


@dg.asset(partitions_def=trading_sessions, group_name="analytics", deps=[prices])
def signals() -> None:
    """A second daily asset downstream of the first."""


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _materialized(instance: dg.DagsterInstance, asset: str, *sessions: str) -> None:
    for session in sessions:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=session))


def test_a_late_session_posts_one_alert_per_breach_and_an_on_time_one_posts_none(
        webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEALTH_FRESHNESS_LAG_HOURS", "6")
    assets = dg.Definitions(assets=[prices, signals])
    clock = Clock(at("2024-07-11T03:00:00"))  # Wed 07-10 closed 20:00 UTC: due 02:00 UTC on the 11th
    job = dg.Definitions.merge(assets, build_freshness(assets.resolve_asset_graph(), clock), dg.Definitions(
        resources={"alerts": AlertsResource(webhook_url=webhook.url)})).resolve_job_def(JOB_NAME)

    def hourly(instance: dg.DagsterInstance) -> dict[str, dg.AssetCheckEvaluation]:
        result = job.execute_in_process(instance=instance)
        assert result.success
        return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}

    with dg.instance_for_test() as instance:
        _materialized(instance, "prices", "2024-07-09", "2024-07-10")
        _materialized(instance, "signals", "2024-07-09", "2024-07-10")
        on_time = hourly(instance)
        assert {k: (e.check_name, e.passed) for k, e in on_time.items()} == {
            "prices": (CHECK_NAME, True), "signals": (CHECK_NAME, True)}
        assert webhook.bodies == []

        # Thursday's session is due at 02:00 UTC on Friday; only prices has it.
        clock.now = at("2024-07-12T03:00:00")
        _materialized(instance, "prices", "2024-07-11")
        late = hourly(instance)
        assert late["prices"].passed and not late["signals"].passed
        assert late["signals"].description == "signals: LATE, session 2024-07-11 not materialized (latest: 2024-07-10)"
        assert webhook.bodies == [{
            "kind": "late_data", "as_of": "2024-07-12T03:00:00+00:00", "expected_session": "2024-07-11",
            "lag_hours": 6.0,
            "late": [{"asset": "signals", "latest_session": "2024-07-10", "expected_session": "2024-07-11", "late": True}],
        }]

        # The next hourly runs see the same breach: no second alert.
        for hour in ("04", "05"):
            clock.now = at(f"2024-07-12T{hour}:00:00")
            assert not hourly(instance)["signals"].passed
        assert len(webhook.bodies) == 1

        # Caught up: on time again, still one alert, and the dedupe cursor is cleared ...
        _materialized(instance, "signals", "2024-07-11")
        clock.now = at("2024-07-12T06:00:00")
        assert all(e.passed for e in hourly(instance).values())
        assert len(webhook.bodies) == 1
        assert instance.run_storage.get_cursor_values({ALERTED_KEY}).get(ALERTED_KEY) == ""

        # ... so the next breach (Friday's session, due Saturday 02:00 UTC, missing everywhere) alerts again.
        clock.now = at("2024-07-13T03:00:00")
        assert not any(e.passed for e in hourly(instance).values())
        assert len(webhook.bodies) == 2
        assert webhook.bodies[1]["expected_session"] == "2024-07-12"
        assert [a["asset"] for a in webhook.bodies[1]["late"]] == ["prices", "signals"]

        # A webhook that refuses the alert fails the check step (the run fails, so the failure alert
        # and the UI show it) and records no dedupe cursor: the next hour tries again.
        clock.now = at("2024-07-16T03:00:00")  # Monday's session (07-15) is now also late: a new breach
        webhook.status = 500
        refused = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not refused.success and len(webhook.bodies) == 3
        webhook.status = 200
        hourly(instance)
        assert len(webhook.bodies) == 4 and webhook.bodies[2] == webhook.bodies[3]


# ---- wealth-pipeline status ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["status", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out[out.index("{"):])


@pytest.fixture
def ops_env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A migrated warehouse, a Postgres Dagster instance, a lakehouse folder and a backup folder, exported."""
    migrate.upgrade(pg_url)
    dagster_url = with_database(pg_url, f"d_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(with_database(pg_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(psycopg.conninfo.conninfo_to_dict(dagster_url)["dbname"])))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {"WEALTH_HOME": str(tmp_path / "wealth"), "DAGSTER_HOME": str(home), "WEALTH_DATABASE_URL": pg_url,
           "WEALTH_DAGSTER_DATABASE_URL": dagster_storage_url(dagster_url), "WEALTH_LAKEHOUSE_URI": str(tmp_path / "lake"),
           "WEALTH_BACKUP_URI": str(tmp_path / "backups"), "WEALTH_FRESHNESS_LAG_HOURS": "6"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "lake").mkdir()
    try:
        yield {**env, "lake": tmp_path / "lake", "backups": tmp_path / "backups", "pg_url": pg_url}
    finally:
        with psycopg.connect(with_database(pg_url, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(psycopg.conninfo.conninfo_to_dict(dagster_url)["dbname"])))


def test_status_is_healthy_then_stale_then_unreachable(ops_env: dict, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from wealth_pipeline.definitions import defs
    from wealth_pipeline.defs.operations.freshness import daily_keys

    keys = daily_keys(defs.resolve_asset_graph())
    assert {"bars", "indicators"} <= {k.to_user_string() for k in keys}
    backup = create_backup(BackupLocation(str(ops_env["backups"])), ops_env["pg_url"], None, None,
                           now=at("2024-07-11T01:00:00"))
    with dg.DagsterInstance.get() as instance:
        for key in keys:
            _materialized(instance, key.to_user_string(), "2024-07-09", "2024-07-10")
    (ops_env["lake"] / "processed").mkdir()
    (ops_env["lake"] / "processed" / "x.parquet").write_bytes(b"12345")

    # Healthy: every daily asset has the session due at 03:00 UTC (07-10), the backup is 2 h old.
    code, doc = _status(capsys, "--as-of", "2024-07-11T03:00:00+00:00")
    assert code == 0, doc["attention"]
    assert doc["attention"] == []
    assert len(doc["assets"]) == len(keys)
    assert all(a == {"asset": a["asset"], "latest_session": "2024-07-10", "expected_session": "2024-07-10", "late": False}
               for a in doc["assets"])
    assert doc["backup"]["backup_id"] == backup.backup_id and doc["backup"]["age_hours"] == 2.0 and doc["backup"]["passed"]
    assert doc["lakehouse"]["files"] == 1 and doc["lakehouse"]["size_bytes"] == 5
    assert doc["quarantine"] == {"days": 7, "files": [], "rows": 0}
    assert doc["runs"] == {"running": [], "failed": []} and doc["checks_not_passing"] == []
    with psycopg.connect(ops_env["pg_url"]) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    assert abs(doc["warehouse"]["size_bytes"] - size) <= size // 20
    capsys.readouterr()
    assert cli.main(["status", "--as-of", "2024-07-11T03:00:00+00:00"]) == 0
    assert "all good: nothing needs attention" in capsys.readouterr().out

    # Stale: a day later nothing has the 07-11 session, a vendor file left 3 rows in quarantine, a run
    # failed and was not re-run, and the backup is older than WEALTH_BACKUP_MAX_AGE_HOURS allows.
    rejected = pl.DataFrame({"source_file": ["raw/bars/date=2024-07-11/rejected.parquet"] * 3,
                             "symbol": ["A", "B", "C"], "reason": ["negative close"] * 3})
    quarantine.write_window(Lakehouse.from_uri(str(ops_env["lake"])), "bars", rejected, dt.date(2024, 7, 11),
                            dt.date(2024, 7, 11), "run-1", now=at("2024-07-11T22:00:00"))

    @dg.asset
    def broken() -> None:
        raise RuntimeError("vendor file truncated")

    with dg.DagsterInstance.get() as instance:
        failed = dg.materialize([broken], instance=instance, raise_on_error=False)
    assert not failed.success
    monkeypatch.setenv("WEALTH_BACKUP_MAX_AGE_HOURS", "12")
    code, doc = _status(capsys, "--as-of", "2024-07-12T03:00:00+00:00")
    assert code == 1
    assert all(a["late"] and a["expected_session"] == "2024-07-11" and a["latest_session"] == "2024-07-10"
               for a in doc["assets"])
    assert doc["quarantine"]["rows"] == 3 and doc["quarantine"]["files"][0]["file"].endswith("date=2024-07-11/rejected.parquet")
    assert [(r["run_id"], r["recovered"]) for r in doc["runs"]["failed"]] == [(failed.run_id, False)]
    attention = doc["attention"]
    assert attention[0].startswith(f"{len(keys)} daily asset(s) late for session 2024-07-11: ")
    assert attention[1] == f"1 failed run(s) not re-run successfully: {failed.dagster_run.job_name}"
    assert attention[2].startswith("3 quarantined row(s) in 1 file(s) in the last 7 days")
    assert attention[3] == f"backup: latest backup {backup.backup_id} is 26.0 h old (more than 12 h)"
    capsys.readouterr()
    assert cli.main(["status", "--as-of", "2024-07-12T03:00:00+00:00"]) == 1
    text = capsys.readouterr().out
    assert "NEEDS ATTENTION:" in text and "LATE" in text and "3 rows" in text

    # Unreachable backup bucket: reported (exit 1) with the location, the rest still shown.
    monkeypatch.setenv("WEALTH_BACKUP_URI", "s3://wealth-backups/prod")
    monkeypatch.setenv("WEALTH_S3_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("WEALTH_BACKUP_MAX_AGE_HOURS")
    code, doc = _status(capsys, "--as-of", "2024-07-11T03:00:00+00:00")
    assert code == 1 and "error" in doc["backup"] and len(doc["assets"]) == len(keys)
    assert [a for a in doc["attention"] if "backup" in a] == [
        f"backup location s3://wealth-backups/prod unreachable: {doc['backup']['error']}"]
    assert "EndpointConnectionError" in doc["backup"]["error"]

    # Unreachable warehouse server: one line naming the variable, exit 2 (nothing can be judged).
    port = _free_port()
    monkeypatch.setenv("WEALTH_DATABASE_URL", f"postgresql://wealth:secret@127.0.0.1:{port}/warehouse")
    capsys.readouterr()
    assert cli.main(["status", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"wealth-pipeline status: WEALTH_DATABASE_URL: cannot connect to 127.0.0.1:{port}/warehouse (Is the server "
        "running on that host and accepting TCP/IP connections?); expected a reachable postgresql://user:password@host:port/database")
    assert "secret" not in captured.err and captured.out == ""


def test_quarantine_table_keeps_windows_replaces_a_rerun_and_status_counts_it(
        ops_env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """Two windows' rejects in one Delta table; a re-run of one window replaces only its rows (one commit)."""
    lake = Lakehouse.from_uri(str(ops_env["lake"]))
    jan, feb = (dt.date(2024, 7, 1), dt.date(2024, 7, 2)), (dt.date(2024, 7, 8), dt.date(2024, 7, 9))

    def rejects(file: str, rows: list[int], reason: str) -> pl.DataFrame:
        return pl.DataFrame({"source_file": [file] * len(rows), "source_row": rows, "field": ["close"] * len(rows),
                             "reason": [reason] * len(rows), "symbol": [f"S{r}" for r in rows]})

    first = quarantine.write_window(lake, "bars", rejects("raw/a.parquet", [1, 2, 3], "negative close"), *jan, "run-a",
                                    now=at("2024-07-02T22:00:00"))
    second = quarantine.write_window(lake, "bars", rejects("raw/b.parquet", [7, 9], "close > high"), *feb, "run-b",
                                     now=at("2024-07-09T22:00:00"))
    assert (first.version, second.version) == (0, 1)
    both = quarantine.read(lake, "bars")
    assert sorted(both.select("source_file", "source_row", "reason", "window_start", "run_id").rows()) == [
        ("raw/a.parquet", 1, "negative close", jan[0], "run-a"), ("raw/a.parquet", 2, "negative close", jan[0], "run-a"),
        ("raw/a.parquet", 3, "negative close", jan[0], "run-a"), ("raw/b.parquet", 7, "close > high", feb[0], "run-b"),
        ("raw/b.parquet", 9, "close > high", feb[0], "run-b")]

    # Re-running the first window (one row fixed upstream) replaces its 3 rejects by 2, in one commit.
    rerun = quarantine.write_window(lake, "bars", rejects("raw/a.parquet", [2, 3], "negative close"), *jan, "run-c",
                                    now=at("2024-07-10T08:00:00"))
    assert rerun.version == 2 and lake.version("quarantine", "bars") == 2
    after = quarantine.read(lake, "bars")
    assert sorted(after.select("source_file", "source_row", "run_id").rows()) == [
        ("raw/a.parquet", 2, "run-c"), ("raw/a.parquet", 3, "run-c"),
        ("raw/b.parquet", 7, "run-b"), ("raw/b.parquet", 9, "run-b")]
    assert lake.read("quarantine", "bars", as_of=1).height == 5  # the earlier rejects stay readable as of version 1
    ops = [h["operation"] for h in lake.history("quarantine", "bars")]
    assert len(ops) == 3, ops

    # A vendor file's report, keyed by its sha256: written once, a re-delivery changes nothing.
    report = pl.DataFrame({"file_name": ["landing/bars/x.csv"], "row_number": [4], "field": ["open"],
                           "value": ["-1"], "reason": ["negative open"], "dataset": ["bars"]})
    assert quarantine.write_file_report(lake, "bars", "ab" * 32, report, now=at("2024-07-10T09:00:00")).version == 0
    assert quarantine.write_file_report(lake, "bars", "ab" * 32, report) is None
    assert lake.version("quarantine", "vendor/bars") == 0

    # status --json: rows of the last 7 days per file (07-03..07-10); the 07-01 window's rows are from 07-10 now.
    code, doc = _status(capsys, "--as-of", "2024-07-10T12:00:00+00:00")
    files = {(f["dataset"], f["file"]): f["rows"] for f in doc["quarantine"]["files"]}
    assert files == {("bars", "raw/a.parquet"): 2, ("bars", "raw/b.parquet"): 2, ("vendor/bars", "landing/bars/x.csv"): 1}
    assert doc["quarantine"]["rows"] == 5 and code == 1
    assert any(a.startswith("5 quarantined row(s) in 3 file(s) in the last 7 days") for a in doc["attention"])
    # --days 1 at 07-11 07:00: since 07-10 07:00, so run-b's rows (07-09 22:00) no longer count.
    code, doc = _status(capsys, "--as-of", "2024-07-11T07:00:00+00:00", "--days", "1")
    assert {f["file"]: f["rows"] for f in doc["quarantine"]["files"]} == {"raw/a.parquet": 2, "landing/bars/x.csv": 1}

    # A clean re-run of the second window clears its rejects (one delete commit); the others stay.
    assert quarantine.write_window(lake, "bars", rejects("raw/b.parquet", [], "x"), *feb, "run-d") is None
    assert lake.version("quarantine", "bars") == 3
    assert sorted(quarantine.read(lake, "bars")["source_row"].to_list()) == [2, 3]
    # The backup manifest lists each quarantine table on its own, with the version delta-rs reports.
    from deltalake import DeltaTable

    from wealth_pipeline.operations.manifest import build_manifest

    tables = build_manifest(lake.store, ["quarantine"])["tiers"]["quarantine"]["datasets"]
    assert {name: (t["format"], t["version"]) for name, t in tables.items()} == {
        "bars": ("delta", 3), "vendor/bars": ("delta", 0)}
    assert DeltaTable(str(ops_env["lake"] / "quarantine" / "bars")).version() == 3
