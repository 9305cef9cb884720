"""Lakehouse storage against a local folder and a real S3 API (moto server on loopback).

Every test taking the ``backend`` fixture runs twice: on a local folder and on ``s3://bucket/lake/house``
served by a moto server subprocess, through the same ``Lakehouse`` code path. The processed and
models tiers are Delta tables (their transactional guarantees: test_lakehouse_delta.py); raw and
artifacts are parquet objects.
"""

import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest

from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import (
    ImmutableTierError,
    Lakehouse,
    LakehouseError,
    LocalObjectStore,
    ObjectNotFoundError,
    S3ObjectStore,
    content_hash,
)
from wealth_pipeline.providers.base import BARS_SCHEMA
from wealth_pipeline_tests.s3_server import create_bucket, s3_test_client

pytestmark = pytest.mark.integration

# The session fixture lives in s3_server.py; importing it here registers it for this module.

S3_PREFIX = "lake/house"


@dataclass
class Backend:
    """A lakehouse under test plus what an independent oracle needs to know about where it writes."""

    kind: str  # "local" or "s3"
    uri: str
    lake: Lakehouse
    expected_uri: Callable[[str], str]  # key -> URI, built by hand (not by the code under test)
    endpoint: str | None = None
    bucket: str | None = None
    root: Path | None = None

    def open(self, uri: str) -> Lakehouse:
        return Lakehouse.from_uri(uri, s3_endpoint_url=self.endpoint)

    def sibling_uri(self, suffix: str) -> str:
        return f"{self.uri}{suffix}"


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "lake"
        return Backend(
            kind="local",
            uri=str(root),
            lake=Lakehouse.from_uri(str(root)),
            expected_uri=lambda key: str(root.resolve() / key),
            root=root,
        )
    endpoint = request.getfixturevalue("s3_endpoint_url")
    bucket = create_bucket(endpoint)
    uri = f"s3://{bucket}/{S3_PREFIX}"
    return Backend(
        kind="s3",
        uri=uri,
        lake=Lakehouse.from_uri(uri, s3_endpoint_url=endpoint),
        expected_uri=lambda key: f"s3://{bucket}/{S3_PREFIX}/{key}",
        endpoint=endpoint,
        bucket=bucket,
    )


def _all_files(root: Path) -> list[str]:
    """Every file under ``root`` (hidden temp files included), as posix paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _bars(
    day: dt.date, symbols: tuple[str, ...] = ("AAA", "BBB", "CCC"), base: float = 100.0
) -> pl.DataFrame:
    n = len(symbols)
    ordinal = day.toordinal() % 1000
    return pl.DataFrame(
        {
            "symbol": list(symbols),
            "session_date": [day] * n,
            "open": [base + ordinal + i for i in range(n)],
            "high": [base + ordinal + i + 1.0 for i in range(n)],
            "low": [base + ordinal + i - 1.0 for i in range(n)],
            "close": [base + ordinal + i + 0.5 for i in range(n)],
            "volume": [1_000 * (ordinal + i) for i in range(n)],
            "currency": ["USD"] * n,
        },
        schema=BARS_SCHEMA,
    )


def _weekdays(start: dt.date, count: int) -> list[dt.date]:
    days: list[dt.date] = []
    day = start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


class _Counter:
    """Counts calls of a bound method it replaces on one object (for GET/LIST counting)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> None:
        self.calls: list[tuple[Any, ...]] = []
        original = getattr(obj, name)
        lock = threading.Lock()

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                self.calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(obj, name, wrapper)


# -- round trips ----------------------------------------------------------------------------------


