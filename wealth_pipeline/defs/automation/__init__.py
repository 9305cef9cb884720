"""Automation: the after-close schedule, the landing-zone sensor, failure alerts.

Built from the merged asset graph of the other domains (``build``), because the jobs it targets
are "every daily asset" and "everything downstream of the vendor datasets", whatever domains exist.
"""

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import (
    AssetGraph,  # the resolved graph of a Definitions
)

from wealth_pipeline.defs.automation.alerts import run_failure_alert
from wealth_pipeline.defs.automation.jobs import daily_session_job, vendor_ingest_job
from wealth_pipeline.defs.automation.landing_sensor import landing_zone_sensor
from wealth_pipeline.defs.automation.schedules import daily_after_close


def build(asset_graph: AssetGraph) -> dg.Definitions:
    """Jobs, schedules and sensors over the assets of ``asset_graph``."""
    daily = daily_session_job(asset_graph)
    vendor = vendor_ingest_job(asset_graph)
    return dg.Definitions(
        jobs=[daily, vendor],
        schedules=[daily_after_close(daily)],
        sensors=[landing_zone_sensor(vendor), run_failure_alert],
    )
