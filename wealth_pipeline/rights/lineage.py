"""Source lineage: which providers (rights registry keys) every published partition depends on.

* Raw deliveries: :func:`provider_sources` says, per session of a window, which providers a
  configured ``MarketDataProvider`` delivers a dataset from (the synthetic market; per landing-zone
  file, the vendor its path names; per HTTP dataset, the adapter that serves it, and the supplement
  for what the HTTP vendors do not publish). The raw assets record it per partition (``sources``
  metadata); the processed assets' publish step reads it back.
* Published datasets: ``ops.lineage(dataset, session_date, sources)``, one row per session of the
  window, replaced with each publication (:func:`write`). Derived datasets take the union of their
  inputs' lineage on the same session.
* Marts: :func:`mart_inputs` reads the dbt manifest for the warehouse tables a mart is built from,
  and :func:`read` gives their lineage per session, so any mart row (``session_date``) traces to its
  providers.
* Rows: every raw, processed and warehouse row of market data carries ``source``, the provider that
  delivered it. :func:`delivered` is what the raw assets write: the provider's rows with their
  ``source`` (landing zone: the vendor of the file the row came from; HTTP: the adapter that served
  it, the supplement's own for what it supplies). Raw versions written before the column existed
  read with a null source; :func:`fill_sources` gives those rows their partition's recorded
  provider when exactly one is on record, and :data:`UNKNOWN` otherwise (none recorded, or several:
  which one fed the row cannot be told), never a guess; an export of an ``unknown`` row is refused.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from wealth_pipeline.core import calendars, schemas
from wealth_pipeline.rights.registry import Registry

LINEAGE_TABLE = "ops.lineage"
_DATE_COLUMNS = {"bars": "session_date", "corporate_actions": "ex_date", "fx_rates": "session_date"}
SOURCE = schemas.SOURCE_COLUMN
UNKNOWN = "unknown"  # a source without a (single) record: not a registry key, so exports refuse it
DELIVERY_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "bars": schemas.BARS_SCHEMA,
    "corporate_actions": schemas.CORPORATE_ACTIONS_SCHEMA,
    "fx_rates": schemas.FX_RATES_SCHEMA,
    "factor_returns": schemas.FACTOR_RETURNS_SCHEMA,
    "benchmark_returns": schemas.BENCHMARK_RETURNS_SCHEMA,
}


def _static(provider: Any, dataset: str, registry: Registry) -> tuple[str, ...]:
    """The providers a non-landing provider delivers ``dataset`` from (the same on every session)."""
    from wealth_pipeline.providers.http_adapters import HttpMarketData

    if isinstance(provider, HttpMarketData):
        supplement = (
            (lambda: _static(provider.supplement, dataset, registry)) if provider.supplement else tuple
        )
        if dataset == "bars":
            return (provider.bars_adapter.name,)
        if dataset == "fx_rates":
            return (provider.fx_adapter.name,)
        if dataset == "factor_returns":
            return tuple(sorted({provider.fx_adapter.name, *supplement()}))
        if dataset == "benchmark_returns":
            return (provider.bars_adapter.name,) if provider.benchmark_symbol else tuple(supplement())
        return tuple(supplement())  # corporate actions: the supplement's, else none
    return (str(provider.name),)


def provider_sources(
    provider: Any, dataset: str, start: dt.date, end: dt.date, registry: Registry
) -> dict[dt.date, tuple[str, ...]]:
    """Per weekday of ``[start, end]``: the providers ``provider`` delivers ``dataset`` from.

    Landing-zone datasets: the vendors of every file with a row on that day (a superseded file's
    vendor included: conservative, never fewer providers than fed the row). Days without a file
    have none. The landing provider's reference datasets: the reference provider's.
    """
    from wealth_pipeline.providers.landing import VendorFileProvider

    days = calendars.weekdays(start, end)
    if isinstance(provider, VendorFileProvider):
        if dataset not in _DATE_COLUMNS:
            # factor and benchmark files of the landing zone (issue 21): their vendors; else the reference's
            rows = provider.with_files(dataset, start, end)
            if rows is None:
                return provider_sources(provider.reference, dataset, start, end, registry)
            per_day: dict[dt.date, set[str]] = {day: set() for day in days}
            for day, file in rows.select("session_date", "file").unique().iter_rows():
                if day in per_day:
                    per_day[day].add(registry.landing_vendor(file))
            return {day: tuple(sorted(vendors)) for day, vendors in per_day.items()}
        found: dict[dt.date, set[str]] = {day: set() for day in days}
        for delivery in provider.deliveries(dataset):
            vendor = registry.landing_vendor(delivery.key)
            for day in delivery.dates():
                if day in found:
                    found[day].add(vendor)
        return {day: tuple(sorted(vendors)) for day, vendors in found.items()}
    static = _static(provider, dataset, registry)
    return {day: static for day in days}


def _tagged(frame: pl.DataFrame, dataset: str, source: str) -> pl.DataFrame:
    return schemas.conform(frame, DELIVERY_SCHEMAS[dataset]).with_columns(pl.lit(source, dtype=pl.Utf8).alias(SOURCE))


def delivered(provider: Any, dataset: str, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    """What ``provider`` delivers of ``dataset`` in ``[start, end]``, each row with its ``source``.

    The rows are the provider's own method's (``provider.bars(start, end)``, ...); ``source`` is the
    rights-registry key of the provider that delivered each one: a landing-zone row, the vendor
    :meth:`Registry.landing_vendor` names for the path of the file it came from (the later file where
    several delivered its key); an HTTP row, the adapter that served it (``rf``: the rates adapter;
    benchmark levels: the bars adapter), or the supplement's own source for what the supplement
    supplies; any other provider, its ``name``.
    """
    from wealth_pipeline.providers.http_adapters import HttpMarketData
    from wealth_pipeline.providers.landing import FILE_COLUMN, VendorFileProvider

    schema = schemas.with_source(DELIVERY_SCHEMAS[dataset])
    if isinstance(provider, VendorFileProvider):
        rows = provider.with_files(dataset, start, end)
        if rows is None:  # no landing files of the dataset: the reference provider delivers it
            return delivered(provider.reference, dataset, start, end, registry)
        vendors = {file: registry.landing_vendor(file) for file in rows[FILE_COLUMN].unique().to_list()}
        return rows.with_columns(pl.col(FILE_COLUMN).replace_strict(vendors, return_dtype=pl.Utf8).alias(SOURCE)).select(
            list(schema)
        )
    if isinstance(provider, HttpMarketData):
        supplement = provider.supplement
        if dataset == "bars":
            return _tagged(provider.bars(start, end), dataset, provider.bars_adapter.name)
        if dataset == "fx_rates":
            return _tagged(provider.fx_rates(start, end), dataset, provider.fx_adapter.name)
        if dataset == "benchmark_returns" and provider.benchmark_symbol is not None:
            return _tagged(provider.benchmark_returns(start, end), dataset, provider.bars_adapter.name)
        if dataset == "factor_returns":
            frame = provider.factor_returns(start, end)
            own = pl.when(pl.col("factor") == schemas.RISK_FREE_FACTOR).then(pl.lit(provider.fx_adapter.name))
            if supplement is None:
                return frame.with_columns(own.alias(SOURCE)).select(list(schema))
            keys = ["session_date", "factor"]
            theirs = delivered(supplement, dataset, start, end, registry).select(*keys, pl.col(SOURCE).alias("_theirs"))
            return (
                frame.join(theirs, on=keys, how="left", maintain_order="left")
                .with_columns(own.otherwise(pl.col("_theirs")).alias(SOURCE))
                .select(list(schema))
            )
        if supplement is not None:  # corporate actions, benchmark returns without a benchmark symbol
            return delivered(supplement, dataset, start, end, registry)
        return pl.DataFrame(schema=schema)
    return _tagged(getattr(provider, dataset)(start, end), dataset, str(provider.name))


def fill_sources(
    frame: pl.DataFrame, date_column: str, recorded: Mapping[dt.date, Sequence[str]]
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``frame`` with a source on every row, and what was filled.

    Rows without one (raw versions written before rows carried it, or no ``source`` column at all)
    get the provider ``recorded`` for their partition (``date_column``) when it is exactly one known
    provider; otherwise :data:`UNKNOWN` (nothing recorded, or several providers on that day: which
    one fed the row cannot be told from the partition's lineage). The summary counts both.
    """
    if SOURCE not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(SOURCE))
    missing = frame.filter(pl.col(SOURCE).is_null())
    summary: dict[str, Any] = {"rows_without_source": missing.height, "from_lineage": 0, UNKNOWN: 0}
    if missing.is_empty():
        return frame, summary
    single = {
        day: sources[0]
        for day, sources in recorded.items()
        if len(sources) == 1 and sources[0] != UNKNOWN
    }
    days = missing[date_column].unique().sort().to_list()
    lookup = pl.DataFrame(
        {date_column: days, "_recorded": [single.get(day, UNKNOWN) for day in days]},
        schema={date_column: frame.schema[date_column], "_recorded": pl.Utf8()},
    )
    filled = (
        frame.join(lookup, on=date_column, how="left", maintain_order="left")
        .with_columns(pl.coalesce(SOURCE, "_recorded").alias(SOURCE))
        .drop("_recorded")
    )
    unknown_days = [str(day) for day in days if day not in single]
    summary[UNKNOWN] = missing.filter(pl.col(date_column).is_in([d for d in days if d not in single])).height
    summary["from_lineage"] = missing.height - summary[UNKNOWN]
    if unknown_days:
        summary["unknown_partitions"] = unknown_days[:20]
    return filled, summary


