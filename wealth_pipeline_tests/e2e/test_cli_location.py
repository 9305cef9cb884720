"""``wealth-pipeline materialize`` runs are runs of the code location: their failure reaches ``run_failure_alert``.

The command starts ``dagster dev`` itself (webserver + daemon on the instance), submits the location's
asset job, follows it and waits for the alert sensor. The failure is real: the warehouse table the
step loads was dropped after the migrations, so the load fails (and is retried) as it would on a
damaged warehouse. The alert arrives at a webhook served on loopback.

``wealth-pipeline backfill --no-wait`` with no webserver running starts ``dagster-webserver`` alone
(no daemon), submits the asset backfill through GraphQL and stops it: the backfill is read back from
Dagster's storage, as submitted and not launched.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import psycopg
import pytest

from wealth_pipeline.environment import REPO_ROOT
from wealth_pipeline_tests.e2e.conftest import _create_database, _drop_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def _cli_env(home: Path, warehouse_url: str, dagster_url: str, **extra: str) -> dict[str, str]:
    """The CLI's environment: this test's databases and home, nothing inherited from WEALTH_*/DAGSTER_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEALTH_", "DAGSTER_"))}
    env.update(
        {
            "WEALTH_HOME": str(home),
            "WEALTH_DATABASE_URL": warehouse_url,
            "WEALTH_DAGSTER_DATABASE_URL": dagster_url,
            "WEALTH_SYNTHETIC_UNIVERSE": "6",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wealth_pipeline.cli", *argv],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_a_failed_cli_run_is_a_location_run_and_raises_the_alert(pg_server_url: str, tmp_path: Path) -> None:
    from wealth_pipeline.warehouse import migrate

    warehouse_db, warehouse_url = _create_database(pg_server_url, "cli_warehouse")
    dagster_db, dagster_url = _create_database(pg_server_url, "cli_dagster")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        migrate.upgrade(warehouse_url)
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("DROP TABLE ref.securities CASCADE")  # the migrations' pointer still says head
        env = _cli_env(
            tmp_path / "home",
            warehouse_url,
            dagster_url,
            WEALTH_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{server.server_port}/alerts",
        )
        done = _cli(env, "materialize", "--partition", "2024-07-02", "--select", "symbol_master")
        out = done.stdout
        assert done.returncode == 1, f"{out[-3000:]}\n{done.stderr[-3000:]}"
        assert "runs are jobs of location 'wealth_pipeline'" in out
        assert "step symbol_master FAILED: wealth_pipeline.warehouse.loader.LoadError: ref.securities" in out
        assert "run_failure_alert has seen the failed run" in out, out[-3000:]
        alerts = [a for a in _Webhook.received if a.get("kind") == "run_failure"]
        assert len(alerts) == 1, _Webhook.received
        (alert,) = alerts
        assert alert["job"] == "__ASSET_JOB" and alert["run_id"] in out
        assert [s["step"] for s in alert["failed_steps"]] == ["symbol_master"]
        # the run carries the code location's origin, as a UI-launched run does (Dagster's serialized run)
        with psycopg.connect(dagster_url) as conn:
            (body,) = conn.execute(
                "SELECT run_body FROM runs WHERE run_id = %s", (alert["run_id"],)
            ).fetchone()
        origin = dg.deserialize_value(body).remote_job_origin
        assert origin is not None
        assert origin.repository_origin.code_location_origin.location_name == "wealth_pipeline"
        assert origin.repository_origin.repository_name == "__repository__"
    finally:
        server.shutdown()
        for name in (warehouse_db, dagster_db):
            _drop_database(pg_server_url, name)


def test_backfill_no_wait_submits_through_a_webserver_alone_and_launches_nothing(
    pg_server_url: str, tmp_path: Path
) -> None:
    from wealth_pipeline.warehouse import migrate

    warehouse_db, warehouse_url = _create_database(pg_server_url, "cli_warehouse")
    dagster_db, dagster_url = _create_database(pg_server_url, "cli_dagster")
    try:
        migrate.upgrade(warehouse_url)
        env = _cli_env(tmp_path / "home", warehouse_url, dagster_url)
        done = _cli(
            env,
            "backfill",
            "--start",
            "2024-07-01",
            "--end",
            "2024-07-12",
            "--select",
            "raw_bars bars",
            "--no-wait",
        )
        out = done.stdout
        assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-3000:]}"
        assert "(dagster-webserver, no daemon on http://127.0.0.1:" in out, out
        backfill_id = re.search(r"backfill (\w+) submitted \(2024-07-01\.\.2024-07-12\)", out).group(1)
        # Sessions 2024-07-01..12 of the NYSE/NASDAQ/TSX union: ten weekdays (TSX trades on July 4, NYSE
        # on July 1), so two assets are 20 asset-partitions; the status comes from partitionBackfillOrError.
        assert (
            f"backfill {backfill_id}: REQUESTED, 0/20 asset-partitions materialized, 0 failed; "
            "it starts when a dagster-daemon runs"
        ) in out, out
        port = int(re.search(r"no daemon on http://127\.0\.0\.1:(\d+)", out).group(1))
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the webserver the command started is stopped
        with psycopg.connect(dagster_url) as conn:
            (body,) = conn.execute("SELECT body FROM bulk_actions WHERE key = %s", (backfill_id,)).fetchone()
            launched = conn.execute(
                "SELECT count(*) FROM run_tags WHERE key = 'dagster/backfill' AND value = %s", (backfill_id,)
            ).fetchone()[0]
        stored = json.loads(body)  # Dagster's serialized PartitionBackfill (its serdes JSON)
        assert stored["__class__"] == "PartitionBackfill" and launched == 0
        assert stored["status"] == {"__enum__": "BulkActionStatus.REQUESTED"}
        assert sorted(k["path"] for k in stored["asset_selection"]) == [["bars"], ["raw_bars"]]
        assert stored["tags"] == {"wealth/submitted_by": "wealth-pipeline backfill"}
        assert (
            stored["title"] == "2024-07-01..2024-07-12" and stored["description"] == "2 assets x 10 sessions"
        )
    finally:
        for name in (warehouse_db, dagster_db):
            _drop_database(pg_server_url, name)
