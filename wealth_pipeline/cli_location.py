"""CLI runs as runs of the code location: submitted through the Dagster webserver's GraphQL API.

An in-process ``execute_in_process`` run has no code-location origin: the UI's timeline leaves it out
and ``run_failure_alert`` (a run-status sensor of the location) skips it. Runs submitted to the
webserver are created from the location's own ``__ASSET_JOB`` with an asset selection, exactly as the
UI's *Materialize* does, queued on the instance and launched by the daemon; so they are in the
timeline and the asset history, and a failure reaches the alert sensor. Only public interfaces are
used: ``dagster dev`` (webserver + daemon on this ``DAGSTER_HOME``, started here on a free loopback
port and stopped at the end), ``dagster-webserver`` alone for a submission nobody follows
(``backfill --no-wait``: the backfill is stored and whichever daemon runs next launches it), GraphQL
over HTTP (``DagsterGraphQLClient``, the ``launchPartitionBackfill`` mutation and the
``partitionBackfillOrError`` query), and ``DagsterInstance`` to read the runs' events.

The cost is start-up: ``dagster dev`` loads the code once (its code server) and every run loads it
again in its own process (the default run launcher), which the in-process path does not pay.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from wealth_pipeline.cli_inputs import InputError

LOCATION = "wealth_pipeline"  # workspace.yaml's location_name
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"
STARTUP_TIMEOUT = 600.0  # a loaded 2-core machine takes minutes to import the code twice
ALERT_SENSOR = "run_failure_alert"

READY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""

LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}"""

BACKFILL_STATUS = """
query B($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions partitionNames error { message }
      assetBackfillData { assetBackfillStatuses { __typename
        ... on AssetPartitionsStatusCounts { numPartitionsTargeted numPartitionsMaterialized numPartitionsFailed } } } }
    ... on PythonError { message }
  }
}"""

SENSOR_TICKS = """
query T($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename ... on Sensor { sensorState { status ticks(limit: 5) { status timestamp } } }
  }
}"""

SUBMIT_TIMEOUT = 3600

NEEDED_DAEMONS = {"QUEUED_RUN_COORDINATOR", "SENSOR", "BACKFILL"}


class SubmitFailed(RuntimeError):
    """The webserver refused or did not answer a run submission."""


@dataclass
class SubmittedRun:
    """What the CLI's summary needs from a run the daemon executed."""

    run_id: str
    success: bool
    status: str
    end_time: float | None


