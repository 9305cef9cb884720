"""The after-close schedule: each session's partition, end to end, at 18:30 New York time.

It ships STOPPED: on the demo's state (synthetic 2023-2024 data) it would materialize today's
session on demo data. Turn it on in the UI (Automation) or with ``dagster schedule start
daily_after_close -w workspace.yaml`` where the pipeline runs on live data.
"""

import datetime as dt

import dagster as dg

from wealth_pipeline.defs.partitions import market_status

CLOSE_CRON = "30 18 * * 1-5"
TIMEZONE = "America/New_York"


def session_request(day: dt.date) -> dg.RunRequest | dg.SkipReason:
    """A run for ``day``'s partition, or why there is none (every listing exchange closed)."""
    status = market_status(day)
    if not any(status.values()):
        return dg.SkipReason(f"{day}: market closed on {', '.join(sorted(status))} (exchange holiday); nothing to run")
    open_on = sorted(exchange for exchange, is_open in status.items() if is_open)
    return dg.RunRequest(
        run_key=day.isoformat(),
        partition_key=day.isoformat(),
        tags={"wealth/open_exchanges": ",".join(open_on)},
    )


@dg.schedule(
    name="daily_after_close",
    cron_schedule=CLOSE_CRON,
    execution_timezone=TIMEZONE,
    job_name="daily_session",  # jobs.py; by name, so this module exports no second copy of the job
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="After the close (18:30 America/New_York, weekdays): that session's partition through the daily graph. "
    "A day closed on every listing exchange is skipped with the reason. Off by default (turn it on for live data).",
)
def daily_after_close(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    # scheduled_execution_time is in the schedule's timezone: its date is the New York session.
    return session_request(context.scheduled_execution_time.date())