def test_dtypes_round_trip_and_parquet_layout(backend: Backend) -> None:
    lake = backend.lake
    day = dt.date(2024, 3, 15)
    frame = pl.DataFrame(
        {
            "session_date": [day, day, None],
            "volume": [0, 9_007_199_254_740_993, None],  # > 2**53: must not pass through float
            "symbol": ["AAPL", "TD.TO", "Zürich ☃"],
            "close": [1.25, math.inf, None],
            "flag": [True, False, None],
            "ts": [dt.datetime(2024, 3, 15, 20, 0, tzinfo=dt.UTC), None, None],
        },
        schema={
            "session_date": pl.Date(),
            "volume": pl.Int64(),
            "symbol": pl.Utf8(),
            "close": pl.Float64(),
            "flag": pl.Boolean(),
            "ts": pl.Datetime("us", "UTC"),
        },
    )
    lake.write_partition("processed", "mixed", frame, day)
    back = lake.read_partitions("processed", "mixed")
    assert back.schema == frame.schema
    assert back.equals(frame)
    assert back["volume"][1] == 9_007_199_254_740_993
    assert back["symbol"][2] == "Zürich ☃"

    lake.write_dataset("artifacts", "mixed_unpartitioned", frame)
    assert lake.read_dataset("artifacts", "mixed_unpartitioned").equals(frame)
    assert lake.read_dataset("artifacts", "mixed_unpartitioned", columns=["flag", "symbol"]).equals(
        frame.select("flag", "symbol")
    )

    # The Delta data files: zstd and ~128k-row groups, checked with pyarrow (an independent parquet reader).
    big = pl.DataFrame({"i": range(300_000), "x": [0.5] * 300_000})
    lake.write_partition("processed", "big", big, day)
    (key,) = lake.partition_files("processed", "big")
    assert re.fullmatch(r"processed/big/lake_year=2024/part-[^/]+\.parquet", key)
    meta = pq.ParquetFile(io.BytesIO(lake.store.get_bytes(key))).metadata
    assert sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) == 300_000
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 131072
    assert meta.num_row_groups >= 3
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert lake.read_partitions("processed", "big").equals(big)


def test_table_layout_and_uris(backend: Backend) -> None:
    lake = backend.lake
    day = dt.date(2024, 1, 2)
    uri = lake.write_partition("processed", "bars", _bars(day), day)
    assert uri == backend.expected_uri("processed/bars") and uri.version == 0
    uri2 = lake.write_partition("models", "xgb/predictions", _bars(day), day, filename="part-0.parquet")
    assert uri2 == backend.expected_uri("models/xgb/predictions")
    assert lake.write_dataset("processed", "symbol_master", _bars(day)) == backend.expected_uri(
        "processed/symbol_master"
    )
    keys = lake.store.list_keys()
    for table in ("models/xgb/predictions", "processed/bars", "processed/symbol_master"):
        assert f"{table}/_delta_log/00000000000000000000.json" in keys
    assert next(k for k in keys if k.startswith("processed/bars/") and k.endswith(".parquet")).startswith(
        "processed/bars/lake_year=2024/part-"
    )
    assert next(k for k in keys if k.startswith("processed/symbol_master/") and k.endswith(".parquet")).startswith(
        "processed/symbol_master/lake_year=0/part-"
    )
    assert lake.partitions("processed", "bars") == [day]
    assert lake.partitions("models", "xgb/predictions") == [day]
    assert lake.read_partitions("models", "xgb/predictions", filename="part-0.parquet").equals(_bars(day))
    assert lake.read_partitions("models", "xgb/predictions", filename="other.parquet").height == 0
    assert lake.table_names("processed") == ["bars", "symbol_master"]
    # Any Delta reader (polars here) sees the rows plus the bookkeeping columns.
    direct = pl.read_delta(lake.table_uri("processed", "bars"), storage_options=lake.storage_options() or None)
    assert direct.drop("lake_date", "lake_year", "lake_file", "lake_row").sort("symbol").equals(_bars(day))
    assert set(direct["lake_date"].to_list()) == {day} and set(direct["lake_year"].to_list()) == {2024}
    if backend.root is None:
        raw_keys = [
            o["Key"]
            for o in s3_test_client(backend.endpoint).list_objects_v2(Bucket=backend.bucket)["Contents"]
        ]
        assert f"{S3_PREFIX}/processed/bars/_delta_log/00000000000000000000.json" in raw_keys


