"""Failed runs (and, through ``send_alert``, late data) are reported to a webhook (``WEALTH_ALERT_WEBHOOK_URL``), or logged when none is set.

The URL reaches the sensor through the ``alerts`` resource (``AlertsResource``), like every runtime value.
"""

from typing import Any

import dagster as dg
import httpx

from wealth_pipeline.defs.resources import AlertsResource


def _error_chain(error: Any) -> list[str]:
    """Messages from Dagster's wrapper down to the original exception."""
    chain = []
    while error is not None:
        chain.append(error.message.strip())
        error = error.cause
    return chain


def failure_payload(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """What an alert says: the run, its job and partition, each failed step and its error."""
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        chain = _error_chain(error)
        steps.append({"step": event.step_key, "error": chain[-1] if chain else None, "error_chain": chain})
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition")
        or (f"{run.tags.get('dagster/asset_partition_range_start')}..{run.tags.get('dagster/asset_partition_range_end')}"
            if run.tags.get("dagster/asset_partition_range_start") else None),
        "failed_steps": steps,
        "run_error": context.failure_event.message if context.failure_event else None,
    }


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="Posts failed runs (run, failed step, error) as JSON to WEALTH_ALERT_WEBHOOK_URL; logs them when it is unset.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    payload = failure_payload(context)
    alerts.send({"kind": "run_failure", **payload}, context.log, f"run {payload['run_id']} failed")


def send_alert(payload: dict[str, Any], log: Any, what: str, webhook_url: str | None = None) -> bool:
    """POST ``payload`` as JSON to ``webhook_url`` (or log it when empty); True when posted.

    Every alert (failed runs, late data) goes through here, so one webhook receives them all and
    tells them apart by ``kind``. Callers pass the ``alerts`` resource's URL (``AlertsResource.send``);
    ``None`` (callers without the resource) asks the settings layer for ``WEALTH_ALERT_WEBHOOK_URL``.
    """
    if webhook_url is None:
        from wealth_pipeline.settings import alert_webhook_url

        webhook_url = alert_webhook_url()
    url = webhook_url
    if not url:
        log.warning(f"{what} (no WEALTH_ALERT_WEBHOOK_URL set, so only logged): {payload}")
        return False
    response = httpx.post(url, json=payload, timeout=10.0)
    response.raise_for_status()
    log.info(f"alert sent: {what} (HTTP {response.status_code})")
    return True
