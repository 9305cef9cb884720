"""Market data over HTTP from public vendor APIs: Alpha Vantage daily bars and FRED FX / risk-free.

Formats (parsed exactly as the vendors document them):

- **Daily bars**: Alpha Vantage ``TIME_SERIES_DAILY``
  (``GET /query?function=TIME_SERIES_DAILY&symbol=IBM&outputsize=full&apikey=...``; ``compact`` is
  the latest 100 sessions, ``full`` the whole history: :meth:`AlphaVantageDailyBars.fetch` asks for
  ``compact`` whenever the sessions it needs are that recent, so a daily run costs one small request
  per symbol). The body maps
  ``"Time Series (Daily)"`` -> ``{"2024-01-02": {"1. open": "187.15", "2. high": ..., "3. low": ...,
  "4. close": ..., "5. volume": "82488700"}}``; prices are raw (unadjusted). A 200 body with
  ``"Note"`` or ``"Information"`` (and no time series) is Alpha Vantage's throttling notice and is
  retried like a 429; ``"Error Message"`` means the vendor rejected the call (usually an unknown
  symbol) and raises :class:`ProviderVendorError` (not retried). Any other body that is not a
  well-formed series (truncated, HTML, missing fields) is retried like a 5xx, because the parsing
  runs inside the client's retry loop; ``"3. Last Refreshed"`` says how far the answer covers.
- **FX and risk-free**: FRED ``series/observations``
  (``GET /fred/series/observations?series_id=DEXCAUS&api_key=...&file_type=json&observation_start=
  2024-01-01&observation_end=2024-01-31``), ``"observations": [{"date": "2024-01-02", "value":
  "1.3316"}, ...]`` with values as strings and ``"."`` for a day without a value; such days are
  dropped (never zero), and the pipeline carries the last rate forward where it needs one.
  ``DEXCAUS`` (Canadian dollars to one U.S. dollar) becomes USD/CAD in ``FX_RATES_SCHEMA``
  (base USD, quote CAD, rate = value). ``DTB3`` (3-month Treasury bill, secondary market, percent
  per year, discount basis) becomes the daily risk-free rate ``rf`` of ``FACTOR_RETURNS_SCHEMA`` by
  geometric de-annualization over trading sessions: ``rf = (1 + DTB3 / 100) ** (1 / 252) - 1``
  (5.25 -> 0.000203). The discount-basis quote is used as the annual yield, as is usual for daily
  factor work (the bond-equivalent conversion changes rf by about 2%).

Configuration comes from the environment (see :data:`HTTP_ENVIRONMENT`); API keys are never in code
and never appear in errors or logs (see :mod:`wealth_pipeline.providers.http`).

:class:`HttpMarketData` composes the two adapters into a full ``MarketDataProvider``. Datasets the
vendors above do not serve are delegated to an optional ``supplement`` provider (e.g. vendor files
in the landing zone) or else returned empty, for the reasons given on each method.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from wealth_pipeline.core.universe import complete_master
from wealth_pipeline.providers.base import (
    BARS_SCHEMA,
    BENCHMARK_RETURNS_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    FACTOR_RETURNS_SCHEMA,
    FX_RATES_SCHEMA,
    RISK_FREE_FACTOR,
    MarketDataProvider,
    conform,
    empty_frame,
)
from wealth_pipeline.providers.http import (
    CircuitOpenError,
    HttpClient,
    ProviderDeadlineError,
    ProviderError,
    ProviderPayloadError,
)

ALPHA_VANTAGE_URL = "https://www.alphavantage.co"
FRED_URL = "https://api.stlouisfed.org"

HTTP_ENVIRONMENT: dict[str, str] = {
    "WEALTH_HTTP_BARS_URL": f"Base URL of the Alpha Vantage (TIME_SERIES_DAILY) API for daily bars. Default: {ALPHA_VANTAGE_URL}",
    "WEALTH_HTTP_BARS_API_KEY": "Alpha Vantage API key (required with WEALTH_PROVIDER=http). Never logged.",
    "WEALTH_HTTP_BARS_RATE_LIMIT": "Maximum requests per second to the bars API. Default: 1",
    "WEALTH_HTTP_FX_URL": f"Base URL of the FRED API for FX (DEXCAUS) and the risk-free rate (DTB3). Default: {FRED_URL}",
    "WEALTH_HTTP_FX_API_KEY": "FRED API key (required with WEALTH_PROVIDER=http). Never logged.",
    "WEALTH_HTTP_FX_RATE_LIMIT": "Maximum requests per second to the FRED API. Default: 2",
}

AV_SERIES_KEY = "Time Series (Daily)"
AV_FIELDS: dict[str, str] = {
    "open": "1. open",
    "high": "2. high",
    "low": "3. low",
    "close": "4. close",
    "volume": "5. volume",
}
DEFAULT_FX_SERIES: dict[str, tuple[str, str]] = {"DEXCAUS": ("USD", "CAD")}
DEFAULT_RISK_FREE_SERIES = "DTB3"
TRADING_SESSIONS_PER_YEAR = 252


class ProviderVendorError(ProviderError):
    """The vendor answered with an explicit error for a request (e.g. an unknown symbol).

    Not retried, and not a breaker failure: the vendor is up and said no.
    """

    retryable = False
    vendor_failure = False

    def __init__(self, provider: str, subject: str, message: str) -> None:
        self.provider = provider
        self.subject = subject
        self.vendor_message = message
        super().__init__(f"{provider}: vendor rejected the request for {subject}: {message}")


class ProviderConfigError(ProviderError, ValueError):
    """Missing or invalid configuration of an HTTP provider: never retried."""

    retryable = False
    vendor_failure = False


class ProviderIncompleteError(ProviderError):
    """Some symbols could not be fetched after their retries; ``failures`` maps symbol -> error."""

    retryable = True
    vendor_failure = False

    def __init__(self, provider: str, failures: Mapping[str, str], total: int) -> None:
        self.provider = provider
        self.failures = dict(failures)
        shown = "; ".join(f"{symbol}: {error}" for symbol, error in list(self.failures.items())[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(f"{provider}: {len(self.failures)} of {total} symbol(s) failed after their retries: "
                         f"{shown}{more}")


# -- shared parsing helpers -------------------------------------------------------------------------

def _parse_date(value: Any, provider: str, subject: str, field: str) -> dt.date:
    if not isinstance(value, str):
        raise ProviderPayloadError(provider, subject, field, f"expected a YYYY-MM-DD string, got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ProviderPayloadError(provider, subject, field, f"not a YYYY-MM-DD date: {value!r}") from None


def _parse_float(value: Any, provider: str, subject: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ProviderPayloadError(provider, subject, field, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ProviderPayloadError(provider, subject, field, f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ProviderPayloadError(provider, subject, field, f"not a finite number: {value!r}")
    return number


def _parse_int(value: Any, provider: str, subject: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ProviderPayloadError(provider, subject, field, f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    number = _parse_float(value, provider, subject, field)
    if not number.is_integer():
        raise ProviderPayloadError(provider, subject, field, f"not an integer: {value!r}")
    return int(number)


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else None


def _env_rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _env(env, name)
    if raw is None:
        return default
    try:
        rate = float(raw)
    except ValueError:
        raise ProviderConfigError(f"{name} must be a number of requests per second, got {raw!r}") from None
    if not rate > 0:
        raise ProviderConfigError(f"{name} must be positive, got {raw!r}")
    return rate


def _required_key(env: Mapping[str, str], name: str, what: str) -> str:
    key = _env(env, name)
    if key is None:
        raise ProviderConfigError(f"{what} needs an API key: set the environment variable {name}")
    return key


# -- Alpha Vantage daily bars -------------------------------------------------------------------------

def _av_soft_error(payload: Any) -> str | None:
    """Alpha Vantage throttles with a 200 body holding only a "Note" or "Information" message."""
    if isinstance(payload, dict) and AV_SERIES_KEY not in payload:
        for key in ("Note", "Information"):
            if key in payload:
                return f"{key}: {payload[key]}"
    return None


COMPACT_POINTS = 100  # Alpha Vantage's compact output: the latest 100 data points
COMPACT_MAX_WEEKDAYS = 95  # ask for compact only when the oldest needed day is this recent


@dataclass(frozen=True)
class BarsFetch:
    """What one symbol's fetch delivered: bars of the asked window and the window it covers.

    ``covered_end`` is the last day the vendor's answer speaks for (its "Last Refreshed" date,
    capped at the asked end): a session after it is not known yet, not missing. None when the
    answer covers nothing (an empty history).
    """

    symbol: str
    frame: pl.DataFrame
    covered_start: dt.date
    covered_end: dt.date | None
    requests: int
    outputsize: str


class AlphaVantageDailyBars:
    """Daily OHLCV bars from Alpha Vantage ``TIME_SERIES_DAILY`` for the configured symbols.

    ``symbol_master`` (``SYMBOL_MASTER_SCHEMA``) gives each symbol's currency and exchange.
    ``symbols`` defaults to the master's real (``is_synthetic`` false), non-index securities.
    ``vendor_symbols`` maps a pipeline symbol to the vendor's ticker where they differ (e.g.
    ``{"TD.TO": "TD.TRT"}``). ``outputsize`` ``auto`` (default) asks for ``compact`` when the
    window starts within the last ``COMPACT_MAX_WEEKDAYS`` weekdays of ``today()`` and ``full``
    otherwise; ``full``/``compact`` force one. An unknown symbol raises
    :class:`ProviderVendorError` rather than silently going missing.
    """

    name = "alphavantage"

    def __init__(
        self,
        client: HttpClient,
        symbol_master: pl.DataFrame,
        symbols: Sequence[str] | None = None,
        *,
        vendor_symbols: Mapping[str, str] | None = None,
        outputsize: str = "auto",
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        if outputsize not in ("auto", "full", "compact"):
            raise ProviderConfigError(f"outputsize must be 'auto', 'full' or 'compact', got {outputsize!r}")
        for column in ("symbol", "currency"):
            if column not in symbol_master.columns:
                raise ProviderConfigError(f"{self.name}: symbol master lacks column {column!r}")
        self.client = client
        self.outputsize = outputsize
        self.today = today
        self.vendor_symbols = dict(vendor_symbols or {})
        self.currencies: dict[str, str] = dict(
            zip(symbol_master["symbol"].to_list(), symbol_master["currency"].to_list(), strict=True)
        )
        self.exchanges: dict[str, str] = (
            dict(zip(symbol_master["symbol"].to_list(), symbol_master["exchange"].to_list(), strict=True))
            if "exchange" in symbol_master.columns else {}
        )
        if symbols is None:
            master = symbol_master
            if "is_synthetic" in master.columns:
                master = master.filter(~pl.col("is_synthetic").fill_null(False))
            if "asset_class" in master.columns:
                master = master.filter(pl.col("asset_class").fill_null("") != "index")
            symbols = master["symbol"].to_list()
        unknown = [s for s in symbols if s not in self.currencies]
        if unknown:
            raise ProviderConfigError(f"{self.name}: symbols {unknown} are not in the symbol master")
        missing_currency = [s for s in symbols if not self.currencies[s]]
        if missing_currency:
            raise ProviderConfigError(f"{self.name}: symbols {missing_currency} have no currency in the symbol master")
        self.symbols: list[str] = list(dict.fromkeys(symbols))

    @classmethod
    def from_env(
        cls,
        symbol_master: pl.DataFrame,
        symbols: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        vendor_symbols: Mapping[str, str] | None = None,
        outputsize: str = "auto",
        **client_options: Any,
    ) -> AlphaVantageDailyBars:
        """Built from ``WEALTH_HTTP_BARS_URL``, ``WEALTH_HTTP_BARS_API_KEY``, ``WEALTH_HTTP_BARS_RATE_LIMIT``."""
        env = os.environ if env is None else env
        client_options.setdefault("rate_limit_per_second", _env_rate(env, "WEALTH_HTTP_BARS_RATE_LIMIT", 1.0))
        client = HttpClient(
            _env(env, "WEALTH_HTTP_BARS_URL") or ALPHA_VANTAGE_URL,
            api_key=_required_key(env, "WEALTH_HTTP_BARS_API_KEY", "the Alpha Vantage bars provider"),
            api_key_param="apikey",
            name=cls.name,
            **client_options,
        )
        return cls(client, symbol_master, symbols, vendor_symbols=vendor_symbols, outputsize=outputsize)

    def _subject(self, symbol: str) -> tuple[str, str]:
        if symbol not in self.currencies:
            raise ProviderConfigError(f"{self.name}: symbol {symbol!r} is not in the symbol master")
        ticker = self.vendor_symbols.get(symbol, symbol)
        return ticker, f"symbol {symbol}" + (f" (vendor ticker {ticker})" if ticker != symbol else "")

    def _request(self, symbol: str, outputsize: str, deadline: float | None) -> tuple[pl.DataFrame, dt.date | None]:
        ticker, subject = self._subject(symbol)
        return self.client.get_json(
            "/query",
            {"function": "TIME_SERIES_DAILY", "symbol": ticker, "outputsize": outputsize, "datatype": "json"},
            subject=subject,
            soft_error=_av_soft_error,
            parse=lambda payload: self._parse(payload, symbol, ticker, subject),
            deadline=deadline,
        )

    def history(self, symbol: str, *, deadline: float | None = None) -> pl.DataFrame:
        """Every daily bar the vendor has for ``symbol`` (``full``): BARS_SCHEMA, sorted by session_date."""
        outputsize = "compact" if self.outputsize == "compact" else "full"
        frame, _ = self._request(symbol, outputsize, deadline)
        return frame

    def choose_outputsize(self, start: dt.date) -> str:
        """``compact`` when every session from ``start`` to today is among the latest 100, else ``full``."""
        if self.outputsize != "auto":
            return self.outputsize
        today = self.today()
        weekdays = int(np.busday_count(start, today + dt.timedelta(days=1))) if start <= today else 0
        return "compact" if weekdays <= COMPACT_MAX_WEEKDAYS else "full"

    def fetch(self, symbol: str, start: dt.date, end: dt.date, *, deadline: float | None = None) -> BarsFetch:
        """``symbol``'s bars with ``start <= session_date <= end`` in the fewest bytes the vendor allows.

        A compact answer that does not reach back to ``start`` (exactly 100 points, all later) is
        followed by a full one, so the result always covers the window.
        """
        outputsize = self.choose_outputsize(start)
        frame, refreshed = self._request(symbol, outputsize, deadline)
        requests = 1
        if outputsize == "compact" and frame.height >= COMPACT_POINTS and frame["session_date"].min() > start:
            outputsize = "full"
            frame, refreshed = self._request(symbol, outputsize, deadline)
            requests += 1
        last = refreshed or (frame["session_date"].max() if frame.height else None)
        covered_end = min(end, last) if last is not None else None
        if covered_end is not None and covered_end < start:
            covered_end = None
        window = frame.filter(pl.col("session_date").is_between(start, end))
        return BarsFetch(symbol, window, start, covered_end, requests, outputsize)

    def _parse(self, payload: Any, symbol: str, ticker: str, subject: str) -> tuple[pl.DataFrame, dt.date | None]:
        provider = self.name
        if not isinstance(payload, dict):
            raise ProviderPayloadError(provider, subject, "<root>", f"expected a JSON object, got {type(payload).__name__}")
        if "Error Message" in payload:
            raise ProviderVendorError(provider, subject, self.client.redact(str(payload["Error Message"])))
        if AV_SERIES_KEY not in payload:
            raise ProviderPayloadError(provider, subject, AV_SERIES_KEY,
                                       f"missing; top-level keys are {sorted(payload)[:10]}")
        meta = payload.get("Meta Data")
        answered = meta.get("2. Symbol") if isinstance(meta, dict) else None
        if isinstance(answered, str) and answered.upper() != ticker.upper():
            raise ProviderPayloadError(provider, subject, "Meta Data.2. Symbol",
                                       f"answer is for {answered!r}, not {ticker!r}")
        refreshed_raw = meta.get("3. Last Refreshed") if isinstance(meta, dict) else None
        refreshed = (_parse_date(refreshed_raw[:10], provider, subject, "Meta Data.3. Last Refreshed")
                     if isinstance(refreshed_raw, str) and refreshed_raw else None)
        series = payload[AV_SERIES_KEY]
        if not isinstance(series, dict):
            raise ProviderPayloadError(provider, subject, AV_SERIES_KEY,
                                       f"expected an object keyed by date, got {type(series).__name__}")
        columns: dict[str, list[Any]] = {name: [] for name in ("session_date", *AV_FIELDS)}
        for day, bar in series.items():
            where = f"{AV_SERIES_KEY}.{day}"
            columns["session_date"].append(_parse_date(day, provider, subject, where))
            if not isinstance(bar, dict):
                raise ProviderPayloadError(provider, subject, where, f"expected an object, got {bar!r}")
            for column, key in AV_FIELDS.items():
                if key not in bar:
                    raise ProviderPayloadError(provider, subject, f"{where}.{key}", "missing")
                parse = _parse_int if column == "volume" else _parse_float
                columns[column].append(parse(bar[key], provider, subject, f"{where}.{key}"))
        frame = pl.DataFrame(
            {"symbol": [symbol] * len(columns["session_date"]), **columns,
             "currency": [self.currencies[symbol]] * len(columns["session_date"])},
            schema=BARS_SCHEMA,
        )
        return conform(frame, BARS_SCHEMA).sort("session_date"), refreshed

    def bars(self, start: dt.date, end: dt.date, *, deadline: float | None = None) -> pl.DataFrame:
        """BARS_SCHEMA rows of the configured symbols with ``start <= session_date <= end``.

        Every symbol is tried (each with its own retries); symbols that still fail raise one
        :class:`ProviderIncompleteError` naming each with its error. An open circuit or the
        deadline stops the loop at once. (``raw_bars`` fetches through
        :mod:`wealth_pipeline.defs.ingest.http_fetch` instead, which keeps every symbol it got.)
        """
        frames, failures = [], {}
        for symbol in self.symbols:
            try:
                frames.append(self.fetch(symbol, start, end, deadline=deadline).frame)
            except (CircuitOpenError, ProviderDeadlineError, ProviderConfigError):
                raise
            except ProviderError as exc:
                failures[symbol] = str(exc)
        if failures:
            raise ProviderIncompleteError(self.name, failures, len(self.symbols))
        if not frames:
            return empty_frame(BARS_SCHEMA)
        return conform(pl.concat(frames), BARS_SCHEMA).sort("symbol", "session_date")


# -- FRED FX and risk-free ----------------------------------------------------------------------------

class FredRates:
    """FX rates and the daily risk-free rate from FRED ``series/observations``.

    ``fx_series`` maps a FRED series id to the (base, quote) pair its value quotes, as units of
    quote per unit of base: ``{"DEXCAUS": ("USD", "CAD")}`` by default; add e.g.
    ``"DEXUSEU": ("EUR", "USD")`` for more pairs. ``risk_free_series`` (``DTB3``, percent per year)
    is converted to a daily rate over ``periods_per_year`` sessions (module docstring). Observations
    are paged with ``limit``/``offset`` (at most ``max_pages`` pages per series).
    """

    name = "fred"

    def __init__(
        self,
        client: HttpClient,
        *,
        fx_series: Mapping[str, tuple[str, str]] | None = None,
        risk_free_series: str | None = DEFAULT_RISK_FREE_SERIES,
        periods_per_year: int = TRADING_SESSIONS_PER_YEAR,
        page_limit: int = 100_000,
        max_pages: int = 100,
    ) -> None:
        if periods_per_year <= 0:
            raise ProviderConfigError(f"periods_per_year must be positive, got {periods_per_year}")
        if not 1 <= page_limit <= 100_000:
            raise ProviderConfigError(f"page_limit must be within 1..100000 (FRED's maximum), got {page_limit}")
        self.client = client
        self.fx_series = dict(DEFAULT_FX_SERIES if fx_series is None else fx_series)
        for series_id, pair in self.fx_series.items():
            if len(pair) != 2 or not all(isinstance(c, str) and len(c) == 3 for c in pair):
                raise ProviderConfigError(f"{self.name}: series {series_id} needs a (base, quote) ISO pair, got {pair!r}")
        self.risk_free_series = risk_free_series
        self.periods_per_year = periods_per_year
        self.page_limit = page_limit
        self.max_pages = max_pages

    @classmethod
    def from_env(cls, *, env: Mapping[str, str] | None = None, **options: Any) -> FredRates:
        """Built from ``WEALTH_HTTP_FX_URL``, ``WEALTH_HTTP_FX_API_KEY``, ``WEALTH_HTTP_FX_RATE_LIMIT``.

        ``options`` go to the constructor (``fx_series``, ``risk_free_series``...) or, for the
        rest, to :class:`HttpClient`.
        """
        env = os.environ if env is None else env
        own = {k: options.pop(k) for k in ("fx_series", "risk_free_series", "periods_per_year",
                                           "page_limit", "max_pages") if k in options}
        options.setdefault("rate_limit_per_second", _env_rate(env, "WEALTH_HTTP_FX_RATE_LIMIT", 2.0))
        client = HttpClient(
            _env(env, "WEALTH_HTTP_FX_URL") or FRED_URL,
            api_key=_required_key(env, "WEALTH_HTTP_FX_API_KEY", "the FRED FX / risk-free provider"),
            api_key_param="api_key",
            name=cls.name,
            **options,
        )
        return cls(client, **own)

    def _parse_page(self, payload: Any, subject: str, offset: int) -> tuple[list[dt.date], list[float], int, int | None]:
        """One page's (dates, values, rows on the page, count); runs inside the client's retry loop."""
        if not isinstance(payload, dict):
            raise ProviderPayloadError(self.name, subject, "<root>",
                                       f"expected a JSON object, got {type(payload).__name__}")
        if "error_message" in payload:
            raise ProviderVendorError(self.name, subject, self.client.redact(str(payload["error_message"])))
        rows = payload.get("observations")
        if not isinstance(rows, list):
            raise ProviderPayloadError(self.name, subject, "observations",
                                       "missing" if rows is None else f"expected a list, got {type(rows).__name__}")
        dates: list[dt.date] = []
        values: list[float] = []
        for index, row in enumerate(rows, start=offset):
            where = f"observations[{index}]"
            if not isinstance(row, dict):
                raise ProviderPayloadError(self.name, subject, where, f"expected an object, got {row!r}")
            for key in ("date", "value"):
                if key not in row:
                    raise ProviderPayloadError(self.name, subject, f"{where}.{key}", "missing")
            day = _parse_date(row["date"], self.name, subject, f"{where}.date")
            if row["value"] == ".":  # FRED's marker for "no observation that day"
                continue
            values.append(_parse_float(row["value"], self.name, subject, f"{where}.value"))
            dates.append(day)
        count = payload.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ProviderPayloadError(self.name, subject, "count", f"expected a non-negative integer, got {count!r}")
        return dates, values, len(rows), count

    def observations(self, series_id: str, start: dt.date, end: dt.date, *,
                     deadline: float | None = None) -> pl.DataFrame:
        """``session_date`` (Date) and ``value`` (Float64) of ``series_id`` in the window; "." dropped.

        One request per page of ``page_limit`` observations, for exactly the window: a daily run
        asks for one day.
        """
        subject = f"series {series_id}"
        dates: list[dt.date] = []
        values: list[float] = []
        offset = 0
        for _page in range(self.max_pages):
            page_dates, page_values, rows, count = self.client.get_json(
                "/fred/series/observations",
                {
                    "series_id": series_id,
                    "file_type": "json",
                    "observation_start": start.isoformat(),
                    "observation_end": end.isoformat(),
                    "sort_order": "asc",
                    "limit": self.page_limit,
                    "offset": offset,
                },
                subject=subject,
                parse=lambda payload, at=offset: self._parse_page(payload, subject, at),
                deadline=deadline,
            )
            dates.extend(page_dates)
            values.extend(page_values)
            offset += rows
            if count is None or not rows or offset >= count:
                break
        else:
            raise ProviderPayloadError(self.name, subject, "count",
                                       f"more than {self.max_pages} pages of {self.page_limit} observations")
        frame = pl.DataFrame({"session_date": dates, "value": values},
                             schema={"session_date": pl.Date(), "value": pl.Float64()})
        frame = frame.filter(pl.col("session_date").is_between(start, end))
        duplicated = frame.filter(pl.col("session_date").is_duplicated())
        if duplicated.height:
            raise ProviderPayloadError(self.name, subject, "observations.date",
                                       f"duplicate dates {sorted(set(duplicated['session_date'].to_list()))[:5]}")
        return frame.sort("session_date")

    def fx_rates(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """FX_RATES_SCHEMA rows of every configured FX series in the window."""
        frames = []
        for series_id, (base, quote) in self.fx_series.items():
            obs = self.observations(series_id, start, end)
            frames.append(obs.select(
                "session_date",
                pl.lit(base).alias("base_currency"),
                pl.lit(quote).alias("quote_currency"),
                pl.col("value").alias("rate"),
            ))
        if not frames:
            return empty_frame(FX_RATES_SCHEMA)
        return conform(pl.concat(frames), FX_RATES_SCHEMA).sort("base_currency", "quote_currency", "session_date")

    def risk_free(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """FACTOR_RETURNS_SCHEMA rows of factor ``rf``: (1 + annual % / 100) ** (1 / periods) - 1."""
        if self.risk_free_series is None:
            return empty_frame(FACTOR_RETURNS_SCHEMA)
        obs = self.observations(self.risk_free_series, start, end)
        daily = ((1.0 + pl.col("value") / 100.0) ** (1.0 / self.periods_per_year)) - 1.0
        frame = obs.select("session_date", pl.lit(RISK_FREE_FACTOR).alias("factor"), daily.alias("value"))
        return conform(frame, FACTOR_RETURNS_SCHEMA)

    def factor_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Only the risk-free factor: FRED has no market/size/value/momentum factor returns."""
        return self.risk_free(start, end)


