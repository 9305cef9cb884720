"""Processed domain: validated, adjusted market data in the processed tier and `market.*`."""

import dagster as dg

from wealth_pipeline.defs.processed.bars import bars
from wealth_pipeline.defs.processed.reference import reference_assets

defs = dg.Definitions(assets=[bars, *reference_assets])