def test_windowed_reads_across_many_partitions(backend: Backend) -> None:
    lake = backend.lake
    days = _weekdays(dt.date(2024, 1, 1), 45)
    frames = {day: _bars(day) for day in days}
    window = lake.write_window("processed", "bars", pl.concat(frames.values()), "session_date", days[0], days[-1])
    assert (window.version, window.partitions, window.rows) == (0, 45, 135)
    lake.write_partition("processed", "other_dataset", _bars(days[10]), days[10])
    # A manifest next to the table is not data and must not be read as such.
    lake.put_json("processed", "bars", "manifest.json", {"rows": 3}, partition=days[12])

    assert lake.partitions("processed", "bars") == days
    assert lake.partitions("processed", "bars", days[3], days[5]) == days[3:6]

    start, end = days[7], days[30]
    # Window bounds that are not partition dates (a weekend) still select inclusively.
    expected = pl.concat([frames[d] for d in days if start <= d <= end])
    assert lake.read_partitions("processed", "bars", start, end).equals(expected)

    saturday = days[4] + dt.timedelta(days=1)
    assert saturday.weekday() == 5
    assert lake.read_partitions("processed", "bars", saturday, days[6]).equals(
        pl.concat([frames[days[5]], frames[days[6]]])
    )
    assert lake.read_partitions("processed", "bars", None, days[2]).equals(
        pl.concat([frames[d] for d in days[:3]])
    )
    assert lake.read_partitions("processed", "bars", days[-2], None).equals(
        pl.concat([frames[d] for d in days[-2:]])
    )
    assert lake.read_partitions("processed", "bars", days[3], days[3], columns=["close", "symbol"]).equals(
        frames[days[3]].select("close", "symbol")
    )
    assert lake.read_partitions("processed", "bars").height == 45 * 3
    # Rows come back in write order inside a day, whatever order the days were written in.
    shuffled = _bars(days[0], symbols=("ZZZ", "AAA", "MMM"))
    lake.write_partition("processed", "bars", shuffled, days[0])
    assert lake.read_partition("processed", "bars", days[0])["symbol"].to_list() == ["ZZZ", "AAA", "MMM"]


def test_empty_windows(backend: Backend) -> None:
    lake = backend.lake
    nothing = lake.read_partitions("processed", "bars")
    assert nothing.height == 0 and nothing.width == 0
    assert lake.partitions("processed", "bars") == []

    typed = lake.read_partitions("processed", "bars", schema=BARS_SCHEMA)
    assert typed.height == 0
    assert typed.schema == pl.Schema(BARS_SCHEMA)

    friday, monday = dt.date(2024, 1, 5), dt.date(2024, 1, 8)
    lake.write_partition("processed", "bars", _bars(friday), friday)
    lake.write_partition("processed", "bars", _bars(monday), monday)
    weekend = lake.read_partitions(
        "processed", "bars", dt.date(2024, 1, 6), dt.date(2024, 1, 7), schema=BARS_SCHEMA
    )
    assert weekend.height == 0 and weekend.schema == pl.Schema(BARS_SCHEMA)
    assert lake.read_partitions("processed", "bars", dt.date(2025, 1, 1), dt.date(2025, 12, 31)).height == 0
    # A zero-row partition (e.g. a market-closed session) reads as the table's schema, no rows.
    holiday = dt.date(2024, 1, 15)
    lake.write_partition("processed", "bars", _bars(holiday).head(0), holiday)
    closed = lake.read_partitions("processed", "bars", holiday, holiday)
    assert closed.height == 0 and closed.schema == pl.Schema(BARS_SCHEMA)
    assert lake.read_partitions("processed", "bars", dt.date(2030, 1, 1), None).schema == pl.Schema(BARS_SCHEMA)
    with pytest.raises(ValueError, match="start 2024-01-08 is after end 2024-01-05"):
        lake.read_partitions("processed", "bars", monday, friday)


