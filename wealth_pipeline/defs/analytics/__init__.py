"""Analytics domain: indicators and factor exposures in the processed tier and `analytics.*`."""

import dagster as dg

from wealth_pipeline.defs.analytics.assets import factor_exposures, indicators_asset

defs = dg.Definitions(assets=[indicators_asset, factor_exposures])
