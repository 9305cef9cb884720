"""The Dagster UI in a real headless Chromium: asset graph by group, an asset's page, Materialize.

The browser is Debian's ``chromium`` (never ``playwright install``), driven by Playwright's Python
package. When it is missing and the tests run as root, the session installs it with apt-get
(bounded, logged to ``test-artifacts/ui/chromium-install.log``); otherwise the test is skipped with
the reason. Screenshots of each step go to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wealth_pipeline.environment import REPO_ROOT
from wealth_pipeline_tests.e2e.conftest import DagsterStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_TIMEOUT = 900
UI_TIMEOUT = 60_000  # ms: the first page load compiles the asset graph of ~40 assets


def _install_chromium(log: Path) -> str | None:
    """apt-get install chromium (root only); returns why it could not be installed, or None."""
    if os.geteuid() != 0:
        return "not running as root, so Debian's chromium cannot be installed by the test session"
    apt = shutil.which("apt-get")
    if apt is None:
        return "apt-get is not available on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("w") as out:
        for command in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "chromium"]):
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            try:
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                      timeout=INSTALL_TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                return f"{' '.join(command)} did not finish within {INSTALL_TIMEOUT}s (log: {log})"
            if code != 0:
                return f"{' '.join(command)} exited {code} (log: {log})"
    return None if CHROMIUM.exists() else f"apt-get install chromium did not provide {CHROMIUM} (log: {log})"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium, installed now when missing and possible."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if not CHROMIUM.exists():
        log = ARTIFACTS / "chromium-install.log"
        print(f"\n[e2e] {CHROMIUM} is missing: installing Debian's chromium with apt-get (log: {log})")
        reason = _install_chromium(log)
        if reason:
            pytest.skip(f"no browser for the UI test: {reason}")
        print(f"[e2e] chromium installed at {CHROMIUM}")
    return str(CHROMIUM)


@pytest.fixture
def page(chromium: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="wealth-e2e-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=LAUNCH_ARGS, viewport={"width": 1600, "height": 1000})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _dismiss_onboarding(page: object) -> None:
    """Close the first-visit newsletter dialog (it covers the page in a fresh browser profile)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # It appears shortly after the first page renders, or not at all once dismissed.
    with contextlib.suppress(PlaywrightTimeout):
        page.get_by_role("button", name="Skip", exact=True).first.click(timeout=5_000)


