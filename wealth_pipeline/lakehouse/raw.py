"""The raw tier: immutable, content-hashed versions of what a source delivered, per partition.

A partition's folder ``raw/<dataset>/date=YYYY-MM-DD/`` holds one file per distinct delivery,
named ``v<NNNN>-<sha256 prefix>.parquet``. Files are never overwritten or deleted. Re-delivering
the content of the current version is a no-op; different content becomes a new version that
supersedes the previous one (which stays, so nothing a source sent is lost). Readers take the
newest version of each partition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass

import polars as pl

from wealth_pipeline.lakehouse.store import ObjectStore, frame_to_parquet, map_threads, parquet_to_frame

_VERSION = re.compile(r"^raw/(?P<dataset>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/v(?P<n>\d{4})-(?P<sha>[0-9a-f]+)\.parquet$")


def frame_hash(frame: pl.DataFrame) -> str:
    """A hash of a frame's content, independent of row order."""
    canonical = frame.sort(frame.columns) if frame.height else frame
    digest = hashlib.sha256()
    digest.update(repr(list(frame.schema.items())).encode())
    digest.update(canonical.write_csv().encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class RawWrite:
    """What happened to one partition of a raw write."""

    day: dt.date
    key: str
    status: str  # "new", "unchanged" or "superseded"
    rows: int
    superseded_key: str | None = None


def versions(store: ObjectStore, dataset: str) -> dict[dt.date, list[str]]:
    """Every stored version key per partition date, oldest first."""
    found: dict[dt.date, list[str]] = defaultdict(list)
    for key in store.list_keys(f"raw/{dataset}/"):
        match = _VERSION.match(key)
        if match:
            found[dt.date.fromisoformat(match["date"])].append(key)
    return {day: sorted(keys) for day, keys in found.items()}


def write_versions(
    store: ObjectStore, dataset: str, frame: pl.DataFrame, date_column: str, days: list[dt.date],
    workers: int | None = None,
) -> list[RawWrite]:
    """Write one version per day in ``days`` that has rows (a no-op where the content is unchanged).

    Days are hashed, encoded and written on up to ``workers`` threads (default: the store's
    ``write_concurrency``). Polars sorts, encodes CSV (for the hash) and Parquet outside the GIL, and
    the write and its fsync wait on the disk or the network, so days overlap; a ten-year backfill
    writes 2,608 files per raw dataset (``bench/lakehouse.py`` times it against one thread).
    """
    existing = versions(store, dataset)
    by_day = {key[0]: part for key, part in frame.partition_by(date_column, as_dict=True).items()} if frame.height else {}
    todo = [(day, by_day[day]) for day in days if day in by_day and not by_day[day].is_empty()]

    def write(item: tuple[dt.date, pl.DataFrame]) -> RawWrite:
        day, part = item
        digest = frame_hash(part)
        previous = existing.get(day, [])
        if previous and previous[-1].endswith(f"-{digest[:16]}.parquet"):
            return RawWrite(day, previous[-1], "unchanged", part.height)
        key = f"raw/{dataset}/date={day.isoformat()}/v{len(previous) + 1:04d}-{digest[:16]}.parquet"
        store.put_bytes_if_absent(key, frame_to_parquet(part))
        return RawWrite(day, key, "superseded" if previous else "new", part.height, previous[-1] if previous else None)

    return map_threads(write, todo, store.write_concurrency if workers is None else workers)


SOURCE_COLUMNS: dict[str, pl.DataType] = {"source_file": pl.Utf8(), "source_row": pl.Int64()}


# Columns added to a raw dataset's schema after versions without them were written.
# Issue 14: distribution_type. Issue 22: source, the provider of each row (versions written before it
# read as null: the processed assets take the partition's recorded lineage, rights/lineage.py).
LATER_COLUMNS: dict[str, tuple[str, ...]] = {
    "bars": ("source",),
    "corporate_actions": ("distribution_type", "source"),
    "fx_rates": ("source",),
    "factor_returns": ("source",),
    "benchmark_returns": ("source",),
}


def read_current(
    store: ObjectStore, dataset: str, start: dt.date, end: dt.date, schema: dict[str, pl.DataType],
    *, with_source: bool = False,
) -> pl.DataFrame:
    """The newest version of every partition in the inclusive window, concatenated.

    With ``with_source``, each row also names the raw file it came from and its 1-based row in it,
    so a rejected row can be traced back to exactly what the source delivered.
    """
    keys = [keys[-1] for day, keys in sorted(versions(store, dataset).items()) if start <= day <= end]
    columns = [pl.col(c).cast(t) for c, t in schema.items()]
    # A column added to the dataset's schema after a version was written reads as null there
    # (LATER_COLUMNS; the validators give it its default); any other missing column is an error.
    widen = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c in LATER_COLUMNS.get(dataset, ())]
    if with_source:
        columns += [pl.col(c) for c in SOURCE_COLUMNS]
    if not keys:
        return pl.DataFrame(schema=schema | (SOURCE_COLUMNS if with_source else {}))
    frames = []
    for key, data in zip(keys, store.get_many(keys), strict=True):
        frame = parquet_to_frame(data, source=store.uri(key))
        frame = frame.with_columns(e for e in widen if e.meta.output_name() not in frame.columns)
        if with_source:
            frame = frame.with_columns(
                pl.lit(store.uri(key)).alias("source_file"), pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("source_row")
            )
        frames.append(frame)
    return pl.concat(frames, how="vertical_relaxed").select(columns)
