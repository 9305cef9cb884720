"""Dagster's automation-condition sensor, declared so that it ships stopped.

It evaluates the assets' automation conditions (the dbt marts' ``AutomationCondition.eager()``:
a mart follows its upstream assets) and launches what they ask for. The jobs that build upstream
assets (``daily_session``, ``vendor_ingest``, the CLI's runs) already build the marts in the same
run; left on during a staged CLI demo it launched duplicate mart runs between the stages, so it is
off until a user wants marts to follow materializations made outside those jobs.
"""

import dagster as dg

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Evaluates every asset's automation condition (the dbt marts follow their upstream assets).",
)
