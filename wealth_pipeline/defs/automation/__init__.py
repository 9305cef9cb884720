"""Automation: the after-close schedule, the landing-zone sensor, failure alerts, declarative automation.

``dg.load_from_defs_folder`` loads the top-level objects of each module: ``jobs.py`` (``daily_session``
and ``vendor_ingest`` as public asset selections, resolved by Dagster against the whole code
location), ``schedules.py``, ``landing_sensor.py``, ``alerts.py``, ``declarative.py``.

What would act on its own on the demo's state ships STOPPED (every schedule, ``landing_zone_sensor``,
``default_automation_condition_sensor``); only ``run_failure_alert`` runs by default.
"""


def __getattr__(name: str):
    """``<domain>.defs``: this domain's definitions alone (``definitions.domain_definitions``).

    Resolved on access, not a module attribute, so the defs-folder loader does not load them twice.
    """
    if name == "defs":
        from wealth_pipeline.definitions import domain_definitions

        return domain_definitions(__name__.rsplit(".", 1)[-1])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
