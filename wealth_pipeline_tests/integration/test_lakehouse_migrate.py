"""``wealth-pipeline lakehouse migrate`` on a small pipeline state in the parquet layout (folder and S3).

The old layout is written the way the parquet lakehouse wrote it (``frame_to_parquet`` at
``{tier}/{dataset}/date=YYYY-MM-DD/{file}``), from the synthetic market the demo uses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import polars as pl
import pytest

from wealth_pipeline import cli
from wealth_pipeline.lakehouse.store import Lakehouse, frame_to_parquet
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline_tests.integration import test_lakehouse as base
from wealth_pipeline_tests.integration.test_lakehouse import Backend

pytestmark = pytest.mark.integration
backend = base.backend  # folder and S3


def _old_layout(lake: Lakehouse) -> dict[str, pl.DataFrame]:
    """A parquet-layout state: processed bars per session, symbol master, predictions, a model's files, raw, artifacts."""
    bars = SyntheticMarket(seed=7, universe_size=6).bars(dt.date(2024, 1, 2), dt.date(2024, 2, 29))
    days = sorted(bars["session_date"].unique().to_list())
    for day in days:
        part = bars.filter(pl.col("session_date") == day)
        lake.store.put_bytes(Lakehouse.partition_key("processed", "bars", day), frame_to_parquet(part))
    master = pl.DataFrame({"symbol": sorted(bars["symbol"].unique().to_list())})
    lake.store.put_bytes("processed/symbol_master/data.parquet", frame_to_parquet(master))
    preds = bars.filter(pl.col("session_date") >= days[-5]).select(
        "symbol", "session_date", pl.lit(0.5).alias("score"), pl.lit(1, dtype=pl.Int32).alias("rank"))
    for day in days[-5:]:
        lake.store.put_bytes(Lakehouse.partition_key("models", "predictions", day),
                             frame_to_parquet(preds.filter(pl.col("session_date") == day)))
    oos = preds.head(7)
    lake.store.put_bytes("models/forecaster/m1/oos_predictions.parquet", frame_to_parquet(oos))
    lake.store.put_bytes("models/forecaster/m1/booster.ubj", b"booster bytes")
    lake.put_json("models", "forecaster/m1", "manifest.json", {"model_id": "m1"})
    lake.write_partition("raw", "bars", bars.head(3), days[0])
    lake.store.put_bytes("artifacts/quarantine/bars/2024-01-02_2024-01-05_abcd1234.parquet", frame_to_parquet(bars.head(2)))
    return {"bars": bars, "master": master, "preds": preds, "oos": oos}


def _migrate(backend: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    if backend.endpoint:
        monkeypatch.setenv("WEALTH_S3_ENDPOINT_URL", backend.endpoint)
    code = cli.main(["lakehouse", "migrate", "--uri", backend.uri, "--json"])
    return code, capsys.readouterr().out


def test_migrate_converts_a_parquet_lakehouse_to_delta_tables(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = backend.lake
    old = _old_layout(lake)
    untouched = {k: hashlib.sha256(lake.store.get_bytes(k)).hexdigest() for k in lake.store.list_keys()
                 if k.startswith(("raw/", "artifacts/")) or not k.endswith(".parquet")}

    code, out = _migrate(backend, monkeypatch, capsys)
    assert code == 0, out
    report = {r["table"]: r for r in json.loads(out)}
    sessions = old["bars"]["session_date"].n_unique()
    assert report["processed/bars"] == {"table": "processed/bars", "files": sessions, "rows": old["bars"].height,
                                        "version": 0}
    assert set(report) == {"processed/bars", "processed/symbol_master", "models/predictions",
                           "models/forecaster/m1/oos_predictions", "quarantine/bars"}
    # The old quarantine file's rows are in the quarantine table, with the window and run its name gave.
    assert report["quarantine/bars"] == {"table": "quarantine/bars", "files": 1, "rows": 2, "version": 0}
    legacy = lake.read("quarantine", "bars")
    assert legacy.select(old["bars"].columns).equals(old["bars"].head(2))
    assert set(legacy.select("window_start", "window_end", "run_id").rows()) == {
        (dt.date(2024, 1, 2), dt.date(2024, 1, 5), "abcd1234")}
    assert legacy["quarantined_at"].null_count() == 0

    bars = lake.read_partitions("processed", "bars")
    assert bars.equals(old["bars"].sort("session_date", maintain_order=True))
    assert lake.partitions("processed", "bars") == sorted(old["bars"]["session_date"].unique().to_list())
    assert lake.read_dataset("processed", "symbol_master").equals(old["master"])
    assert lake.read_partitions("models", "predictions").equals(old["preds"])
    assert lake.read_dataset("models", "forecaster/m1/oos_predictions").equals(old["oos"])
    assert all(v == 0 for v in (lake.version("processed", "bars"), lake.version("models", "predictions")))
    # The old parquet files are gone; raw, artifacts, boosters and manifests are byte-identical.
    leftover = [k for k in lake.store.list_keys() if "/date=" in k and not k.startswith("raw/")]
    assert leftover == []
    assert {k: hashlib.sha256(lake.store.get_bytes(k)).hexdigest() for k in untouched} == untouched

    # Again: nothing to convert. Then the tables take ordinary writes.
    code, out = _migrate(backend, monkeypatch, capsys)
    assert code == 0 and json.loads(out) == []
    day = lake.partitions("processed", "bars")[-1]
    rewrite = lake.write_partition("processed", "bars", lake.read_partition("processed", "bars", day), day)
    assert (rewrite.version, rewrite.changed) == (0, False)


def test_migrate_refuses_a_table_with_old_files_beside_it(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = backend.lake
    day = dt.date(2024, 1, 2)
    frame = pl.DataFrame({"symbol": ["A"], "session_date": [day]})
    lake.write_partition("processed", "bars", frame, day)
    lake.store.put_bytes(Lakehouse.partition_key("processed", "bars", day), frame_to_parquet(frame))
    if backend.endpoint:
        monkeypatch.setenv("WEALTH_S3_ENDPOINT_URL", backend.endpoint)
    assert cli.main(["lakehouse", "migrate", "--uri", backend.uri]) == 1
    err = capsys.readouterr().err
    assert "processed/bars is already a Delta table but parquet files of the old layout remain" in err
    assert "date=2024-01-02/data.parquet" in err and err.count("\n") == 1
