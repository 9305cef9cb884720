"""Marts domain: the dbt project (staging views, BI marts in schema ``marts``) run through dagster-dbt."""

import dagster as dg

from wealth_pipeline.defs.marts.assets import marts_dbt
from wealth_pipeline.defs.marts.project import dbt_resource

defs = dg.Definitions(assets=[marts_dbt], resources={"dbt": dbt_resource()})
