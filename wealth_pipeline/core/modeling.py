"""Walk-forward XGBoost training on the cross-sectional training set, and its evaluation metrics.

Validation (``walk_forward_folds``): the training set's distinct sessions are cut into ``n_folds + 1``
contiguous blocks; fold k tests block k with a model trained on everything before it (an expanding
window), minus

- the **purge**: rows whose label ends on or after the test block's first session (their forward
  return overlaps the test period);
- the **embargo**: rows of the last ``embargo`` sessions before the purge boundary (``embargo`` >= the
  label horizon), so serially correlated features do not leak the test period's start into training.

The final booster is trained on every labeled row of the window with the same parameters. Everything
is deterministic given ``seed`` and ``nthread`` (XGBoost ``hist`` on CPU): two trainings on the same
data give bit-identical predictions, and the saved booster (UBJ, XGBoost's own binary JSON) reloads to
bit-identical predictions.

Metrics, over the out-of-sample (OOS) predictions of all folds and per fold, computed per session and
averaged: ``ic`` (Pearson correlation of score and forward return), ``rank_ic`` (Spearman), ``icir``
(mean / standard deviation of the daily rank IC), ``hit_rate`` (share of rows where score and forward
return fall on the same side of their session's mean) and ``rank_ic_tstat`` (t statistic of the rank
IC on every ``horizon``-th session only, so the overlapping forward returns do not inflate it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:  # xgboost (about 1 s to import) loads where a booster is fitted, scored or read
    import xgboost as xgb

from wealth_pipeline.core.features import FEATURE_COLUMNS, KEY_COLUMNS
from wealth_pipeline.core.schemas import PREDICTION_SCHEMA

BOOSTER_FORMAT = "ubj"


class TrainingError(ValueError):
    """Training cannot run on this input or with these parameters; the message says why."""


@dataclass(frozen=True)
class TrainingParams:
    """Hyperparameters and validation layout; the model asset's Dagster config is built from these fields."""

    horizon: int = field(default=5, metadata={"description": "Label: forward return over this many sessions of the security."})
    n_folds: int = field(default=5, metadata={"description": "Walk-forward folds (expanding window)."})
    embargo: int = field(default=5, metadata={"description": "Sessions embargoed before each test block, >= horizon."})
    n_estimators: int = field(default=200, metadata={"description": "XGBoost boosting rounds."})
    max_depth: int = field(default=4, metadata={"description": "XGBoost maximum tree depth."})
    learning_rate: float = field(default=0.05, metadata={"description": "XGBoost learning rate (eta)."})
    subsample: float = field(default=0.8, metadata={"description": "XGBoost row subsample per tree, in (0, 1]."})
    colsample_bytree: float = field(default=0.8, metadata={"description": "XGBoost column subsample per tree, in (0, 1]."})
    min_child_weight: float = field(default=20.0, metadata={"description": "XGBoost minimum hessian weight in a leaf."})
    reg_lambda: float = field(default=1.0, metadata={"description": "XGBoost L2 regularization (lambda)."})
    seed: int = field(default=7, metadata={"description": "XGBoost seed: with nthread fixed, training is deterministic."})
    nthread: int = field(default=1, metadata={"description": "XGBoost threads (fixed for determinism; raise on dedicated cores)."})

    def __post_init__(self) -> None:
        for name in ("horizon", "n_folds", "n_estimators", "max_depth", "nthread"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.embargo < self.horizon:
            raise TrainingError(f"embargo ({self.embargo}) must be at least the label horizon ({self.horizon})")
        for name in ("subsample", "colsample_bytree"):
            if not 0 < getattr(self, name) <= 1:
                raise TrainingError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise TrainingError(f"learning_rate must be > 0, got {self.learning_rate}")

    def xgb_params(self) -> dict[str, Any]:
        """The parameters handed to ``xgboost.train``."""
        return {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "seed": self.seed,
            "nthread": self.nthread,
            "verbosity": 0,
        }


@dataclass(frozen=True)
class Fold:
    """One walk-forward split: row indices into the labeled training frame."""

    number: int
    train_start: dt.date
    train_end: dt.date
    test_start: dt.date
    test_end: dt.date
    train_rows: np.ndarray = field(repr=False)
    test_rows: np.ndarray = field(repr=False)


@dataclass
class TrainedModel:
    """The final booster, its OOS evaluation and what it was trained on."""

    booster: xgb.Booster
    features: list[str]
    params: TrainingParams
    train_start: dt.date
    feature_end: dt.date
    data_end: dt.date
    rows: int
    folds: list[dict[str, Any]]
    metrics: dict[str, Any]
    oos: pl.DataFrame
    importance: dict[str, float]


def labeled_rows(training: pl.DataFrame) -> pl.DataFrame:
    """Rows with an available, finite label and a defined target, sorted by session then symbol.

    The target (a cross-sectional z-score) is undefined on sessions where one security trades alone
    (e.g. a TSX session on a US holiday): those rows are not trained on.
    """
    return training.filter(pl.col("label_available") & pl.col("fwd_return").is_finite()
                           & pl.col("target").is_not_null()).sort(["session_date", "symbol"])


def walk_forward_folds(labeled: pl.DataFrame, n_folds: int, embargo: int) -> list[Fold]:
    """Expanding-window folds with purge and embargo (see the module docstring)."""
    sessions = labeled["session_date"].unique().sort().to_list()
    if len(sessions) < 2 * (n_folds + 1):
        raise TrainingError(f"{len(sessions)} labeled sessions are too few for {n_folds} walk-forward folds")
    blocks = np.array_split(np.arange(len(sessions)), n_folds + 1)
    day = labeled["session_date"].to_numpy()
    label_end = labeled["label_end"].to_numpy()
    session_index = np.searchsorted(np.array(sessions, dtype="datetime64[D]"), day)
    folds = []
    for k in range(1, n_folds + 1):
        test_block = blocks[k]
        test_start, test_end = sessions[test_block[0]], sessions[test_block[-1]]
        purged = (day < np.datetime64(test_start)) & (label_end < np.datetime64(test_start))
        if not purged.any():
            raise TrainingError(f"fold {k}: no training rows before {test_start} after purging")
        boundary = session_index[purged].max()  # the last session that survives the purge
        train = purged & (session_index <= boundary - embargo)
        if not train.any():
            raise TrainingError(f"fold {k}: no training rows left before {test_start} after a {embargo}-session embargo")
        test = (session_index >= test_block[0]) & (session_index <= test_block[-1])
        train_rows, test_rows = np.flatnonzero(train), np.flatnonzero(test)
        folds.append(Fold(k, sessions[int(session_index[train_rows].min())], sessions[int(session_index[train_rows].max())],
                          test_start, test_end, train_rows, test_rows))
    return folds


def _matrix(frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The feature columns as one C-contiguous float32 array, nulls as NaN.

    float32 because XGBoost stores and compares feature values as float32 anyway (the same splits
    and scores as from float64), at half the memory of each copy.
    """
    return np.ascontiguousarray(
        frame.select([pl.col(c).cast(pl.Float32).fill_null(np.nan) for c in features]).to_numpy(), dtype=np.float32)


def _fit(x: np.ndarray, y: np.ndarray, features: Sequence[str], params: TrainingParams) -> xgb.Booster:
    """One booster on the rows ``x``, ``y``.

    ``QuantileDMatrix``: the matrix is quantized straight into the ``hist`` bins of these rows
    (cuts from the training rows only, as with a ``DMatrix``) instead of keeping a float copy.
    Identical predictions to the float64 ``DMatrix`` fit (bench/train.py checks it). Speed on the
    loaded 2-core box was inconclusive: 51 s against 83 s (451k rows), 154 s against 137 s
    (1.13M rows), load 9-17 during both; peak memory of the 500 x 10 training 526 MiB (601 before).
    """
    import xgboost as xgb

    dtrain = xgb.QuantileDMatrix(x, label=y, missing=np.nan, feature_names=list(features), nthread=params.nthread)
    return xgb.train(params.xgb_params(), dtrain, num_boost_round=params.n_estimators)


def predict(booster: xgb.Booster, frame: pl.DataFrame, features: Sequence[str] | None = None,
            nthread: int = 1) -> np.ndarray:
    """Scores of ``frame``'s rows (features missing from a row are treated as missing values)."""
    features = list(features or booster.feature_names or [])
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise TrainingError(f"frame to score lacks feature column(s) {missing}")
    return _scores(booster, _matrix(frame, features), features, nthread)


def _scores(booster: xgb.Booster, x: np.ndarray, features: Sequence[str], nthread: int) -> np.ndarray:
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(x, missing=np.nan, feature_names=list(features), nthread=nthread))


def daily_ic(scored: pl.DataFrame, score: str = "score", label: str = "fwd_return") -> pl.DataFrame:
    """Per session: ``n``, ``ic`` (Pearson) and ``rank_ic`` (Spearman) of score against label (>= 3 names)."""
    valid = scored.filter(pl.col(score).is_finite() & pl.col(label).is_finite())
    return (
        valid.group_by("session_date")
        .agg(pl.len().alias("n"), pl.corr(score, label).alias("ic"),
             pl.corr(score, label, method="spearman").alias("rank_ic"))
        .filter(pl.col("n") >= 3)
        .with_columns(pl.col("ic").fill_nan(None), pl.col("rank_ic").fill_nan(None))
        .sort("session_date")
    )


def summarize(scored: pl.DataFrame, horizon: int, score: str = "score", label: str = "fwd_return") -> dict[str, Any]:
    """IC, rank IC, ICIR, hit rate and the non-overlapping rank-IC t statistic of scored rows."""
    daily = daily_ic(scored, score, label).drop_nulls(["ic", "rank_ic"])
    hits = scored.filter(pl.col(score).is_finite() & pl.col(label).is_finite()).with_columns(
        (pl.col(score) - pl.col(score).mean().over("session_date")).alias("_s"),
        (pl.col(label) - pl.col(label).mean().over("session_date")).alias("_l"),
    ).filter((pl.col("_s") != 0) & (pl.col("_l") != 0))
    rank = daily["rank_ic"].to_numpy()
    sparse = rank[::horizon]
    std = float(np.std(rank, ddof=1)) if rank.size > 1 else math.nan
    sparse_std = float(np.std(sparse, ddof=1)) if sparse.size > 1 else math.nan
    return {
        "sessions": daily.height,
        "rows": hits.height,
        "ic": float(daily["ic"].mean()) if daily.height else math.nan,
        "rank_ic": float(rank.mean()) if rank.size else math.nan,
        "icir": float(rank.mean() / std) if std and std > 0 else math.nan,
        "hit_rate": float(((hits["_s"] > 0) == (hits["_l"] > 0)).mean()) if hits.height else math.nan,
        "rank_ic_tstat": float(sparse.mean() / (sparse_std / math.sqrt(sparse.size)))
        if sparse_std and sparse_std > 0 else math.nan,
    }


def train(training: pl.DataFrame, params: TrainingParams | None = None,
          features: Sequence[str] = FEATURE_COLUMNS, *, workers: int | None = None) -> TrainedModel:
    """Walk-forward validate, then fit the final booster on every labeled row of ``training``.

    ``training`` is ``features.build_training_set`` output for the training window. ``workers``:
    boosters fitted at once (default: the cores divided by ``params.nthread``); results do not depend on it.
    """
    params = params or TrainingParams()
    features = list(features)
    missing = [c for c in (*KEY_COLUMNS, *features, "fwd_return", "label_end", "label_available", "target")
               if c not in training.columns]
    if missing:
        raise TrainingError(f"training set lacks column(s) {missing}")
    labeled = labeled_rows(training)
    if labeled.is_empty():
        raise TrainingError("training set has no labeled rows")
    folds = walk_forward_folds(labeled, params.n_folds, params.embargo)
    # The fold fits and the final fit are independent and each deterministic given seed and nthread,
    # so they run side by side (XGBoost releases the GIL): the same boosters as one after another,
    # in about 1/workers of the time (bench/train.py). Workers: the cores left free by nthread each.
    workers = max(1, min(len(folds) + 1, workers or (os.cpu_count() or 1) // params.nthread))
    # One float32 matrix of the labeled rows; each fold takes its rows from it (no frame copies).
    x, y = _matrix(labeled, features), labeled["target"].cast(pl.Float32).to_numpy()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        final_future = pool.submit(_fit, x, y, features, params)
        boosters = list(pool.map(lambda fold: _fit(x[fold.train_rows], y[fold.train_rows], features, params), folds))
        final = final_future.result()
    oos_scores = [_scores(booster, x[fold.test_rows], features, params.nthread) for fold, booster in zip(folds, boosters, strict=True)]
    oos_parts, fold_rows = [], []
    for fold, scores in zip(folds, oos_scores, strict=True):
        test = labeled[fold.test_rows]
        scored = test.select(*KEY_COLUMNS, "fwd_return").with_columns(
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(fold.number).alias("fold"))
        oos_parts.append(scored)
        fold_rows.append({"fold": fold.number, "train_start": fold.train_start, "train_end": fold.train_end,
                          "test_start": fold.test_start, "test_end": fold.test_end,
                          "train_rows": int(fold.train_rows.size), "test_rows": int(fold.test_rows.size),
                          **summarize(scored, params.horizon)})
    oos = pl.concat(oos_parts)
    gain = final.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    importance = {name: float(gain.get(name, 0.0) / total) for name in features}
    return TrainedModel(
        booster=final, features=features, params=params,
        train_start=labeled["session_date"].min(), feature_end=labeled["session_date"].max(),
        data_end=labeled["label_end"].max(), rows=labeled.height, folds=fold_rows,
        metrics={**summarize(oos, params.horizon), "folds": len(folds)}, oos=oos,
        importance=dict(sorted(importance.items(), key=lambda kv: -kv[1])),
    )


def booster_bytes(booster: xgb.Booster) -> bytes:
    """The booster in XGBoost's UBJ format (exact: reloading reproduces predictions bit for bit)."""
    return bytes(booster.save_raw(raw_format=BOOSTER_FORMAT))


def load_booster(data: bytes) -> xgb.Booster:
    """A booster from ``booster_bytes`` output."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    return booster


def library_versions() -> dict[str, str]:
    """Versions of what shapes the model's numbers."""
    import pyarrow
    import xgboost as xgb

    return {"python": platform.python_version(), "xgboost": xgb.__version__, "numpy": np.__version__,
            "polars": pl.__version__, "pyarrow": pyarrow.__version__}


def model_id(model: TrainedModel, snapshot_digest: str) -> str:
    """A content-derived id: the same data snapshot, window, features and parameters give the same id."""
    payload = json.dumps({"snapshot": snapshot_digest, "params": asdict(model.params), "features": model.features,
                          "train_start": str(model.train_start), "data_end": str(model.data_end)}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    return f"xgb-h{model.params.horizon}-{model.data_end:%Y%m%d}-{digest}"


def manifest(model: TrainedModel, model_id_: str, snapshot: dict[str, Any], trained_at: dt.datetime) -> dict[str, Any]:
    """The model's manifest: id, windows, exact input snapshot, features, parameters, versions, metrics."""
    return {
        "model_id": model_id_,
        "trained_at": trained_at.isoformat(),
        "label": {"kind": "forward_return", "horizon_sessions": model.params.horizon,
                  "target": "cross-sectional z-score of the forward return"},
        "training_window": {"train_start": str(model.train_start), "feature_end": str(model.feature_end),
                            "data_end": str(model.data_end), "rows": model.rows},
        "data_snapshot": snapshot,
        "features": model.features,
        "params": asdict(model.params),
        "xgboost_params": model.params.xgb_params(),
        "booster_format": BOOSTER_FORMAT,
        "library_versions": library_versions(),
        "metrics": {"oos": model.metrics, "folds": model.folds},
        "feature_importance": model.importance,
    }


def ic_bars(folds: Sequence[dict[str, Any]], width: int = 20) -> str:
    """A markdown table of rank IC per fold with unicode bars (a small inline chart)."""
    values = [f.get("rank_ic", math.nan) for f in folds]
    scale = max((abs(v) for v in values if math.isfinite(v)), default=0.0) or 1.0
    lines = ["| fold | test window | rank IC | |", "|---:|---|---:|:---|"]
    for fold, value in zip(folds, values, strict=True):
        if math.isfinite(value):
            n = round(abs(value) / scale * width)
            bar = ("█" * n) if value >= 0 else ("▒" * n) + " (negative)"
            shown = f"{value:+.4f}"
        else:
            bar, shown = "", "n/a"
        lines.append(f"| {fold['fold']} | {fold['test_start']}..{fold['test_end']} | {shown} | {bar} |")
    return "\n".join(lines)


def score_sessions(feature_frame: pl.DataFrame, chosen: dict[dt.date, str | None],
                   boosters: dict[str, xgb.Booster]) -> pl.DataFrame:
    """Scores and cross-sectional ranks (1 = highest score) of every row whose session has a model.

    ``chosen`` maps each session to the model that scores it (``None``: no model yet); rows follow
    ``core.schemas.PREDICTION_SCHEMA``.
    """
    parts = []
    for model_id in sorted({m for m in chosen.values() if m is not None}):
        days = [d for d, m in chosen.items() if m == model_id]
        rows = feature_frame.filter(pl.col("session_date").is_in(days))
        if rows.is_empty():
            continue
        booster = boosters[model_id]
        scores = predict(booster, rows, booster.feature_names, nthread=1)
        # the stable id of the feature row's bar (features carry it from processed bars; issue 21)
        security_id = pl.col("security_id") if "security_id" in rows.columns else pl.lit(None, dtype=pl.Utf8)
        parts.append(rows.select("symbol", "session_date", security_id.cast(pl.Utf8).alias("security_id")).with_columns(
            pl.lit(model_id).alias("model_id"), pl.Series("score", scores, dtype=pl.Float64)))
    if not parts:
        return pl.DataFrame(schema=PREDICTION_SCHEMA)
    frame = pl.concat(parts).sort(["session_date", "symbol"])
    return frame.with_columns(
        pl.col("score").rank("ordinal", descending=True).over("session_date").cast(pl.Int32).alias("rank")
    ).select(list(PREDICTION_SCHEMA)).sort(["symbol", "session_date"])