def _executable(name: str) -> str:
    """A console script of this environment (beside its python), else from PATH."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else (shutil.which(name) or local)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocationServer:
    """``dagster dev`` on a free loopback port for the duration of a command (a context manager).

    With ``daemon=False`` it is ``dagster-webserver`` alone (webserver + code server, no daemon): enough
    to submit through GraphQL, and nothing here launches what was submitted.
    """

    def __init__(self, log_path: Path, workspace: Path | None = None, say: Any = print, daemon: bool = True):
        from wealth_pipeline.environment import REPO_ROOT

        self.log_path = log_path
        self.workspace = workspace or REPO_ROOT / "workspace.yaml"
        self.cwd = self.workspace.parent
        self.port = _free_port()
        self.say = say
        self.daemon = daemon
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocationServer:
        command = [_executable("dagster"), "dev"] if self.daemon else [_executable("dagster-webserver")]
        what = "dagster dev" if self.daemon else "dagster-webserver, no daemon"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port)],
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.say(
            f"[location] starting the code location ({what} on {self.base_url}; its log: {self.log_path})"
        )
        started = time.monotonic()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.say(
            f"[location] ready in {time.monotonic() - started:.0f}s: runs are jobs of location {LOCATION!r}"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGINT (dagster dev or the webserver stops its children and code server), then SIGKILL the group."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.base_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=120
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"Dagster GraphQL failed (HTTP {response.status_code}): {str(body)[:500]}")
        return body["data"]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "not answering"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise InputError(
                    f"{'dagster dev' if self.daemon else 'dagster-webserver'} exited with code "
                    f"{self.process.returncode} while starting (log: {self.log_path})"
                )
            try:
                data = self.graphql(READY)
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                last = str(exc)[:200] or type(exc).__name__
                time.sleep(2)
                continue
            entries = {e["name"]: e for e in data["workspaceOrError"].get("locationEntries", [])}
            entry = entries.get(LOCATION)
            if (
                entry
                and entry["locationOrLoadError"]
                and entry["locationOrLoadError"]["__typename"] == "PythonError"
            ):
                raise InputError(
                    f"code location {LOCATION!r} failed to load: "
                    f"{entry['locationOrLoadError']['message'].strip().splitlines()[-1]} (log: {self.log_path})"
                )
            healthy = {
                d["daemonType"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"] if d["healthy"]
            }
            if entry and entry["loadStatus"] == "LOADED" and (healthy >= NEEDED_DAEMONS or not self.daemon):
                return
            last = (
                f"location {entry['loadStatus'] if entry else 'missing'}, healthy daemons {sorted(healthy)}"
            )
            time.sleep(2)
        raise InputError(
            f"the code location did not start within {STARTUP_TIMEOUT:.0f}s ({last}; log: {self.log_path})"
        )

    # --- runs ------------------------------------------------------------------------------------
    def submit_run(
        self,
        asset_keys: list[Any],
        tags: dict[str, str] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> str:
        """Submit the location's asset job for ``asset_keys`` (queued; the daemon launches it); its run id."""
        from urllib.parse import urlsplit

        from dagster_graphql import DagsterGraphQLClient

        url = urlsplit(self.base_url)
        # launchRun plans the run before it answers: for a two-year range that is every asset-partition's
        # planned event (minutes on a loaded machine), hence the long timeout.
        client = DagsterGraphQLClient(
            url.hostname or "127.0.0.1", port_number=url.port, timeout=SUBMIT_TIMEOUT
        )
        try:
            return client.submit_job_execution(
                ASSET_JOB,
                repository_location_name=LOCATION,
                repository_name=REPOSITORY,
                run_config=run_config or {},
                tags=dict(tags or {}),
                asset_selection=[list(key.path) for key in asset_keys],
            )
        except Exception as exc:  # the client raises its own error types and requests' ones
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise SubmitFailed(
                f"the webserver {self.base_url} did not accept the run: {text[:300]}"
            ) from None

    def launch_backfill(
        self, asset_keys: list[Any], partitions: list[str], title: str, description: str, tags: dict[str, str]
    ) -> str:
        """An asset backfill of exactly ``partitions`` for each asset; its id.

        Per-asset ranges (``partitionsByAssets``) rather than the UI's ``partitionNames``: from
        partition names Dagster targets the roots' range and everything downstream of it through
        the partition mappings, i.e. also the partitions after the range whose warm-up reads it
        (``defs/datasets.warmup``), up to today.
        """
        from wealth_pipeline.defs.partitions import trading_sessions

        subset = trading_sessions.empty_subset().with_partition_keys(partitions)
        ranges = [{"start": r.start, "end": r.end} for r in subset.get_partition_key_ranges(trading_sessions)]
        params = {
            "partitionsByAssets": [
                {"assetKey": {"path": list(key.path)}, "partitions": {"ranges": ranges}} for key in asset_keys
            ],
            "title": title,
            "description": description,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        result = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill refused by Dagster: {result.get('message', result['__typename'])}")
        return result["backfillId"]

    def backfill_status(self, backfill_id: str) -> tuple[str, int, int, int]:
        """(status, materialized, failed, targeted) asset-partitions of a backfill."""
        data = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        counts = [
            c
            for c in ((data.get("assetBackfillData") or {}).get("assetBackfillStatuses") or [])
            if c["__typename"] == "AssetPartitionsStatusCounts"
        ]
        return (
            data.get("status") or data["__typename"],
            sum(c["numPartitionsMaterialized"] for c in counts),
            sum(c["numPartitionsFailed"] for c in counts),
            sum(c["numPartitionsTargeted"] for c in counts),
        )

    def wait_for_alert_sensor(self, after: float, timeout: float = 120.0) -> bool:
        """Keep the daemon up until ``run_failure_alert`` has ticked after ``after`` (a failed run's end)."""
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": ALERT_SENSOR,
        }
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
            state = data.get("sensorState") or {}
            if state.get("status") != "RUNNING":
                return False
            if any(t["timestamp"] > after and t["status"] != "STARTED" for t in state.get("ticks", [])):
                return True
            time.sleep(3)
        return False


def wait_for_run(instance: Any, run_id: str, poll: float = 1.0) -> SubmittedRun:
    """Block until the run is finished (the daemon runs it); its outcome."""
    import dagster as dg

    while True:
        record = instance.get_run_record_by_id(run_id)
        if record is not None and record.dagster_run.is_finished:
            return SubmittedRun(
                run_id,
                record.dagster_run.status == dg.DagsterRunStatus.SUCCESS,
                record.dagster_run.status.value,
                record.end_time,
            )
        time.sleep(poll)


class RunningUI(LocationServer):
    """The webserver of a running ``make ui`` (its daemon launches the runs); never started or stopped here."""

    UI_PORT = 3000  # `wealth-pipeline ui`'s default

    def __init__(self, base_url: str, say: Any = print):
        super().__init__(Path(os.devnull), say=say)
        self.url = base_url.rstrip("/")

    @property
    def base_url(self) -> str:
        return self.url

    @classmethod
    def find(cls, say: Any = print, base_url: str | None = None) -> RunningUI:
        """The webserver at ``base_url`` (default: ``make ui``'s 127.0.0.1:3000), checked to serve the location."""
        ui = cls(base_url or f"http://127.0.0.1:{cls.UI_PORT}", say)
        try:
            data = ui.graphql(READY)
            entries = {e["name"]: e for e in data["workspaceOrError"].get("locationEntries", [])}
            loaded = entries.get(LOCATION, {}).get("loadStatus") == "LOADED"
        except (httpx.HTTPError, RuntimeError, ValueError, KeyError):
            loaded = False
        if not loaded and base_url:
            raise InputError(
                f"--webserver {base_url}: no Dagster webserver serving location {LOCATION!r} answers there"
            )
        if not loaded:
            raise InputError(
                f"a dagster-daemon is already running on this instance but no webserver with location "
                f"{LOCATION!r} answers on {ui.base_url}: stop that daemon (a second one would launch "
                "the same runs), pass --webserver URL, or run with --in-process"
            )
        say(f"[location] using the running webserver {ui.base_url} and its daemon")
        return ui

    def __enter__(self) -> RunningUI:
        return self

    def stop(self) -> None:
        return None
