"""Backup retention: the newest backup of each of the last N days and M ISO weeks, hand-computed."""

from __future__ import annotations

import datetime as dt

import pytest

from wealth_pipeline.operations.backup import select_retained
from wealth_pipeline.operations.location import new_backup_id


def bid(text: str) -> str:
    return new_backup_id(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC))


def test_keeps_the_newest_per_day_and_per_iso_week() -> None:
    nightly = [bid(f"2024-07-{d:02d}T21:30:00") for d in range(1, 15)]  # Mon 07-01 .. Sun 07-14
    extra = bid("2024-07-14T10:00:00")                                   # an earlier one the same day
    kept, dropped = select_retained([*nightly, extra], keep_daily=3, keep_weekly=2)
    # days: 14 (21:30), 13, 12; ISO week 28 (07-08..07-14) -> 14 (21:30), week 27 (07-01..07-07) -> 07.
    assert kept == [bid("2024-07-07T21:30:00"), bid("2024-07-12T21:30:00"), bid("2024-07-13T21:30:00"),
                    bid("2024-07-14T21:30:00")]
    assert len(dropped) == 11 and extra in dropped and bid("2024-07-01T21:30:00") in dropped
    assert sorted(kept + dropped) == sorted([*nightly, extra])


def test_zero_keeps_nothing_and_negative_is_refused() -> None:
    ids = [bid("2024-07-01T21:30:00"), bid("2024-07-02T21:30:00")]
    assert select_retained(ids, 0, 0) == ([], ids)
    with pytest.raises(ValueError, match="keep_daily=-1"):
        select_retained(ids, -1, 4)
