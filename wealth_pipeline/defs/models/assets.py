"""Models: a walk-forward validated XGBoost forward-return model and its daily predictions.

``model`` (unpartitioned) trains on the processed tier's bars, indicators and factor exposures for a
window of ``train_sessions`` sessions whose labels end on the last session of data (``as_of``, by
default the latest session all three inputs have materialized), records the exact files it read
(partition keys and sha256) and registers itself in ``models.model_registry``. ``predictions``
(daily, single-run backfills) scores each session with the latest model whose data ends strictly
before that session; a session before any model gets an explicit "no model yet" status.
"""

import dataclasses
import datetime as dt
import math
import typing
from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pydantic
from pydantic import Field

from wealth_pipeline.core import features, modeling, universe
from wealth_pipeline.defs import datasets, publish, quality
from wealth_pipeline.defs.charts import markdown_chart
from wealth_pipeline.defs.models import store
from wealth_pipeline.defs.partitions import partition_window
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse

OWNERS = ["team:quant-research"]
MODEL_TAGS = {"wealth/warehouse": "models", "wealth/tier": "models"}
INPUT_DATASETS = (datasets.BARS, datasets.INDICATORS, datasets.FACTOR_EXPOSURES)
INPUTS = tuple(d.name for d in INPUT_DATASETS)
PREDICTIONS = datasets.PREDICTIONS
RETURN_HISTORY_DAYS = features.RETURN_HISTORY_DAYS

TRAINING_SET_VALID = "training_set_valid"
OOS_IC_FLOOR = "oos_ic_above_floor"
RELOAD_REPRODUCES = "reload_reproduces_predictions"


def _training_fields() -> dict[str, Any]:
    """``TrainingParams``' fields as pydantic fields: one declaration of the hyperparameters and their defaults."""
    hints = typing.get_type_hints(modeling.TrainingParams)
    return {f.name: (hints[f.name], Field(default=f.default, description=f.metadata.get("description")))
            for f in dataclasses.fields(modeling.TrainingParams)}


_TrainingConfig = pydantic.create_model("_TrainingConfig", __base__=dg.Config, **_training_fields())


class ModelConfig(_TrainingConfig):
    """Training window and floors of the model asset, plus every ``TrainingParams`` field (label,
    walk-forward layout, XGBoost hyperparameters) with its default."""

    train_sessions: int = Field(default=756, description="Feature sessions in the training window (756 ~ 3 years).")
    as_of: str | None = Field(default=None, description="Last session of data the model may use (YYYY-MM-DD); "
                              "default: the latest session materialized for bars, indicators and factor_exposures.")
    min_labeled_sessions: int = Field(default=60, description="Fewer labeled sessions: no model is trained (not an error).")
    ic_floor: float = Field(default=0.02, description="A warning check fires when the out-of-sample rank IC is below this.")
    universe_index: str | None = Field(default=None, description="Train only on this index's members as of each session "
                                       "(ref.index_membership, e.g. 'S&P 500'); default: every security listed that session.")

    def training_params(self) -> modeling.TrainingParams:
        return modeling.TrainingParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(modeling.TrainingParams)})


def latest_common_session(lake: Lakehouse) -> dt.date | None:
    """The latest session materialized in the processed tier for every model input."""
    ends = [max(parts) if (parts := lake.partitions(d.tier, d.lake_dataset)) else None for d in INPUT_DATASETS]
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


