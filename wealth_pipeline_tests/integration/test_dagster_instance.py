"""Dagster's instance storage really is PostgreSQL, configured by the project's dagster.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from wealth_pipeline.environment import REPO_ROOT, dagster_storage_url

pytestmark = pytest.mark.integration


@dg.asset
def canary() -> int:
    return 1


def test_materialization_is_visible_from_a_second_instance(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("WEALTH_DAGSTER_DATABASE_URL", dagster_storage_url(pg_url))

    with dg.DagsterInstance.get() as first:
        assert type(first.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([canary], instance=first)
        assert result.success
        run_id = result.run_id

    with dg.DagsterInstance.from_config(str(home)) as second:
        assert second.get_run_by_id(run_id).is_success
        event = second.get_latest_materialization_event(dg.AssetKey("canary"))
        assert event is not None and event.run_id == run_id

    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert stored == 1, "the run row lives in the PostgreSQL database named by WEALTH_DAGSTER_DATABASE_URL"
