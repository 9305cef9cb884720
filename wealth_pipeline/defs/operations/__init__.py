"""Operations domain: the nightly backup with retention, the backup check, freshness checks and alerts.

``defs`` (the backup job, its schedule, the ``backups`` asset and its restorable check) is found by
``definitions.py`` like every domain; ``build_freshness(graph)`` needs the merged asset graph (the
checks cover every daily asset, whatever domains exist), so ``definitions.py`` calls it after
merging, as it does for automation.
"""

import dagster as dg

from wealth_pipeline.defs.operations.backups import (
    backup_check_job,
    backup_job,
    backup_resource,
    backups_spec,
    daily_backup,
    latest_backup_restorable,
)
from wealth_pipeline.defs.operations.freshness import build_freshness

defs = dg.Definitions(
    assets=[backups_spec],
    asset_checks=[latest_backup_restorable],
    jobs=[backup_job, backup_check_job],
    schedules=[daily_backup],
    resources={"backup": backup_resource()},
)

__all__ = ["build_freshness", "defs"]
