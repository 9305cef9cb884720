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
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from wealth_pipeline.core import calendars
from wealth_pipeline.rights.registry import Registry

LINEAGE_TABLE = "ops.lineage"
_DATE_COLUMNS = {"bars": "session_date", "corporate_actions": "ex_date", "fx_rates": "session_date"}


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
            return provider_sources(provider.reference, dataset, start, end, registry)
        found: dict[dt.date, set[str]] = {day: set() for day in days}
        for delivery in provider.deliveries(dataset):
            vendor = registry.landing_vendor(delivery.key)
            for day in delivery.dates():
                if day in found:
                    found[day].add(vendor)
        return {day: tuple(sorted(vendors)) for day, vendors in found.items()}
    static = _static(provider, dataset, registry)
    return {day: static for day in days}


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
