"""The one Definitions object loads, validates, and every asset is documented and checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from wealth_pipeline.definitions import defs
from wealth_pipeline.environment import REPO_ROOT

DOMAIN_GROUPS = {"ingest", "processed", "analytics", "portfolio", "models", "marts", "operations"}


def _assets() -> list[dg.AssetSpec]:
    graph = defs.resolve_asset_graph()
    return [graph.get(key) for key in graph.get_all_asset_keys()]


def test_definitions_validate_with_the_dagster_cli(tmp_path: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    # Validation needs no instance storage: an empty Dagster home keeps it off the Postgres config.
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(REPO_ROOT / "workspace.yaml")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


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
