"""Automation: the after-close schedule, the landing-zone sensor, failure alerts, declarative automation.

``dg.load_from_defs_folder`` loads the top-level objects of each module: ``jobs.py`` (``daily_session``
and ``vendor_ingest`` as public asset selections, resolved by Dagster against the whole code
location), ``schedules.py``, ``landing_sensor.py``, ``alerts.py``, ``declarative.py``.

What would act on its own on the demo's state ships STOPPED (every schedule, ``landing_zone_sensor``,
``default_automation_condition_sensor``); only ``run_failure_alert`` runs by default.
"""
