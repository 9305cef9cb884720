"""The one Definitions object loads with Dagster's own tooling, validates, and every asset is documented and checked."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from wealth_pipeline.definitions import defs
from wealth_pipeline.environment import REPO_ROOT

VENV_BIN = Path(sys.executable).parent


def _plain_shell(**extra: str) -> dict[str, str]:
    """A user's shell: PATH and HOME, no WEALTH_* or DAGSTER_* variable (plus ``extra``)."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), **extra}

DOMAIN_GROUPS = {"ingest", "processed", "analytics", "portfolio", "models", "marts", "operations"}


def _assets() -> list[dg.AssetSpec]:
    graph = defs.resolve_asset_graph()
    return [graph.get(key) for key in graph.get_all_asset_keys()]


@pytest.mark.integration
def test_dagster_validates_from_the_repository_root_in_a_plain_shell() -> None:
    """``dagster definitions validate -w workspace.yaml`` as a Dagster user runs it: from the root, no
    DAGSTER_HOME, no WEALTH_* variable; ./dagster.yaml falls back to the embedded default instance.

    WEALTH_HOME only keeps that embedded default (a local cluster, started here) out of the
    repository's own .wealth/, which other work may be using.
    """
    from wealth_pipeline.warehouse.localpg import LocalPostgres

    home = Path(tempfile.mkdtemp(prefix="wealth-plain-shell-"))
    home.chmod(0o755)  # the cluster runs as the unprivileged wealthpg user when the tests run as root
    try:
        result = subprocess.run(
            [str(VENV_BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, env=_plain_shell(WEALTH_HOME=str(home)),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "All code locations passed validation" in result.stdout + result.stderr
        assert (home / "pg").is_dir()  # the instance really was the embedded default PostgreSQL
    finally:
        if (home / "pg").exists():
            LocalPostgres(home / "pg").stop()
        shutil.rmtree(home, ignore_errors=True)


def test_dg_check_defs_and_dg_list_defs(tmp_path: Path) -> None:
    """Dagster's project tooling (``[tool.dg]``) loads the same definitions ``wealth-pipeline`` runs."""
    env = _plain_shell(DAGSTER_HOME=str(tmp_path))  # an empty Dagster home: no instance storage needed
    check = subprocess.run([str(VENV_BIN / "dg"), "check", "defs"], capture_output=True, text=True,
                           cwd=REPO_ROOT, timeout=600, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All definitions loaded successfully" in check.stdout + check.stderr
    listed = subprocess.run([str(VENV_BIN / "dg"), "list", "defs", "--json"], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=600, env=env)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert {j["name"] for j in found["jobs"]} >= {"daily_session", "vendor_ingest", "train_model", "backup_job"}
    assert {s["name"] for s in found["sensors"]} >= {"landing_zone_sensor", "run_failure_alert", "model_retrain_sensor",
                                                      "default_automation_condition_sensor"}
    assert {s["name"] for s in found["schedules"]} >= {"daily_after_close", "model_weekly_retrain"}
    graph = defs.resolve_asset_graph()
    assert {a["asset_key"] for a in found["assets"]} == {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert len(found["asset_checks"]) == len(graph.asset_check_keys)
    assert {r["name"] for r in found["resources"]} >= {"warehouse", "lakehouse", "market_data", "alerts", "model_retrain", "dbt"}


def test_no_dagster_private_import_in_the_definitions() -> None:
    """defs/ and definitions.py use Dagster's public API only (``dagster._core`` changes without notice)."""
    files = [REPO_ROOT / "wealth_pipeline" / "definitions.py", *(REPO_ROOT / "wealth_pipeline" / "defs").rglob("*.py")]
    private = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            private += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in names if name.startswith("dagster._")]
    assert private == []


def test_jobs_select_exactly_the_daily_graph_and_what_depends_on_vendor_files() -> None:
    """The public selections of defs/automation/jobs.py against an oracle from the assets' own partitions."""
    from wealth_pipeline.defs.partitions import trading_sessions

    graph = defs.resolve_asset_graph()
    sessions = {k for k in graph.get_all_asset_keys()
                if graph.get(k).partitions_def == trading_sessions and graph.get(k).is_materializable}
    daily = defs.resolve_job_def("daily_session").asset_layer.executable_asset_keys
    assert daily == sessions | {dg.AssetKey("symbol_master")}
    vendor_roots = {dg.AssetKey(k) for k in ("raw_bars", "raw_corporate_actions", "raw_fx_rates")}
    downstream = set(vendor_roots)
    frontier = set(vendor_roots)
    while frontier:  # every asset reachable from the vendor datasets
        frontier = {child for key in frontier for child in graph.get(key).child_keys} - downstream
        downstream |= frontier
    marts = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "marts"}
    mart_inputs = {p for k in downstream & marts for p in graph.get(k).parent_keys if p in marts}
    vendor = defs.resolve_job_def("vendor_ingest").asset_layer.executable_asset_keys
    assert vendor == (downstream | mart_inputs) & sessions
    assert dg.AssetKey("model") not in daily and dg.AssetKey(["staging", "stg_securities"]) in vendor


def test_what_would_act_on_demo_data_ships_stopped_and_automation_follows_the_readme() -> None:
    # Every schedule (after-close, retraining, backups, freshness, maintenance) acts on whatever state
    # the instance holds, so none starts by itself on the demo's.
    schedules = {s.name: s.default_status for s in defs.schedules}
    assert {"daily_after_close", "model_weekly_retrain", "daily_backup", "freshness_hourly"} <= set(schedules)
    assert all(status == dg.DefaultScheduleStatus.STOPPED for status in schedules.values()), schedules
    for name in ("landing_zone_sensor", "model_retrain_sensor", "default_automation_condition_sensor"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.STOPPED, name
    assert defs.resolve_sensor_def("run_failure_alert").default_status == dg.DefaultSensorStatus.RUNNING
    # The README says the marts follow their upstream through declarative automation once the
    # sensor is on: they carry a condition and the sensor targets them.
    graph = defs.resolve_asset_graph()
    marts = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "marts"]
    assert marts and all(graph.get(k).automation_condition is not None for k in marts)
    assert isinstance(defs.resolve_sensor_def("default_automation_condition_sensor"), dg.AutomationConditionSensorDefinition)
    assert "declarative automation" in (REPO_ROOT / "README.md").read_text()


@pytest.mark.parametrize(("end", "last"), [("2024-12-31", "2024-12-31"), ("2024-12-29", "2024-12-27"), (None, None)])
def test_partitions_end_where_the_data_ends(end: str | None, last: str | None, tmp_path: Path) -> None:
    """WEALTH_PARTITION_END is the last partition (inclusive; a weekend ends on the Friday); unset: today's session."""
    code = ("from wealth_pipeline.defs.partitions import trading_sessions as t; k = t.get_partition_keys(); "
            "print(k[0], k[-1], len(k))")
    env = {**_plain_shell(WEALTH_HOME=str(tmp_path), WEALTH_PARTITION_START="2024-12-02"), **(
        {"WEALTH_PARTITION_END": end} if end else {})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    first, final, count = out.stdout.split()
    assert first == "2024-12-02"
    if last:
        assert final == last
        # 2 Dec .. the last one: weekdays counted by hand (22 to the 31st, 20 to Friday the 27th).
        assert int(count) == {"2024-12-31": 22, "2024-12-27": 20}[last]
    else:
        import datetime as dt

        assert final >= (dt.date.today() - dt.timedelta(days=3)).isoformat()


def test_every_asset_has_description_group_owner_kinds_and_checks() -> None:
    graph = defs.resolve_asset_graph()
    checks_by_asset: dict[dg.AssetKey, set[str]] = {}
    for check_key in graph.asset_check_keys:
        checks_by_asset.setdefault(check_key.asset_key, set()).add(check_key.name)
    assets = _assets()
    assert len(assets) >= 11
    for node in assets:
        name = node.key.to_user_string()
        assert node.description and len(node.description) > 30, f"{name} needs a description"
        assert node.group_name in DOMAIN_GROUPS, f"{name} has group {node.group_name}"
        assert node.owners, f"{name} needs an owner"
        assert any(tag.startswith("dagster/kind/") for tag in node.tags), f"{name} needs kinds"
        assert checks_by_asset.get(node.key), f"{name} has no asset checks"


def test_daily_assets_share_one_partition_definition_and_single_run_backfills() -> None:
    from wealth_pipeline.defs.partitions import trading_sessions

    partitioned = [n for n in _assets() if n.partitions_def is not None]
    assert {n.key.to_user_string() for n in partitioned} >= {"raw_bars", "bars", "fx_rates", "factor_returns"}
    for node in partitioned:
        assert node.partitions_def == trading_sessions
        assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_partitions_are_weekdays_including_exchange_holidays() -> None:
    from wealth_pipeline.defs.partitions import closed_days, market_status, trading_sessions

    keys = trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange("2024-06-28", "2024-07-08"))
    assert keys == ["2024-06-28", "2024-07-01", "2024-07-02", "2024-07-03", "2024-07-04", "2024-07-05", "2024-07-08"]
    import datetime as dt

    assert market_status(dt.date(2024, 7, 4)) == {"NYSE": False, "NASDAQ": False, "TSX": True}
    assert market_status(dt.date(2024, 7, 1)) == {"NYSE": True, "NASDAQ": True, "TSX": False}
    assert closed_days(dt.date(2024, 12, 23), dt.date(2024, 12, 27)) == [dt.date(2024, 12, 25)]
