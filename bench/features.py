"""Feature build against Qlib's published figure: 14 OHLCV features, 800 securities x 14 years, 1 core.

    .venv/bin/python bench/features.py [--securities 800 --years 14]

Qlib's paper (Yang et al. 2020, "Qlib: An AI-oriented Quantitative Investment Platform")
reports 7.4 s for building Alpha158-style features of 800 stocks over 14 years with its caches warm,
147 s without. Here: synthetic daily bars are written to the processed tier (a Delta table, one
commit for the window, as a backfill of ``bars`` writes it), then a fresh process limited to one thread (POLARS_MAX_THREADS=1,
OMP/BLAS 1) reads them back through ``Lakehouse.read_partitions`` (no in-memory cache; the OS page
cache is not dropped: that needs root on the host) and computes 14 features with polars:
KMID, KLEN, KUP, KLOW, KSFT (candle shape), ROC5/10/20, MA5/20 (close over mean), STD5/20,
VMA5 and VSTD5 (volume). Target: read + compute <= 7.4 s. The same features computed by pandas
``groupby().rolling()`` on the same frame are the in-process reference (a ratio).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QLIB_WARM_SECONDS = 7.4
QLIB_COLD_SECONDS = 147.0


def features_polars(bars: Any) -> Any:
    """The 14 features of every (symbol, session): rolling windows over the whole sorted column.

    Rows are grouped by symbol in session order (``core.features.symbol_major``), so one pass of each rolling kernel over the full column is
    right except in a symbol's first n-1 rows, which are masked with the row's position in its symbol
    (computed once). Measured: 4-5x faster on one core than ``rolling_*().over("symbol")``, which
    groups again for each of the 11 windowed expressions.
    """
    import polars as pl

    from wealth_pipeline.core.features import symbol_major

    c, o, h, low, v = (pl.col(n) for n in ("close", "open", "high", "low", "volume"))
    eps = 1e-12
    frame = symbol_major(bars).with_columns(_i=pl.int_range(pl.len()).over("symbol"))
    i = pl.col("_i")

    def after(n: int, expr: pl.Expr) -> pl.Expr:
        return pl.when(i >= n).then(expr)

    return frame.with_columns(
        kmid=(c - o) / o,
        klen=(h - low) / o,
        kup=(h - pl.max_horizontal(o, c)) / o,
        klow=(pl.min_horizontal(o, c) - low) / o,
        ksft=(2 * c - h - low) / o,
        roc5=after(5, c.shift(5) / c),
        roc10=after(10, c.shift(10) / c),
        roc20=after(20, c.shift(20) / c),
        ma5=after(4, c.rolling_mean(5) / c),
        ma20=after(19, c.rolling_mean(20) / c),
        std5=after(4, c.rolling_std(5) / c),
        std20=after(19, c.rolling_std(20) / c),
        vma5=after(4, v.rolling_mean(5) / (v + eps)),
        vstd5=after(4, v.rolling_std(5) / (v + eps)),
    ).drop("_i")


def features_pandas(frame: Any) -> Any:
    """The same features with pandas groupby-rolling (the in-process reference)."""
    df = frame.sort_values(["symbol", "session_date"]).reset_index(drop=True)
    g = df.groupby("symbol", sort=False)
    c, o, h, low, v = df["close"], df["open"], df["high"], df["low"], df["volume"]
    out = df.assign(
        kmid=(c - o) / o, klen=(h - low) / o, kup=(h - df[["open", "close"]].max(axis=1)) / o,
        klow=(df[["open", "close"]].min(axis=1) - low) / o, ksft=(2 * c - h - low) / o,
    )
    for n in (5, 10, 20):
        out[f"roc{n}"] = g["close"].shift(n) / c
    for n in (5, 20):
        out[f"ma{n}"] = g["close"].rolling(n).mean().reset_index(level=0, drop=True) / c
        out[f"std{n}"] = g["close"].rolling(n).std().reset_index(level=0, drop=True) / c
    out["vma5"] = g["volume"].rolling(5).mean().reset_index(level=0, drop=True) / (v + 1e-12)
    out["vstd5"] = g["volume"].rolling(5).std().reset_index(level=0, drop=True) / (v + 1e-12)
    return out


def write_tier(root: Path, securities: int, years: int) -> int:
    import numpy as np
    import polars as pl

    from wealth_pipeline.lakehouse.store import Lakehouse

    lake = Lakehouse.from_uri(str(root))
    rng = np.random.default_rng(7)
    days = [d for d in (dt.date(2010, 1, 4) + dt.timedelta(i) for i in range(int(years * 365.25))) if d.weekday() < 5]
    symbols = [f"S{i:04d}" for i in range(securities)]
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, (len(days), securities)), axis=0))
    parts = []
    for i, day in enumerate(days):
        c = close[i]
        o = c * (1 + rng.normal(0, 0.005, securities))
        frame = pl.DataFrame({
            "symbol": symbols, "session_date": [day] * securities, "open": o,
            "high": np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.004, securities))),
            "low": np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.004, securities))),
            "close": c, "volume": rng.integers(10_000, 5_000_000, securities).astype(np.float64),
        })
        parts.append(frame)
    # as a backfill of ``bars`` writes it (publish step): one Delta commit for the whole window
    lake.write_window("processed", "bars", pl.concat(parts), "session_date", days[0], days[-1])
    return len(days)


def child(root: str) -> None:
    """Cold read + compute on one core; prints JSON timings."""
    started = time.perf_counter()
    import polars as pl

    from wealth_pipeline.lakehouse.store import Lakehouse

    imported = time.perf_counter()
    bars = Lakehouse.from_uri(root).read_partitions(
        "processed", "bars", columns=["symbol", "session_date", "open", "high", "low", "close", "volume"])
    read = time.perf_counter()
    out = features_polars(bars)
    computed = time.perf_counter()
    ref_frame = bars.to_pandas()
    t0 = time.perf_counter()
    ref = features_pandas(ref_frame)
    pandas_seconds = time.perf_counter() - t0
    # the two implementations agree (sample std both ddof=1)
    names = ["kmid", "roc20", "ma20", "std20", "vstd5"]
    mine = out.select(["symbol", "session_date", *names]).sort(["symbol", "session_date"]).to_pandas()
    diff = max(float((mine[n] - ref[n]).abs().max()) for n in names)
    if not all((mine[n].isna().to_numpy() == ref[n].isna().to_numpy()).all() for n in names):
        raise SystemExit("polars and pandas features differ in which rows are missing (warm-up masks)")
    print(json.dumps({"rows": bars.height, "threads": pl.thread_pool_size(), "import": imported - started,
                      "read": read - imported, "compute": computed - read, "pandas": pandas_seconds,
                      "max_abs_diff": diff}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--securities", type=int, default=800)
    parser.add_argument("--years", type=int, default=14)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-features-"))
    t0 = time.perf_counter()
    sessions = write_tier(root, args.securities, args.years)
    print(f"processed tier: {args.securities} securities x {sessions} sessions written in {time.perf_counter() - t0:.1f} s")
    env = {**os.environ, "POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", str(root)], env=env, check=True,
                         capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    ours = r["read"] + r["compute"]
    print(f"rows {r['rows']:,}, polars threads {r['threads']}; max |polars - pandas| = {r['max_abs_diff']:.2e}")
    print(f"read cold from the processed tier {r['read']:.2f} s + 14 features {r['compute']:.2f} s = {ours:.2f} s "
          f"(import {r['import']:.1f} s not counted)")
    print(f"reference in the same process: pandas groupby-rolling {r['pandas']:.2f} s -> {r['pandas'] / r['compute']:.1f}x")
    print(f"Qlib published: {QLIB_WARM_SECONDS} s warm, {QLIB_COLD_SECONDS} s cold -> ours/Qlib-warm = "
          f"{ours / QLIB_WARM_SECONDS:.2f} (target <= 1.0: {'met' if ours <= QLIB_WARM_SECONDS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
