"""Delta tables vs the parquet-per-session layout: 500 securities x 10 years of bars and indicators.

    .venv/bin/python bench/lakehouse.py [--securities 500 --years 10 --daily 5] [--json]

Both layouts run in the same process on the same frames, through the same ``Lakehouse`` code:

* parquet: today's layout before issue #17, one zstd parquet file per dataset and session
  (``{tier}/{dataset}/date=YYYY-MM-DD/data.parquet``), written by ``write_partition`` per session
  and read by ``read_partitions`` (one listing, concurrent GETs). The ``artifacts`` tier still
  stores frames that way, so it is the reference here.
* delta: the processed tier now, one Delta table per dataset partitioned by year, a window written
  by ``write_window`` as one commit, read by ``read_partitions`` (polars ``scan_delta``).

Also the raw tier's ten-year backfill write (``raw.write_versions``: one immutable, content-hashed
file per session) on one thread against the store's write threads.

Timed: the ten-year backfill write, the ten-year read, a one-year read, and a daily session write
(a new session appended, ``--daily`` times, median) on top of ten years of history; reads are the
best of three, the layouts alternating (a shared machine's noise). Ratios are
delta / parquet (below 1: Delta is faster). Synthetic values; sizes match the real tables' columns.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wealth_pipeline.lakehouse.store import Lakehouse

READ_REPEATS = 3
INDICATOR_COLUMNS = ("sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "rsi_14", "bb_upper_20", "bb_lower_20",
                     "macd", "macd_signal", "macd_hist", "atr_14", "stoch_k", "stoch_d", "return_1d",
                     "realized_vol_20", "realized_vol_60")


def sessions(years: int, extra: int) -> list[dt.date]:
    days = pl.date_range(dt.date(2014, 1, 1), dt.date(2014 + years, 1, 1) + dt.timedelta(days=3 * extra),
                         eager=True)
    return [d for d in days.to_list() if d.weekday() < 5][: years * 252 + extra]


def frames(days: list[dt.date], securities: int, seed: int = 1) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    n = len(days) * securities
    keys = {"symbol": np.tile(np.array([f"S{i:04d}" for i in range(securities)]), len(days)),
            "session_date": np.repeat(np.array(days, dtype="datetime64[D]"), securities)}
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(days), securities)), axis=0)).reshape(-1)
    bars = pl.DataFrame({
        **keys, "open": close * 0.99, "high": close * 1.01, "low": close * 0.98, "close": close,
        "volume": rng.integers(1_000, 1_000_000, n), "currency": np.repeat("USD", n), "adj_close": close,
        "split_factor": np.ones(n), "source": np.repeat("synthetic", n),
    }).with_columns(pl.col("session_date").cast(pl.Date))
    indicators = pl.DataFrame({**keys, **{c: rng.normal(0, 1, n) for c in INDICATOR_COLUMNS}}).with_columns(
        pl.col("session_date").cast(pl.Date))
    return {"bars": bars, "indicators": indicators}


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_table(lake: Lakehouse, name: str, frame: pl.DataFrame, history: list[dt.date], new_days: list[dt.date],
                last_year: list[dt.date]) -> dict[str, Any]:
    """Every timed operation on one table, both layouts."""
    hist = frame.filter(pl.col("session_date") <= history[-1])
    per_day = {k[0]: v for k, v in hist.partition_by("session_date", as_dict=True).items()}
    row: dict[str, Any] = {}

    # Backfill write: parquet = one file per session; delta = one commit for the window.
    row["write_10y_parquet_s"], _ = timed(lambda: [lake.write_partition("artifacts", name, part, day)
                                                   for day, part in sorted(per_day.items())])
    row["write_10y_delta_s"], written = timed(
        lambda: lake.write_window("processed", name, hist, "session_date", history[0], history[-1]))
    assert written.version == 0

    # Reads: ten years, and the last year; best of READ_REPEATS, the two layouts alternating (the
    # machine is shared: the minimum is the least disturbed run of each).
    for op, window in (("read_10y", (None, None)), ("read_1y", (last_year[0], last_year[-1]))):
        best = {"parquet": float("inf"), "delta": float("inf")}
        for _ in range(READ_REPEATS):
            seconds, a = timed(lambda: lake.read_partitions("artifacts", name, *window))  # noqa: B023
            best["parquet"] = min(best["parquet"], seconds)
            seconds, b = timed(lambda: lake.read_partitions("processed", name, *window))  # noqa: B023
            best["delta"] = min(best["delta"], seconds)
            assert a.equals(b), f"{name}: the two layouts read back different rows"
        row[f"{op}_parquet_s"], row[f"{op}_delta_s"] = best["parquet"], best["delta"]

    # Daily: one new session on top of ten years (median over the new sessions).
    p_times, d_times = [], []
    for day in new_days:
        part = frame.filter(pl.col("session_date") == day)
        p_times.append(timed(lambda: lake.write_partition("artifacts", name, part, day))[0])  # noqa: B023
        d_times.append(timed(lambda: lake.write_window("processed", name, part, "session_date", day, day))[0])  # noqa: B023
    row["daily_write_parquet_s"] = statistics.median(p_times)
    row["daily_write_delta_s"] = statistics.median(d_times)
    row["delta_active_files"] = lake.tables.file_count(f"processed/{name}")
    for op in ("write_10y", "read_10y", "read_1y", "daily_write"):
        row[f"{op}_ratio"] = row[f"{op}_delta_s"] / row[f"{op}_parquet_s"]
    return row


def bench_raw(root: str, bars: pl.DataFrame, history: list[dt.date]) -> dict[str, Any]:
    """The raw tier's ten-year backfill write (one immutable file per session) on one thread and on the
    store's ``write_concurrency`` threads, same process, fresh folders, twice each, alternating."""
    from wealth_pipeline.lakehouse import raw
    from wealth_pipeline.lakehouse.store import LocalObjectStore

    cases = {"bars": bars, "one_row": bars.filter(pl.col("symbol") == bars["symbol"][0])}  # fx, benchmark returns
    out: dict[str, Any] = {}
    for name, frame in cases.items():
        best: dict[str, float] = {}
        keys: dict[str, list[str]] = {}
        for attempt in range(2):
            for label, workers in (("one_thread", 1), ("threads", None)):
                store = LocalObjectStore(Path(root) / f"raw-{name}-{label}-{attempt}")
                seconds, writes = timed(lambda s=store, w=workers, f=frame: raw.write_versions(
                    s, "bars", f, "session_date", history, workers=w))
                best[label] = min(best.get(label, seconds), seconds)
                keys[label] = [w.key for w in writes]
        assert keys["one_thread"] == keys["threads"], "the same files either way"
        out[name] = {"files": len(keys["threads"]), **{f"{k}_s": v for k, v in best.items()},
                     "ratio": best["threads"] / best["one_thread"],
                     "threads": LocalObjectStore.write_concurrency}
    return out


