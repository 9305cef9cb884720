"""Source lineage in the Dagster graph (issue 22): what the raw assets and the publish step record.

* ``raw_sources`` (raw assets): per partition, the providers (rights registry keys) the configured
  provider delivered the dataset from, as the partition's ``sources`` metadata, plus the window's
  sources and their licence status for the UI.
* ``record`` (the publish step, every published dataset): per session of the window, the union of
  its inputs' sources on that session (a raw input's ``sources`` metadata from the instance's event
  log; a published input's ``ops.lineage`` rows), written to ``ops.lineage`` and shown as the
  partition's ``sources`` metadata. An input partition without a record of its sources (raw data
  materialized before lineage existed, or written around the assets) counts as the provider
  ``unknown``, which the rights registry does not know: exports of such rows are refused.

The rules themselves live in ``wealth_pipeline.rights``; this module is the wiring.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg

from wealth_pipeline.core import calendars
from wealth_pipeline.defs import datasets
from wealth_pipeline.defs.partition_metadata import add_per_partition
from wealth_pipeline.rights import lineage, registry

UNKNOWN = lineage.UNKNOWN  # a source without a record: not a registry key, so exports refuse it
SOURCES = "sources"


def rights() -> registry.Registry:
    """The rights registry; a bad one is a configuration error: the step fails once, without retries."""
    try:
        return registry.load()
    except registry.RegistryError as exc:
        raise dg.Failure(description=f"configuration error: {exc}", allow_retries=False) from None


def licence_status(sources: Sequence[str]) -> dg.MetadataValue:
    """Provider -> its policy and licence, as the UI shows it."""
    known = rights()
    return dg.MetadataValue.json({s: known.status(s) for s in sorted(sources)})


def _metadata(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    per_day: Mapping[dt.date, Sequence[str]],
    strict: bool = True,
) -> dict[str, Any]:
    shared: dict[str, Any] = {}
    if context.has_partition_key or context.has_partition_key_range:
        shared = add_per_partition(context, key, {
            partition: {SOURCES: dg.MetadataValue.json(list(per_day.get(dt.date.fromisoformat(partition), ())))}
            for partition in context.partition_keys})
    window = sorted({s for sources in per_day.values() for s in sources})
    try:
        status: Any = licence_status(window)
    except dg.Failure as exc:
        if strict:
            raise
        # After the warehouse load: the lineage is recorded (it needs no registry); the bad registry is
        # reported here and refuses every export until it is fixed.
        context.log.warning(str(exc.description))
        status = f"unknown: {exc.description}"
    return {**shared, "window_sources": dg.MetadataValue.json(window), "licence_status": status}


def raw_sources(
    context: dg.AssetExecutionContext, provider: Any, dataset: str, start: dt.date, end: dt.date
) -> dict[str, Any]:
    """Record which providers delivered ``dataset`` on each partition; the window's metadata for the UI."""
    try:
        per_day = lineage.provider_sources(provider, dataset, start, end, rights())
    except registry.RegistryError as exc:
        raise dg.Failure(description=f"configuration error: {exc}", allow_retries=False) from None
    return _metadata(context, context.asset_key, per_day)


def _raw_lineage(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[dt.date]
) -> dict[dt.date, tuple[str, ...]]:
    """The latest materialization's ``sources`` of each of ``days`` (``unknown`` when it has none)."""
    wanted = {d.isoformat(): d for d in days}
    found: dict[dt.date, tuple[str, ...]] = {}
    cursor = None
    while len(found) < len(wanted):
        remaining = sorted(p for p, d in wanted.items() if d not in found)
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=remaining),
            limit=max(100, len(remaining)),
            cursor=cursor,
        )
        for record in result.records:
            materialization = record.asset_materialization
            day = wanted.get(materialization.partition) if materialization else None
            if day is None or day in found:
                continue
            value = materialization.metadata.get(SOURCES)
            found[day] = tuple(value.value) if value is not None else (UNKNOWN,)
        if not result.has_more:
            break
        cursor = result.cursor
    return {day: found.get(day, (UNKNOWN,)) for day in days}


