"""Marts domain: the dbt project (staging views, BI marts in schema ``marts``) run through dagster-dbt.

``dg.load_from_defs_folder`` loads ``marts_dbt`` from ``assets.py``; the domain's own resource
(``dbt``) is declared here.
"""

import dagster as dg

from wealth_pipeline.defs.marts.project import dbt_resource

resources = dg.Definitions(resources={"dbt": dbt_resource()})