# -- composite provider -------------------------------------------------------------------------------

class HttpMarketData:
    """A complete ``MarketDataProvider`` from the HTTP adapters, for ``WEALTH_PROVIDER=http``.

    - ``symbol_master``: the frame passed in (the vendors above publish none the pipeline can use).
    - ``bars``: Alpha Vantage; ``fx_rates``: FRED.
    - ``factor_returns``: ``rf`` from FRED, plus the other factors (market, size, value, momentum)
      from ``supplement`` when given; FRED does not publish them.
    - ``corporate_actions``: from ``supplement``, else empty: ``TIME_SERIES_DAILY`` carries no split
      or dividend data (Alpha Vantage's adjusted series is a premium endpoint), so without a
      supplement adjusted prices equal raw prices.
    - ``benchmark_returns``: with ``benchmark_symbol`` (e.g. an index ETF such as SPY), the price
      return of that symbol's raw daily close from the bars vendor, named ``benchmark_name``
      (default: the symbol); else from ``supplement``; else empty.
    """

    name = "http"

    def __init__(
        self,
        bars_adapter: AlphaVantageDailyBars,
        fx_adapter: FredRates,
        symbol_master: pl.DataFrame,
        *,
        supplement: MarketDataProvider | None = None,
        benchmark_symbol: str | None = None,
        benchmark_name: str | None = None,
    ) -> None:
        self.bars_adapter = bars_adapter
        self.fx_adapter = fx_adapter
        self._symbol_master = complete_master(symbol_master)  # identity columns optional (issue 21)
        self.supplement = supplement
        if benchmark_symbol is not None and benchmark_symbol not in bars_adapter.currencies:
            raise ProviderConfigError(f"{self.name}: benchmark symbol {benchmark_symbol!r} is not in the symbol master")
        self.benchmark_symbol = benchmark_symbol
        self.benchmark_name = benchmark_name or benchmark_symbol

    @classmethod
    def from_env(
        cls,
        symbol_master: pl.DataFrame,
        symbols: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        vendor_symbols: Mapping[str, str] | None = None,
        supplement: MarketDataProvider | None = None,
        benchmark_symbol: str | None = None,
        benchmark_name: str | None = None,
        **client_options: Any,
    ) -> HttpMarketData:
        """Both adapters configured from the ``WEALTH_HTTP_*`` variables in :data:`HTTP_ENVIRONMENT`.

        ``client_options`` (deadlines, retries, breaker, ``state_dir``) go to both clients.
        """
        bars = AlphaVantageDailyBars.from_env(symbol_master, symbols, env=env, vendor_symbols=vendor_symbols,
                                              **client_options)
        fx = FredRates.from_env(env=env, **client_options)
        return cls(bars, fx, symbol_master, supplement=supplement,
                   benchmark_symbol=benchmark_symbol, benchmark_name=benchmark_name)

    def close(self) -> None:
        """Close both adapters' connection pools."""
        self.bars_adapter.client.close()
        self.fx_adapter.client.close()

    def symbol_master(self) -> pl.DataFrame:
        return self._symbol_master.clone()

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self.bars_adapter.bars(start, end)

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        if self.supplement is not None:
            return conform(self.supplement.corporate_actions(start, end), CORPORATE_ACTIONS_SCHEMA)
        return empty_frame(CORPORATE_ACTIONS_SCHEMA)

    def fx_rates(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self.fx_adapter.fx_rates(start, end)

    def factor_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        frames = [self.fx_adapter.risk_free(start, end)]
        if self.supplement is not None:
            other = conform(self.supplement.factor_returns(start, end), FACTOR_RETURNS_SCHEMA)
            frames.append(other.filter(pl.col("factor") != RISK_FREE_FACTOR))
        return conform(pl.concat(frames), FACTOR_RETURNS_SCHEMA).sort("factor", "session_date")

    def benchmark_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        if self.benchmark_symbol is not None:
            history = self.bars_adapter.history(self.benchmark_symbol).filter(pl.col("session_date") <= end)
            frame = history.select(
                "session_date",
                pl.lit(self.benchmark_name).alias("benchmark"),
                pl.col("close").alias("level"),
                (pl.col("close") / pl.col("close").shift(1) - 1.0).alias("return"),
            ).filter(pl.col("session_date") >= start)
            return conform(frame, BENCHMARK_RETURNS_SCHEMA)
        if self.supplement is not None:
            return conform(self.supplement.benchmark_returns(start, end), BENCHMARK_RETURNS_SCHEMA)
        return empty_frame(BENCHMARK_RETURNS_SCHEMA)