def fill_row_sources(
    context: dg.AssetExecutionContext, raw_key: dg.AssetKey, frame: pl.DataFrame, date_column: str
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Raw rows of ``raw_key`` with a source each (``rights.lineage.fill_sources``), and metadata when any lacked one.

    A row without a source (a raw version written before rows carried it) takes its partition's
    recorded provider (the raw materialization's ``sources``) when that is a single provider, else
    ``unknown``, which is logged as a warning: re-materialize the raw partition to record the provider.
    """
    if lineage.SOURCE in frame.columns and not frame[lineage.SOURCE].has_nulls():
        return frame, {}
    column = frame[lineage.SOURCE] if lineage.SOURCE in frame.columns else None
    days = sorted(set(frame.filter(column.is_null())[date_column].to_list() if column is not None
                      else frame[date_column].to_list()))
    filled, summary = lineage.fill_sources(frame, date_column, _raw_lineage(context.instance, raw_key, days))
    if summary[UNKNOWN]:
        context.log.warning(
            f"{raw_key.to_user_string()}: {summary[UNKNOWN]} row(s) carry no source and their partition has no single "
            f"recorded provider ({', '.join(summary.get('unknown_partitions', []))}): source '{UNKNOWN}' "
            "(exports of them are refused); re-materialize those raw partitions to record their provider"
        )
    return filled, {"row_sources_filled": dg.MetadataValue.json(summary)}


def record(
    context: dg.AssetExecutionContext, dataset: datasets.Dataset, start: dt.date, end: dt.date, warehouse: Any
) -> dict[str, Any]:
    """The publish step's lineage: ``ops.lineage`` rows of the window, per-partition ``sources`` metadata."""
    days = calendars.weekdays(start, end)
    # Its own earlier partitions (a self-dependency, e.g. OBV's running sum) add no provider of their own.
    deps = {k for k in context.assets_def.asset_deps.get(dataset.key, set()) if k != dataset.key}
    raw_inputs = [k for k in deps if k.to_user_string() in {d.name for d in datasets.RAW.values()}]
    published = [
        k.to_user_string()
        for k in deps
        if k.to_user_string() in datasets.REGISTRY
        and k not in raw_inputs
        and datasets.REGISTRY[k.to_user_string()].date_column is not None
    ]
    inputs = [_raw_lineage(context.instance, k, days) for k in raw_inputs]
    with psycopg.connect(warehouse.url) as conn:
        if published:
            stored = lineage.read(conn, published, start, end)
            inputs += [{day: stored[name].get(day, (UNKNOWN,)) for day in days} for name in published]
        per_day = lineage.union(inputs, days)
        lineage.write(conn, dataset.name, per_day, context.run_id)
    return _metadata(context, dataset.key, per_day, strict=False)


def with_mart_sources(
    context: dg.AssetExecutionContext,
    event: Any,
    warehouse_url: str,
    manifest: Path,
    start: dt.date,
    end: dt.date,
) -> Any:
    """A dbt event of a ``marts`` model, with the window's sources of its inputs and their licence status.

    The inputs are the warehouse tables dbt builds the mart from (the manifest); their lineage is read
    from ``ops.lineage`` for the window; a session without lineage of an input counts as ``unknown``.
    Other events (staging models, tests) pass unchanged.
    """
    if isinstance(event, dg.Output):
        key = context.asset_key_for_output(event.output_name)
    elif isinstance(event, dg.AssetMaterialization):
        key = event.asset_key
    else:
        return event
    if key.path[0] != "marts":
        return event
    try:
        tables = lineage.mart_inputs(manifest, key.path[-1])
    except KeyError:
        return event
    from wealth_pipeline.rights.export import datasets_of_tables

    names = sorted(set(datasets_of_tables(tables)[0].values()))
    days = calendars.weekdays(start, end)
    with psycopg.connect(warehouse_url) as conn:
        stored = lineage.read(conn, names, start, end) if names else {}
    window = sorted({s for name in names for day in days for s in stored[name].get(day, (UNKNOWN,))})
    try:
        status: Any = licence_status(window)
    except dg.Failure as exc:
        status = f"unknown: {exc.description}"
    return event.with_metadata(
        {**event.metadata, "window_sources": dg.MetadataValue.json(window), "licence_status": status}
    )
