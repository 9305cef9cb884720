"""Calendar-aware freshness with a fake clock: hand-computed deadlines from the exchanges' published hours."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from wealth_pipeline.operations import freshness

LAG = dt.timedelta(hours=6)
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_an_ordinary_session_is_due_six_hours_after_the_close() -> None:
    # 2024-07-10 (Wed): NYSE, NASDAQ and TSX close 16:00 EDT = 20:00 UTC, so due 2024-07-11 02:00 UTC.
    assert freshness.partition_deadline(dt.date(2024, 7, 10), LAG) == at("2024-07-11T02:00:00")
    assert freshness.expected_partition(at("2024-07-11T01:59:00"), LAG) == dt.date(2024, 7, 9)
    assert freshness.expected_partition(at("2024-07-11T02:00:00"), LAG) == dt.date(2024, 7, 10)


def test_a_day_closed_everywhere_is_never_due_and_never_late() -> None:
    # Christmas 2024 (Wed) and Boxing Day (TSX closed; NYSE open): the 25th is closed on every exchange.
    assert freshness.partition_deadline(dt.date(2024, 12, 25), LAG) is None
    # On the morning of the 26th the newest due partition is the 24th, not the holiday.
    assert freshness.expected_partition(at("2024-12-26T12:00:00"), LAG) == dt.date(2024, 12, 24)
    status = freshness.evaluate({"bars": {dt.date(2024, 12, 24)}}, at("2024-12-26T12:00:00"), LAG)
    assert [s.late for s in status] == [False]


def test_a_us_holiday_is_due_on_the_toronto_close() -> None:
    # US Thanksgiving 2024-11-28: NYSE/NASDAQ closed, TSX trades until 16:00 EST = 21:00 UTC.
    assert freshness.partition_deadline(dt.date(2024, 11, 28), LAG) == at("2024-11-29T03:00:00")
    assert freshness.partition_deadline(dt.date(2024, 11, 28), LAG, exchanges=("NYSE",)) is None


def test_an_early_close_brings_the_deadline_forward() -> None:
    # 2024-11-29 (day after Thanksgiving): NYSE closes 13:00 EST = 18:00 UTC.
    assert freshness.partition_deadline(dt.date(2024, 11, 29), LAG, exchanges=("NYSE",)) == at("2024-11-30T00:00:00")


def test_a_missing_expected_partition_is_late_and_says_which() -> None:
    now = at("2024-07-11T03:00:00")
    status = {s.asset: s for s in freshness.evaluate(
        {"bars": {dt.date(2024, 7, 9), dt.date(2024, 7, 10)}, "indicators": {dt.date(2024, 7, 9)}}, now, LAG)}
    assert not status["bars"].late and status["indicators"].late
    assert status["indicators"].describe() == "indicators: LATE, session 2024-07-10 not materialized (latest: 2024-07-09)"


def test_nothing_is_due_before_the_first_partition() -> None:
    assert freshness.expected_partition(at("2024-07-11T03:00:00"), LAG, first=dt.date(2024, 7, 12)) is None


def test_a_naive_clock_and_bad_lag_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="aware time"):
        freshness.expected_partition(dt.datetime(2024, 7, 11, 3), LAG)
    monkeypatch.setenv("WEALTH_FRESHNESS_LAG_HOURS", "six")
    with pytest.raises(ValueError, match="WEALTH_FRESHNESS_LAG_HOURS='six' is not a number"):
        freshness.lag_from_env()
    monkeypatch.setenv("WEALTH_FRESHNESS_LAG_HOURS", "100")
    with pytest.raises(ValueError, match="between 0 and 72"):
        freshness.lag_from_env()
    monkeypatch.setenv("WEALTH_FRESHNESS_LAG_HOURS", "2.5")
    assert freshness.lag_from_env() == dt.timedelta(hours=2.5)


def test_a_materialization_run_is_judged_on_its_newest_session_the_hourly_job_on_the_clock() -> None:
    from wealth_pipeline.defs.operations.freshness import JOB_NAME, evaluation_time

    now = at("2026-12-01T15:00:00")
    backfill = dg.DagsterRun(job_name="demo_sessions", tags={"dagster/asset_partition_range_start": "2023-01-03",
                                                             "dagster/asset_partition_range_end": "2024-12-31"})
    assert evaluation_time(backfill, now) == at("2025-01-01T12:00:00")
    # ... so the newest due session is the backfill's last one, not today's.
    assert freshness.expected_partition(evaluation_time(backfill, now), LAG) == dt.date(2024, 12, 31)
    assert evaluation_time(dg.DagsterRun(job_name="daily", tags={"dagster/partition": "2026-12-01"}), now) == now
    assert evaluation_time(dg.DagsterRun(job_name=JOB_NAME), now) is None  # hourly job: wall clock, alerts
