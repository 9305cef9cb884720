"""Table semantics of the processed tier (Delta Lake through delta-rs), on a folder and on S3 (moto).

One commit per window, old-or-new reads, no-op identical rewrites (checksums of every stored file),
as-of reads by version and time, two writer processes (disjoint and overlapping windows), and a
writer killed in the middle of a commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline_tests.integration import test_lakehouse as base
from wealth_pipeline_tests.integration.test_lakehouse import Backend, _bars, _weekdays

pytestmark = pytest.mark.integration
backend = base.backend  # the local-folder / S3 fixture of test_lakehouse.py: every test runs on both

SYMBOLS = ("AAA", "BBB", "CCC")


def _window(days: list[dt.date], base: float) -> pl.DataFrame:
    return pl.concat([_bars(day, SYMBOLS, base) for day in days])


def _checksums(lake: Lakehouse, prefix: str) -> dict[str, str]:
    """sha256 of every stored object under ``prefix`` (data files and commit log)."""
    return {key: hashlib.sha256(lake.store.get_bytes(key)).hexdigest() for key in lake.store.list_keys(prefix)}


def test_a_window_is_one_commit_and_readers_see_old_or_new(backend: Backend) -> None:
    lake = backend.lake
    days = _weekdays(dt.date(2023, 12, 18), 20)  # spans two year partitions
    old, new = _window(days, 100.0), _window(days, 900.0)
    first = lake.write_window("processed", "bars", old, "session_date", days[0], days[-1])
    assert first.version == 0 and first.changed
    second = lake.write_window("processed", "bars", new, "session_date", days[0], days[-1])
    assert second.version == 1, "a twenty-session window, two years, is ONE commit"
    assert [h["version"] for h in lake.history("processed", "bars")] == [1, 0]
    assert lake.read_partitions("processed", "bars", as_of=0).equals(old)
    assert lake.read_partitions("processed", "bars").equals(new)

    # A reader polling while the window flips back and forth sees one whole version each time.
    stop, seen, bad = threading.Event(), [], []
    reader_lake = backend.open(backend.uri)

    def read_loop() -> None:
        while not stop.is_set():
            got = reader_lake.read_partitions("processed", "bars", days[0], days[-1])
            if got.equals(old):
                seen.append("old")
            elif got.equals(new):
                seen.append("new")
            else:
                bad.append(got)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for i in range(6):
            lake.write_window("processed", "bars", old if i % 2 == 0 else new, "session_date", days[0], days[-1])
    finally:
        stop.set()
        reader.join()
    assert not bad, f"a reader saw a mixed window: {bad[0]}"
    assert seen
    assert lake.version("processed", "bars") == 7

    # Days of the window without rows are emptied; days outside the window are untouched.
    lake.write_window("processed", "bars", _window(days[:5], 1.0), "session_date", days[0], days[9])
    assert lake.partitions("processed", "bars") == days[:5] + days[10:]
    assert lake.read_partitions("processed", "bars", days[10], None).equals(_window(days[10:], 900.0))


def test_rewriting_identical_content_changes_nothing(backend: Backend) -> None:
    lake = backend.lake
    days = _weekdays(dt.date(2024, 3, 1), 10)
    frame = _window(days, 50.0)
    written = lake.write_window("processed", "bars", frame, "session_date", days[0], days[-1])
    lake.write_dataset("processed", "symbol_master", pl.DataFrame({"symbol": list(SYMBOLS)}))
    before = _checksums(lake, "processed/")

    again = lake.write_window("processed", "bars", frame.clone(), "session_date", days[0], days[-1])
    same_day = lake.write_partition("processed", "bars", _bars(days[3], SYMBOLS, 50.0), days[3])
    master = lake.write_dataset("processed", "symbol_master", pl.DataFrame({"symbol": list(SYMBOLS)}))
    # The same rows handed over symbol-major (each day's rows still in the same order) are the same content.
    symbol_major = lake.write_window("processed", "bars", frame.sort("symbol", "session_date", maintain_order=True),
                                     "session_date", days[0], days[-1])
    assert (symbol_major.version, symbol_major.changed) == (written.version, False)
    assert (again.version, again.changed) == (written.version, False)
    assert (same_day.version, same_day.changed) == (written.version, False)
    assert master.changed is False
    assert _checksums(lake, "processed/") == before, "no object written, replaced or removed"

    # One changed value is a change: a new commit, and only then.
    changed = frame.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(0.5).otherwise(pl.col("close")).alias("close"))
    after = lake.write_window("processed", "bars", changed, "session_date", days[0], days[-1])
    assert (after.version, after.changed) == (written.version + 1, True)
    # Reordered rows are different content too (reads return write order).
    reordered = lake.write_partition("processed", "bars", _bars(days[0], SYMBOLS, 50.0).reverse(), days[0])
    assert reordered.changed and reordered.version == written.version + 2


def test_as_of_reads_by_version_and_by_time(backend: Backend) -> None:
    lake = backend.lake
    day = dt.date(2024, 5, 2)
    v0 = lake.write_partition("processed", "bars", _bars(day, base=1.0), day)
    # Delta resolves a time to the commit files' modification times: S3 keeps whole seconds.
    time.sleep(1.1)
    between = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    v1 = lake.write_partition("processed", "bars", _bars(day, base=2.0), day)
    assert (v0.version, v1.version) == (0, 1)
    assert lake.read_partitions("processed", "bars", as_of=0).equals(_bars(day, base=1.0))
    assert lake.read_partitions("processed", "bars", as_of=between).equals(_bars(day, base=1.0))
    assert lake.read_partitions("processed", "bars", as_of=between.isoformat()).equals(_bars(day, base=1.0))
    assert lake.read("processed", "bars", as_of=1).equals(_bars(day, base=2.0))
    assert lake.version("processed", "bars", as_of=between) == 0
    assert lake.partitions("processed", "bars", as_of=0) == [day]
    with pytest.raises(ValueError, match=r"processed/bars: cannot read as of 7 .*versions 0\.\.1 exist"):
        lake.read_partitions("processed", "bars", as_of=7)
    assert lake.versions("processed", ["bars", "missing"]) == {"bars": 1, "missing": None}


# -- two writer processes ---------------------------------------------------------------------------

_WRITER = r"""
import datetime as dt, json, sys, time
import polars as pl
from wealth_pipeline.lakehouse.store import Lakehouse
args = json.loads(sys.argv[1])
lake = Lakehouse.from_uri(args["uri"], s3_endpoint_url=args["endpoint"])
while time.time() < args["start_at"]:
    time.sleep(0.001)
