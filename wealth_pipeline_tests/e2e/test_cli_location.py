"""``wealth-pipeline materialize`` runs are runs of the code location: their failure reaches ``run_failure_alert``.

The command starts ``dagster dev`` itself (webserver + daemon on the instance), submits the location's
asset job, follows it and waits for the alert sensor. The failure is real: the warehouse table the
step loads was dropped after the migrations, so the load fails (and is retried) as it would on a
damaged warehouse. The alert arrives at a webhook served on loopback.
"""

from __future__ import annotations

import json
import os
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
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEALTH_", "DAGSTER_"))}
        env.update({"WEALTH_HOME": str(tmp_path / "home"), "WEALTH_DATABASE_URL": warehouse_url,
                    "WEALTH_DAGSTER_DATABASE_URL": dagster_url, "WEALTH_SYNTHETIC_UNIVERSE": "6",
                    "WEALTH_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/alerts",
                    "PYTHONUNBUFFERED": "1"})
        done = subprocess.run([sys.executable, "-m", "wealth_pipeline.cli", "materialize", "--partition", "2024-07-02",
                               "--select", "symbol_master"], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=1200)
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
            (body,) = conn.execute("SELECT run_body FROM runs WHERE run_id = %s", (alert["run_id"],)).fetchone()
        origin = dg.deserialize_value(body).remote_job_origin
        assert origin is not None
        assert origin.repository_origin.code_location_origin.location_name == "wealth_pipeline"
        assert origin.repository_origin.repository_name == "__repository__"
    finally:
        server.shutdown()
        for name in (warehouse_db, dagster_db):
            _drop_database(pg_server_url, name)
