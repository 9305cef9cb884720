"""Model and predictions assets end to end: real PostgreSQL, local lakehouse, one market + analytics backfill."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.core import features
from wealth_pipeline.defs.models import assets as model_assets
from wealth_pipeline.defs.models import automation, store
from wealth_pipeline.environment import with_database
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration

MARKET = {"synthetic_universe": 12, "synthetic_signal_strength": 0.1}
UPSTREAM = "group:ingest or group:processed or group:analytics"
FIRST_AS_OF, SECOND_AS_OF = "2024-01-12", "2024-02-09"
PREDICT_FROM, PREDICT_TO = "2024-01-08", "2024-02-29"
FAST = {"n_estimators": 40, "max_depth": 3, "nthread": 1, "n_folds": 3, "embargo": 5, "min_labeled_sessions": 60}


def train(p: Pipeline, **config: Any) -> dg.ExecuteInProcessResult:
    """Materialize ``model`` with run config on the pipeline's instance, as the train_model job would."""
    return dg.materialize([model_assets.model], resources=p.resources(), instance=p.instance, raise_on_error=False,
                          run_config=dg.RunConfig({"model": model_assets.ModelConfig(**{**FAST, **config})}))


@pytest.fixture(scope="module")
def modeled(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fourteen months of market data and analytics, two models (mid-January, mid-February), predictions."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_server_url, name)
    migrate.upgrade(url)
    p = Pipeline(url, str(tmp_path_factory.mktemp("models") / "lake"), None, **MARKET)
    p.run("2023-01-02", "2024-02-29", selection=UPSTREAM)
    too_early = train(p, as_of="2023-03-01")
    first, second = train(p, as_of=FIRST_AS_OF), train(p, as_of=SECOND_AS_OF)
    runs = p.run(PREDICT_FROM, PREDICT_TO, selection="predictions")
    return {"p": p, "too_early": too_early, "first": first, "second": second, "predictions_run": runs[-1]["result"]}


def _registry(p: Pipeline) -> list[tuple]:
    return p.query("SELECT model_id, train_start, train_end, label_horizon, features, params, metrics, oos_ic, oos_rank_ic, "
                   "oos_icir, oos_hit_rate, booster_uri, manifest_uri, data_snapshot FROM models.model_registry ORDER BY train_end")


def test_model_is_registered_with_manifest_snapshot_and_metrics(modeled: dict[str, Any]) -> None:
    p: Pipeline = modeled["p"]
    for key in ("first", "second"):
        failures = [e.event_specific_data.error.to_string() for e in modeled[key].all_events if e.is_step_failure]
        assert modeled[key].success, failures
    rows = _registry(p)
    assert len(rows) == 2, "the too-early run trained nothing"
    bars = p.lake.read_partitions("processed", "bars")
    for row, as_of in zip(rows, (FIRST_AS_OF, SECOND_AS_OF), strict=True):
        model_id, train_start, train_end, horizon, feats, params, metrics, ic, rank_ic, icir, hit, booster_uri, manifest_uri, snap = row
        last_session = bars.filter(pl.col("session_date") <= dt.date.fromisoformat(as_of))["session_date"].max()
        assert train_end == last_session, "train_end is the last session of data the model saw (its last label)"
        assert train_start == bars["session_date"].min() and horizon == 5
        assert feats == list(features.FEATURE_COLUMNS)
        assert params["seed"] == 7 and params["n_estimators"] == 40 and params["embargo"] == 5
        assert [f["fold"] for f in metrics["folds"]] == [1, 2, 3]
        assert all({"ic", "rank_ic", "icir", "hit_rate", "test_start", "test_end"} <= set(f) for f in metrics["folds"])
        assert metrics["oos"]["rank_ic"] == pytest.approx(rank_ic) and None not in (ic, icir, hit)
        assert booster_uri.endswith(f"models/forecaster/{model_id}/booster.ubj")
        manifest = p.lake.get_json("models", f"forecaster/{model_id}", "manifest.json")
        assert manifest_uri.endswith("manifest.json") and manifest["model_id"] == model_id
        assert manifest["training_window"]["data_end"] == str(train_end)
        assert manifest["features"] == feats and manifest["params"] == params
        assert {"xgboost", "numpy", "polars", "python"} <= set(manifest["library_versions"])
        # The snapshot names every file read and its checksum: recompute them from the lakehouse.
        for dataset in ("bars", "indicators", "factor_exposures"):
            entry = manifest["data_snapshot"][dataset]
            assert entry["last_partition"] <= as_of and entry["partitions"] == len(entry["files"]) > 200
            assert snap[dataset]["sha256"] == entry["sha256"]
            for file in entry["files"][:: max(1, len(entry["files"]) // 7)]:
                # Delta tables: the partition's rows at the recorded table version, read back one by one
                day = dt.date.fromisoformat(file["partition"])
                rows_then = p.lake.read_partitions("processed", dataset, day, day, as_of=entry["table_version"])
                assert rows_then.height == file["rows"]
                assert store.partition_digest(rows_then) == file["sha256"]
    assert rows[0][0] != rows[1][0]


def test_model_metadata_and_checks(modeled: dict[str, Any]) -> None:
    result = modeled["second"]
    (mat,) = result.asset_materializations_for_node("model")
    metadata = mat.metadata
    assert metadata["data_end"].value == "2024-02-09"
    assert "| fold |" in metadata["fold_metrics"].value and "rank IC" in metadata["ic_by_fold"].value
    assert "share_of_gain" in metadata["feature_importance"].value
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["training_set_valid"].passed and checks["reload_reproduces_predictions"].passed
    assert checks["training_set_valid"].metadata["nan_labels_inside_window"].value == 0
    assert "oos_ic_above_floor" in checks  # reported either way; warning severity
    assert checks["oos_ic_above_floor"].severity == dg.AssetCheckSeverity.WARN
    early = modeled["too_early"]
    assert early.success and not early.asset_materializations_for_node("model")
    assert all("no model trained" in (e.description or "") for e in early.get_asset_check_evaluations())


def test_predictions_use_the_latest_model_trained_strictly_before_each_session(modeled: dict[str, Any]) -> None:
    p: Pipeline = modeled["p"]
    first_id, first_end = p.query("SELECT model_id, train_end FROM models.model_registry ORDER BY train_end")[0]
    second_id, second_end = p.query("SELECT model_id, train_end FROM models.model_registry ORDER BY train_end")[1]
    assert p.query("SELECT count(*) FROM models.predictions p JOIN models.model_registry r USING (model_id) "
                   "WHERE r.train_end >= p.session_date")[0][0] == 0
    used = dict(p.query("SELECT session_date, min(model_id) FROM models.predictions GROUP BY 1"))
    bars = p.lake.read_partitions("processed", "bars", dt.date.fromisoformat(PREDICT_FROM), dt.date.fromisoformat(PREDICT_TO))
    for day in bars["session_date"].unique().to_list():
        expected = None if day <= first_end else first_id if day <= second_end else second_id
        assert used.get(day) == expected, day
    # Ranks 1..N per session over every security with a bar.
    ranks = p.query("SELECT session_date, array_agg(rank ORDER BY rank), array_agg(symbol ORDER BY symbol) "
                    "FROM models.predictions GROUP BY 1")
    universe = {d: sorted(g["symbol"].to_list()) for (d,), g in bars.group_by("session_date")}
    assert len(ranks) > 20
    for day, rank_list, symbols in ranks:
        assert rank_list == list(range(1, len(symbols) + 1)) and symbols == universe[day]
    ordered = p.query("SELECT symbol FROM models.predictions WHERE session_date = '2024-02-28' ORDER BY score DESC")
    assert [r[0] for r in ordered] == [r[0] for r in p.query(
        "SELECT symbol FROM models.predictions WHERE session_date = '2024-02-28' ORDER BY rank")]
    mat = modeled["predictions_run"].asset_materializations_for_node("predictions")[-1]  # the window's summary
    no_model = mat.metadata["sessions_without_model"].value
    assert no_model == [str(d) for d in sorted(universe) if d <= first_end]
    assert mat.metadata["sessions_scored"].value == len(ranks)


def test_loading_a_model_by_id_reproduces_its_stored_predictions_exactly(modeled: dict[str, Any]) -> None:
    p: Pipeline = modeled["p"]
    lake = p.lake
    start, end = dt.date(2024, 2, 12), dt.date(2024, 2, 29)
    (second_id,) = p.query("SELECT model_id FROM models.model_registry ORDER BY train_end DESC LIMIT 1")[0]
    booster, manifest = store.load_model(lake, second_id)
    frame = features.build_features(lake.read_partitions("processed", "bars", start - dt.timedelta(days=120), end),
                                    lake.read_partitions("processed", "indicators", start, end),
                                    lake.read_partitions("processed", "factor_exposures", start, end), start, end)
    scores = booster.predict(__import__("xgboost").DMatrix(
        frame.select(manifest["features"]).fill_null(np.nan).to_numpy(), missing=np.nan, feature_names=manifest["features"]))
    mine = frame.select("symbol", "session_date").with_columns(pl.Series("score", scores, dtype=pl.Float64))
    stored = pl.DataFrame(p.query("SELECT symbol, session_date, score FROM models.predictions WHERE session_date "
                                  "BETWEEN %s AND %s AND model_id = %s", (start, end, second_id)),
                          schema=["symbol", "session_date", "score"], orient="row")
    joined = stored.join(mine, on=["symbol", "session_date"], suffix="_reloaded")
    assert joined.height == stored.height == frame.height > 100
    assert (joined["score"] == joined["score_reloaded"]).all(), "bit-identical scores from the reloaded booster"
    tier = lake.read_partitions("models", "predictions", start, end)
    assert tier.height == stored.height


def test_retrain_sensor_counts_sessions_landed_since_the_last_model(modeled: dict[str, Any]) -> None:
    p: Pipeline = modeled["p"]
    instance = p.instance
    assert automation.last_model_data_end(instance) == SECOND_AS_OF
    fresh = automation.new_sessions(instance)
    assert fresh[0] == "2024-02-12" and fresh[-1] == "2024-02-29" and len(fresh) == 14  # weekdays after Feb 9
    ready = automation.build_retrain_sensor(min_new_sessions=14)(dg.build_sensor_context(instance=instance))
    assert isinstance(ready, dg.RunRequest) and ready.run_key == "retrain-through-2024-02-29"
    waiting = automation.build_retrain_sensor(min_new_sessions=15)(dg.build_sensor_context(instance=instance))
    assert isinstance(waiting, dg.SkipReason) and "14 new session(s)" in waiting.skip_message


def test_training_on_an_index_uses_its_members_as_of_each_session_only(modeled: dict[str, Any]) -> None:
    """universe_index (issue 21): the training rows are the index's point-in-time members; TSX names are in no index."""
    from wealth_pipeline.defs.models import store as model_store

    p: Pipeline = modeled["p"]
    result = train(p, as_of=SECOND_AS_OF, universe_index="S&P 500")
    assert result.success
    model_id = result.asset_materializations_for_node("model")[0].metadata["model_id"].value
    oos = p.lake.read_dataset("models", f"{model_store.MODEL_DATASET}/{model_id}/{model_store.OOS_TABLE}")
    master = p.lake.read_dataset("processed", "symbol_master")
    membership = p.lake.read_dataset("processed", "index_membership")
    members = set(master.join(membership.filter(pl.col("index_name") == "S&P 500"), on="security_id")["symbol"])
    assert set(oos["symbol"]) == members and "TD.TO" not in members and {"AAPL", "MSFT", "GOOGL"} <= members
    failed = train(p, as_of=SECOND_AS_OF, universe_index="NASDAQ 100")
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    assert "universe_index" in failure.step_failure_data.user_failure_data.description
