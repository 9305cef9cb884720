"""Watch the vendor landing zone; run the partitions a new or changed file touches, once per content.

The landing zone (``WEALTH_LANDING_URI``, S3 endpoint and region) comes from the ``market_data``
resource. The sensor ships STOPPED (start it where vendor files are delivered: the UI's Automation
page, or ``dagster sensor start landing_zone_sensor -w workspace.yaml``).
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from wealth_pipeline.core import calendars
from wealth_pipeline.defs.resources import MarketDataResource
from wealth_pipeline.lakehouse.store import open_store
from wealth_pipeline.providers.landing import landing_files
from wealth_pipeline.providers.vendor_files import DATASETS, VendorFileError, parse_vendor_file


def contiguous_blocks(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Group weekday partitions into runs of consecutive weekdays (a Friday is followed by Monday)."""
    blocks: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if blocks and calendars.weekdays(blocks[-1][1], day)[1:2] == [day]:
            blocks[-1] = (blocks[-1][0], day)
        else:
            blocks.append((day, day))
    return blocks


def _latest_bars_session(context: dg.SensorEvaluationContext) -> dt.date | None:
    """The latest materialized partition of ``bars`` on the instance (None before the first)."""
    keys = context.instance.get_materialized_partitions(dg.AssetKey("bars"))
    return max((dt.date.fromisoformat(k) for k in keys), default=None)


@dg.sensor(
    name="landing_zone_sensor",
    job_name="vendor_ingest",  # jobs.py
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches WEALTH_LANDING_URI for new or changed vendor files and requests single runs for exactly the "
    "sessions each file covers (a file reaching back before the latest materialized session: one run from its first "
    "session through the latest, so the later sessions are restated too). The cursor remembers every file's content hash, so a file is never processed twice. "
    "Off by default: start it where vendor files are delivered (WEALTH_PROVIDER=vendor).",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, market_data: MarketDataResource) -> dg.SensorResult:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    if not market_data.landing_uri:
        return dg.SensorResult(skip_reason="no landing zone configured (WEALTH_LANDING_URI)")
    store = open_store(market_data.landing_uri, market_data.s3_endpoint_url, market_data.s3_region)
    requests, skipped = [], []
    for dataset in DATASETS:
        for key in landing_files(store, dataset):  # any extension: an unreadable one is logged (issue 14)
            data = store.get_bytes(key)
            digest = hashlib.sha256(data).hexdigest()
            if seen.get(key) == digest:
                continue
            seen[key] = digest
            try:
                days = parse_vendor_file(key, data, dataset=dataset).dates()
            except VendorFileError as exc:
                skipped.append(f"{key}: {exc}")
                continue
            blocks = contiguous_blocks([d for d in days if d.weekday() < 5])
            latest = _latest_bars_session(context)
            if blocks and latest is not None and blocks[0][0] <= latest:
                # Late data (a past ex-date, a corrected old bar): later sessions were computed from the
                # old inputs, so run from the file's first session through the latest materialized one,
                # as one range (issue 14; ARCHITECTURE.md "Adjustment model").
                blocks = [(blocks[0][0], max(latest, blocks[-1][1]))]
            for first, last in blocks:
                requests.append(dg.RunRequest(
                    run_key=f"{digest[:16]}:{first}:{last}",
                    tags={"dagster/asset_partition_range_start": first.isoformat(),
                          "dagster/asset_partition_range_end": last.isoformat(),
                          "wealth/landing_file": key},
                ))
    for message in skipped:
        context.log.warning(f"landing file refused whole, nothing to run (the next run of its dataset keeps and reports it): {message}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True),
                           skip_reason=None if requests else "no new or changed landing files")