# -- atomicity ------------------------------------------------------------------------------------


def _fail_next_transport(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> tuple[type[Exception], Callable[[], None]]:
    """Make object writes fail after the bytes were produced, in the backend's own way.

    Returns the injected exception type and a function that heals the backend again.
    """

    class InjectedFailure(OSError):
        pass

    if backend.kind == "local":

        def broken_replace(src: Any, dst: Any) -> None:
            raise InjectedFailure(f"injected: rename {src} -> {dst} failed")

        monkeypatch.setattr(os, "replace", broken_replace)
        return InjectedFailure, monkeypatch.undo

    store = backend.lake.store
    assert isinstance(store, S3ObjectStore)

    def broken_send(**kwargs: Any) -> None:
        raise InjectedFailure("injected: connection reset during PutObject")

    store.client.meta.events.register("before-send.s3.PutObject", broken_send)
    return InjectedFailure, lambda: store.client.meta.events.unregister(
        "before-send.s3.PutObject", broken_send
    )


def test_failed_writes_leave_previous_object_intact(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parquet objects (artifacts tier); a failed table commit is tested in test_lakehouse_delta.py."""
    lake = backend.lake
    day = dt.date(2024, 2, 1)
    key = "artifacts/bars/date=2024-02-01/data.parquet"
    v1 = _bars(day, base=100.0)
    lake.write_partition("artifacts", "bars", v1, day)
    before_bytes = lake.store.get_bytes(key)
    before_files = _all_files(backend.root) if backend.root else None

    # 1) The frame cannot be serialized: nothing reaches the store.
    unserializable = v1.with_columns(pl.Series("obj", [object()] * v1.height, dtype=pl.Object))
    with pytest.raises(Exception, match=r"(?i)object"):
        lake.write_partition("artifacts", "bars", unserializable, day)
    assert lake.store.get_bytes(key) == before_bytes

    # 2) The write fails after the new bytes were produced (rename / PUT fails).
    injected, heal = _fail_next_transport(backend, monkeypatch)
    with pytest.raises(injected, match="injected"):
        lake.write_partition("artifacts", "bars", _bars(day, base=500.0), day)
    heal()

    assert lake.store.get_bytes(key) == before_bytes
    assert lake.read_partitions("artifacts", "bars").equals(v1)
    assert lake.store.list_keys() == [key]
    if backend.root is not None:
        assert _all_files(backend.root) == before_files  # no temp file left behind

    # 3) A write that succeeds replaces the object.
    v2 = _bars(day, base=200.0)
    lake.write_partition("artifacts", "bars", v2, day)
    assert lake.read_partitions("artifacts", "bars").equals(v2)


def test_local_failure_mid_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync failing after the bytes were written: the temp file is removed, the old file unchanged."""
    store = LocalObjectStore(tmp_path / "lake")
    store.put_bytes("processed/x/data.bin", b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("injected: fsync failed")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="injected: fsync failed"):
        store.put_bytes("processed/x/data.bin", b"new content that never lands")
    monkeypatch.undo()
    assert store.get_bytes("processed/x/data.bin") == b"old"
    assert _all_files(tmp_path / "lake") == ["processed/x/data.bin"]


def test_local_put_if_absent_is_race_free(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "lake")
    payloads = [f"writer-{i}".encode() for i in range(16)]
    barrier = threading.Barrier(len(payloads))

    def write(data: bytes) -> bool:
        barrier.wait()
        return store.put_bytes_if_absent("raw/x/date=2024-01-02/obj.bin", data)

    with ThreadPoolExecutor(len(payloads)) as pool:
        results = list(pool.map(write, payloads))
    assert results.count(True) == 1
    assert store.get_bytes("raw/x/date=2024-01-02/obj.bin") == payloads[results.index(True)]
    assert _all_files(tmp_path / "lake") == ["raw/x/date=2024-01-02/obj.bin"]


# -- raw immutability -----------------------------------------------------------------------------


def test_content_hash_is_sha256() -> None:
    assert content_hash(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_raw_tier_is_append_only_and_immutable(backend: Backend) -> None:
    lake, store = backend.lake, backend.lake.store
    day = dt.date(2024, 4, 2)
    first = _bars(day)
    uri = lake.write_partition("raw", "bars", first, day)
    (key,) = store.list_keys("raw/")
    stored = store.get_bytes(key)
    assert key == f"raw/bars/date=2024-04-02/{hashlib.sha256(stored).hexdigest()}.parquet"
    assert uri == backend.expected_uri(key)

    # Same content again: same key, nothing changes.
    assert lake.write_partition("raw", "bars", first, day) == uri
    assert store.list_keys("raw/") == [key]
    assert store.get_bytes(key) == stored

    # Different content under the same explicit name: refused, original kept.
    name = key.rsplit("/", 1)[1]
    with pytest.raises(
        ImmutableTierError, match=rf"{re.escape(backend.expected_uri(key))}.*different content"
    ):
        lake.write_partition("raw", "bars", _bars(day, base=7.0), day, filename=name)
    assert store.get_bytes(key) == stored

    # Different content with the default (content-hashed) name: a second object, both readable.
    correction = _bars(day, symbols=("DDD",))
    lake.write_partition("raw", "bars", correction, day)
    assert len(store.list_keys("raw/bars/")) == 2
    assert (
        lake.read_partitions("raw", "bars")
        .sort("symbol")
        .equals(pl.concat([first, correction]).sort("symbol"))
    )

    # No store operation can change or remove a raw object.
    with pytest.raises(
        ImmutableTierError, match=rf"refusing to delete {re.escape(backend.expected_uri(key))}"
    ):
        store.delete(key)
    with pytest.raises(ImmutableTierError, match="append-only"):
        store.put_bytes(key, b"garbage")
    with pytest.raises(ImmutableTierError, match="append-only"):
        lake.delete_partition("raw", "bars", day)
    assert store.put_bytes_if_absent(key, b"garbage") is False
    assert store.get_bytes(key) == stored
    assert store.put_bytes_if_absent("raw/notes/new.bin", b"hello") is True
    assert store.get_bytes("raw/notes/new.bin") == b"hello"

    # Other tiers stay mutable.
    lake.write_partition("processed", "bars", first, day)
    assert lake.delete_partition("processed", "bars", day) == 3  # rows of the table
    assert lake.partitions("processed", "bars") == []
    lake.write_partition("artifacts", "bars", first, day)
    assert lake.delete_partition("artifacts", "bars", day) == 1  # parquet files
    store.delete("artifacts/bars/date=2024-04-02/data.parquet")  # deleting a missing key is a no-op


def test_json_manifests(backend: Backend) -> None:
    lake = backend.lake
    manifest = {
        "window": [dt.date(2024, 1, 2), dt.date(2024, 6, 28)],
        "features": ["rsi_14", "sma_20"],
        "ic": 0.031,
    }
    uri = lake.put_json("models", "xgb", "manifest.json", manifest)
    assert uri == backend.expected_uri("models/xgb/manifest.json")
    assert lake.get_json("models", "xgb", "manifest.json") == {
        "window": ["2024-01-02", "2024-06-28"],
        "features": ["rsi_14", "sma_20"],
        "ic": 0.031,
    }
    assert json.loads(lake.store.get_bytes("models/xgb/manifest.json"))["ic"] == 0.031

    day = dt.date(2024, 1, 2)
    lake.put_json("raw", "bars", "ingest.json", {"rows": 3}, partition=day)
    lake.put_json("raw", "bars", "ingest.json", {"rows": 3}, partition=day)  # same content: fine
    with pytest.raises(ImmutableTierError, match="different content"):
        lake.put_json("raw", "bars", "ingest.json", {"rows": 4}, partition=day)
    assert lake.get_json("raw", "bars", "ingest.json", partition=day) == {"rows": 3}
    with pytest.raises(TypeError, match="not JSON serializable"):
        lake.put_json("models", "xgb", "bad.json", {"x": object()})


# -- listing and prefixes -------------------------------------------------------------------------


def test_list_keys_beyond_one_page(backend: Backend) -> None:
    store = backend.lake.store
    keys = [f"artifacts/many/{i // 100:02d}/{i:05d}.bin" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.put_bytes(key, b"x"), keys))
    store.put_bytes("artifacts/manyother/a.bin", b"y")  # shares the string prefix "artifacts/many"
    store.put_bytes("artifacts/zz.bin", b"z")

    list_calls = []
    if isinstance(store, S3ObjectStore):
        store.client.meta.events.register(
            "before-call.s3.ListObjectsV2", lambda **kwargs: list_calls.append(kwargs["params"])
        )
    assert store.list_keys("artifacts/many/") == sorted(keys)
    assert store.list_keys("artifacts/many/07/") == sorted(k for k in keys if "/07/" in k)
    assert store.list_keys("artifacts/many") == [*sorted(keys), "artifacts/manyother/a.bin"]
    assert len(store.list_keys()) == 1102
    assert store.list_keys("processed/") == []
    if isinstance(store, S3ObjectStore):
        assert len(list_calls) >= 2 + 1 + 2 + 2  # the 1,100-key listings took two pages each


def test_sibling_roots_are_isolated(backend: Backend) -> None:
    """``.../house`` and ``.../house2`` share a string prefix but are different lakehouses."""
    day = dt.date(2024, 1, 2)
    backend.lake.write_partition("processed", "bars", _bars(day), day)
    sibling = backend.open(backend.sibling_uri("2"))
    sibling.write_partition("processed", "bars", _bars(day, symbols=("ZZZ",)), day)
    assert backend.lake.read_partitions("processed", "bars")["symbol"].to_list() == ["AAA", "BBB", "CCC"]
    assert sibling.read_partitions("processed", "bars")["symbol"].to_list() == ["ZZZ"]
    assert all(key.startswith("processed/bars/") for key in backend.lake.store.list_keys())
    # A trailing slash names the same lakehouse.
    same = backend.open(backend.uri + "/")
    assert same.read_partitions("processed", "bars").equals(_bars(day))


def test_s3_prefix_layout_in_bucket(s3_endpoint_url: str) -> None:
    bucket = create_bucket(s3_endpoint_url)
    day = dt.date(2024, 1, 2)
    nested = Lakehouse.from_uri(f"s3://{bucket}/some/prefix", s3_endpoint_url=s3_endpoint_url)
    at_root = Lakehouse.from_uri(f"s3://{bucket}", s3_endpoint_url=s3_endpoint_url)
    assert nested.uri() == f"s3://{bucket}/some/prefix"
    assert at_root.uri() == f"s3://{bucket}"
    assert nested.write_partition("processed", "bars", _bars(day), day) == f"s3://{bucket}/some/prefix/processed/bars"
    assert (
        at_root.write_dataset("artifacts", "top", _bars(day)) == f"s3://{bucket}/artifacts/top/data.parquet"
    )
    listed = sorted(o["Key"] for o in s3_test_client(s3_endpoint_url).list_objects_v2(Bucket=bucket)["Contents"])
    assert listed[0] == "artifacts/top/data.parquet"
    assert "some/prefix/processed/bars/_delta_log/00000000000000000000.json" in listed
    assert all(k.startswith("some/prefix/processed/bars/") for k in listed[1:])
    # The bucket-root lakehouse sees everything, keyed from the bucket root; the nested one only its own.
    assert at_root.store.list_keys("some/") == listed[1:]
    assert nested.store.list_keys() == [k[len("some/prefix/"):] for k in listed[1:]]
    assert nested.read_partitions("processed", "bars").equals(_bars(day))
    assert at_root.read_partitions("processed", "bars").height == 0  # no table at the bucket root


# -- errors ---------------------------------------------------------------------------------------


def test_missing_objects_name_their_uri(backend: Backend) -> None:
    lake = backend.lake
    missing = backend.expected_uri("processed/symbol_master")
    with pytest.raises(ObjectNotFoundError, match=rf"^no table at {re.escape(missing)}$") as excinfo:
        lake.read_dataset("processed", "symbol_master")
    assert isinstance(excinfo.value, FileNotFoundError)
    with pytest.raises(
        ObjectNotFoundError,
        match=rf"no partition 2024-01-02 \(data\.parquet\) in {re.escape(backend.expected_uri('processed/bars'))}",
    ):
        lake.read_partition("processed", "bars", dt.date(2024, 1, 2))
    with pytest.raises(
        ObjectNotFoundError, match=re.escape(backend.expected_uri("models/xgb/manifest.json"))
    ):
        lake.get_json("models", "xgb", "manifest.json")
    with pytest.raises(
        ObjectNotFoundError, match=re.escape(backend.expected_uri("artifacts/report/data.parquet"))
    ):
        lake.read_dataset("artifacts", "report")
    assert lake.exists("processed", "symbol_master") is False


def test_schema_enforcement_and_bad_files_name_the_table_or_file(backend: Backend) -> None:
    lake = backend.lake
    d1, d2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    lake.write_partition("processed", "bars", _bars(d1), d1)
    table = re.escape(backend.expected_uri("processed/bars"))
    with pytest.raises(ValueError, match=rf"^{table}: the frame lacks column\(s\) \['volume'\]"):
        lake.write_partition("processed", "bars", _bars(d2).drop("volume"), d2)
    with pytest.raises(ValueError, match=rf"^{table}: column type change\(s\) \['volume: Int64 -> Float64'\] refused"):
        lake.write_partition("processed", "bars", _bars(d2).with_columns(pl.col("volume").cast(pl.Float64)), d2)
    with pytest.raises(ValueError, match=r"columns \['lake_date'\] are reserved"):
        lake.write_partition("processed", "bars", _bars(d2).with_columns(lake_date=pl.lit(d2)), d2)
    assert lake.version("processed", "bars") == 0 and lake.read_partitions("processed", "bars").equals(_bars(d1))
    # Adding a column is allowed (schema evolution): older rows read it as null.
    wider = _bars(d2).with_columns(pl.lit("vendor_a").alias("source"))
    lake.write_partition("processed", "bars", wider, d2)
    both = lake.read_partitions("processed", "bars")
    assert both.columns == [*BARS_SCHEMA, "source"] and both["source"].to_list() == [None] * 3 + ["vendor_a"] * 3
    with pytest.raises(LakehouseError, match=rf"{table}: no column\(s\) \['nope'\]"):
        lake.read_partitions("processed", "bars", columns=["symbol", "nope"])
    with pytest.raises(ValueError, match=r"bars: 3 row\(s\) with session_date outside the window 2024-01-03..2024-01-04"):
        lake.write_window("processed", "bars", _bars(d1), "session_date", d2, dt.date(2024, 1, 4))

    # Parquet tiers: a bad file is named.
    lake.write_partition("artifacts", "report", _bars(d1), d1)
    lake.write_partition("artifacts", "report", _bars(d2).drop("volume"), d2)
    with pytest.raises(
        LakehouseError,
        match=rf"{re.escape(backend.expected_uri('artifacts/report/date=2024-01-03/data.parquet'))} has columns",
    ):
        lake.read_partitions("artifacts", "report")
    with pytest.raises(LakehouseError, match=r"date=2024-01-03/data\.parquet: no column\(s\) \['volume'\]"):
        lake.read_partitions("artifacts", "report", columns=["symbol", "volume"])

    lake.store.put_bytes("artifacts/broken/date=2024-01-02/data.parquet", b"not parquet at all")
    with pytest.raises(
        LakehouseError,
        match=rf"cannot read parquet {re.escape(backend.expected_uri('artifacts/broken/date=2024-01-02/data.parquet'))}",
    ):
        lake.read_partitions("artifacts", "broken")

    lake.store.put_bytes("artifacts/weird/date=2024-13-45/data.parquet", b"x")
    with pytest.raises(LakehouseError, match=r"bad partition folder .*date=2024-13-45"):
        lake.partitions("artifacts", "weird")
    with pytest.raises(ValueError, match=r"as_of reads need a table tier"):
        lake.read_partitions("artifacts", "report", as_of=0)


def test_invalid_arguments_are_rejected(backend: Backend) -> None:
    lake = backend.lake
    day = dt.date(2024, 1, 2)
    frame = _bars(day)
    with pytest.raises(ValueError, match="unknown lakehouse tier 'gold'"):
        lake.write_partition("gold", "bars", frame, day)
    with pytest.raises(ValueError, match=r"invalid dataset name '\.\./escape'"):
        lake.write_partition("processed", "../escape", frame, day)
    with pytest.raises(ValueError, match="invalid dataset name 'a/date=x'"):
        lake.write_partition("processed", "a/date=x", frame, day)
    with pytest.raises(ValueError, match=r"invalid file name 'a/b\.parquet'"):
        lake.write_partition("processed", "bars", frame, day, filename="a/b.parquet")
    with pytest.raises(ValueError, match=r"invalid file name '\.hidden'"):
        lake.write_dataset("processed", "bars", frame, filename=".hidden")
    with pytest.raises(TypeError, match=r"partition must be a datetime\.date"):
        lake.write_partition("processed", "bars", frame, dt.datetime(2024, 1, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a polars DataFrame, got dict"):
        lake.write_partition("processed", "bars", {"a": [1]}, day)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid object key '/etc/passwd'"):
        lake.store.get_bytes("/etc/passwd")
    with pytest.raises(ValueError, match=r"bad segment '\.\.'"):
        lake.store.put_bytes("processed/../../x", b"x")
    assert lake.store.list_keys() == []


def test_from_uri_rejects_unsupported_uris(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported lakehouse URI 'gs://bucket/x'"):
        Lakehouse.from_uri("gs://bucket/x")
    with pytest.raises(ValueError, match=r"expected s3://bucket\[/prefix\]"):
        Lakehouse.from_uri("s3://")
    with pytest.raises(ValueError, match="empty lakehouse URI"):
        Lakehouse.from_uri("  ")
    lake = Lakehouse.from_uri(f"file://{tmp_path}/lake")
    assert isinstance(lake.store, LocalObjectStore) and lake.store.root == (tmp_path / "lake").resolve()


def test_missing_bucket_is_named(s3_endpoint_url: str) -> None:
    lake = Lakehouse.from_uri("s3://no-such-bucket-xyz/p", s3_endpoint_url=s3_endpoint_url)
    with pytest.raises(LakehouseError, match="S3 bucket 'no-such-bucket-xyz' does not exist"):
        lake.read_partitions("processed", "bars")
    with pytest.raises(LakehouseError, match="S3 bucket 'no-such-bucket-xyz' does not exist"):
        lake.write_partition("processed", "bars", _bars(dt.date(2024, 1, 2)), dt.date(2024, 1, 2))


# -- Dagster resource -----------------------------------------------------------------------------


def test_resource_in_a_dagster_materialization(backend: Backend) -> None:
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01")

    @dg.asset(partitions_def=partitions)
    def daily_bars(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        uri = lakehouse.get().write_partition("processed", "bars", _bars(day), day)
        return dg.MaterializeResult(metadata={"uri": uri})

    resource = LakehouseResource(uri=backend.uri, s3_endpoint_url=backend.endpoint)
    assert resource.get() is resource.get()
    result = dg.materialize([daily_bars], resources={"lakehouse": resource}, partition_key="2024-01-03")
    assert result.success
    (materialization,) = result.asset_materializations_for_node("daily_bars")
    assert materialization.metadata["uri"].value == backend.expected_uri("processed/bars")
    assert backend.open(backend.uri).read_partitions("processed", "bars").equals(_bars(dt.date(2024, 1, 3)))