versions = []
for n, window in enumerate(args["windows"]):
    days = [dt.date.fromisoformat(d) for d in window]
    frame = pl.DataFrame({
        "symbol": [s for _ in days for s in ("AAA", "BBB", "CCC")],
        "session_date": [d for d in days for _ in range(3)],
        "writer": [args["writer"]] * (3 * len(days)),
        "attempt": [n] * (3 * len(days)),
    })
    versions.append(lake.write_window("processed", "bars", frame, "session_date", days[0], days[-1]).version)
print(json.dumps(versions))
"""


def _run_writers(backend: Backend, windows: dict[str, list[list[str]]]) -> dict[str, list[int]]:
    start_at = time.time() + 4.0  # both processes import, then start together
    procs = {
        writer: subprocess.Popen(
            [sys.executable, "-c", _WRITER,
             json.dumps({"uri": backend.uri, "endpoint": backend.endpoint, "writer": writer,
                         "windows": plan, "start_at": start_at})],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        )
        for writer, plan in windows.items()
    }
    results = {}
    for writer, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"writer {writer} failed: {err[-3000:]}"
        results[writer] = json.loads(out.strip().splitlines()[-1])
    return results


def _seed(lake: Lakehouse) -> None:
    day = dt.date(2023, 12, 29)
    lake.write_partition("processed", "bars", pl.DataFrame(
        {"symbol": ["AAA"], "session_date": [day], "writer": ["seed"], "attempt": [0]}), day)


def test_two_processes_writing_disjoint_windows_both_succeed(backend: Backend) -> None:
    lake = backend.lake
    _seed(lake)
    weeks = [_weekdays(dt.date(2024, 1, 1) + dt.timedelta(weeks=i), 5) for i in range(12)]
    plan = {"a": [[d.isoformat() for d in w] for w in weeks[0::2]],
            "b": [[d.isoformat() for d in w] for w in weeks[1::2]]}
    versions = _run_writers(backend, plan)
    got = lake.read_partitions("processed", "bars")
    assert got.height == 1 + 12 * 5 * 3
    assert got.group_by("symbol", "session_date").len()["len"].max() == 1
    for writer, windows in plan.items():
        mine = got.filter(pl.col("writer") == writer)
        assert sorted({d.isoformat() for d in mine["session_date"]}) == sorted(d for w in windows for d in w)
    every = sorted(versions["a"] + versions["b"])
    assert every == list(range(1, 13)), "twelve windows, twelve commits, none lost"
    assert lake.version("processed", "bars") == 12


def test_two_processes_writing_the_same_window_never_lose_or_duplicate(backend: Backend) -> None:
    lake = backend.lake
    _seed(lake)
    window = [d.isoformat() for d in _weekdays(dt.date(2024, 2, 5), 5)]
    rounds = 8
    versions = _run_writers(backend, {"a": [window] * rounds, "b": [window] * rounds})
    got = lake.read_partitions("processed", "bars", dt.date(2024, 1, 1), None)
    assert got.height == 5 * 3, "exactly one writer's window: no duplicated or missing row"
    assert got.select("writer", "attempt").unique().height == 1, "the window is one commit's rows, not a mix"
    assert sorted(versions["a"] + versions["b"]) == list(range(1, 2 * rounds + 1)), "every write committed once"
    last = max(versions["a"] + versions["b"])
    winner = "a" if last in versions["a"] else "b"
    assert got["writer"][0] == winner and got["attempt"][0] == rounds - 1
    # Every intermediate version is a whole window too.
    for version in range(1, 2 * rounds + 1):
        old = lake.read_partitions("processed", "bars", dt.date(2024, 1, 1), None, as_of=version)
        assert old.height == 15 and old.select("writer", "attempt").unique().height == 1


# -- a writer dies mid-commit -----------------------------------------------------------------------

_CRASHING_WRITER = r"""
import datetime as dt, json, sys
import numpy as np, polars as pl
from wealth_pipeline.lakehouse.store import Lakehouse
args = json.loads(sys.argv[1])
lake = Lakehouse.from_uri(args["uri"], s3_endpoint_url=args["endpoint"])
days = pl.date_range(dt.date(2004, 1, 1), dt.date(2023, 12, 31), eager=True)
n = 60
frame = pl.DataFrame({
    "symbol": np.tile([f"S{i:03d}" for i in range(n)], len(days)),
    "session_date": days.to_numpy().repeat(n),
    "close": np.random.default_rng(1).normal(100, 5, n * len(days)),
})
print("writing", flush=True)
lake.write_window("processed", "big", frame, "session_date", days[0], days[-1])
print("committed", flush=True)
"""


def test_a_writer_killed_mid_commit_leaves_the_previous_version(backend: Backend) -> None:
    lake = backend.lake
    days = pl.date_range(dt.date(2004, 1, 1), dt.date(2023, 12, 31), eager=True).to_list()
    small = pl.DataFrame({"symbol": ["S000"] * len(days), "session_date": days, "close": [1.0] * len(days)})
    lake.write_window("processed", "big", small, "session_date", days[0], days[-1])
    before_files = set(lake.store.list_keys("processed/big/"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WRITER, json.dumps({"uri": backend.uri, "endpoint": backend.endpoint})],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        # Kill it as soon as its first new data file lands: twenty year-partitions are still to come.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            fresh = [k for k in lake.store.list_keys("processed/big/lake_year=") if k not in before_files]
            if fresh:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == -signal.SIGKILL and "committed" not in out, out
    leftover = set(lake.store.list_keys("processed/big/")) - before_files
    assert leftover and all("/_delta_log/" not in k for k in leftover), "data files landed, no commit did"
    assert lake.version("processed", "big") == 0
    assert lake.read_partitions("processed", "big").equals(small)
    # The next writer proceeds normally on top of the committed state.
    again = lake.write_window("processed", "big", small.with_columns(pl.col("close") * 2), "session_date",
                              days[0], days[-1])
    assert again.version == 1 and lake.read_partitions("processed", "big")["close"].unique().to_list() == [2.0]


def test_directory_of_a_local_table_is_self_describing(tmp_path: Path) -> None:
    """A local table is a plain folder any Delta reader opens: no lakehouse code needed to read it."""
    from deltalake import DeltaTable

    lake = Lakehouse.from_uri(str(tmp_path / "lake"))
    day = dt.date(2024, 1, 2)
    lake.write_partition("processed", "bars", _bars(day), day)
    table = DeltaTable(str(tmp_path / "lake" / "processed" / "bars"))
    assert table.version() == 0 and table.metadata().partition_columns == ["lake_year"]
    assert pl.DataFrame(table.to_pyarrow_table()).drop("lake_date", "lake_year", "lake_file", "lake_row") \
        .sort("symbol").equals(_bars(day))
