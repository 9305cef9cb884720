"""Benchmark: training set build vs XGBoost walk-forward training on 500 securities x 10 years.

Runs on demand (not in the tests)::

    .venv/bin/python bench/train.py [--universe 500] [--years 10] [--nthread 2]

Inputs (adjusted bars, indicators, factor exposures) come from the synthetic market through the core
modules, exactly as the analytics assets compute them; they are built before timing starts. Then it
times ``features.build_training_set`` and ``modeling.train`` with the default ``TrainingParams``
(5 walk-forward folds + the final fit, 200 trees of depth 4) and prints wall time and peak memory of
each step (peak RSS growth over the step, sampled by a background thread), with the ratio between them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

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
    # Reference in the same process: the previous layout, one booster after another.
    sequential, seq_s, _ = measure(lambda: modeling.train(training, params, workers=1))
    same = modeling.booster_bytes(sequential.booster) == modeling.booster_bytes(model.booster)
    print(f"training set: {training.height:,} rows x {len(features.FEATURE_COLUMNS)} features ({labeled:,} labeled)")
    print(f"params: {params}")
    print(f"{'step':<28}{'seconds':>10}{'peak MiB':>12}")
    print(f"{'build_training_set':<28}{build_s:>10.2f}{build_mb:>12.0f}")
    print(f"{'train (5 folds + final)':<28}{train_s:>10.2f}{train_mb:>12.0f}")
    print(f"{'train, one fit at a time':<28}{seq_s:>10.2f}   (reference: {seq_s / train_s:.2f}x slower; "
          f"identical final booster: {same})")
    print(f"training / training-set build time: {train_s / build_s:.1f}x")
    print(f"out-of-sample: rank IC {model.metrics['rank_ic']:.4f}, IC {model.metrics['ic']:.4f}, "
          f"ICIR {model.metrics['icir']:.3f}, hit rate {model.metrics['hit_rate']:.3f}")


if __name__ == "__main__":
    main()
