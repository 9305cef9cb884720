"""Benchmark: training set build vs XGBoost walk-forward training on 500 securities x 10 years.

Runs on demand (not in the tests)::

    .venv/bin/python bench/train.py [--universe 500] [--years 10] [--nthread 2]

Inputs (adjusted bars, indicators, factor exposures) come from the synthetic market through the core
modules, exactly as the analytics assets compute them; they are built before timing starts. Then it
times ``features.build_training_set`` and ``modeling.train`` with the default ``TrainingParams``
(5 walk-forward folds + the final fit, 200 trees of depth 4) and prints wall time and peak memory of
each step (peak RSS growth over the step, sampled by a background thread), with the ratio between them.
References in the same process: the fits one after another, and the final fit as the previous layout
made it (a float64 ``DMatrix`` per fit instead of a ``QuantileDMatrix`` of float32 rows), with a check
that both give identical predictions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds and peak RSS growth (MiB) of ``fn()``."""
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - started
    done.set()
    thread.join()
    return result, elapsed, max(peak[0], _rss_mb()) - base


def _previous_fit(frame: pl.DataFrame, columns: list[str], params: Any) -> Any:
    """The final fit as modeling._fit made it before QuantileDMatrix: a float64 DMatrix of the frame."""
    import xgboost as xgb

    matrix = frame.select([pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in columns]).to_numpy()
    dtrain = xgb.DMatrix(matrix, label=frame["target"].to_numpy(), missing=np.nan, feature_names=list(columns),
                         nthread=params.nthread)
    return xgb.train(params.xgb_params(), dtrain, num_boost_round=params.n_estimators)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--universe", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--nthread", type=int, default=None, help="XGBoost threads (default: TrainingParams default)")
    parser.add_argument("--signal", type=float, default=0.1)
    args = parser.parse_args()

    from wealth_pipeline.core import adjustments, features, indicators, modeling
    from wealth_pipeline.core.analytics import exposures_for_window
    from wealth_pipeline.providers.synthetic import SyntheticMarket

    start = dt.date(2015, 1, 2)
    end = dt.date(start.year + args.years, 1, 1)
    print(f"inputs: synthetic market, {args.universe} securities, {start}..{end} (signal {args.signal})", flush=True)
    t0 = time.perf_counter()
    market = SyntheticMarket(seed=7, universe_size=args.universe, signal_strength=args.signal)
    bars = adjustments.apply_adjustments(market.bars(start, end), market.corporate_actions(start, end))
    ind = indicators.compute_indicators(bars)
    exp = exposures_for_window(bars, market.factor_returns(start, end), start, end)
    print(f"  built {bars.height:,} bars, indicators and exposures in {time.perf_counter() - t0:.1f}s (not timed below)", flush=True)

    params = modeling.TrainingParams() if args.nthread is None else modeling.TrainingParams(nthread=args.nthread)
    first = dt.date(start.year + 1, 1, 1)  # after the indicators' and exposures' warm-up
    training, build_s, build_mb = measure(lambda: features.build_training_set(bars, ind, exp, horizon=params.horizon, start=first))
    labeled = training.filter(pl.col("label_available")).height
    model, train_s, train_mb = measure(lambda: modeling.train(training, params))
    # References in the same process: one booster after another; and the final fit as the previous
    # layout made it (a float64 DMatrix built from the frame, quantized by the hist sketch per fit).
    sequential, seq_s, _ = measure(lambda: modeling.train(training, params, workers=1))
    same = modeling.booster_bytes(sequential.booster) == modeling.booster_bytes(model.booster)
    labeled_rows = modeling.labeled_rows(training)
    x = modeling._matrix(labeled_rows, features.FEATURE_COLUMNS)
    y = labeled_rows["target"].cast(pl.Float32).to_numpy()
    quantile, quantile_s, _ = measure(lambda: modeling._fit(x, y, features.FEATURE_COLUMNS, params))
    previous, previous_s, _ = measure(lambda: _previous_fit(labeled_rows, features.FEATURE_COLUMNS, params))
    sample = x[: min(len(x), 50_000)]
    identical = bool(np.array_equal(modeling._scores(quantile, sample, features.FEATURE_COLUMNS, 1),
                                    modeling._scores(previous, sample, features.FEATURE_COLUMNS, 1)))
    print(f"training set: {training.height:,} rows x {len(features.FEATURE_COLUMNS)} features ({labeled:,} labeled)")
    print(f"params: {params}")
    print(f"{'step':<28}{'seconds':>10}{'peak MiB':>12}")
    print(f"{'build_training_set':<28}{build_s:>10.2f}{build_mb:>12.0f}")
    print(f"{'train (5 folds + final)':<28}{train_s:>10.2f}{train_mb:>12.0f}")
    print(f"{'train, one fit at a time':<28}{seq_s:>10.2f}   (reference: {seq_s / train_s:.2f}x slower; "
          f"identical final booster: {same})")
    print(f"{'final fit, QuantileDMatrix':<28}{quantile_s:>10.2f}")
    print(f"{'final fit, previous DMatrix':<28}{previous_s:>10.2f}   (reference: {previous_s / quantile_s:.2f}x slower; "
          f"identical predictions: {identical})")
    print(f"training / training-set build time: {train_s / build_s:.1f}x")
    print(f"out-of-sample: rank IC {model.metrics['rank_ic']:.4f}, IC {model.metrics['ic']:.4f}, "
          f"ICIR {model.metrics['icir']:.3f}, hit rate {model.metrics['hit_rate']:.3f}")


if __name__ == "__main__":
    main()