def run(securities: int, years: int, daily: int) -> dict[str, Any]:
    days = sessions(years, daily)
    history, new_days = days[: len(days) - daily], days[len(days) - daily:]
    data = frames(days, securities)
    last_year = [d for d in history if d.year == history[-1].year]
    results: dict[str, Any] = {"securities": securities, "years": years, "sessions": len(history),
                               "rows_per_table": len(history) * securities, "tables": {}}
    with tempfile.TemporaryDirectory(prefix="bench-lakehouse-") as root:
        lake = Lakehouse.from_uri(root)
        for name, frame in data.items():
            results["tables"][name] = bench_table(lake, name, frame, history, new_days, last_year)
        results["raw"] = bench_raw(root, data["bars"].filter(pl.col("session_date").is_in(history)), history)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--securities", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--daily", type=int, default=5, help="daily sessions appended after the history (median)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.securities, args.years, args.daily)
    results["machine"] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "platform": platform.platform(), "polars": pl.__version__,
                          "deltalake": __import__("deltalake").__version__}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.securities} securities x {results['sessions']} sessions = {results['rows_per_table']:,} rows per table "
          f"({results['machine']['date']}, {results['machine']['cpus']} CPUs, deltalake {results['machine']['deltalake']})")
    print(f"{'table':<11}{'operation':<14}{'parquet s':>10}{'delta s':>10}{'delta/parquet':>15}")
    for name, row in results["tables"].items():
        for op in ("write_10y", "read_10y", "read_1y", "daily_write"):
            print(f"{name:<11}{op:<14}{row[f'{op}_parquet_s']:>10.3f}{row[f'{op}_delta_s']:>10.3f}"
                  f"{row[f'{op}_ratio']:>15.2f}")
        print(f"{name:<11}{'delta files':<14}{row['delta_active_files']:>20}")
    print("raw tier, ten-year backfill write (one immutable file per session, best of two):")
    print(f"{'dataset':<11}{'files':>7}{'1 thread s':>12}{'threads s':>11}{'threads/1':>11}")
    for name, row in results["raw"].items():
        print(f"{name:<11}{row['files']:>7}{row['one_thread_s']:>12.3f}{row['threads_s']:>11.3f}{row['ratio']:>11.2f}"
              f"   ({row['threads']} threads)")


if __name__ == "__main__":
    main()