def _point_in_time(lake: Lakehouse, training: pl.DataFrame, index: str | None) -> pl.DataFrame:
    """Training rows of securities listed (and, with ``index``, index members) on their session (``core.universe``)."""
    master = datasets.SYMBOL_MASTER
    if not lake.exists(master.tier, master.lake_dataset):
        return training
    members = datasets.INDEX_MEMBERSHIP
    membership = lake.read_dataset(members.tier, members.lake_dataset) if lake.exists(members.tier, members.lake_dataset) else None
    try:
        return universe.point_in_time(training, lake.read_dataset(master.tier, master.lake_dataset), membership, index)
    except ValueError as exc:
        raise dg.Failure(f"model config universe_index: {exc}", allow_retries=False) from exc


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
    deps=datasets.keys(*INPUT_DATASETS),
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
    retry_policy=publish.WAREHOUSE_RETRY,
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
    sessions = [d for d in lake.partitions(datasets.INDICATORS.tier, datasets.INDICATORS.lake_dataset) if d <= as_of]
    feature_sessions = sessions[-(config.train_sessions + params.horizon):]
    if not feature_sessions:
        yield from _skipped(context, f"no indicator partitions on or before {as_of}")
        return
    feature_start = feature_sessions[0]
    bars_start = feature_start - dt.timedelta(days=RETURN_HISTORY_DAYS)
    reads = {d.name: store.read_snapshot(lake, d.tier, d.lake_dataset, bars_start if d is datasets.BARS else feature_start, as_of)
             for d in INPUT_DATASETS}
    if any(r.frame.is_empty() for r in reads.values()):
        yield from _skipped(context, f"an input has no rows between {feature_start} and {as_of}")
        return
    training = features.build_training_set(reads["bars"].frame, reads["indicators"].frame,
                                           reads["factor_exposures"].frame, horizon=params.horizon,
                                           start=feature_start, end=as_of)
    training = _point_in_time(lake, training, config.universe_index)  # issue 21: the universe as of each session
    labeled_sessions = training.filter(pl.col("label_available"))["session_date"].n_unique()
    if labeled_sessions < max(config.min_labeled_sessions, 2 * (params.n_folds + 1)):
        yield from _skipped(context, f"{labeled_sessions} labeled sessions up to {as_of} (need {config.min_labeled_sessions})")
        return

    outcome = training_set_outcome(training, as_of)
    if not outcome.passed:
        yield dg.AssetCheckResult(check_name=RELOAD_REPRODUCES, passed=False, description="not trained: training set invalid")
        yield dg.AssetCheckResult(check_name=OOS_IC_FLOOR, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                  description="not trained: training set invalid")
    yield from publish.stop_if_blocked("model", {context.asset_key: [outcome]})

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
    reload_check = dg.AssetCheckResult(check_name=RELOAD_REPRODUCES, passed=identical, metadata={
        "rows_compared": int(original.size), "max_abs_difference": float(np.max(np.abs(original - again))) if original.size else 0.0})
    metrics = trained.metrics
    ic_ok = math.isfinite(metrics["rank_ic"]) and metrics["rank_ic"] >= config.ic_floor
    ic_check = dg.AssetCheckResult(
        check_name=OOS_IC_FLOOR, passed=ic_ok, severity=dg.AssetCheckSeverity.WARN,
        description=f"out-of-sample rank IC {metrics['rank_ic']:.4f} vs floor {config.ic_floor}",
        metadata={"oos_ic": _float(metrics["ic"]), "oos_rank_ic": _float(metrics["rank_ic"]), "floor": config.ic_floor})
    if not identical:
        yield from (outcome.to_result(context.asset_key), reload_check, ic_check)
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
    yield dg.MaterializeResult(check_results=[outcome.to_result(context.asset_key), reload_check, ic_check], metadata={
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
            ["rank IC", "IC", "zero"], "Out-of-sample IC by walk-forward fold",
            x_range=(f"fold 1 (test from {trained.folds[0].get('test_start')})",
                     f"fold {len(trained.folds)} (test to {trained.folds[-1].get('test_end')})") if trained.folds else None,
            unit="(correlation)")),
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
PREDICTION_SCHEMA = PREDICTIONS.schema
COVERS_UNIVERSE = "covers_universe"
NO_MODEL = "no model yet"
CLOSED = "market closed"
SCORED = "scored"


