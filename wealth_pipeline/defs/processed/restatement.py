"""Restatement: when a window's result makes later stored sessions stale, run them again as one range.

The ``bars`` asset says so in its materialization (metadata ``restatement``: ``from``, ``to``,
``reasons``) when its window changed the factor rows or the bars that later sessions were computed
from (a late or corrected corporate action, a corrected vendor bar, a re-run with new raw data), or
when a bar before its window turned out to be a spike once its next session arrived. This sensor
reads those materializations from the instance and requests ONE run of ``vendor_ingest`` (the vendor
datasets and every daily asset downstream: bars, indicators, exposures, portfolios, predictions,
marts) over the union of the stale ranges, so every restated partition gets its own materialization
(the UI shows what changed) and the result equals a from-scratch backfill over the same inputs.
Late vendor files are caught earlier still: the landing sensor runs a file's sessions through the
latest materialized one.

Ships STOPPED like every automation that acts on the instance's state by itself; start it with the
landing-zone sensor (the README's "Corporate actions and late data").
"""

import datetime as dt
import json

import dagster as dg

from wealth_pipeline.core import calendars
from wealth_pipeline.defs import datasets

RESTATEMENT_METADATA = "restatement"


def stale_ranges(records: list[dg.EventLogRecord]) -> list[tuple[str, str, str]]:
    """(from, to, run id) of every bars materialization among ``records`` that asks for a restatement."""
    found = []
    for record in records:
        materialization = record.asset_materialization
        entry = materialization.metadata.get(RESTATEMENT_METADATA) if materialization else None
        value = getattr(entry, "value", None)
        if isinstance(value, dict) and value.get("from") and value.get("to"):
            found.append((str(value["from"]), str(value["to"]), record.run_id))
    return found


@dg.sensor(
    name="restatement_sensor",
    job_name="vendor_ingest",  # defs/automation/jobs.py
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Reads bars materializations that report stale later sessions (metadata `restatement`) and requests "
    "one vendor_ingest run over the union of those ranges, so every derived table of the restated sessions is "
    "recomputed and recorded. Off by default: start it where late data arrives (with the landing-zone sensor).",
)
def restatement_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=datasets.BARS.key, after_storage_id=after), limit=1000, ascending=True
    ).records
    if not records:
        return dg.SensorResult(skip_reason="no new bars materializations")
    cursor = str(max(r.storage_id for r in records))
    ranges = stale_ranges(records)
    if not ranges:
        return dg.SensorResult(cursor=cursor, skip_reason="no restatement requested")
    sessions = calendars.weekdays(
        dt.date.fromisoformat(min(r[0] for r in ranges)), dt.date.fromisoformat(max(r[1] for r in ranges))
    )
    if not sessions:
        return dg.SensorResult(cursor=cursor, skip_reason=f"restatement ranges hold no weekday: {ranges}")
    first, last = sessions[0].isoformat(), sessions[-1].isoformat()
    runs = sorted({r[2] for r in ranges})
    context.log.info(f"restating {first}..{last} for bars materializations of runs {runs}")
    return dg.SensorResult(
        cursor=cursor,
        run_requests=[
            dg.RunRequest(
                run_key=f"restatement:{cursor}:{first}:{last}",
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                    "wealth/restatement_of": json.dumps(runs)[:250],
                },
            )
        ],
    )
