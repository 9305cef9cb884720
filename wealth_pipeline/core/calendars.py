"""Exchange calendars: which dates are trading sessions on which listing exchange.

Holidays come from the maintained ``exchange-calendars`` library, never from a hand-made list. The
pipeline's partitions are weekdays; each listing exchange decides whether a weekday is a session for
its securities, so a TSX listing trades on a NYSE holiday and the reverse.
"""

from __future__ import annotations

import datetime as dt
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # exchange-calendars (and pandas with it) load when a calendar is first asked for
    import exchange_calendars as xcals

# Listing exchange (as used in the symbol master) -> exchange-calendars code.
EXCHANGE_CALENDAR_CODES: dict[str, str] = {
    "NYSE": "XNYS",
    "NASDAQ": "XNAS",
    "TSX": "XTSE",
}

# The calendar that defines the pipeline's "market session" (factor returns, benchmark, schedules).
PRIMARY_EXCHANGE = "NYSE"


class UnknownExchangeError(ValueError):
    """An exchange code the project has no calendar for."""


@cache
def _calendar(exchange: str) -> xcals.ExchangeCalendar:
    try:
        code = EXCHANGE_CALENDAR_CODES[exchange]
    except KeyError as exc:
        known = ", ".join(sorted(EXCHANGE_CALENDAR_CODES))
        raise UnknownExchangeError(f"unknown exchange {exchange!r}; known exchanges: {known}") from exc
    import exchange_calendars as xcals

    return xcals.get_calendar(code, start="1995-01-01")


@lru_cache(maxsize=256)
def _sessions_cached(exchange: str, start: dt.date, end: dt.date) -> tuple[dt.date, ...]:
    if end < start:
        return ()
    import pandas as pd

    index = _calendar(exchange).sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))
    return tuple(ts.date() for ts in index)


def sessions(exchange: str, start: dt.date, end: dt.date) -> list[dt.date]:
    """Trading sessions of ``exchange`` between ``start`` and ``end`` inclusive."""
    return list(_sessions_cached(exchange, start, end))


def is_session(exchange: str, day: dt.date) -> bool:
    """Whether ``day`` is a trading session on ``exchange``."""
    return day.weekday() < 5 and bool(_sessions_cached(exchange, day, day))


def weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every Monday-to-Friday date between ``start`` and ``end`` inclusive: the partition keys."""
    days = (end - start).days + 1
    return [d for d in (start + dt.timedelta(n) for n in range(max(days, 0))) if d.weekday() < 5]


def open_exchanges(day: dt.date, exchanges: tuple[str, ...] = tuple(EXCHANGE_CALENDAR_CODES)) -> list[str]:
    """The exchanges among ``exchanges`` that hold a session on ``day``."""
    return [exchange for exchange in exchanges if is_session(exchange, day)]


def previous_sessions(exchange: str, day: dt.date, count: int) -> list[dt.date]:
    """The ``count`` sessions of ``exchange`` up to and including ``day`` (fewer near the calendar start)."""
    import pandas as pd

    calendar = _calendar(exchange)
    end = pd.Timestamp(day)
    if not calendar.is_session(end):
        end = calendar.date_to_session(end, direction="previous")
    index = calendar.sessions_window(end, -count) if count > 0 else []
    return [ts.date() for ts in index]
