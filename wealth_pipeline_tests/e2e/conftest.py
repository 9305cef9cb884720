"""Real Dagster processes for the end-to-end tests: ``dagster-daemon run`` and ``dagster-webserver``.

One stack per test session, on a Postgres-backed instance in a temporary ``DAGSTER_HOME`` (the
repository's ``dagster.yaml``, storage = a fresh database on the test server) and a fresh, migrated
warehouse database. Everything is driven through the webserver's GraphQL API, as a user would.
The processes run in their own process groups and are killed at teardown; every wait is bounded
and fails with the tail of the process logs.

Once the daemons are up, every schedule and sensor running by default (the automation-condition
sensor, the operations schedules, the failure alert) is stopped through the API: the tests launch
runs themselves or start the sensor they test, and background runs on the 2-core CI machine slowed
each test's runs and made their timing depend on what the automation decided to do meanwhile.
Automation itself is tested in integration/test_automation.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.environment import REPO_ROOT, dagster_storage_url, with_database
from wealth_pipeline.warehouse import migrate

T = TypeVar("T")

LOCATION = "wealth_pipeline"
REPOSITORY = "__repository__"
PARTITION_START = "2024-06-03"
STARTUP_TIMEOUT = 180.0
# The daemons the tests need: the queued-run coordinator, schedules, sensors, backfills.
REQUIRED_DAEMONS = {"QUEUED_RUN_COORDINATOR", "SCHEDULER", "SENSOR", "BACKFILL"}
REPO = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
# Runs use the project's default in-process executor (definitions.py), so they need no run config.
IN_PROCESS: dict[str, Any] = {}

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

DAEMON_HEALTH = """
query { instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }
"""

INSTIGATORS = """
query I($repo: RepositorySelector!) { repositoryOrError(repositorySelector: $repo) { __typename
  ... on Repository { sensors { id name sensorState { status } } schedules { id name scheduleState { status } } } } }
