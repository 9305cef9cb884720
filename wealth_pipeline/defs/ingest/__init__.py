"""Ingest domain: raw, immutable copies of what the providers delivered."""

import dagster as dg

from wealth_pipeline.defs.ingest.assets import raw_assets, symbol_master

defs = dg.Definitions(assets=[symbol_master, *raw_assets])
