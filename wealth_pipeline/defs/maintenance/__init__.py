"""Maintenance domain: the weekly lakehouse job that compacts and vacuums the Delta tables.

``defs`` (the ``lakehouse_maintenance`` job and its ``weekly_lakehouse_maintenance`` schedule) is
found by ``definitions.py`` like every domain. Retention (how long as-of reads keep working) is
``delta.RETENTION_DAYS`` unless the run config says otherwise; see ``lakehouse/maintenance.py``.
"""

import dagster as dg

from wealth_pipeline.defs.maintenance.jobs import (
    MaintenanceConfig,
    lakehouse_maintenance,
    maintain_tables,
    weekly_lakehouse_maintenance,
)

defs = dg.Definitions(jobs=[lakehouse_maintenance], schedules=[weekly_lakehouse_maintenance])

__all__ = ["MaintenanceConfig", "defs", "lakehouse_maintenance", "maintain_tables", "weekly_lakehouse_maintenance"]
