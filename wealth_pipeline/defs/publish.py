"""The one publish step every dataset asset ends with, and what it shares across domains.

``publish`` takes a computed frame and its check outcomes and runs, in this order: the gate
(a failed blocking check reports every result and fails the step once, without retries, having
written nothing), quarantine of rejected rows, the lakehouse write of the window, the warehouse
load of the window (one transaction), reconciliation of the two, and the materialization with
its metadata: per-partition row counts, a preview of the latest rows, the lakehouse table version
(as Dagster's data version too, when the lakehouse reports one), and the check results attached
to the materialization they judge. What to write where comes from the dataset registry
(``defs/datasets.py``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.defs import lineage, quality
from wealth_pipeline.defs.datasets import RECONCILE, Dataset, asset_deps
from wealth_pipeline.defs.partition_metadata import add_per_partition, add_window_summary
from wealth_pipeline.defs.partitions import single_run, trading_sessions
from wealth_pipeline.lakehouse.store import Lakehouse

# The project's retry policies, in one place. Transient failures (a dropped connection, a lock
# timeout, a vendor's 5xx) are worth a retry; data-quality and configuration failures raise
# dg.Failure(allow_retries=False) and fail once.
WAREHOUSE_RETRY = dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# Vendors get one more: the HTTP layer already retried within the step; this covers a step-level outage.
PROVIDER_RETRY = dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
PREVIEW_ROWS = 10


def dataset_asset(dataset: Dataset, *, deps: Sequence[Dataset | str], **asset_args: Any) -> Callable[..., dg.AssetsDefinition]:
    """``@dg.asset`` for a daily dataset: name, partitions, backfill policy, check specs, column
    schema and retry policy from the registry; ``asset_args`` add the rest (group, owners, ...)."""
    return dg.asset(
        name=dataset.name,
        deps=asset_deps(dataset.name, list(deps)),  # with the warm-up partition mappings
        partitions_def=trading_sessions,
        backfill_policy=single_run,
        check_specs=dataset.check_specs(),
        metadata=dataset.definition_metadata(),
        retry_policy=WAREHOUSE_RETRY,
        **asset_args,
    )


@dataclass(frozen=True)
class WindowWrite:
    """What a lakehouse window write did: partitions written and the table version (when versioned)."""

    partitions_written: int
    version: int | None = None


def write_window(lake: Lakehouse, dataset: str, frame: pl.DataFrame, date_column: str, start: dt.date, end: dt.date,
                 tier: str = "processed") -> WindowWrite:
    """Replace the window ``[start, end]`` of ``tier/dataset`` by ``frame`` (one Delta commit on table tiers)."""
    result = lake.write_window(tier, dataset, frame, date_column, start, end)
    return WindowWrite(result.partitions, result.version)


def quarantine(lake: Lakehouse, dataset: str, rejects: pl.DataFrame, start: dt.date, end: dt.date, run_id: str) -> str | None:
    """Keep rejected rows (file, row, field, reason) in the Delta table ``quarantine/<dataset>``.

    One commit replacing this window's earlier rejects (other windows' are kept); a window without
    rejects clears its earlier ones. Returns the table URI (with ``.version``), None without rejects.
    """
    from wealth_pipeline.lakehouse import quarantine as quarantine_tables

    return quarantine_tables.write_window(lake, dataset, rejects, start, end, run_id)


def reconcile(warehouse_url: str, table: str, time_column: str, start: dt.date, end: dt.date, expected: int,
              entity_filter: tuple[str, Sequence[str]] | None = None) -> tuple[bool, dict[str, Any]]:
    """Rows in the warehouse window (of the filtered entities) equal the rows published."""
    import psycopg
    from psycopg import sql

    schema, name = table.split(".")
    query = sql.SQL("SELECT count(*) FROM {}.{} WHERE {} BETWEEN %s AND %s").format(
        sql.Identifier(schema), sql.Identifier(name), sql.Identifier(time_column))
    params: list[Any] = [start, end]
    if entity_filter is not None:
        query = query + sql.SQL(" AND {} = ANY(%s)").format(sql.Identifier(entity_filter[0]))
        params.append(list(entity_filter[1]))
    with psycopg.connect(warehouse_url) as conn:
        found = conn.execute(query, params).fetchone()[0]
    return found == expected, {"published_rows": expected, "warehouse_rows": int(found), "table": table}


# ---- metadata ------------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def preview(frame: pl.DataFrame, dataset: Dataset | None = None, columns: list[str] | None = None,
            rows: int = PREVIEW_ROWS) -> Any:
    """Rows of the latest session (by the dataset's date column) as a table with its column schema.

    Only the latest date: on a day some listings' exchanges are closed, "the last N rows" would mix
    two sessions and the preview would not say which session it shows.
    """
    if frame.is_empty():
        return "no rows"
    date_column = dataset.date_column if dataset is not None else None
    latest = frame.filter(pl.col(date_column) == pl.col(date_column).max()) if date_column in frame.columns else frame
    latest = latest.head(rows)
    if columns:
        latest = latest.select(columns)
    if dataset is not None and set(latest.columns) <= set(dataset.schema):
        schema = dataset.column_schema(latest.columns)
    else:
        schema = dg.TableSchema(columns=[dg.TableColumn(c, type=str(t)) for c, t in latest.schema.items()])
    records = [dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in latest.iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=schema)


def _per_partition_counts(frame: pl.DataFrame, column: str | None) -> dict[str, int]:
    if frame.is_empty() or column is None or column not in frame.columns:
        return {}
    counts = frame.drop_nulls(column).group_by(column).len()
    return {day.isoformat(): int(n) for day, n in counts.iter_rows()}


def partition_metadata(context: dg.AssetExecutionContext, dataset: Dataset, frame: pl.DataFrame,
                       rejects: pl.DataFrame | None = None) -> dict[str, Any]:
    """Per-partition figures on each partition's own materialization (not the window's total).

    Returns the run-level part for the ``MaterializeResult`` (``partition_metadata.add_per_partition``).
    """
    if not context.has_partition_key_range and not context.has_partition_key:
        return {}
    rows = _per_partition_counts(frame, dataset.date_column)
    rejected = _per_partition_counts(rejects, dataset.date_column) if rejects is not None else {}
    per_partition: dict[str, dict[str, Any]] = {}
    for key in context.partition_keys:
        figures: dict[str, Any] = {"dagster/row_count": rows.get(key, 0)}
        if rejects is not None:
            figures["rejected_rows"] = rejected.get(key, 0)
        per_partition[key] = figures
    return add_per_partition(context, dataset.key, per_partition)


# ---- the gate ------------------------------------------------------------------------------------------
def stop_if_blocked(label: str, outcomes: Mapping[dg.AssetKey, Sequence[quality.CheckOutcome]],
                    reconciled: Sequence[dg.AssetKey] = ()) -> Iterator[dg.AssetCheckResult]:
    """When a blocking check failed: every check's result, then ``dg.Failure`` without retries.

    Yields nothing when every blocking check passed. ``reconciled``: assets whose reconciliation
    check is reported as not run (nothing was loaded).
    """
    failed = [o for outs in outcomes.values() for o in quality.blocking_failures(list(outs))]
    if not failed:
        return
    for key, outs in outcomes.items():
        yield from (o.to_result(key) for o in outs)
    for key in reconciled:
        yield dg.AssetCheckResult(asset_key=key, check_name=RECONCILE, passed=False,
                                  description="not loaded: blocking checks failed")
    # Deterministic: the same input fails the same way on a retry, so the step fails once.
    raise dg.Failure(quality.failure_message(label, failed), allow_retries=False)


# ---- the publish step ----------------------------------------------------------------------------------
def publish(
    context: dg.AssetExecutionContext,
    dataset: Dataset,
    frame: pl.DataFrame,
    window: tuple[dt.date, dt.date],
    *,
    lake: Lakehouse | None,
    warehouse: Any,
    outcomes: Sequence[quality.CheckOutcome],
    rejects: pl.DataFrame | None = None,
    metadata: Mapping[str, Any] | None = None,
    after_load: Callable[[], Mapping[str, Any]] | None = None,
    entities: Sequence[str] | None = None,
    preview_columns: list[str] | None = None,
    gated: bool = False,
) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult]:
    """Gate -> quarantine -> lakehouse window -> warehouse window -> reconcile -> materialization.

    ``outcomes``: the dataset's check outcomes on ``frame``. ``rejects``: rows to quarantine.
    ``after_load``: runs once the warehouse holds the window (before reconciliation) and returns
    more metadata. ``entities``: restrict the load to rows of these ``dataset.entity`` values (the
    warehouse keeps the others). ``gated``: the caller already ran ``stop_if_blocked``.
    """
    start, end = window
    if not gated:
        yield from stop_if_blocked(dataset.name, {dataset.key: outcomes}, [dataset.key] if dataset.table else [])
    summary: dict[str, Any] = {"window_rows": frame.height, "window": f"{start}..{end}"}
    if rejects is not None:
        quarantined = quarantine(lake, dataset.name, rejects, start, end, context.run_id) if lake else None
        summary["window_rejected_rows"] = rejects.height
        summary["quarantine"] = str(quarantined) if quarantined else "none"
        if quarantined:
            summary["quarantine_version"] = quarantined.version
    version = None
    if dataset.tier is not None:
        if lake is None:
            raise ValueError(f"{dataset.name} is written to the {dataset.tier} tier: publish needs the lakehouse")
        written = write_window(lake, dataset.lake_dataset, frame, dataset.date_column, start, end, tier=dataset.tier)
        version = written.version
        summary["path"] = dg.MetadataValue.path(lake.uri(f"{dataset.tier}/{dataset.lake_dataset}"))
        summary["partitions_written"] = written.partitions_written
        if version is not None:
            summary["lakehouse/table_version"] = version
    checks = [o.to_result(dataset.key) for o in outcomes]
    if dataset.table:
        entity_filter = (dataset.entity, list(entities)) if entities is not None and dataset.entity else None
        load = warehouse.load_window(dataset.table, frame, time_column=dataset.date_column, window_start=start,
                                     window_end=end, asset=dataset.name, partition_key=f"{start}..{end}",
                                     run_id=context.run_id, entity_filter=entity_filter)
        summary["warehouse_table"] = dataset.table
        summary["warehouse_checksum"] = load.checksum
    extra = dict(after_load()) if after_load is not None else {}
    if dataset.table:  # issue 22: the providers each session depends on (ops.lineage, `sources` metadata)
        extra.update(lineage.record(context, dataset, start, end, warehouse))
    if dataset.table:
        passed, details = reconcile(warehouse.url, dataset.table, dataset.date_column, start, end, frame.height, entity_filter)
        checks.append(dg.AssetCheckResult(asset_key=dataset.key, check_name=RECONCILE, passed=passed, metadata=details))
    shared = partition_metadata(context, dataset, frame, rejects)
    window_summary = {**summary, **(metadata or {}), "preview": preview(frame, dataset, preview_columns)}
    everywhere = add_window_summary(context, dataset.key, window_summary, ("window", "lakehouse/table_version"))
    yield dg.MaterializeResult(
        asset_key=dataset.key,
        metadata={**shared, **extra, **everywhere},
        check_results=checks,
        data_version=dg.DataVersion(f"v{version}") if version is not None else None,
    )
