"""Models: a walk-forward validated XGBoost forward-return model and its daily predictions.

``model`` (unpartitioned) trains on the processed tier's bars, indicators and factor exposures for a
window of ``train_sessions`` sessions whose labels end on the last session of data (``as_of``, by
default the latest session all three inputs have materialized), records the exact files it read
(partition keys and sha256) and registers itself in ``models.model_registry``. ``predictions``
(daily, single-run backfills) scores each session with the latest model whose data ends strictly
before that session; a session before any model gets an explicit "no model yet" status.
"""

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from wealth_pipeline.core import features, modeling
from wealth_pipeline.defs import quality
from wealth_pipeline.defs.charts import markdown_chart
from wealth_pipeline.defs.models import store
from wealth_pipeline.defs.partitions import partition_window, single_run, trading_sessions
from wealth_pipeline.defs.processed.common import WAREHOUSE_RETRY, preview
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse

OWNERS = ["team:quant-research"]
MODEL_TAGS = {"wealth/warehouse": "models", "wealth/tier": "models"}
INPUTS = ("bars", "indicators", "factor_exposures")
# Calendar days of bars read before the first feature session: the 60-session return needs 60 bars.
RETURN_HISTORY_DAYS = 120

TRAINING_SET_VALID = "training_set_valid"
OOS_IC_FLOOR = "oos_ic_above_floor"
RELOAD_REPRODUCES = "reload_reproduces_predictions"


class ModelConfig(dg.Config):
    """Training window, label, walk-forward layout and XGBoost hyperparameters."""

    horizon: int = Field(default=5, description="Label: forward return over this many sessions of the security.")
    train_sessions: int = Field(default=756, description="Feature sessions in the training window (756 ~ 3 years).")
    as_of: str | None = Field(default=None, description="Last session of data the model may use (YYYY-MM-DD); "
                              "default: the latest session materialized for bars, indicators and factor_exposures.")
    n_folds: int = Field(default=5, description="Walk-forward folds (expanding window).")
    embargo: int = Field(default=5, description="Sessions embargoed before each test block, >= horizon.")
    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 20.0
    reg_lambda: float = 1.0
    seed: int = Field(default=7, description="XGBoost seed: with nthread fixed, training is deterministic.")
    nthread: int = Field(default=1, description="XGBoost threads (fixed for determinism; raise on dedicated cores).")
    min_labeled_sessions: int = Field(default=60, description="Fewer labeled sessions: no model is trained (not an error).")
    ic_floor: float = Field(default=0.02, description="A warning check fires when the out-of-sample rank IC is below this.")

    def training_params(self) -> modeling.TrainingParams:
        return modeling.TrainingParams(
            horizon=self.horizon, n_folds=self.n_folds, embargo=self.embargo, n_estimators=self.n_estimators,
            max_depth=self.max_depth, learning_rate=self.learning_rate, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda, seed=self.seed, nthread=self.nthread)


def latest_common_session(lake: Lakehouse) -> dt.date | None:
    """The latest session materialized in the processed tier for every model input."""
    ends = [max(parts) if (parts := lake.partitions("processed", name)) else None for name in INPUTS]
    return None if any(e is None for e in ends) else min(ends)


