"""The jobs the schedule and sensors launch."""

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import (
    AssetGraph,  # the resolved graph of a Definitions
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from wealth_pipeline.defs.partitions import trading_sessions

VENDOR_DATASET_ASSETS = ("raw_bars", "raw_corporate_actions", "raw_fx_rates")
REFERENCE_ASSETS = ("symbol_master",)


def _daily_keys(asset_graph: AssetGraph) -> list[dg.AssetKey]:
    return [key for key in asset_graph.get_all_asset_keys()
            if asset_graph.get(key).partitions_def == trading_sessions and asset_graph.get(key).is_materializable]


def daily_session_job(asset_graph: AssetGraph) -> UnresolvedAssetJobDefinition:
    """One trading session through the whole daily graph (plus the universe refresh)."""
    keys = _daily_keys(asset_graph) + [dg.AssetKey(k) for k in REFERENCE_ASSETS if asset_graph.has(dg.AssetKey(k))]
    return dg.define_asset_job(
        "daily_session",
        selection=dg.AssetSelection.assets(*keys),
        partitions_def=trading_sessions,
        description="Materialize one trading session end to end: ingest, processed, analytics and everything daily downstream.",
        tags={"wealth/warehouse": "daily"},
    )


def vendor_ingest_job(asset_graph: AssetGraph) -> UnresolvedAssetJobDefinition:
    """The vendor datasets and every daily asset downstream of them, for the partitions a file touches.

    Plus the dbt models those marts read that are not downstream of a vendor dataset (e.g.
    ``staging/stg_securities`` over the symbol master): without them, on a warehouse where the marts
    were never built, ``dbt build`` of ``marts/security_daily`` fails on a missing relation.
    """
    daily = set(_daily_keys(asset_graph))
    roots = [dg.AssetKey(k) for k in VENDOR_DATASET_ASSETS if asset_graph.has(dg.AssetKey(k))]
    downstream = dg.AssetSelection.assets(*roots).downstream()
    marts = dg.AssetSelection.groups("marts")
    downstream = (downstream | ((downstream & marts).upstream() & marts)).resolve(asset_graph)
    return dg.define_asset_job(
        "vendor_ingest",
        selection=dg.AssetSelection.assets(*sorted(k for k in downstream if k in daily)),
        partitions_def=trading_sessions,
        description="Ingest vendor files from the landing zone for the sessions they cover, and recompute what depends on them.",
        tags={"wealth/warehouse": "daily"},
    )
