"""A model's manifest pins the Delta version of every input: retraining from it after newer commits is exact.

The real ``model`` asset trains on synthetic processed tables (real PostgreSQL for its registry,
local lakehouse); then bars and indicators are restated by newer commits. Retraining on the
manifest's table versions reproduces the same model id and bit-identical predictions; retraining
on the latest data does not (so the check can fail).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from wealth_pipeline.core import features, modeling
from wealth_pipeline.defs.models import assets as model_assets
from wealth_pipeline.defs.models import store
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse, LakehouseError
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration.test_lakehouse import _weekdays

pytestmark = pytest.mark.integration

SYMBOLS = [f"S{i:02d}" for i in range(10)]
FAST = {"n_estimators": 30, "max_depth": 3, "nthread": 1, "n_folds": 3, "embargo": 5, "min_labeled_sessions": 40,
        "train_sessions": 150}
INPUTS = ("bars", "indicators", "factor_exposures")


def _inputs(days: list[dt.date], seed: int) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    n = len(days) * len(SYMBOLS)
    keys = {"symbol": [s for _ in days for s in SYMBOLS], "session_date": [d for d in days for _ in SYMBOLS]}
    steps = rng.normal(0, 0.01, (len(days), len(SYMBOLS)))
    close = (100 * np.exp(np.cumsum(steps, axis=0))).reshape(-1)
    bars = pl.DataFrame({**keys, "adj_close": close, "close": close})
    indicators = pl.DataFrame({**keys, **{c: rng.normal(0, 1, n) for c in features.INDICATOR_INPUTS}}).with_columns(
        (pl.col("sma_20").abs() + 50).alias("sma_20"), (pl.col("sma_50").abs() + 50).alias("sma_50"),
        (pl.col("sma_200").abs() + 50).alias("sma_200"), (pl.col("atr_14").abs()).alias("atr_14"),
        (pl.col("bb_upper_20").abs() + 120).alias("bb_upper_20"), (pl.col("bb_lower_20").abs() + 40).alias("bb_lower_20"),
        (pl.col("realized_vol_20").abs()).alias("realized_vol_20"), (pl.col("realized_vol_60").abs()).alias("realized_vol_60"))
    exposures = pl.DataFrame({**keys, **{c: rng.normal(0, 1, n) for c in features.EXPOSURE_INPUTS}})
    return {"bars": bars, "indicators": indicators, "factor_exposures": exposures}


def _write(lake: Lakehouse, frames: dict[str, pl.DataFrame], start: dt.date, end: dt.date) -> None:
    for name, frame in frames.items():
        lake.write_window("processed", name, frame, "session_date", start, end)


def _retrain(reads: dict[str, store.SnapshotRead], manifest: dict) -> tuple[modeling.TrainedModel, pl.DataFrame]:
    window = manifest["data_snapshot"]["indicators"]["window"]
    start, end = (dt.date.fromisoformat(d) for d in window)
    params = modeling.TrainingParams(**manifest["params"])
    training = features.build_training_set(reads["bars"].frame, reads["indicators"].frame,
                                           reads["factor_exposures"].frame, horizon=params.horizon, start=start, end=end)
    return modeling.train(training, params), training


def test_retraining_from_a_manifest_after_newer_commits_reproduces_predictions(pg_url: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_url)
    lake_uri = str(tmp_path / "lake")
    lake = Lakehouse.from_uri(lake_uri)
    days = _weekdays(dt.date(2023, 1, 2), 220)
    _write(lake, _inputs(days, seed=3), days[0], days[-1])
    trained_versions = lake.versions("processed", list(INPUTS))

    result = dg.materialize(
        [model_assets.model], raise_on_error=False,
        resources={"lakehouse": LakehouseResource(uri=lake_uri), "warehouse": WarehouseResource(url=pg_url)},
        run_config=dg.RunConfig({"model": model_assets.ModelConfig(**FAST)}),
    )
    assert result.success, [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    (mat,) = result.asset_materializations_for_node("model")
    model_id = mat.metadata["model_id"].value
    booster, manifest = store.load_model(lake, model_id)
    for name in INPUTS:
        entry = manifest["data_snapshot"][name]
        assert entry["table_version"] == trained_versions[name], f"{name}: the manifest records the version read"
        assert entry["table_uri"] == lake.table_uri("processed", name)
        # Each partition's checksum is recomputable from the table (an independent read of one day).
        assert entry["partitions"] == len(entry["files"]) > 100
        for file in entry["files"][::37]:
            part = lake.read_partition("processed", name, dt.date.fromisoformat(file["partition"]))
            assert store.partition_digest(part) == file["sha256"] and part.height == file["rows"]

    # Newer commits restate the window the model saw (a vendor correction) and add sessions.
    restated = _inputs(days, seed=4)
    _write(lake, {"bars": restated["bars"], "indicators": restated["indicators"]}, days[0], days[-1])
    later = _weekdays(days[-1] + dt.timedelta(days=1), 10)
    _write(lake, _inputs(later, seed=5), later[0], later[-1])
    assert all(lake.version("processed", n) > trained_versions[n] for n in ("bars", "indicators"))

    reads = store.snapshot_from_manifest(lake, manifest)
    assert {n: r.version for n, r in reads.items()} == trained_versions
    again, training = _retrain(reads, manifest)
    snapshot = {name: read.summary("processed", name) for name, read in reads.items()}
    assert modeling.model_id(again, store.snapshot_digest(snapshot)) == model_id, "same inputs, same model id"
    labeled = modeling.labeled_rows(training)
    assert labeled.height > 500
    stored = modeling.predict(booster, labeled, manifest["features"], 1)
    reproduced = modeling.predict(again.booster, labeled, manifest["features"], 1)
    assert np.array_equal(stored, reproduced), "bit-identical predictions from the retrained booster"

    # The same retraining on today's data is a different model: the version pin is what made it exact.
    latest = {name: store.read_snapshot(lake, "processed", name, reads[name].frame["session_date"].min(),
                                        reads[name].frame["session_date"].max()) for name in INPUTS}
    drifted, _ = _retrain(latest, manifest)
    assert not np.array_equal(stored, modeling.predict(drifted.booster, labeled, manifest["features"], 1))

    # A manifest whose checksum does not match what the version holds is refused, naming the table.
    tampered = {**manifest, "data_snapshot": {**manifest["data_snapshot"],
                                              "bars": {**manifest["data_snapshot"]["bars"], "sha256": "0" * 64}}}
    with pytest.raises(LakehouseError, match=r"processed/bars version \d+: rows of .* differ from the manifest"):
        store.snapshot_from_manifest(lake, tampered)