def training_set_outcome(training: pl.DataFrame, window_end: dt.date) -> quality.CheckOutcome:
    """No duplicated keys; no missing or NaN label where the symbol has ``horizon`` later bars inside the window."""
    dupes = training.group_by(list(features.KEY_COLUMNS)).len().filter(pl.col("len") > 1)
    inside = training.filter(pl.col("label_available") & (pl.col("label_end") <= window_end))
    bad_labels = inside.filter(pl.col("fwd_return").is_null() | ~pl.col("fwd_return").is_finite())
    return quality.CheckOutcome(
        TRAINING_SET_VALID, dupes.is_empty() and bad_labels.is_empty(), True,
        "Training set: unique (symbol, session_date) keys and no NaN label inside the window.",
        {"rows": training.height, "labeled_rows": inside.height, "duplicate_keys": dupes.height,
         "nan_labels_inside_window": bad_labels.height,
         "rows_alone_in_their_session": inside.filter(pl.col("target").is_null()).height,
         "examples": [f"{s} {d}" for s, d in bad_labels.select(features.KEY_COLUMNS).head(5).rows()]},
    )


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if not math.isfinite(value) else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _skipped(context: dg.AssetExecutionContext, reason: str) -> Iterator[dg.AssetCheckResult]:
    context.log.warning(f"model not trained: {reason}")
    for name in (TRAINING_SET_VALID, RELOAD_REPRODUCES, OOS_IC_FLOOR):
        yield dg.AssetCheckResult(check_name=name, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                  description=f"no model trained: {reason}", metadata={"skipped": reason})


