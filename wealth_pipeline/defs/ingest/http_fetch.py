"""Resumable, incremental daily bars from an HTTP vendor: the raw tier is the cache.

Before asking the vendor anything, :func:`fetch_bars` works out, per symbol, which of its
exchange's sessions in the window are already known:

- rows in the current raw versions of the window's partitions (``raw/bars/date=...``), and
- validated per-symbol answers kept by earlier attempts at the same window under
  ``raw/http_fetches/bars/window=<start>_<end>/<symbol>/<covered_start>_<covered_end>-<sha>.parquet``
  (immutable, content-addressed; the key says which sessions the answer speaks for, so a session
  the vendor has no bar for is not asked again).

Only symbols with a missing session are fetched, each for the smallest window that covers its
missing sessions (Alpha Vantage: ``compact`` when they are recent, so a daily run costs one small
request per symbol). Each answer is written to the cache *as soon as it is validated*, so a step
retry or a re-run after a failure fetches only what is still missing. The assembled window
(existing rows, cached answers, new answers; the newest answer wins for a (symbol, session)) is
what ``raw_bars`` writes as partition versions.

A symbol that still fails after its retries is reported with its error; what happens next is the
``raw_bars`` policy (``fail`` the step, or ``complete_others``: write the others and fail the
blocking completeness check). An open circuit or the fetch deadline stops the loop at once.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from dataclasses import dataclass, field

import polars as pl

from wealth_pipeline.core import calendars
from wealth_pipeline.core.schemas import SOURCE_COLUMN, with_source
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.store import ObjectStore, frame_to_parquet, parquet_to_frame
from wealth_pipeline.providers.base import BARS_SCHEMA, conform
from wealth_pipeline.providers.http import CircuitOpenError, ProviderDeadlineError, ProviderError
from wealth_pipeline.providers.http_adapters import AlphaVantageDailyBars, ProviderConfigError

CACHE_PREFIX = "raw/http_fetches/bars"
# The window's rows as raw_bars stores them: each with its provider (issue 22). Rows already in raw keep
# theirs; cached and new answers are the adapter's.
SOURCED_BARS_SCHEMA = with_source(BARS_SCHEMA)
INCOMPLETE_POLICIES = ("fail", "complete_others")


@dataclass
class FetchReport:
    """What one :func:`fetch_bars` call did; ``frame`` is the whole window as now known."""

    frame: pl.DataFrame
    symbols: int
    fetched: list[str] = field(default_factory=list)
    from_raw: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: list[str] = field(default_factory=list)
    stop_error: ProviderError | None = None
    requests: int = 0
    outputsizes: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failed and not self.not_attempted and self.stop_error is None

    @property
    def circuit_open(self) -> bool:
        return isinstance(self.stop_error, CircuitOpenError)

    def metadata(self) -> dict[str, object]:
        """A JSON-able summary for the materialization's metadata."""
        return {
            "symbols": self.symbols,
            "fetched": len(self.fetched),
            "already_in_raw": len(self.from_raw),
            "failed": dict(list(self.failed.items())[:20]),
            "failed_count": len(self.failed),
            "not_attempted": len(self.not_attempted),
            "requests": self.requests,
            "outputsize": self.outputsizes,
            "stopped_by": str(self.stop_error) if self.stop_error else None,
        }


def window_prefix(start: dt.date, end: dt.date) -> str:
    """Where validated answers for the window ``start..end`` are kept."""
    return f"{CACHE_PREFIX}/window={start.isoformat()}_{end.isoformat()}/"


def _cache_key(prefix: str, symbol: str, start: dt.date, end: dt.date | None, frame: pl.DataFrame) -> str:
    digest = raw.frame_hash(frame)[:16]
    covered = f"{start.isoformat()}_{end.isoformat() if end else 'none'}"
    return f"{prefix}{urllib.parse.quote(symbol, safe='')}/{covered}-{digest}.parquet"


def _parse_cache_key(prefix: str, key: str) -> tuple[str, dt.date, dt.date | None] | None:
    rest = key[len(prefix):]
    try:
        symbol_part, name = rest.split("/", 1)
        covered = name.rsplit("-", 1)[0]
        first, last = covered.split("_", 1)
        return (urllib.parse.unquote(symbol_part), dt.date.fromisoformat(first),
                None if last == "none" else dt.date.fromisoformat(last))
    except ValueError:
        return None


