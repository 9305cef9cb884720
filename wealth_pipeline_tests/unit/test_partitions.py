"""Warm-up partition mappings (issue 23): the partitions Dagster is told a window reads cover the reads.

The oracle is the exchange calendars themselves (``core.analytics.calendar_days_before``, what the
assets read from) and numpy's business-day count for the weekday partitions, not the formulas in
``defs/partitions.py``.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pytest

from wealth_pipeline.core import analytics, indicators
from wealth_pipeline.core import bars as bar_compute
from wealth_pipeline.defs import datasets, partitions

# Weekday partitions over the exchange calendars' whole span of interest.
SESSIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    fmt="%Y-%m-%d",
    start="1999-01-01",
    end="2031-01-01",
    timezone="America/New_York",
)


def _weekdays(first: dt.date, before: dt.date) -> int:
    """Weekday partitions in [first, before)."""
    return int(np.busday_count(first, before))


@pytest.mark.parametrize("sessions", [indicators.WARMUP_SESSIONS, analytics.EXPOSURE_WINDOW + 1])
def test_session_warmup_partitions_cover_what_the_assets_read(sessions: int) -> None:
    declared = partitions.partitions_for_sessions(sessions)
    worst = 0
    day = dt.date(1998, 1, 2)
    while day < dt.date(2027, 11, 1):  # the calendars end a year after today
        if day.weekday() < 5:
            worst = max(worst, _weekdays(analytics.calendar_days_before(day, sessions), day))
        day += dt.timedelta(days=11)
    assert worst <= declared, (
        f"{sessions} sessions read up to {worst} weekday partitions, {declared} declared"
    )
    assert declared - worst < 40, f"{declared} declared for at most {worst} read: over-declared"


@pytest.mark.parametrize("days", [bar_compute.LOOKBACK_DAYS, 14, 120, 1])
def test_calendar_day_warmup_partitions_cover_every_weekday(days: int) -> None:
    declared = partitions.partitions_for_days(days)
    start = dt.date(2024, 1, 1)
    worst = max(
        _weekdays(start + dt.timedelta(days=i) - dt.timedelta(days=days), start + dt.timedelta(days=i))
        for i in range(14)
    )
    assert worst <= declared <= worst + 1


def _upstream(downstream: str, upstream: datasets.Dataset, key: str) -> tuple[str, str]:
    (dep,) = [d for d in datasets.asset_deps(downstream, [upstream]) if d.asset_key == upstream.key]
    subset = SESSIONS.empty_subset().with_partition_key_range(SESSIONS, dg.PartitionKeyRange(key, key))
    mapped = dep.partition_mapping.get_upstream_mapped_partitions_result_for_partitions(
        subset, SESSIONS, SESSIONS
    )
    (keys,) = mapped.partitions_subset.get_partition_key_ranges(SESSIONS)
    return keys.start, keys.end


def test_indicators_and_exposures_declare_the_history_they_read() -> None:
    day = "2024-03-04"
    first, last = _upstream("indicators", datasets.BARS, day)
    assert last == day
    assert first <= str(analytics.calendar_days_before(dt.date(2024, 3, 4), indicators.WARMUP_SESSIONS))
    first, last = _upstream("factor_exposures", datasets.BARS, day)
    assert last == day
    assert first <= str(analytics.calendar_days_before(dt.date(2024, 3, 4), analytics.EXPOSURE_WINDOW + 1))
    first, _ = _upstream("bars", datasets.RAW["bars"], day)
    assert first <= str(dt.date(2024, 3, 4) - dt.timedelta(days=bar_compute.LOOKBACK_DAYS))


def test_indicators_depend_on_their_own_earlier_partitions_only() -> None:
    deps = {d.asset_key: d.partition_mapping for d in datasets.asset_deps("indicators", [datasets.BARS])}
    own = deps[datasets.INDICATORS.key]
    assert isinstance(own, dg.TimeWindowPartitionMapping) and own.end_offset == -1
    assert own.start_offset <= -partitions.partitions_for_days(datasets.OBV_ANCHOR_DAYS)


def test_first_partitions_have_no_upstream_before_the_start() -> None:
    """allow_nonexistent_upstream_partitions: a window at the first partition reads nothing earlier."""
    dep = next(
        d for d in datasets.asset_deps("indicators", [datasets.BARS]) if d.asset_key == datasets.BARS.key
    )
    first = SESSIONS.get_first_partition_key()
    subset = SESSIONS.empty_subset().with_partition_key_range(SESSIONS, dg.PartitionKeyRange(first, first))
    mapped = dep.partition_mapping.get_upstream_mapped_partitions_result_for_partitions(
        subset, SESSIONS, SESSIONS
    )
    assert list(mapped.partitions_subset.get_partition_keys()) == [first]


def test_a_bad_warmup_is_refused() -> None:
    with pytest.raises(ValueError, match="warm-up of 0 partitions"):
        partitions.warmup_mapping(0)
