"""What every processed asset does: read raw, validate, quarantine, write the tier, load the warehouse."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import calendars
from wealth_pipeline.lakehouse.store import Lakehouse

OWNERS = ["team:market-data"]
WAREHOUSE_RETRY = dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
WAREHOUSE_TAGS = {"wealth/warehouse": "market", "wealth/tier": "processed"}


def write_window(
    lakehouse: Lakehouse, dataset: str, frame: pl.DataFrame, date_column: str, start: dt.date, end: dt.date
) -> int:
    """Write one processed partition per weekday of the window; days without rows lose stale files."""
    by_day = {key[0]: part for key, part in frame.partition_by(date_column, as_dict=True).items()} if frame.height else {}
    existing = set(lakehouse.partitions("processed", dataset))
    written = 0
    for day in calendars.weekdays(start, end):
        part = by_day.get(day)
        if part is not None and part.height:
            lakehouse.write_partition("processed", dataset, part, day)
            written += 1
        elif day in existing:
            lakehouse.delete_partition("processed", dataset, day)
    return written


def quarantine(lakehouse: Lakehouse, dataset: str, rejects: pl.DataFrame, start: dt.date, end: dt.date, run_id: str) -> str | None:
    """Keep rejected rows with file, row, field and reason in ``artifacts/quarantine/<dataset>/``."""
    if rejects.is_empty():
        return None
    filename = f"{start.isoformat()}_{end.isoformat()}_{run_id[:8]}.parquet"
    return lakehouse.write_dataset("artifacts", f"quarantine/{dataset}", rejects, filename=filename)


def preview(frame: pl.DataFrame, rows: int = 5) -> Any:
    if frame.is_empty():
        return "no rows"
    return dg.MetadataValue.md(frame.head(rows).to_pandas().to_markdown(index=False))


def reconcile(warehouse_url: str, table: str, time_column: str, start: dt.date, end: dt.date, expected: int) -> tuple[bool, dict[str, Any]]:
    """Rows in the warehouse window equal the rows written to the processed tier."""
    import psycopg
    from psycopg import sql

    schema, name = table.split(".")
    query = sql.SQL("SELECT count(*) FROM {}.{} WHERE {} BETWEEN %s AND %s").format(
        sql.Identifier(schema), sql.Identifier(name), sql.Identifier(time_column)
    )
    with psycopg.connect(warehouse_url) as conn:
        found = conn.execute(query, (start, end)).fetchone()[0]
    return found == expected, {"lakehouse_rows": expected, "warehouse_rows": int(found), "table": table}
