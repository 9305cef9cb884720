"""The jobs the schedule and sensors launch, as public asset selections (resolved by Dagster when the code loads)."""

import dagster as dg

from wealth_pipeline.defs.partitions import trading_sessions

VENDOR_DATASET_ASSETS = ("raw_bars", "raw_corporate_actions", "raw_fx_rates")
REFERENCE_ASSETS = ("symbol_master",)
# The domains of the daily graph, and their assets that are not per-session: the model is trained on
# demand (train_model, its schedule and sensor) and portfolio reference data is one snapshot.
# unit/test_definitions.py checks the result against the assets' partition definitions.
DAILY_GROUPS = ("ingest", "processed", "analytics", "portfolio", "models", "marts")
NOT_DAILY_ASSETS = ("model", "portfolio_reference")

# Every trading-session asset plus the universe refresh (the symbol master).
daily_selection = dg.AssetSelection.groups(*DAILY_GROUPS) - dg.AssetSelection.assets(*NOT_DAILY_ASSETS)
session_partitioned = daily_selection - dg.AssetSelection.assets(*REFERENCE_ASSETS)


def _vendor_selection() -> dg.AssetSelection:
    """The vendor datasets and every daily asset downstream of them.

    Plus the dbt models those marts read that are not downstream of a vendor dataset (e.g.
    ``staging/stg_securities`` over the symbol master): without them, on a warehouse where the marts
    were never built, ``dbt build`` of ``marts/security_daily`` fails on a missing relation.
    """
    downstream = dg.AssetSelection.assets(*VENDOR_DATASET_ASSETS).downstream()
    marts = dg.AssetSelection.groups("marts")
    return (downstream | ((downstream & marts).upstream() & marts)) & session_partitioned


daily_session_job = dg.define_asset_job(
    "daily_session",
    selection=daily_selection,
    partitions_def=trading_sessions,
    description="Materialize one trading session end to end: ingest, processed, analytics and everything daily downstream.",
    tags={"wealth/warehouse": "daily"},
)

vendor_ingest_job = dg.define_asset_job(
    "vendor_ingest",
    selection=_vendor_selection(),
    partitions_def=trading_sessions,
    description="Ingest vendor files from the landing zone for the sessions they cover, and recompute what depends on them.",
    tags={"wealth/warehouse": "daily"},
)
