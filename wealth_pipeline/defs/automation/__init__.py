"""Automation: the after-close schedule, the landing-zone sensor, failure alerts, declarative automation.

``dg.load_from_defs_folder`` loads the top-level objects of each module: ``jobs.py`` (``daily_session``
and ``vendor_ingest`` as public asset selections, resolved by Dagster against the whole code
location), ``schedules.py``, ``landing_sensor.py``, ``alerts.py``, ``declarative.py``.

What would act on its own on the demo's state ships STOPPED (``daily_after_close``,
``landing_zone_sensor``); ``run_failure_alert`` and ``default_automation_condition_sensor`` (which
keeps the dbt marts following their upstream assets) run by default.
"""