def coverage_outcome(predictions: pl.DataFrame, universe: pl.DataFrame, status: dict[dt.date, str]) -> quality.CheckOutcome:
    """Every security with a bar on a scored session has a finite score, and ranks run 1..N per session."""
    scored_days = [d for d, s in status.items() if s == SCORED]
    expected = universe.filter(pl.col("session_date").is_in(scored_days)).select("symbol", "session_date")
    missing = expected.join(predictions.filter(pl.col("score").is_finite()), on=["symbol", "session_date"], how="anti")
    ranks = predictions.group_by("session_date").agg(
        (pl.col("rank").sort() == pl.int_range(1, pl.len() + 1)).all().alias("dense")).filter(~pl.col("dense"))
    return PREDICTIONS.outcome(
        COVERS_UNIVERSE, missing.is_empty() and ranks.is_empty(),
        {"expected": expected.height, "missing": missing.height, "sessions_with_bad_ranks": ranks.height,
         "sessions_without_model": sum(1 for s in status.values() if s == NO_MODEL),
         "examples": [f"{s} {d}" for s, d in missing.head(5).rows()]},
    )


@publish.dataset_asset(
    PREDICTIONS,
    deps=["model", *INPUT_DATASETS],  # bars with their warm-up (datasets.warmup)
    group_name="models",
    kinds={"xgboost", "parquet", "postgres"},
    owners=OWNERS,
    description=(
        "Daily cross-sectional scores: each session is scored with the latest registered model whose data ends "
        "strictly before it (no look-ahead); rank 1 = highest score. Sessions before any model get an explicit "
        "'no model yet' status and no rows. Models tier `predictions/`, warehouse table `models.predictions`."
    ),
    tags=MODEL_TAGS,
)
def predictions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    start, end = partition_window(context)
    lake = lakehouse.get()
    bars = datasets.BARS.read(lake, start - dt.timedelta(days=RETURN_HISTORY_DAYS), end)
    universe = bars.filter(pl.col("session_date").is_between(start, end)).select("symbol", "session_date") \
        if bars.height else pl.DataFrame(schema={"symbol": pl.Utf8, "session_date": pl.Date})
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    open_days = set(universe["session_date"].unique().to_list())
    chosen = store.model_for_sessions(store.registered_models(warehouse.url, end + dt.timedelta(days=1)), days)
    status = {d: CLOSED if d not in open_days else (NO_MODEL if chosen[d] is None else SCORED) for d in days}
    scored_days = {d: chosen[d] for d in days if status[d] == SCORED}
    if scored_days:
        feature_frame = features.build_features(bars, datasets.INDICATORS.read(lake, start, end),
                                                datasets.FACTOR_EXPOSURES.read(lake, start, end), start, end)
        boosters = {m: store.load_model(lake, m)[0] for m in set(scored_days.values())}
        frame = modeling.score_sessions(feature_frame, scored_days, boosters)
    else:
        frame = pl.DataFrame(schema=PREDICTION_SCHEMA)
    outcomes = PREDICTIONS.evaluate(frame)
    outcomes.append(coverage_outcome(frame, universe, status))
    no_model = [str(d) for d in days if status[d] == NO_MODEL]
    summary = pl.DataFrame({"status": list(status.values())}).group_by("status").len().sort("status")
    for day in days:
        context.add_asset_metadata({"status": status[day]}, partition_key=day.isoformat())
    yield from publish.publish(
        context, PREDICTIONS, frame, (start, end), lake=lake, warehouse=warehouse, outcomes=outcomes,
        metadata={
            "window_status": NO_MODEL if not scored_days and no_model else (SCORED if scored_days else CLOSED),
            "sessions_scored": len(scored_days),
            "sessions_without_model": dg.MetadataValue.json(no_model),
            "sessions_market_closed": sum(1 for s in status.values() if s == CLOSED),
            "status_by_session": dg.MetadataValue.md(summary.to_pandas().to_markdown(index=False)),
            "models_used": dg.MetadataValue.json(sorted(set(scored_days.values()))),
        },
    )