"""
STOP_SENSOR = """mutation S($id: String!) { stopSensor(id: $id) { __typename
  ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }"""
STOP_SCHEDULE = """mutation S($id: String!) { stopRunningSchedule(id: $id) { __typename
  ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
# Poll interval of the waits: short, the probes are cheap GraphQL reads on loopback.
POLL = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class Proc:
    """A process started in its own process group, with its output in a log file."""

    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self, env: dict[str, str], cwd: Path) -> None:
        handle = self.log.open("ab")
        handle.write(f"\n===== starting {' '.join(self.args)} =====\n".encode())
        handle.flush()
        self.popen = subprocess.Popen(self.args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        handle.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (the process, its code server and the run workers it spawned)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=15)


@dataclass
class DagsterStack:
    """The running daemon + webserver, the databases and folders they use, and GraphQL helpers."""

    port: int
    env: dict[str, str]
    home: Path
    warehouse_url: str
    dagster_url: str
    landing: Path
    daemon: Proc
    webserver: Proc
    old_daemons: list[Proc] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        parts = [f"--- {p.name} log ({p.log}) ---\n{_tail(p.log)}" for p in (self.webserver, self.daemon)]
        return "\n".join(parts)

    # ---- GraphQL ---------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """POST a GraphQL document; returns ``data`` (fails with the errors and the process logs)."""
        response = httpx.post(f"{self.base_url}/graphql", json={"query": query, "variables": variables or {}},
                              timeout=timeout)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        if response.status_code != 200 or body is None or body.get("errors"):
            raise AssertionError(f"GraphQL failed (HTTP {response.status_code}): {response.text[:2000]}\n{self.logs()}")
        return body["data"]

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = POLL) -> T:
        """Poll ``probe`` until it returns something truthy; fail after ``timeout`` s with the logs."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for proc in (self.webserver, self.daemon):
                if not proc.alive():
                    raise AssertionError(f"{proc.name} exited (code {proc.popen.returncode}) while waiting for {what}\n"
                                         f"{self.logs()}")
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last probe: {last!r})\n{self.logs()}")

    def daemons_healthy(self) -> bool:
        statuses = self.graphql(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        healthy = {s["daemonType"] for s in statuses if s["healthy"]}
        return healthy >= REQUIRED_DAEMONS

    def instigators(self) -> dict[str, tuple[str, str, str]]:
        """name -> (kind "sensor"/"schedule", id, status) of every sensor and schedule of the repository."""
        data = self.graphql(INSTIGATORS, {"repo": REPO})["repositoryOrError"]
        assert data["__typename"] == "Repository", data
        found = {s["name"]: ("sensor", s["id"], s["sensorState"]["status"]) for s in data["sensors"]}
        found.update({s["name"]: ("schedule", s["id"], s["scheduleState"]["status"]) for s in data["schedules"]})
        return found

    def stop_background_automation(self, timeout: float = 60.0) -> list[str]:
        """Stop every running sensor and schedule (see the module docstring); returns their names.

        Seen once on the loaded 2-core box: ``run_failure_alert`` still RUNNING right after its stop
        succeeded (most likely a tick in flight writing back the state it had read). So what still
        runs is stopped again, until a second look ``POLL`` later finds nothing running.
        """
        stopped: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            running = {n: (k, i) for n, (k, i, s) in sorted(self.instigators().items()) if s == "RUNNING"}
            if not running:
                time.sleep(POLL)
                if not any(s == "RUNNING" for _, _, s in self.instigators().values()):
                    return stopped
                continue
            assert time.monotonic() < deadline, f"still running after stop: {sorted(running)}"
            for name, (kind, ident) in running.items():
                mutation, field = (STOP_SENSOR, "stopSensor") if kind == "sensor" else (STOP_SCHEDULE, "stopRunningSchedule")
                result = self.graphql(mutation, {"id": ident})[field]
                assert result["__typename"] in ("StopSensorMutationResult", "ScheduleStateResult"), (name, result)
                if name not in stopped:
                    stopped.append(name)

    def runs(self, tags: dict[str, str] | None = None, job: str | None = None) -> list[dict[str, Any]]:
        """Runs matching ``tags`` (and job), newest first: id, status, job name, tags, selected assets."""
        flt: dict[str, Any] = {}
        if tags:
            flt["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if job:
            flt["pipelineName"] = job
        data = self.graphql("""
            query Runs($filter: RunsFilter) { runsOrError(filter: $filter) {
              __typename ... on Runs { results { runId status jobName tags { key value } assetSelection { path } } }
              ... on PythonError { message } } }""", {"filter": flt})["runsOrError"]
        assert data["__typename"] == "Runs", data
        return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]},
                 "assets": sorted("/".join(a["path"]) for a in r["assetSelection"] or [])} for r in data["results"]]

    def launch(self, job: str, tags: dict[str, str], assets: list[str] | None = None) -> str:
        """Launch (queue) a run of ``job`` (optionally an asset subset)."""
        selector: dict[str, Any] = {**REPO, "jobName": job}
        if assets:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        params = {"selector": selector, "runConfigData": IN_PROCESS,
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
        result = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def materialized(self, asset: str) -> bool:
        """Whether ``asset`` has at least one materialization."""
        data = self.graphql("""query M($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
            ... on AssetNode { assetMaterializations(limit: 1) { runId } } } }""", {"key": {"path": [asset]}})
        return bool(data["assetNodeOrError"]["assetMaterializations"])

    def run_status(self, run_id: str) -> str:
        data = self.graphql("""query R($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }""",
                            {"id": run_id})["runOrError"]
        assert data["__typename"] == "Run", data
        return data["status"]

    def wait_for_run(self, run_id: str, timeout: float = 150.0) -> str:
        """Wait until the run is finished; fails (with the run's failure events) unless it succeeded."""
        status = self.wait_for(f"run {run_id} to finish",
                               lambda: (s := self.run_status(run_id)) in ("SUCCESS", "FAILURE", "CANCELED") and s, timeout)
        if status != "SUCCESS":
            raise AssertionError(f"run {run_id} ended {status}:\n{self.run_errors(run_id)}\n{self.logs()}")
        return status

    def run_errors(self, run_id: str) -> str:
        data = self.graphql("""query E($id: ID!) { logsForRun(runId: $id, limit: 5000) {
              __typename ... on EventConnection { events { __typename ... on MessageEvent { message }
              ... on ExecutionStepFailureEvent { stepKey error { message stack } }
              ... on RunFailureEvent { message } } } } }""", {"id": run_id})["logsForRun"]
        events = data.get("events", [])
        return "\n".join(str(e) for e in events if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent"))

    # ---- warehouse -------------------------------------------------------------------------------
    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.warehouse_url) as conn:
            return conn.execute(statement, params).fetchall()

    # ---- daemon lifecycle ------------------------------------------------------------------------
    def start_daemon(self) -> None:
        self.daemon.start(self.env, REPO_ROOT)

    def crash_daemon(self) -> int:
        """SIGKILL the daemon process (a crash: no shutdown hooks, no cleanup); returns its pid.

        Only the daemon process itself: its code server and the run workers that server spawned
        are separate components (separate pods in a deployment), so a run already executing
        finishes on its own (the orphaned code server waits for its runs). What is left of the
        old process group is killed at teardown.
        """
        assert self.daemon.popen is not None
        pid = self.daemon.popen.pid
        assert "daemon" in _cmdline(pid), f"pid {pid} is not the daemon: {_cmdline(pid)!r}"
        os.kill(pid, signal.SIGKILL)
        self.daemon.popen.wait(timeout=15)
        self.old_daemons.append(self.daemon)
        self.daemon = Proc("dagster-daemon", self.daemon.args, self.daemon.log)
        return pid


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _create_database(server_url: str, prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, with_database(server_url, name)


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _executable(name: str) -> str:
    local = Path(os.path.dirname(sys.executable)) / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@pytest.fixture(scope="session")
def dagster_stack(pg_server_url: str) -> Iterator[DagsterStack]:
    """``dagster-daemon run`` + ``dagster-webserver`` on a fresh Postgres-backed instance and warehouse."""
    tmp = Path(tempfile.mkdtemp(prefix="wealth-e2e-"))
    dagster_db, dagster_url = _create_database(pg_server_url, "e2e_dagster")
    warehouse_db, warehouse_url = _create_database(pg_server_url, "e2e_warehouse")
    migrate.upgrade(warehouse_url)
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    landing = tmp / "landing"
    landing.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEALTH_", "DAGSTER_"))}
    env.update({
        "DAGSTER_HOME": str(home),
        "WEALTH_HOME": str(tmp / "wealth_home"),
        "WEALTH_DATABASE_URL": warehouse_url,
        "WEALTH_DAGSTER_DATABASE_URL": dagster_storage_url(dagster_url),
        "WEALTH_LAKEHOUSE_URI": str(tmp / "lakehouse"),
        "WEALTH_LANDING_URI": str(landing),
        "WEALTH_PROVIDER": "synthetic",
        "WEALTH_PARTITION_START": PARTITION_START,
        "WEALTH_SYNTHETIC_UNIVERSE": "12",
        "PYTHONUNBUFFERED": "1",
    })
    port = free_port()
    workspace = str(REPO_ROOT / "workspace.yaml")
    logs = tmp / "logs"
    logs.mkdir()
    daemon = Proc("dagster-daemon", [_executable("dagster-daemon"), "run", "-w", workspace], logs / "daemon.log")
    webserver = Proc("dagster-webserver", [_executable("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                                           "-w", workspace], logs / "webserver.log")
    stack = DagsterStack(port, env, home, warehouse_url, dagster_url, landing, daemon, webserver)
    try:
        webserver.start(env, REPO_ROOT)
        daemon.start(env, REPO_ROOT)

        def server_up() -> bool:
            try:
                return httpx.get(f"{stack.base_url}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        stack.wait_for("the webserver's /server_info", server_up, STARTUP_TIMEOUT)
        stack.wait_for(f"daemon heartbeats from {sorted(REQUIRED_DAEMONS)}", stack.daemons_healthy, STARTUP_TIMEOUT)
        stopped = stack.stop_background_automation()
        print(f"\n[e2e] stopped the default-running sensors and schedules: {', '.join(stopped)}")
        yield stack
    finally:
        for proc in (stack.webserver, stack.daemon, *stack.old_daemons):
            proc.kill()
        print(f"\n[e2e] process logs kept in {logs}")
        for name in (dagster_db, warehouse_db):
            try:
                _drop_database(pg_server_url, name)
            except psycopg.Error as exc:  # a leftover connection must not hide the test result
                print(f"[e2e] could not drop database {name}: {exc}")
