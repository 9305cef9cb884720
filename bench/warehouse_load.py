"""Benchmark the warehouse loader against ``psql \\copy`` and ``pandas.DataFrame.to_sql``.

    python bench/warehouse_load.py [--url URL] [--symbols 500] [--years 10] [--to-sql-fraction 0.1] [--repeat 2]

Loads the same synthetic daily bars (symbols x years x 252 sessions; 1.26M rows by default) into
``market.bars_daily`` three ways, each into an emptied table after a CHECKPOINT:

* ``loader.load_window`` (binary COPY built with numpy, one transaction, audit row);
* ``psql \\copy ... FROM csv`` (the CSV is written beforehand, not timed);
* ``pandas.DataFrame.to_sql(..., if_exists="append")`` with the default ``method=None`` through
  SQLAlchemy + psycopg, timed on a sample (``--to-sql-fraction``, 10% by default) and scaled.

The loader and psql run ``--repeat`` times (default 2) and the best run counts, to damp the noise
of a shared machine; every run time is printed.

Without ``--url`` a throwaway local cluster is started in a temporary folder (and removed). With
``--url`` (a superuser URL) a scratch database is created on that server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealth_pipeline.warehouse import loader, migrate
from wealth_pipeline.warehouse.localpg import LocalPostgres


def synthetic_bars(symbols: int, years: int, seed: int = 7) -> pl.DataFrame:
    """Random-walk bars for ``symbols`` x ``years * 252`` weekday sessions, every bars_daily column."""
    rng = np.random.default_rng(seed)
    days = pl.date_range(dt.date(2010, 1, 1), dt.date(2010, 1, 1) + dt.timedelta(days=years * 366), eager=True)
    days = days.filter(days.dt.weekday() <= 5)[: years * 252].to_numpy()
    names = [f"S{i:04d}" if i % 5 else f"SYM{i:05d}" for i in range(symbols)]
    n = len(days) * symbols
    close = (100 * np.exp(np.cumsum(rng.normal(0, 0.01, (symbols, len(days))), axis=1))).ravel()
    volume = rng.integers(1_000, 10_000_000, n)
    return pl.DataFrame(
        {
            "symbol": np.repeat(names, len(days)),
            "session_date": np.tile(days, symbols),
            "exchange": np.where(np.arange(n) % 3 == 0, "NYSE", "NASDAQ"),
            "currency": "USD",
            "open": close * (1 + rng.normal(0, 0.002, n)),
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": volume,
            "split_factor": 1.0,
            "dividend_factor": 1.0,
            "adj_factor": 1.0,
            "adj_open": close * 0.98,
            "adj_high": close * 1.01 * 0.98,
            "adj_low": close * 0.99 * 0.98,
            "adj_close": close * 0.98,
            "adj_volume": volume.astype(np.float64),
            "source": "synthetic",
        }
    )


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE market.bars_daily")
        conn.execute("CHECKPOINT")


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM market.bars_daily").fetchone()
        return int(row[0]) if row else 0


def run(url: str, symbols: int, years: int, to_sql_fraction: float, repeat: int = 2) -> dict[str, float]:
    """Time the three methods on database ``url`` (migrated here); return rows/s per method."""
    migrate.upgrade(url)
    frame = synthetic_bars(symbols, years)
    rows = frame.height
    lo, hi = frame["session_date"].min(), frame["session_date"].max()
    print(f"{rows:,} rows ({symbols} symbols x {years} years), {len(frame.columns)} columns")
    results: dict[str, float] = {}

    def best_of(label: str, action) -> float:
        times = []
        for _ in range(repeat):
            _reset(url)
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
            assert _count(url) == rows
        best = min(times)
        results[label] = rows / best
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{label:<19}: {best:8.2f} s  {rows / best:12,.0f} rows/s  (best of {repeat}: {runs} s)")
        return best

    best_of("loader.load_window", lambda: loader.load_window(
        url, "market.bars_daily", frame, time_column="session_date", window_start=lo, window_end=hi,
        asset="bench", partition_key="all", run_id="bench"))

    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "bars.csv"
        frame.write_csv(csv)
        Path(folder).chmod(0o755)
        psql = shutil.which("psql")
        if psql is None:
            print("psql \\copy          : skipped (psql not on PATH)")
        else:
            command = (f"\\copy market.bars_daily ({', '.join(frame.columns)}) FROM '{csv}' "
                       "WITH (FORMAT csv, HEADER true)")
            best_of("psql \\copy (csv)", lambda: subprocess.run(
                [psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command], check=True))

    import sqlalchemy  # local: only the benchmark needs it

    _reset(url)
    params = conninfo_to_dict(url)
    engine = sqlalchemy.create_engine(
        sqlalchemy.URL.create("postgresql+psycopg", username=params.get("user"), password=params.get("password"),
                              host=params.get("host"), port=int(params.get("port", 5432)),
                              database=params.get("dbname"))
    )
    sample = frame.head(max(1, int(rows * to_sql_fraction))).to_pandas()
    start = time.perf_counter()
    sample.to_sql("bars_daily", engine, schema="market", if_exists="append", index=False)
    elapsed = time.perf_counter() - start
    engine.dispose()
    assert _count(url) == len(sample)
    results["pandas.to_sql"] = len(sample) / elapsed
    scaled = elapsed * rows / len(sample)
    print(f"pandas.to_sql      : {elapsed:8.2f} s for {len(sample):,} rows ({to_sql_fraction:.0%} sample), "
          f"~{scaled:.1f} s scaled  {len(sample) / elapsed:12,.0f} rows/s")

    if len(sample) < rows:  # the same sample through the loader: equal work for the ratio
        part = frame.head(len(sample))
        _reset(url)
        start = time.perf_counter()
        loader.load_window(url, "market.bars_daily", part, time_column="session_date",
                           window_start=part["session_date"].min(), window_end=part["session_date"].max(),
                           asset="bench", partition_key="sample", run_id="bench")
        elapsed = time.perf_counter() - start
        results["loader.load_window (sample)"] = len(sample) / elapsed
        print(f"loader on the sample: {elapsed:6.2f} s  {len(sample) / elapsed:12,.0f} rows/s")
        print(f"loader / pandas.to_sql on the same sample: {results['loader.load_window (sample)'] / results['pandas.to_sql']:6.2f}x")

    ours = results["loader.load_window"]
    for name in ("psql \\copy (csv)", "pandas.to_sql"):
        if name in results:
            print(f"loader (full) / {name:<17}: {ours / results[name]:6.2f}x")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="superuser URL of a server to use (default: a throwaway local cluster)")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--to-sql-fraction", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=2, help="runs of the loader and of psql; the best counts")
    args = parser.parse_args(argv)
    if not 0 < args.to_sql_fraction <= 1:
        parser.error("--to-sql-fraction must be in (0, 1]")

    cluster: LocalPostgres | None = None
    folder: Path | None = None
    server = args.url
    data_dir: Path | None = None
    if server is None:
        folder = Path(tempfile.mkdtemp(prefix="wealth-bench-pg-"))
        folder.chmod(0o755)
        cluster = LocalPostgres(folder / "pg")
        data_dir = Path(cluster.start().data_dir)
        server = cluster.url("postgres")
    database = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        params = conninfo_to_dict(server)
        params["dbname"] = database
        try:
            run(make_conninfo(**params), args.symbols, args.years, args.to_sql_fraction, args.repeat)
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    finally:
        if cluster is not None:
            cluster.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            if data_dir is not None and folder not in data_dir.parents:  # root fallback location
                shutil.rmtree(data_dir.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
