"""When is a daily partition late? The exchange calendars decide, so holidays are never late.

A weekday partition is due ``lag`` after the latest close among the listing exchanges that trade on
it (early closes included, from ``exchange-calendars``); a weekday closed on every exchange is never
due (the after-close schedule skips it). At any moment the *expected* partition is the newest one
already due, and a daily asset is late when that partition has not been materialized.

Dagster's own freshness policies and ``build_time_partition_freshness_checks`` count every cron
tick, so they would report Christmas (a weekday partition nobody runs) as late; this module is the
calendar-aware replacement, with the clock passed in so it can be tested at any instant.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import pandas as pd

from wealth_pipeline.core import calendars

DEFAULT_LAG_HOURS = 6.0
LOOKBACK_DAYS = 14


def lag_from_env() -> dt.timedelta:
    """``WEALTH_FRESHNESS_LAG_HOURS``: hours after the close by which a session's partition must exist."""
    raw = os.environ.get("WEALTH_FRESHNESS_LAG_HOURS") or str(DEFAULT_LAG_HOURS)
    try:
        hours = float(raw)
    except ValueError:
        raise ValueError(f"WEALTH_FRESHNESS_LAG_HOURS={raw!r} is not a number of hours (e.g. 6)") from None
    if not 0 <= hours <= 72:
        raise ValueError(f"WEALTH_FRESHNESS_LAG_HOURS={raw!r} must be between 0 and 72 hours")
    return dt.timedelta(hours=hours)


def session_close(exchange: str, day: dt.date) -> dt.datetime | None:
    """The UTC close of ``exchange`` on ``day``, or None when it does not trade."""
    if not calendars.is_session(exchange, day):
        return None
    close = calendars._calendar(exchange).session_close(pd.Timestamp(day))  # the core's cached calendar
    return close.to_pydatetime().astimezone(dt.UTC)


def partition_deadline(day: dt.date, lag: dt.timedelta,
                       exchanges: tuple[str, ...] = tuple(calendars.EXCHANGE_CALENDAR_CODES)) -> dt.datetime | None:
    """When ``day``'s partition is due (the latest close that day plus ``lag``), or None when closed everywhere."""
    closes = [c for c in (session_close(e, day) for e in exchanges) if c is not None]
    return max(closes) + lag if closes else None


def expected_partition(now: dt.datetime, lag: dt.timedelta, first: dt.date | None = None,
                       exchanges: tuple[str, ...] = tuple(calendars.EXCHANGE_CALENDAR_CODES)) -> dt.date | None:
    """The newest weekday partition already due at ``now`` (None when none is due since ``first``)."""
    if now.tzinfo is None:
        raise ValueError(f"freshness needs an aware time, got naive {now.isoformat()}")
    day = now.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    for _ in range(LOOKBACK_DAYS + 1):
        if first is not None and day < first:
            return None
        if day.weekday() < 5:
            deadline = partition_deadline(day, lag, exchanges)
            if deadline is not None and deadline <= now:
                return day
        day -= dt.timedelta(days=1)
    return None


@dataclass(frozen=True)
class AssetFreshness:
    """One daily asset's freshness at an instant."""

    asset: str
    latest: dt.date | None
    expected: dt.date | None
    late: bool

    def describe(self) -> str:
        if self.expected is None:
            return f"{self.asset}: no session due yet"
        if not self.late:
            return f"{self.asset}: on time (session {self.expected} materialized)"
        return f"{self.asset}: LATE, session {self.expected} not materialized (latest: {self.latest or 'none'})"

    def as_dict(self) -> dict[str, object]:
        return {"asset": self.asset, "latest_session": self.latest.isoformat() if self.latest else None,
                "expected_session": self.expected.isoformat() if self.expected else None, "late": self.late}


def evaluate(materialized: dict[str, set[dt.date]], now: dt.datetime, lag: dt.timedelta,
             first: dt.date | None = None) -> list[AssetFreshness]:
    """Freshness of each asset given its materialized partitions: late when the expected one is missing."""
    expected = expected_partition(now, lag, first)
    found = []
    for asset in sorted(materialized):
        days = materialized[asset]
        latest = max(days) if days else None
        found.append(AssetFreshness(asset, latest, expected, expected is not None and expected not in days))
    return found
