"""Per-partition metadata of a ranged run, with as few ``add_asset_metadata`` calls as possible.

Every ``context.add_asset_metadata`` call copies and type-checks the step's whole metadata
accumulator (Dagster 1.13's ``OutputMetadataAccumulator``), so one call per partition and table
costs O(calls x partitions): over 2,608 sessions, 55 s of the 82 s ``portfolio_daily`` took
(py-spy, 6 tables x 2 calls per session), and seconds in every other ranged step. Each
partition's materialization also carries the run's own metadata (its per-partition metadata wins),
so a value most partitions share is put on the run once and only the partitions that differ get a
call: the same metadata on every partition, in far fewer calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import dagster as dg


def add_per_partition(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, per_partition: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Record ``per_partition[partition]`` on each partition of ``asset_key``; return the run-level part.

    ``per_partition`` must name every partition of the run (the returned values apply to all of
    them): for each name every partition has, its most common value is returned for the caller to
    put on the run's ``MaterializeResult`` and left out of the partitions holding it.
    """
    if not per_partition:
        return {}
    missing = set(context.partition_keys) - set(per_partition)
    if missing:
        raise ValueError(f"add_per_partition: no metadata for partitions {sorted(missing)[:5]} of {asset_key.to_user_string()}")
    # Metadata values (MetadataValue objects among them) compare by their repr, computed once each.
    keyed = {partition: {name: (repr(value), value) for name, value in values.items()}
             for partition, values in per_partition.items()}
    common_names = set.intersection(*(set(values) for values in keyed.values()))
    shared: dict[str, tuple[str, Any]] = {}
    for name in sorted(common_names):
        common = Counter(values[name][0] for values in keyed.values()).most_common(1)[0][0]
        shared[name] = next(values[name] for values in keyed.values() if values[name][0] == common)
    for partition, values in keyed.items():
        own = {name: value for name, (text, value) in values.items() if name not in shared or text != shared[name][0]}
        if own:
            context.add_asset_metadata(own, asset_key=asset_key, partition_key=partition)
    return {name: value for name, (_, value) in shared.items()}


def add_window_summary(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, summary: Mapping[str, Any],
    everywhere: tuple[str, ...] = ("window",),
) -> dict[str, Any]:
    """Put the run's window summary on the last partition of a ranged run; return what every partition gets.

    A preview, window totals, paths and checksums describe the run's window, not one session, yet
    Dagster copies a result's metadata into every partition's materialization: 2,608 copies of a
    12 KB preview made ``bars``' events 17 KB each and their serialization most of the event
    recording of a ten-year backfill (issue 23). The last partition's materialization is the
    asset's latest, so the UI still shows the summary; every partition keeps the names in
    ``everywhere`` (which window wrote it) and its own figures (``add_per_partition``).
    """
    keys = context.partition_keys if (context.has_partition_key_range or context.has_partition_key) else []
    if len(keys) <= 1:
        return dict(summary)
    context.add_asset_metadata({k: v for k, v in summary.items() if k not in everywhere},
                               asset_key=asset_key, partition_key=keys[-1])
    return {k: v for k, v in summary.items() if k in everywhere}