def union(
    per_input: Iterable[Mapping[dt.date, Sequence[str]]], days: Iterable[dt.date]
) -> dict[dt.date, tuple[str, ...]]:
    """Per day: the union of the inputs' sources on that day."""
    result: dict[dt.date, set[str]] = {day: set() for day in days}
    for lineage in per_input:
        for day, sources in lineage.items():
            if day in result:
                result[day].update(sources)
    return {day: tuple(sorted(s)) for day, s in result.items()}


def write(
    conn: psycopg.Connection, dataset: str, per_day: Mapping[dt.date, Sequence[str]], run_id: str | None
) -> int:
    """Replace ``dataset``'s lineage rows on the days of ``per_day`` (one statement per step, caller's transaction)."""
    days = sorted(per_day)
    if not days:
        return 0
    conn.execute("DELETE FROM ops.lineage WHERE dataset = %s AND session_date = ANY(%s)", (dataset, days))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ops.lineage (dataset, session_date, sources, run_id) VALUES (%s, %s, %s, %s)",
            [(dataset, day, list(per_day[day]), run_id) for day in days],
        )
    return len(days)


def read(
    conn: psycopg.Connection,
    datasets: Sequence[str],
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, dict[dt.date, tuple[str, ...]]]:
    """``{dataset: {session: sources}}`` for ``datasets`` (optionally within ``[start, end]``)."""
    rows = conn.execute(
        "SELECT dataset, session_date, sources FROM ops.lineage WHERE dataset = ANY(%s) "
        "AND (%s::date IS NULL OR session_date >= %s::date) AND (%s::date IS NULL OR session_date <= %s::date)",
        (list(datasets), start, start, end, end),
    ).fetchall()
    result: dict[str, dict[dt.date, tuple[str, ...]]] = {d: {} for d in datasets}
    for dataset, day, sources in rows:
        result[dataset][day] = tuple(sources)
    return result


def mart_inputs(manifest_path: str | Path, mart: str) -> tuple[str, ...]:
    """The warehouse tables (``schema.table``) dbt builds ``mart`` from, through every model between.

    Raises ``KeyError`` naming the known marts when ``mart`` is not a model of the ``marts`` schema.
    """
    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    nodes = {**manifest["nodes"], **manifest["sources"]}
    marts = {
        n["name"]: uid
        for uid, n in manifest["nodes"].items()
        if n.get("resource_type") == "model" and n.get("schema") == "marts"
    }
    if mart not in marts:
        raise KeyError(f"unknown mart {mart!r}: expected one of {', '.join(sorted(marts))}")
    tables: set[str] = set()
    seen: set[str] = set()
    pending = [marts[mart]]
    while pending:
        uid = pending.pop()
        if uid in seen:
            continue
        seen.add(uid)
        node = nodes.get(uid)
        if node is None:
            continue
        if uid.startswith("source."):
            tables.add(f"{node['schema']}.{node.get('identifier') or node['name']}")
            continue
        pending.extend(node.get("depends_on", {}).get("nodes", []))
    return tuple(sorted(tables))
