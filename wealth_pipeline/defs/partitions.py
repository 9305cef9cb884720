"""The one trading-session partition definition shared by every daily asset."""
from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

from wealth_pipeline.core import calendars
from wealth_pipeline.settings import backfill_chunk_sessions, partition_bounds

# BackfillPolicy is beta in Dagster 1.13; it is the documented way to get single-run backfills.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

PARTITION_FORMAT = "%Y-%m-%d"

# Weekday partitions: each listing exchange decides whether a weekday is a session for its
# securities, so a NYSE holiday is still a partition (TSX trades) and a day closed everywhere
# materializes an explicit "market closed" result. end_offset=1 makes today's session available
# to the after-close schedule. The bounds are the definition's shape, so they are read when the
# code loads (the one place outside resources): WEALTH_PARTITION_START, and WEALTH_PARTITION_END
# (inclusive) where the data ends, e.g. a demo's 2023-2024, so the UI shows no partition as missing
# that no one means to fill.
PARTITION_START, PARTITION_END = partition_bounds()

trading_sessions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    fmt=PARTITION_FORMAT,
    start=PARTITION_START.strftime(PARTITION_FORMAT),
    # Dagster's end is exclusive (partitions starting before it): the day after the last session.
    end=(PARTITION_END + dt.timedelta(days=1)).strftime(PARTITION_FORMAT) if PARTITION_END else None,
    timezone="America/New_York",
    end_offset=1,
)


def daily_backfill_policy(chunk: int | None = None) -> dg.BackfillPolicy:
    """Single-run backfills, or runs of at most ``chunk`` sessions (default: WEALTH_BACKFILL_CHUNK_SESSIONS)."""
    chunk = backfill_chunk_sessions() if chunk is None else (chunk or None)
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=chunk) if chunk else dg.BackfillPolicy.single_run()


# The policy of every daily asset (the name predates chunking: one run per range unless
# WEALTH_BACKFILL_CHUNK_SESSIONS asks for chunks that the run queue can run in parallel).
single_run = daily_backfill_policy()


# ---- warm-up: how many earlier partitions a window reads ------------------------------------------
# Partitions are weekdays; a warm-up is counted in sessions of the listing exchanges (or calendar
# days). A weekday partition count that covers it: the sessions, plus the weekday holidays an
# exchange may close on in that span, plus the margin ``core.analytics.calendar_days_before`` adds.
# The most weekday holidays a listing exchange observes in a year (XNYS/XNAS 9-10, XTSE 9-10, XLON
# 8; tested against the calendars in unit/test_partitions.py), with room to spare.
MAX_WEEKDAY_HOLIDAYS_PER_YEAR = 15
# core.analytics.calendar_days_before reads this many calendar days before the earliest session.
CALENDAR_MARGIN_DAYS = 7


def partitions_for_sessions(sessions: int) -> int:
    """Weekday partitions that hold ``calendar_days_before(day, sessions)`` .. the day before ``day``."""
    years = sessions // 240 + 1
    return sessions + 1 + years * MAX_WEEKDAY_HOLIDAYS_PER_YEAR + partitions_for_days(CALENDAR_MARGIN_DAYS)


def partitions_for_days(days: int) -> int:
    """Weekday partitions within ``days`` calendar days before a day (at most days*5/7, rounded up, +1)."""
    return -(-days * 5 // 7) + 1


def warmup_mapping(partitions: int, self_dependency: bool = False) -> dg.PartitionMapping:
    """The partition mapping of a dependency read ``partitions`` partitions before the window.

    ``TimeWindowPartitionMapping(start_offset=-N)``: the window's own partitions and the N before
    (``self_dependency``: only the N before, ``end_offset=-1``, an asset reading its own earlier
    output). Upstream partitions before the first one do not exist: allowed, the reads find
    nothing there. The other direction counts too: a backfill of a range targets the N child
    partitions after it as well (they read the range), up to the last partition.
    """
    if not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"warm-up of {partitions!r} partitions: expected a positive int")
    return dg.TimeWindowPartitionMapping(start_offset=-partitions, end_offset=-1 if self_dependency else 0,
                                         allow_nonexistent_upstream_partitions=True)


def partition_window(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The inclusive session-date window of this run (one partition, or a single-run backfill range)."""
    keys = context.partition_keys
    return dt.date.fromisoformat(min(keys)), dt.date.fromisoformat(max(keys))


def market_status(day: dt.date, exchanges: tuple[str, ...] = tuple(calendars.EXCHANGE_CALENDAR_CODES)) -> dict[str, bool]:
    """Which listing exchanges hold a session on ``day``."""
    return {exchange: calendars.is_session(exchange, day) for exchange in exchanges}


def closed_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in the window on which every listing exchange is closed."""
    return [day for day in calendars.weekdays(start, end) if not any(market_status(day).values())]
