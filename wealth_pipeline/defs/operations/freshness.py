"""Freshness checks on every daily asset, evaluated on the exchange calendars, and the late-data alert."""

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import dagster as dg

from wealth_pipeline.defs.partitions import PARTITION_START, trading_sessions
from wealth_pipeline.defs.resources import AlertsResource
from wealth_pipeline.operations import freshness

CHECK_NAME = "session_on_time"
CHECK_CRON = "15 * * * *"
JOB_NAME = "freshness_checks"
ALERTED_KEY = "wealth/freshness/last_alert"


class AssetGraph(Protocol):
    """What is used of ``dg.Definitions.resolve_asset_graph()`` (its class is not public API)."""

    def get_all_asset_keys(self) -> Iterable[dg.AssetKey]: ...

    def get(self, key: dg.AssetKey) -> Any: ...


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def daily_keys(asset_graph: AssetGraph) -> list[dg.AssetKey]:
    return sorted(k for k in asset_graph.get_all_asset_keys()
                  if asset_graph.get(k).partitions_def == trading_sessions and asset_graph.get(k).is_materializable)


def materialized_sessions(instance: dg.DagsterInstance, keys: list[dg.AssetKey]) -> dict[str, set[dt.date]]:
    return {k.to_user_string(): {dt.date.fromisoformat(p) for p in instance.get_materialized_partitions(k)} for k in keys}


def build_freshness(asset_graph: AssetGraph, clock: Callable[[], dt.datetime] = utc_now) -> dg.Definitions:
    """A ``session_on_time`` check on every daily asset, an hourly job running them, and the alert.

    ``clock`` is the time the checks evaluate at (tests pass a fake one).
    """
    keys = daily_keys(asset_graph)
    if not keys:
        return dg.Definitions()
    specs = [dg.AssetCheckSpec(CHECK_NAME, asset=k, description=(
        "The newest session already due (latest close among the exchanges trading that day + WEALTH_FRESHNESS_LAG_HOURS) "
        "is materialized; days closed on every exchange are never due.")) for k in keys]

    @dg.multi_asset_check(specs=specs, name="daily_freshness", can_subset=True,
                          description="Calendar-aware freshness of every daily asset; posts a late_data alert when one is late.")
    def daily_freshness(context: dg.AssetCheckExecutionContext, alerts: AlertsResource):
        lag = freshness.lag_from_env()
        as_of = evaluation_time(context.run, clock())
        yield from _judged(context, keys, as_of or clock(), lag, alerts if as_of is None else None)

    job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.checks(daily_freshness),
                              description="Evaluate the calendar-aware freshness of every daily asset.")
    schedule = dg.ScheduleDefinition(name="freshness_hourly", job=job, cron_schedule=CHECK_CRON,
                                      execution_timezone="America/New_York", default_status=dg.DefaultScheduleStatus.STOPPED,
                                      description="Every hour: is every daily asset's newest due session materialized?")
    return dg.Definitions(asset_checks=[daily_freshness], jobs=[job], schedules=[schedule])


def evaluation_time(run: dg.DagsterRun, now: dt.datetime) -> dt.datetime | None:
    """None in the hourly freshness job (judge at the wall clock, and alert); in a run that materializes
    daily partitions (Dagster adds the checks of the assets it selects), the morning after the run's
    newest partition, so a backfill of history is judged on the sessions it wrote, not against today."""
    if run.job_name == JOB_NAME:
        return None
    last = run.tags.get("dagster/asset_partition_range_end") or run.tags.get("dagster/partition")
    if not last:
        return None
    as_of = dt.datetime.combine(dt.date.fromisoformat(last) + dt.timedelta(days=1), dt.time(12), dt.UTC)
    return min(now, as_of)


def _judged(context: dg.AssetCheckExecutionContext, keys: list[dg.AssetKey], now: dt.datetime,
            lag: dt.timedelta, alerts: AlertsResource | None):
    """Check results for the selected assets at ``now``; the late-data alert through ``alerts`` (None: no alert).

    One alert per breach: the breach's fingerprint (expected session, late assets) is kept in the run
    storage's key-value cursors, so the hourly job does not post the same lateness every hour; it is
    cleared once every asset is on time, and set only after the webhook accepted the post."""
    selected = [k for k in keys if any(c.asset_key == k for c in context.selected_asset_check_keys)]
    results = freshness.evaluate(materialized_sessions(context.instance, selected), now, lag,
                                 PARTITION_START)
    late = [r for r in results if r.late]
    if late and alerts is not None:
        fingerprint = json.dumps([late[0].expected.isoformat(), sorted(r.asset for r in late)])
        storage = context.instance.run_storage
        if storage.get_cursor_values({ALERTED_KEY}).get(ALERTED_KEY) != fingerprint:
            alerts.send({"kind": "late_data", "as_of": now.isoformat(), "expected_session": late[0].expected.isoformat(),
                         "lag_hours": lag.total_seconds() / 3600, "late": [r.as_dict() for r in late]},
                        context.log, f"{len(late)} daily asset(s) late for session {late[0].expected}")
            storage.set_cursor_values({ALERTED_KEY: fingerprint})
    elif alerts is not None and len(selected) == len(keys):
        context.instance.run_storage.set_cursor_values({ALERTED_KEY: ""})  # on time again: a new lateness alerts
    for r in results:
        yield dg.AssetCheckResult(
            asset_key=dg.AssetKey.from_user_string(r.asset), check_name=CHECK_NAME, passed=not r.late,
            severity=dg.AssetCheckSeverity.ERROR, description=r.describe(),
            metadata={"expected_session": r.expected.isoformat() if r.expected else "none",
                      "latest_session": r.latest.isoformat() if r.latest else "none", "as_of": now.isoformat()},
        )

