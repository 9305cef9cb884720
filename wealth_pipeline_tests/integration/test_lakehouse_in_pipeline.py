"""The pipeline writes Delta tables and Dagster sees their versions (metadata and data version).

A market window through the real assets (real PostgreSQL, local lakehouse): each processed
dataset's materialization carries ``lakehouse/table_version`` equal to the table's version, and
Dagster's data version follows it; re-running the same window commits nothing, so the version and
the data version stay where they were.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration


def _latest(p: Pipeline, asset: str) -> tuple[int, str | None]:
    event = p.instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None, asset
    mat = event.asset_materialization
    return mat.metadata["lakehouse/table_version"].value, mat.tags.get("dagster/data_version")


def test_processed_materializations_carry_the_delta_version(pg_url: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_url)
    p = Pipeline(pg_url, str(tmp_path / "lake"), None)
    runs = p.run("2024-06-26", "2024-07-03")
    assert all(r["success"] for r in runs)
    lake = p.lake
    assert lake.table_names("processed")[:1] and "bars" in lake.table_names("processed")
    assert not [k for k in lake.store.list_keys("processed/") if "/date=" in k], "no parquet-layout file left"
    version, data_version = _latest(p, "bars")
    assert version == lake.version("processed", "bars")
    assert data_version == f"v{version}"
    assert lake.read_partitions("processed", "bars", dt.date(2024, 6, 26), dt.date(2024, 7, 3), as_of=version).height > 0

    runs = p.run("2024-06-26", "2024-07-03")
    assert all(r["success"] for r in runs)
    assert lake.version("processed", "bars") == version, "identical content: no new commit"
    assert _latest(p, "bars") == (version, data_version), "same version, same data version: nothing downstream is stale"