def _shot(page: object, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def _runs_of(stack: DagsterStack, asset: str) -> list[dict]:
    data = stack.graphql("""query R($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
        ... on AssetNode { assetMaterializations(limit: 50) { runId } } } }""", {"key": {"path": [asset]}})
    return data["assetNodeOrError"]["assetMaterializations"]


@pytest.fixture(scope="module")
def bars_materialized(dagster_stack: DagsterStack) -> None:
    """One session of bars (and what it reads), so its page shows a materialization and check results."""
    if dagster_stack.materialized("bars"):
        return
    if not dagster_stack.materialized("symbol_master"):
        dagster_stack.wait_for_run(dagster_stack.launch("__ASSET_JOB", {}, assets=["symbol_master"]))
    run_id = dagster_stack.launch("__ASSET_JOB", {"dagster/partition": "2024-07-03"},
                                  assets=["raw_bars", "raw_corporate_actions", "corporate_actions", "bars"])
    dagster_stack.wait_for_run(run_id)


def test_ui_shows_the_graph_an_asset_and_materializes_from_a_click(
        dagster_stack: DagsterStack, page: object, bars_materialized: None) -> None:
    from playwright.sync_api import expect

    stack = dagster_stack
    page.set_default_timeout(UI_TIMEOUT)

    # 1. The global asset graph, grouped by domain.
    page.goto(f"{stack.base_url}/asset-groups", wait_until="domcontentloaded")
    for group in ("ingest", "processed", "analytics"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
    _dismiss_onboarding(page)
    _shot(page, "01-asset-graph")

    # 2. The bars asset: its latest materialization and its checks.
    page.goto(f"{stack.base_url}/assets/bars", wait_until="domcontentloaded")
    expect(page.get_by_text("bars", exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.get_by_text("Latest materialization", exact=False).first).to_be_visible(timeout=UI_TIMEOUT)
    _shot(page, "02-bars-overview")
    _dismiss_onboarding(page)
    page.get_by_role("tab", name="Checks").or_(page.get_by_text("Checks", exact=True)).first.click()
    for check in ("keys_unique", "ohlcv_valid", "warehouse_reconciles"):
        expect(page.get_by_text(check, exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
    _shot(page, "03-bars-checks")

    # 3. Materialize the (unpartitioned) universe from its page.
    before = {m["runId"] for m in _runs_of(stack, "symbol_master")}
    existing = {r["runId"] for r in stack.runs()}
    page.goto(f"{stack.base_url}/assets/symbol_master", wait_until="domcontentloaded")
    _dismiss_onboarding(page)
    # The accessible name carries the icon's name too ("materialization Materialize").
    button = page.get_by_role("button", name=re.compile(r"\bMaterialize$"))
    expect(button).to_be_enabled(timeout=UI_TIMEOUT)
    _shot(page, "04-symbol-master-before")
    started = time.time()
    button.click()

    runs = stack.wait_for("the run launched from the UI",
                          lambda: [r for r in stack.runs() if r["runId"] not in existing], 30, 1.0)
    assert [r["assets"] for r in runs] == [["symbol_master"]], runs
    _shot(page, "05-materialize-launched")
    run_id = runs[0]["runId"]
    stack.wait_for_run(run_id, timeout=180)
    after = {m["runId"] for m in _runs_of(stack, "symbol_master")}
    assert run_id in after - before, f"run {run_id} did not materialize symbol_master"
    page.goto(f"{stack.base_url}/runs/{run_id}", wait_until="domcontentloaded")
    expect(page.get_by_text("Success", exact=False).first).to_be_visible(timeout=UI_TIMEOUT)
    _shot(page, "06-run-succeeded")
    print(f"[e2e] UI-launched run {run_id} succeeded {time.time() - started:.0f}s after the click")


CLI_SESSIONS = ("2024-07-08", "2024-07-09")  # a Monday and a Tuesday: one CLI run over both
PARTITION_ROWS = """
query P($key: AssetKeyInput!, $partitions: [String!]) { assetNodeOrError(assetKey: $key) { __typename
  ... on AssetNode { assetMaterializations(partitions: $partitions, limit: 20) { runId partition
    metadataEntries { label __typename ... on IntMetadataEntry { intValue } } } } } }"""


def _cli(stack: DagsterStack, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``wealth-pipeline`` as a user runs it, on the stack's instance, submitting to the stack's webserver."""
    return subprocess.run([sys.executable, "-m", "wealth_pipeline.cli", *argv, "--webserver", stack.base_url],
                          env=stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli_run(dagster_stack: DagsterStack, bars_materialized: None) -> str:
    """Two sessions of bars materialized by ``wealth-pipeline materialize``: the run's id."""
    stack = dagster_stack
    before = {r["runId"] for r in stack.runs()}
    done = _cli(stack, "materialize", "--partition", CLI_SESSIONS[0], "--end", CLI_SESSIONS[1],
                "--select", "raw_bars raw_corporate_actions corporate_actions bars")
    (ARTIFACTS / "cli-materialize.txt").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # the run the CLI printed (the daemon may launch others meanwhile, e.g. automation downstream)
    mine = [r for r in stack.runs() if r["runId"] not in before and r["runId"] in done.stdout]
    assert len(mine) == 1, mine
    (run,) = mine
    assert run["jobName"] == "__ASSET_JOB" and run["status"] == "SUCCESS", run  # the location's asset job
    assert (run["tags"]["dagster/asset_partition_range_start"], run["tags"]["dagster/asset_partition_range_end"]) \
        == CLI_SESSIONS
    return run["runId"]


def test_ui_shows_columns_partition_rows_and_the_cli_run(dagster_stack: DagsterStack, page: object,
                                                         cli_run: str) -> None:
    from playwright.sync_api import expect

    stack = dagster_stack
    page.set_default_timeout(UI_TIMEOUT)

    # 1. A CLI run is in the asset's history (GraphQL) and on its events page (browser).
    assert cli_run in {m["runId"] for m in _runs_of(stack, "bars")}
    page.goto(f"{stack.base_url}/assets/bars?view=events", wait_until="domcontentloaded")
    _dismiss_onboarding(page)
    expect(page.get_by_text(cli_run[:8], exact=False).first).to_be_visible(timeout=UI_TIMEOUT)
    _shot(page, "07-bars-events-with-cli-run")

    # 2. Per-partition row counts: each session's materialization carries that session's rows
    #    (the warehouse's count for the day), not the two-session window's.
    data = stack.graphql(PARTITION_ROWS, {"key": {"path": ["bars"]}, "partitions": list(CLI_SESSIONS)})
    by_partition = {m["partition"]: {e["label"]: e.get("intValue") for e in m["metadataEntries"]}
                    for m in data["assetNodeOrError"]["assetMaterializations"] if m["runId"] == cli_run}
    assert sorted(by_partition) == sorted(CLI_SESSIONS), by_partition
    window = stack.query("SELECT count(*) FROM market.bars_daily WHERE session_date = ANY(%s::date[])",
                         (list(CLI_SESSIONS),))[0][0]
    for session in CLI_SESSIONS:
        rows = stack.query("SELECT count(*) FROM market.bars_daily WHERE session_date = %s", (session,))[0][0]
        assert 0 < rows < window
        assert by_partition[session].get("dagster/row_count") == rows, (session, by_partition[session], rows)
    page.goto(f"{stack.base_url}/assets/bars?view=partitions&partition={CLI_SESSIONS[1]}",
              wait_until="domcontentloaded")
    expect(page.get_by_text(CLI_SESSIONS[1], exact=False).first).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.get_by_text("dagster/row_count", exact=False).or_(page.get_by_text("Row count", exact=False))
           .first).to_be_visible(timeout=UI_TIMEOUT)
    _shot(page, "08-bars-partition-rows")

    # 3. The column schema (dagster/column_schema from the dataset definitions) on the asset's overview.
    page.goto(f"{stack.base_url}/assets/bars?view=overview", wait_until="domcontentloaded")
    expect(page.get_by_text("Columns", exact=False).first).to_be_visible(timeout=UI_TIMEOUT)
    for column in ("session_date", "adj_close"):
        expect(page.get_by_text(column, exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
    _shot(page, "09-bars-columns")

    # 4. The run the CLI launched, as the runs page shows it.
    page.goto(f"{stack.base_url}/runs/{cli_run}", wait_until="domcontentloaded")
    expect(page.get_by_text("Success", exact=False).first).to_be_visible(timeout=UI_TIMEOUT)
    _shot(page, "10-cli-run")
