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
