"""Portfolio domain: reference data and daily accounting, metrics and attribution in `portfolio.*`."""

import dagster as dg

from wealth_pipeline.defs.portfolio.assets import portfolio_daily, portfolio_reference

defs = dg.Definitions(assets=[portfolio_reference, portfolio_daily])