@dg.asset(
    name="model",
    group_name="models",
    deps=list(INPUTS),
    kinds={"xgboost", "polars", "postgres"},
    owners=OWNERS,
    output_required=False,
    description=(
        "XGBoost model of each security's forward N-session return (cross-sectional z-score target) from "
        "cross-sectionally normalized features at t: returns, volatility, indicators, factor exposures. "
        "Walk-forward validated (expanding window, purge of overlapping labels, embargo >= horizon). Writes the "
        "booster (UBJ) and a manifest (window, exact input snapshot with partition checksums, features, "
        "parameters, library versions, out-of-sample IC / rank IC / ICIR / hit rate per fold) to the models "
        "tier, and a row to `models.model_registry`. Not materialized (checks report why) while fewer than "
        "`min_labeled_sessions` labeled sessions exist."
    ),
    check_specs=[
        dg.AssetCheckSpec(TRAINING_SET_VALID, asset="model", blocking=True,
                          description="Training set has unique (symbol, session_date) keys and no NaN label inside the window."),
        dg.AssetCheckSpec(RELOAD_REPRODUCES, asset="model", blocking=True,
                          description="The booster reloaded from the models tier reproduces the trained booster's predictions exactly."),
        dg.AssetCheckSpec(OOS_IC_FLOOR, asset="model", blocking=False,
                          description="Out-of-sample rank IC is at or above the configured floor (warning only)."),
    ],
    retry_policy=WAREHOUSE_RETRY,
    tags=MODEL_TAGS,
)
def model(context: dg.AssetExecutionContext, config: ModelConfig, lakehouse: LakehouseResource,
          warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    params = config.training_params()
    lake = lakehouse.get()
    latest = latest_common_session(lake)
    if latest is None:
        yield from _skipped(context, "no processed bars, indicators and factor exposures yet")
        return
    as_of = min(dt.date.fromisoformat(config.as_of), latest) if config.as_of else latest
    sessions = [d for d in lake.partitions("processed", "indicators") if d <= as_of]
    feature_sessions = sessions[-(config.train_sessions + params.horizon):]
    if not feature_sessions:
        yield from _skipped(context, f"no indicator partitions on or before {as_of}")
        return
    feature_start = feature_sessions[0]
    bars_start = feature_start - dt.timedelta(days=RETURN_HISTORY_DAYS)
    reads = {
        "bars": store.read_snapshot(lake, "processed", "bars", bars_start, as_of),
        "indicators": store.read_snapshot(lake, "processed", "indicators", feature_start, as_of),
        "factor_exposures": store.read_snapshot(lake, "processed", "factor_exposures", feature_start, as_of),
    }
    if any(r.frame.is_empty() for r in reads.values()):
        yield from _skipped(context, f"an input has no rows between {feature_start} and {as_of}")
        return
    training = features.build_training_set(reads["bars"].frame, reads["indicators"].frame,
                                           reads["factor_exposures"].frame, horizon=params.horizon,
                                           start=feature_start, end=as_of)
    labeled_sessions = training.filter(pl.col("label_available"))["session_date"].n_unique()
    if labeled_sessions < max(config.min_labeled_sessions, 2 * (params.n_folds + 1)):
        yield from _skipped(context, f"{labeled_sessions} labeled sessions up to {as_of} (need {config.min_labeled_sessions})")
        return

    outcome = training_set_outcome(training, as_of)
    yield outcome.to_result(context.asset_key)
    if not outcome.passed:
        yield dg.AssetCheckResult(check_name=RELOAD_REPRODUCES, passed=False, description="not trained: training set invalid")
        yield dg.AssetCheckResult(check_name=OOS_IC_FLOOR, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                  description="not trained: training set invalid")
        raise dg.Failure(quality.failure_message("model", [outcome]), allow_retries=False)

    trained = modeling.train(training, params)
    snapshot = {name: read.summary("processed", name) for name, read in reads.items()}
    model_id = modeling.model_id(trained, store.snapshot_digest(snapshot))
    trained_at = dt.datetime.now(dt.UTC)
    manifest = _json_safe(modeling.manifest(trained, model_id, {
        **{name: {**snapshot[name], "files": reads[name].files} for name in reads}}, trained_at))
    booster_uri, manifest_uri = store.save_model(lake, model_id, trained.booster, manifest, trained.oos)

    # Reload by id and compare with the in-memory booster on every labeled training row.
    reloaded, _ = store.load_model(lake, model_id)
    labeled = modeling.labeled_rows(training)
    original = modeling.predict(trained.booster, labeled, trained.features, params.nthread)
    again = modeling.predict(reloaded, labeled, trained.features, params.nthread)
    identical = bool(np.array_equal(original, again))
    yield dg.AssetCheckResult(check_name=RELOAD_REPRODUCES, passed=identical, metadata={
        "rows_compared": int(original.size), "max_abs_difference": float(np.max(np.abs(original - again))) if original.size else 0.0})
    metrics = trained.metrics
    ic_ok = math.isfinite(metrics["rank_ic"]) and metrics["rank_ic"] >= config.ic_floor
    yield dg.AssetCheckResult(
        check_name=OOS_IC_FLOOR, passed=ic_ok, severity=dg.AssetCheckSeverity.WARN,
        description=f"out-of-sample rank IC {metrics['rank_ic']:.4f} vs floor {config.ic_floor}",
        metadata={"oos_ic": _float(metrics["ic"]), "oos_rank_ic": _float(metrics["rank_ic"]), "floor": config.ic_floor})
    if not identical:
        raise dg.Failure(f"model {model_id}: the booster reloaded from {booster_uri} does not reproduce its predictions",
                         allow_retries=False)

    store.register(warehouse.url, {
        "model_id": model_id, "trained_at": trained_at, "train_start": trained.train_start,
        "train_end": trained.data_end, "label_horizon": params.horizon, "features": trained.features,
        "params": manifest["params"], "metrics": manifest["metrics"],
        "oos_ic": _nullable(metrics["ic"]), "oos_rank_ic": _nullable(metrics["rank_ic"]),
        "oos_icir": _nullable(metrics["icir"]), "oos_hit_rate": _nullable(metrics["hit_rate"]),
        "booster_uri": booster_uri, "manifest_uri": manifest_uri, "data_snapshot": _json_safe(snapshot),
    }, context.run_id)

    fold_columns = ["fold", "train_start", "train_end", "test_start", "test_end", "train_rows", "test_rows",
                    "ic", "rank_ic", "icir", "hit_rate"]
    importance = [{"feature": k, "share_of_gain": v} for k, v in trained.importance.items()]
    yield dg.MaterializeResult(metadata={
        "model_id": model_id,
        "train_start": str(trained.train_start),
        "feature_end": str(trained.feature_end),
        "data_end": str(trained.data_end),
        "dagster/row_count": trained.rows,
        "oos_ic": _float(metrics["ic"]),
        "oos_rank_ic": _float(metrics["rank_ic"]),
        "oos_icir": _float(metrics["icir"]),
        "oos_hit_rate": _float(metrics["hit_rate"]),
        "fold_metrics": dg.MetadataValue.md(_md_table(trained.folds, fold_columns)),
        "ic_by_fold": dg.MetadataValue.md(modeling.ic_bars(trained.folds)),
        "ic_by_fold_chart": dg.MetadataValue.md(markdown_chart(
            [[f.get("rank_ic", float("nan")) for f in trained.folds], [f.get("ic", float("nan")) for f in trained.folds],
             [0.0] * len(trained.folds)],
            ["rank IC", "IC", "zero"], "Out-of-sample IC by walk-forward fold")),
        "feature_importance": dg.MetadataValue.md(_md_table(importance[:15], ["feature", "share_of_gain"])),
        "booster_uri": dg.MetadataValue.path(booster_uri),
        "manifest_uri": dg.MetadataValue.path(manifest_uri),
        "data_snapshot": dg.MetadataValue.json(_json_safe(snapshot)),
    })


def _float(value: float) -> float:
    return float(value) if math.isfinite(value) else float("nan")


def _nullable(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ---- predictions -----------------------------------------------------------------------------------
PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(), "session_date": pl.Date(), "model_id": pl.Utf8(), "score": pl.Float64(), "rank": pl.Int32(),
}
COVERS_UNIVERSE = "covers_universe"
PREDICTION_CHECKS = [
    quality.Check("schema", "predictions has the documented columns and types.", predicate=quality.has_columns(PREDICTION_SCHEMA)),
    quality.Check("keys_unique", "One prediction per symbol and session.", predicate=quality.unique_keys(["symbol", "session_date"])),
]
NO_MODEL = "no model yet"
CLOSED = "market closed"
SCORED = "scored"


def score_sessions(feature_frame: pl.DataFrame, chosen: dict[dt.date, str | None],
                   boosters: dict[str, Any]) -> pl.DataFrame:
    """Scores and cross-sectional ranks (1 = highest score) of every row whose session has a model."""
    parts = []
    for model_id in sorted({m for m in chosen.values() if m is not None}):
        days = [d for d, m in chosen.items() if m == model_id]
        rows = feature_frame.filter(pl.col("session_date").is_in(days))
        if rows.is_empty():
            continue
        booster = boosters[model_id]
        scores = modeling.predict(booster, rows, booster.feature_names, nthread=1)
        parts.append(rows.select("symbol", "session_date").with_columns(
            pl.lit(model_id).alias("model_id"), pl.Series("score", scores, dtype=pl.Float64)))
    if not parts:
        return pl.DataFrame(schema=PREDICTION_SCHEMA)
    frame = pl.concat(parts).sort(["session_date", "symbol"])
    return frame.with_columns(
        pl.col("score").rank("ordinal", descending=True).over("session_date").cast(pl.Int32).alias("rank")
    ).select(list(PREDICTION_SCHEMA)).sort(["symbol", "session_date"])


def coverage_outcome(predictions: pl.DataFrame, universe: pl.DataFrame, status: dict[dt.date, str]) -> quality.CheckOutcome:
    """Every security with a bar on a scored session has a finite score, and ranks run 1..N per session."""
    scored_days = [d for d, s in status.items() if s == SCORED]
    expected = universe.filter(pl.col("session_date").is_in(scored_days)).select("symbol", "session_date")
    missing = expected.join(predictions.filter(pl.col("score").is_finite()), on=["symbol", "session_date"], how="anti")
    ranks = predictions.group_by("session_date").agg(
        (pl.col("rank").sort() == pl.int_range(1, pl.len() + 1)).all().alias("dense")).filter(~pl.col("dense"))
    return quality.CheckOutcome(
        COVERS_UNIVERSE, missing.is_empty() and ranks.is_empty(), True,
        "Every security with a bar on a session that has a model gets a score; ranks run 1..N.",
        {"expected": expected.height, "missing": missing.height, "sessions_with_bad_ranks": ranks.height,
         "sessions_without_model": sum(1 for s in status.values() if s == NO_MODEL),
         "examples": [f"{s} {d}" for s, d in missing.head(5).rows()]},
    )


@dg.asset(
    group_name="models",
    deps=["model", *INPUTS],
    partitions_def=trading_sessions,
    backfill_policy=single_run,
    kinds={"xgboost", "parquet", "postgres"},
    owners=OWNERS,
    description=(
        "Daily cross-sectional scores: each session is scored with the latest registered model whose data ends "
        "strictly before it (no look-ahead); rank 1 = highest score. Sessions before any model get an explicit "
        "'no model yet' status and no rows. Models tier `predictions/`, warehouse table `models.predictions`."
    ),
    check_specs=[c.spec("predictions") for c in PREDICTION_CHECKS] + [
        dg.AssetCheckSpec(COVERS_UNIVERSE, asset="predictions",
                          description="Every security with a bar on a session that has a model gets a score; ranks 1..N."),
    ],
    retry_policy=WAREHOUSE_RETRY,
    tags=MODEL_TAGS,
)
def predictions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    bars = lake.read_partitions("processed", "bars", start - dt.timedelta(days=RETURN_HISTORY_DAYS), end)
    universe = bars.filter(pl.col("session_date").is_between(start, end)).select("symbol", "session_date") \
        if bars.height else pl.DataFrame(schema={"symbol": pl.Utf8, "session_date": pl.Date})
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    open_days = set(universe["session_date"].unique().to_list())
    chosen = store.model_for_sessions(store.registered_models(warehouse.url, end + dt.timedelta(days=1)), days)
    status = {d: CLOSED if d not in open_days else (NO_MODEL if chosen[d] is None else SCORED) for d in days}
    scored_days = {d: chosen[d] for d in days if status[d] == SCORED}
    if scored_days:
        indicators = lake.read_partitions("processed", "indicators", start, end)
        exposures = lake.read_partitions("processed", "factor_exposures", start, end)
        feature_frame = features.build_features(bars, indicators, exposures, start, end)
        boosters = {m: store.load_model(lake, m)[0] for m in set(scored_days.values())}
        frame = score_sessions(feature_frame, scored_days, boosters)
    else:
        frame = pl.DataFrame(schema=PREDICTION_SCHEMA)
    outcomes = quality.evaluate(frame, PREDICTION_CHECKS, "predictions")
    outcomes.append(coverage_outcome(frame, universe, status))
    yield from (o.to_result(context.asset_key) for o in outcomes)
    if quality.blocking_failures(outcomes):
        raise dg.Failure(quality.failure_message("predictions", outcomes), allow_retries=False)
    by_day = frame.partition_by("session_date", as_dict=True) if frame.height else {}
    by_day = {key[0]: part for key, part in by_day.items()}
    for day in days:
        if day in by_day:
            lake.write_partition("models", "predictions", by_day[day], day)
        else:
            lake.delete_partition("models", "predictions", day)
    load = warehouse.load_window("models.predictions", frame, time_column="session_date", window_start=start,
                                 window_end=end, asset="predictions", partition_key=f"{start}..{end}", run_id=context.run_id)
    no_model = [str(d) for d in days if status[d] == NO_MODEL]
    summary = pl.DataFrame({"status": list(status.values())}).group_by("status").len().sort("status")
    latest = frame.filter(pl.col("session_date") == frame["session_date"].max()).sort("rank") if frame.height else frame
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "status": NO_MODEL if not scored_days and no_model else (SCORED if scored_days else CLOSED),
        "sessions_scored": len(scored_days),
        "sessions_without_model": dg.MetadataValue.json(no_model),
        "sessions_market_closed": sum(1 for s in status.values() if s == CLOSED),
        "status_by_session": dg.MetadataValue.md(summary.to_pandas().to_markdown(index=False)),
        "models_used": dg.MetadataValue.json(sorted(set(scored_days.values()))),
        "warehouse_checksum": load.checksum,
        "preview": preview(latest.head(10)),
    })
