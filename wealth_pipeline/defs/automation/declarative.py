"""Dagster's automation-condition sensor, declared so that it runs by default.

It evaluates the assets' automation conditions (the dbt marts' ``AutomationCondition.eager()``:
a mart follows its upstream assets) and launches what they ask for. On the demo's state it launches
nothing: the marts' latest partition is built and no upstream asset changes.
"""

import dagster as dg

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates every asset's automation condition (the dbt marts follow their upstream assets).",
)
