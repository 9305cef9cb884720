"""Measure the RTO (restore) and the backup time against plain ``pg_dump`` / ``pg_restore`` of the same database.

    python bench/restore.py [--sizes 50x2,500x10] [--url SUPERUSER_URL]

For each size (securities x years of 252 sessions) a fresh warehouse is migrated and
``market.bars_daily`` is filled straight through ``COPY`` with synthetic bars (the generator of
``bench/warehouse_load.py``), and a lakehouse folder gets one immutable raw parquet file per session
(what the raw tier holds). Then, in the same run on the same server:

* **reference**: ``pg_dump --format=custom --compress=6`` of the warehouse, ``DROP DATABASE``,
  ``CREATE DATABASE`` + ``pg_restore`` (what an operator would do by hand, no verification);
* **ours**: ``create_backup`` (the same dump from an exported snapshot, per-table row counts and
  checksums in that snapshot, the lakehouse copied content-addressed), then the warehouse database
  and the lakehouse folder are destroyed and ``restore_backup`` puts both back and verifies every
  table's checksum and the lakehouse manifest (what ``wealth-pipeline restore`` does).

The restore time is the RTO for that state; the ratios show what the verification and the
lakehouse cost on top of a bare ``pg_restore``. The Dagster instance database is not part of this
benchmark (its size depends on run history, not on data size). Without ``--url`` a throwaway local
cluster is started in a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from warehouse_load import synthetic_bars

from wealth_pipeline.environment import with_database
from wealth_pipeline.lakehouse.store import open_store
from wealth_pipeline.operations import pgtools
from wealth_pipeline.operations.backup import create_backup
from wealth_pipeline.operations.location import BackupLocation
from wealth_pipeline.operations.restore import restore_backup
from wealth_pipeline.warehouse import migrate
from wealth_pipeline.warehouse.localpg import LocalPostgres


def _dbname(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


def _recreate(url: str, drop_only: bool = False) -> None:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_dbname(url))))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_dbname(url))))


def fill(url: str, lake_root: Path, securities: int, years: int) -> dict[str, int]:
    """Migrate ``url``, COPY the synthetic bars in, write one raw parquet file per session; sizes."""
    migrate.upgrade(url)
    frame = synthetic_bars(securities, years)
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    with psycopg.connect(url) as conn:
        with conn.cursor().copy(sql.SQL("COPY market.bars_daily ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
                sql.SQL(", ").join(map(sql.Identifier, frame.columns)))) as copy:
            copy.write(buffer.getvalue())
        conn.execute("ANALYZE market.bars_daily")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    lake = open_store(str(lake_root))
    files = 0
    for (session,), part in frame.group_by("session_date", maintain_order=True):
        out = io.BytesIO()
        part.write_parquet(out)
        data = out.getvalue()
        key = f"raw/bars/date={session.isoformat()}/v0001-{hashlib.sha256(data).hexdigest()[:12]}.parquet"
        lake.put_bytes_if_absent(key, data)
        files += 1
    lake_bytes = sum(p.stat().st_size for p in lake_root.rglob("*") if p.is_file())
    return {"rows": frame.height, "database_bytes": int(size), "lake_files": files, "lake_bytes": lake_bytes}


def reference(url: str, scratch: Path) -> dict[str, float]:
    """Plain pg_dump -Fc, drop, create, pg_restore: the baseline."""
    with psycopg.connect(url) as conn:
        major = pgtools.server_versions(conn).major
    dump_tool, restore_tool = pgtools.find_tool("pg_dump", major), pgtools.find_tool("pg_restore", major)
    target = scratch / "reference.dump"
    start = time.perf_counter()
    pgtools.run_tool([str(dump_tool), "--format=custom", "--compress=6", "--no-password", f"--file={target}"], url)
    dumped = time.perf_counter() - start
    _recreate(url)
    start = time.perf_counter()
    pgtools.run_tool([str(restore_tool), "--exit-on-error", "--no-password", f"--dbname={_dbname(url)}", str(target)], url)
    restored = time.perf_counter() - start
    size = target.stat().st_size
    target.unlink()
    return {"backup": dumped, "restore": restored, "dump_bytes": size}


def ours(url: str, lake_root: Path, backups: Path) -> dict[str, object]:
    """create_backup, destroy the database and the lakehouse, restore_backup (verified)."""
    location = BackupLocation(str(backups))
    lake = open_store(str(lake_root))
    start = time.perf_counter()
    result = create_backup(location, url, None, lake)
    backed_up = time.perf_counter() - start
    _recreate(url, drop_only=True)
    shutil.rmtree(lake_root)
    lake_root.mkdir()
    start = time.perf_counter()
    report = restore_backup(location, result.backup_id, url, None, open_store(str(lake_root)))
    restored = time.perf_counter() - start
    assert not report.problems and report.checks["lakehouse"] == "identical", report.as_dict()
    return {"backup": backed_up, "restore": restored, "steps": report.steps,
            "dump_bytes": result.manifest["databases"]["warehouse"]["file_bytes"]}


def bench_size(server: str, securities: int, years: int) -> None:
    url = with_database(server, f"bench_{uuid.uuid4().hex[:8]}")
    with tempfile.TemporaryDirectory(prefix="wealth-bench-restore-") as folder:
        scratch = Path(folder)
        os.chmod(scratch, 0o755)
        lake_root = scratch / "lake"
        try:
            _recreate(url)
            sizes = fill(url, lake_root, securities, years)
            print(f"\n== {securities} securities x {years} years: {sizes['rows']:,} bars_daily rows, database "
                  f"{sizes['database_bytes'] / 2**20:.0f} MiB, lakehouse {sizes['lake_files']} raw files "
                  f"({sizes['lake_bytes'] / 2**20:.1f} MiB)")
            ref = reference(url, scratch)
            print(f"reference pg_dump -Fc        : {ref['backup']:7.2f} s  ({ref['dump_bytes'] / 2**20:.1f} MiB)")
            print(f"reference pg_restore         : {ref['restore']:7.2f} s")
            got = ours(url, lake_root, scratch / "backups")
            print(f"wealth-pipeline backup       : {got['backup']:7.2f} s  ({got['dump_bytes'] / 2**20:.1f} MiB dump)")
            print(f"wealth-pipeline restore (RTO): {got['restore']:7.2f} s  steps: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in got["steps"].items()))
            print(f"ratios: backup {got['backup'] / ref['backup']:.2f}x pg_dump, "
                  f"restore {got['restore'] / ref['restore']:.2f}x pg_restore "
                  f"(warehouse step alone {got['steps']['restore warehouse database'] / ref['restore']:.2f}x)")
        finally:
            _recreate(url, drop_only=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="superuser URL of a server to use (default: a throwaway local cluster)")
    parser.add_argument("--sizes", default="50x2,500x10", help="comma-separated SECURITIESxYEARS (default 50x2,500x10)")
    args = parser.parse_args(argv)
    try:
        sizes = [tuple(int(n) for n in s.lower().split("x")) for s in args.sizes.split(",")]
        assert all(len(s) == 2 and min(s) > 0 for s in sizes)
    except (ValueError, AssertionError):
        parser.error(f"--sizes {args.sizes!r}: expected comma-separated SECURITIESxYEARS, e.g. 50x2,500x10")
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, polars {pl.__version__}")
    cluster: LocalPostgres | None = None
    server = args.url
    folder: Path | None = None
    if server is None:
        folder = Path(tempfile.mkdtemp(prefix="wealth-bench-pg-"))
        folder.chmod(0o755)
        cluster = LocalPostgres(folder / "pg")
        cluster.start()
        server = cluster.url("postgres")
    try:
        for securities, years in sizes:
            bench_size(server, securities, years)
    finally:
        if cluster is not None:
            cluster.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
