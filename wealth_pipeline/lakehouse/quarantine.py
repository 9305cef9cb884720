"""Quarantine tables: rejected rows kept as Delta tables in the ``quarantine`` tier.

``quarantine/{dataset}``         rows a publish step rejected (file, row, field, reason, the row's key),
                                 plus ``quarantined_at``, ``window_start``/``window_end`` and ``run_id``;
                                 one table per dataset, each window's rejects under its own ``lake_file``
                                 (``window=START_END``), so a re-run of a window replaces that window's
                                 rejects only, in one commit, and earlier windows' rejects are kept.
``quarantine/vendor/{dataset}``  per vendor file (keyed by its sha256): rows the landing-zone parser
                                 rejected; a file already reported is not written again.

Reject frames of one dataset may differ in their optional columns (a check adds one, an all-null
column has no type): ``_align`` fills the table's missing columns with typed nulls and gives untyped
columns a type, so appends are never refused for that; a real type change still fails (schema
enforcement, ``delta.check_schema``), naming the table and column.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import polars as pl

from wealth_pipeline.lakehouse import delta
from wealth_pipeline.lakehouse.store import Lakehouse

TIER = "quarantine"
VENDOR_PREFIX = "vendor/"
#: Columns that name the file a rejected row came from (window rejects, vendor file reports).
FILE_COLUMNS = ("source_file", "file_name")


def window_name(start: dt.date, end: dt.date) -> str:
    """The ``lake_file`` a window's rejects are kept under."""
    return f"window={start.isoformat()}_{end.isoformat()}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _align(lake: Lakehouse, dataset: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the table's stored columns it lacks (typed nulls) and no untyped (Null) column."""
    frame = frame.with_columns([pl.col(n).cast(pl.Utf8) for n, t in frame.schema.items() if t == pl.Null])
    handle = lake.tables.open(lake.table_key(TIER, dataset))
    if handle is None:
        return frame
    stored = {n: t for n, t in pl.scan_delta(handle).collect_schema().items() if n not in delta.HIDDEN_COLUMNS}
    missing = [pl.lit(None, dtype=t).alias(n) for n, t in stored.items() if n not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def _replace(lake: Lakehouse, dataset: str, frame: pl.DataFrame, name: str) -> delta.DeltaWrite | None:
    """One commit replacing the rows kept under ``name``; with no rows, delete them (None if nothing was kept)."""
    if frame.is_empty():
        if lake.exists(TIER, dataset, name):
            predicate = f"{delta.DATE_COLUMN} IS NULL AND {delta.window_predicate(None, None, name)}"
            lake.tables.delete(lake.table_key(TIER, dataset), predicate)
        return None
    return lake.write_dataset(TIER, dataset, _align(lake, dataset, frame), filename=name)


def write_window(lake: Lakehouse, dataset: str, rejects: pl.DataFrame, start: dt.date, end: dt.date, run_id: str,
                 *, now: dt.datetime | None = None) -> delta.DeltaWrite | None:
    """Keep a window's rejected rows in ``quarantine/{dataset}`` (one commit replacing that window's rejects).

    A re-run without rejects removes the window's earlier ones (they were fixed); returns None then.
    """
    at = now or _now()
    rows = rejects.with_columns(
        pl.lit(at, dtype=pl.Datetime("us", "UTC")).alias("quarantined_at"),
        pl.lit(start, dtype=pl.Date).alias("window_start"),
        pl.lit(end, dtype=pl.Date).alias("window_end"),
        pl.lit(run_id, dtype=pl.Utf8).alias("run_id"),
    )
    return _replace(lake, dataset, rows, window_name(start, end))


def write_file_report(lake: Lakehouse, dataset: str, sha256: str, report: pl.DataFrame,
                      *, now: dt.datetime | None = None) -> delta.DeltaWrite | None:
    """Keep a vendor file's rejected rows in ``quarantine/vendor/{dataset}`` under its sha256.

    The file's bytes never change under one hash, so a file already reported is left as it is
    (re-delivering it changes nothing, its ``quarantined_at`` stays the first report's). None: not written.
    """
    table = f"{VENDOR_PREFIX}{dataset}"
    if report.is_empty() or lake.exists(TIER, table, sha256):
        return None
    rows = report.with_columns(
        pl.lit(sha256, dtype=pl.Utf8).alias("file_sha256"),
        pl.lit(now or _now(), dtype=pl.Datetime("us", "UTC")).alias("quarantined_at"),
    )
    return lake.write_dataset(TIER, table, _align(lake, table, rows), filename=sha256)


def read(lake: Lakehouse, dataset: str) -> pl.DataFrame:
    """Every row kept in ``quarantine/{dataset}`` (``vendor/<dataset>`` for file reports)."""
    return lake.read(TIER, dataset)


def recent(lake: Lakehouse, since: dt.datetime) -> list[dict[str, Any]]:
    """Rows quarantined at or after ``since``, per table and source file, newest first.

    Each entry: ``table`` (its URI), ``file`` (the rejected rows' source file), ``rows``, ``version``
    (the table version read) and ``last_quarantined``.
    """
    found: list[dict[str, Any]] = []
    for dataset in lake.table_names(TIER):
        frame = lake.read(TIER, dataset)
        version = lake.version(TIER, dataset)
        if "quarantined_at" not in frame.columns:
            raise ValueError(f"{lake.table_uri(TIER, dataset)}: no quarantined_at column; not a quarantine table")
        frame = frame.filter(pl.col("quarantined_at") >= since)
        column = next((c for c in FILE_COLUMNS if c in frame.columns), None)
        key = pl.col(column).cast(pl.Utf8).fill_null("(unknown file)") if column else pl.lit("(unknown file)")
        per_file = (frame.group_by(key.alias("file"))
                    .agg(pl.len().alias("rows"), pl.col("quarantined_at").max().alias("last"))
                    .sort("file"))
        for file, rows, last in per_file.iter_rows():
            found.append({"table": lake.table_uri(TIER, dataset), "dataset": dataset, "file": file, "rows": rows,
                          "version": version, "last_quarantined": last.isoformat()})
    return sorted(found, key=lambda f: f["last_quarantined"], reverse=True)


LEGACY_PREFIX = "artifacts/quarantine/"


def import_legacy(lake: Lakehouse) -> list[tuple[str, int, int, int | None]]:
    """Copy the parquet quarantine files an older version wrote (``artifacts/quarantine/``) into the tables.

    Each file keeps its own ``lake_file`` (``legacy=<name>``, or the sha256 for vendor reports), with
    ``quarantined_at`` = the file's modification time and, for ``<start>_<end>_<run>.parquet``, the
    window and run its name records, so no row is merged away; the files themselves are left in place.
    Files already imported are skipped. Returns (table, files, rows, version) per table written.
    """
    from wealth_pipeline.lakehouse.store import parquet_to_frame
    from wealth_pipeline.operations.manifest import object_stats  # size/mtime listing, both backends

    done: dict[str, list[int | None]] = {}
    for stat in sorted(object_stats(lake.store, LEGACY_PREFIX), key=lambda s: s.key):
        rest = stat.key[len(LEGACY_PREFIX):]
        dataset, _, name = rest.rpartition("/")
        if not dataset or not name.endswith(".parquet"):
            continue
        frame = parquet_to_frame(lake.store.get_bytes(stat.key), source=lake.store.uri(stat.key))
        if dataset.startswith(VENDOR_PREFIX):
            sha = name[: -len(".parquet")]
            written = write_file_report(lake, dataset[len(VENDOR_PREFIX):], sha, frame, now=stat.modified)
        else:
            label = f"legacy={name}"
            if lake.exists(TIER, dataset, label):
                continue
            parts = name[: -len(".parquet")].split("_")
            window: list[dt.date | None] = [None, None]
            with contextlib.suppress(IndexError, ValueError):  # a name without a window: kept without one
                window = [dt.date.fromisoformat(parts[0]), dt.date.fromisoformat(parts[1])]
            rows = frame.with_columns(
                pl.lit(stat.modified, dtype=pl.Datetime("us", "UTC")).alias("quarantined_at"),
                pl.lit(window[0], dtype=pl.Date).alias("window_start"),
                pl.lit(window[1], dtype=pl.Date).alias("window_end"),
                pl.lit(parts[2] if len(parts) > 2 else None, dtype=pl.Utf8).alias("run_id"),
            )
            written = _replace(lake, dataset, rows, label)
        if written is None:
            continue
        table = dataset
        entry = done.setdefault(table, [0, 0, None])
        entry[0] = int(entry[0] or 0) + 1
        entry[1] = int(entry[1] or 0) + frame.height
        entry[2] = written.version
    return [(table, int(f or 0), int(r or 0), v) for table, (f, r, v) in sorted(done.items())]
