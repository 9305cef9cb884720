"""Convert a parquet-layout lakehouse (one file per dataset and session) into Delta tables.

Before (``date=`` folders, one parquet file per partition and name)::

    processed/bars/date=2024-01-02/data.parquet        -> table processed/bars (lake_date 2024-01-02)
    models/xgb/predictions/date=.../part-0.parquet     -> table models/xgb/predictions (lake_file part-0.parquet)
    processed/symbol_master/data.parquet               -> table processed/symbol_master (undated)
    models/forecaster/{id}/oos_predictions.parquet     -> table models/forecaster/{id}/oos_predictions

A file other than ``data.parquet`` directly under a dataset folder becomes its own table named
after the file (its folder also holds boosters and manifests, which must not sit inside a table
folder: vacuum deletes what no commit references). Each table is written in ONE commit, read back
and compared with the parquet files (rows, in order); only then are the parquet files deleted.
``raw`` (immutable vendor data) and ``artifacts`` stay parquet files; the old quarantine files
(``artifacts/quarantine/``) are copied into the ``quarantine`` tables and left in place. Running it again finds
nothing left to convert.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from wealth_pipeline.lakehouse import delta
from wealth_pipeline.lakehouse.quarantine import TIER, import_legacy
from wealth_pipeline.lakehouse.store import (
    DEFAULT_FILENAME,
    DELTA_TIERS,
    Lakehouse,
    LakehouseError,
    parquet_to_frame,
)

_PARTITIONED = re.compile(r"^(?P<dataset>.+?)/date=(?P<day>\d{4}-\d{2}-\d{2})/(?P<file>[^/]+\.parquet)$")


@dataclass(frozen=True)
class Migrated:
    """One converted table: where it came from and what it holds."""

    tier: str
    dataset: str
    files: int
    rows: int
    version: int | None


def plan(lake: Lakehouse, tier: str) -> dict[str, list[tuple[dt.date | None, str, str]]]:
    """Table dataset -> [(partition date or None, file name, key)] of the parquet files still to convert."""
    prefix = f"{tier}/"
    tables = set(lake.table_names(tier))
    found: dict[str, list[tuple[dt.date | None, str, str]]] = defaultdict(list)
    for key in lake.store.list_keys(prefix):
        rest = key[len(prefix):]
        if not rest.endswith(".parquet") or "/_delta_log/" in f"/{rest}" or "/lake_year=" in f"/{rest}":
            continue
        match = _PARTITIONED.match(rest)
        if match:
            try:
                day = dt.date.fromisoformat(match["day"])
            except ValueError:
                raise LakehouseError(f"bad partition folder in {lake.uri(key)}: expected date=YYYY-MM-DD") from None
            found[match["dataset"]].append((day, match["file"], key))
            continue
        folder, _, name = rest.rpartition("/")
        if not folder:
            raise LakehouseError(f"{lake.uri(key)}: a parquet file directly under the tier belongs to no dataset")
        dataset = folder if name == DEFAULT_FILENAME else f"{folder}/{name[: -len('.parquet')]}"
        found[dataset].append((None, DEFAULT_FILENAME, key))
    for dataset in list(found):
        if dataset in tables and lake.version(tier, dataset) is not None:
            raise LakehouseError(
                f"{lake.table_uri(tier, dataset)} is already a Delta table but parquet files of the old layout "
                f"remain beside it (e.g. {lake.uri(found[dataset][0][2])}); move them away or delete them first")
    return dict(found)


def migrate_table(lake: Lakehouse, tier: str, dataset: str, files: list[tuple[dt.date | None, str, str]],
                  *, delete_parquet: bool = True) -> Migrated:
    """Write one dataset's parquet files as one commit, verify the table against them, then delete them."""
    files = sorted(files, key=lambda f: (f[0] or dt.date.min, f[1]))
    parts = []
    for day, name, key in files:
        frame = parquet_to_frame(lake.store.get_bytes(key), source=lake.uri(key))
        parts.append((day, name, frame))
    columns = parts[0][2].columns
    for day, name, frame in parts:
        if frame.columns != columns:
            raise LakehouseError(f"{lake.uri(files[0][2])} and the file of {day} {name} have different columns "
                                 f"({columns} vs {frame.columns}); partitions of one table must share a schema")
    rows = pl.concat([delta.with_bookkeeping(frame, day, name) for day, name, frame in parts], how="vertical_relaxed")
    dated = parts[0][0] is not None
    start = min(d for d, _, _ in parts) if dated else None
    end = max(d for d, _, _ in parts) if dated else None
    written = lake.commit_rows(tier, dataset, rows, start, end, dated=dated)
    # Verify before deleting anything: the table reads back exactly the files' rows, in order.
    for day, name, frame in parts:
        got = (lake.read_partition(tier, dataset, day, filename=name) if day is not None
               else lake.read_dataset(tier, dataset))
        if not got.equals(frame.with_columns([pl.col(c).cast(got.schema[c]) for c in frame.columns])):
            raise LakehouseError(f"{lake.table_uri(tier, dataset)}: rows of {day or 'the dataset'} ({name}) differ from "
                                 f"{lake.uri(files[0][2])} after conversion; the parquet files were kept")
    if delete_parquet:
        for _, _, key in files:
            lake.store.delete(key)
    return Migrated(tier, dataset, len(files), rows.height, written.version)


def migrate(lake: Lakehouse, tiers: tuple[str, ...] = tuple(sorted(DELTA_TIERS)), *, delete_parquet: bool = True,
            log: Callable[[str], None] = lambda _: None) -> list[Migrated]:
    """Convert every parquet-layout dataset of ``tiers`` into a Delta table; return what was converted."""
    done = []
    for tier in tiers:
        for dataset, files in sorted(plan(lake, tier).items()):
            result = migrate_table(lake, tier, dataset, files, delete_parquet=delete_parquet)
            log(f"{tier}/{dataset}: {result.files} parquet file(s), {result.rows} rows -> "
                f"{lake.table_uri(tier, dataset)} version {result.version}")
            done.append(result)
    if TIER in tiers:
        # Parquet quarantine files of the old layout (artifacts/quarantine/) into the quarantine tables.
        for table, files, rows, version in import_legacy(lake):
            log(f"{TIER}/{table}: {files} legacy quarantine file(s), {rows} rows -> "
                f"{lake.table_uri(TIER, table)} version {version}")
            done.append(Migrated(TIER, table, files, rows, version))
    return done