def expected_sessions(adapter: AlphaVantageDailyBars, symbol: str, start: dt.date, end: dt.date) -> list[dt.date]:
    """The sessions of ``symbol``'s exchange in the window (weekdays when its exchange is unknown)."""
    exchange = adapter.exchanges.get(symbol)
    if exchange in calendars.EXCHANGE_CALENDAR_CODES:
        return calendars.sessions(exchange, start, end)
    return calendars.weekdays(start, end)


def fetch_bars(
    adapter: AlphaVantageDailyBars,
    store: ObjectStore,
    start: dt.date,
    end: dt.date,
    *,
    deadline_seconds: float | None = None,
) -> FetchReport:
    """Fetch what the raw tier lacks for ``adapter.symbols`` in ``start..end`` (module docstring)."""
    deadline = time.monotonic() + deadline_seconds if deadline_seconds else None
    prefix = window_prefix(start, end)
    existing = raw.read_current(store, "bars", start, end, SOURCED_BARS_SCHEMA)
    known: dict[str, set[dt.date]] = {}
    for symbol, day in existing.select("symbol", "session_date").iter_rows():
        known.setdefault(symbol, set()).add(day)

    cached_frames: list[pl.DataFrame] = []
    cached_keys = sorted(store.list_keys(prefix))
    parsed = [(key, _parse_cache_key(prefix, key)) for key in cached_keys]
    parsed = [(key, info) for key, info in parsed if info is not None]
    for (_, info), data in zip(parsed, store.get_many([key for key, _ in parsed]), strict=True):
        symbol, first, last = info
        frame = conform(parquet_to_frame(data), BARS_SCHEMA)
        cached_frames.append(_from(adapter, frame))
        covered = known.setdefault(symbol, set())
        covered.update(frame["session_date"].to_list())
        if last is not None:
            covered.update(calendars.weekdays(first, last))

    requests_before = adapter.client.vendor.requests
    report = FetchReport(frame=existing, symbols=len(adapter.symbols))
    new_frames: list[pl.DataFrame] = []
    for index, symbol in enumerate(adapter.symbols):
        expected = expected_sessions(adapter, symbol, start, end)
        missing = [day for day in expected if day not in known.get(symbol, set())]
        if not missing:
            report.from_raw.append(symbol)
            continue
        try:
            got = adapter.fetch(symbol, missing[0], missing[-1], deadline=deadline)
        except ProviderConfigError:
            raise
        except (CircuitOpenError, ProviderDeadlineError) as exc:
            report.stop_error = exc
            report.not_attempted = list(adapter.symbols[index:])
            break
        except ProviderError as exc:
            report.failed[symbol] = str(exc)
            continue
        report.outputsizes[got.outputsize] = report.outputsizes.get(got.outputsize, 0) + 1
        store.put_bytes_if_absent(_cache_key(prefix, symbol, got.covered_start, got.covered_end, got.frame),
                                  frame_to_parquet(got.frame))
        new_frames.append(_from(adapter, got.frame))
        covered = known.setdefault(symbol, set())
        covered.update(got.frame["session_date"].to_list())
        if got.covered_end is not None:
            covered.update(calendars.weekdays(got.covered_start, got.covered_end))
        still = [day for day in missing if day not in covered]
        report.fetched.append(symbol)
        if still:
            report.failed[symbol] = (f"{adapter.name}: the vendor's answer for symbol {symbol} covers sessions up to "
                                     f"{got.covered_end or 'none'}; missing {len(still)} session(s) from {still[0]}")
    report.requests = adapter.client.vendor.requests - requests_before
    report.frame = _assemble([existing, *cached_frames, *new_frames], start, end)
    return report


def _from(adapter: AlphaVantageDailyBars, frame: pl.DataFrame) -> pl.DataFrame:
    """An answer of ``adapter`` with its name as every row's source."""
    return conform(frame, BARS_SCHEMA).with_columns(pl.lit(adapter.name, dtype=pl.Utf8).alias(SOURCE_COLUMN))


def _assemble(frames: list[pl.DataFrame], start: dt.date, end: dt.date) -> pl.DataFrame:
    """Rows of the window (with their source), the last frame winning for each (symbol, session_date)."""
    rows = [conform(frame, SOURCED_BARS_SCHEMA) for frame in frames if frame.height]
    if not rows:
        return pl.DataFrame(schema=SOURCED_BARS_SCHEMA)
    combined = pl.concat(rows).filter(pl.col("session_date").is_between(start, end))
    return combined.unique(["symbol", "session_date"], keep="last", maintain_order=True).sort("symbol", "session_date")
