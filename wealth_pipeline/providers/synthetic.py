"""The embedded default data source: a deterministic synthetic market (every row flagged synthetic).

Universe (issue 21): real listings, synthetic prices. The first ``universe_size`` of
``reference_order()`` (the demo holdings, the TSX names, then the S&P 500 constituents that
``pytickersymbols`` ships, by security_id; see ``reference_data``), with their real names, ISINs,
CUSIPs, MICs and sectors; past those 508, generated ``SYN0001``... names. ``lifecycle=True`` (the
default; ``WEALTH_SYNTHETIC_LIFECYCLE=0`` turns it off in the pipeline) plants, inside the demo's
2023-2024 range, an IPO (2023-06-01), three delistings (2024-03-15, 2024-08-16 and a TSX one on
2024-10-01), a ticker change (2023-10-02, former symbol + ``OLD``) and S&P 500 joins/leaves
(``index_membership``) on the first S&P names after the TSX ones (the TSX delisting is the last
TSX name); none of them touches the demo holdings. ``lifecycle_events()`` lists those inside the universe.

Model (all returns simple and daily; the "grid" is every weekday from ``epoch``):

* Factors, on NYSE sessions only: ``market`` (excess return, mean 3 bp, vol 1%), ``size`` (vol 0.5%),
  ``value`` (mean 1 bp, vol 0.5%), ``momentum`` (mean 2 bp, vol 0.6%), all i.i.d. normal, and the
  risk-free rate ``rf`` = r / 252 where the annual rate r = 0.1% + 5.5% * sigmoid(W) follows a slow
  random walk W (starting near 4%). On a weekday when NYSE is closed the factors and rf are zero.
* Securities: true daily ``alpha`` ~ N(0, 0.5 bp), ``beta_market`` ~ U(0.6, 1.4), ``beta_size``,
  ``beta_value``, ``beta_momentum`` ~ U(-0.5, 0.5), ``idio_vol`` ~ U(1%, 2.5%) (see ``true_loadings``).
  On each session s of its listing exchange, security i earns the total return
  ``R = rf_s + alpha_i + sum_k beta_ik * f_ks + idio_vol_i * (e_is + signal_strength * zbar_is)`` with
  e ~ N(0, 1). A TSX listing on a session when NYSE is closed (e.g. July 4) therefore earns only
  ``alpha + idiosyncratic``: factor returns and rf are taken as zero that day (no Canadian draw). A
  security has no bar and earns nothing on weekdays its exchange is closed.
* Planted signal (``signal_strength`` > 0; zero by default): let ``m_it`` be security i's trailing
  20-session total return at its session t (adjusted close at t / adjusted close 20 of its sessions
  earlier - 1; undefined for the first 20 sessions after epoch), and ``z_it`` the cross-sectional
  z-score of m over the securities with a session on t and a defined m (population std; 0 when
  undefined, fewer than 2 names, or zero dispersion). ``zbar_is`` is the mean of z_i over i's 5
  sessions before s (missing ones count as 0). So each z_it adds ``signal_strength * idio_vol_i *
  z_it / 5`` to each of the next 5 idiosyncratic returns: the 5-session forward return after t
  carries about ``signal_strength * idio_vol_i * z_it`` (plus the overlapping neighbours' z, which
  are strongly correlated with z_it). Measured mean daily rank IC of the trailing 20-session total
  return against the next 5 sessions' total return (200 names, 2022-2023, seeds 7 and 11): about
  0.09 at signal_strength 0.05, 0.19 at 0.1, 0.34 at 0.2, and within +-0.01 of zero at 0.
* Raw prices: ``close_s = (close_prev - D_s) * (1 + R_s) / ratio_s`` where D is a cash dividend on
  its ex_date and ratio a split on its ex_date, so the raw close drops by the dividend and divides by
  the split ratio, and the CRSP-style adjusted close (``core.adjustments``) grows exactly by 1 + R.
  Dividends are ``q * close_prev`` (quarterly yield q, not rounded to cents, so that identity is
  exact); prices are not rounded either. ``open = close / (1 + R) * exp(0.3 * idio_vol * g)`` (the
  ex-price gapped), high/low extend max/min(open, close) by half-normal moves, volume is a dollar
  volume divided by the close (so a split multiplies volume). Starting raw closes sit on a virtual
  session before epoch.
* Corporate actions: each generated name gets one seeded candidate date per year; with probability
  0.3 it splits there (ratio 2, 3 or 4) provided the raw price stays at or above 10, and if its raw
  price is below 1 there it gets a 1-for-10 reverse split (ratio 0.1) instead. AAPL splits 4:1 on the
  first session on or after 2020-08-31 and GOOGL 4:1 on or after 2023-07-17 (the demo's split inside
  2023-2024). About half the generated names, and AAPL, MSFT and TD.TO, pay quarterly dividends on a
  fixed day of every third month. No action falls on a security's first session after epoch; a split
  and a dividend never share an ex_date (the dividend is dropped).
* Benchmark ``SYNTH500`` (NYSE sessions): return = rf + market + N(0, 5 bp) tracking noise, level
  1000 on the virtual session before epoch.
* FX: one direction only, USD/CAD (base USD, quote CAD, CAD per USD) on every weekday, a mean-
  reverting log random walk around 1.35 with 0.4% daily vol; consumers invert it for CAD/USD.

Determinism: every random draw comes from ``numpy.random.default_rng([seed, stream, year])`` over all
weekdays of a calendar year, and paths are accumulated from ``epoch``, so a window requested alone or
inside a larger window (or a later horizon) yields identical rows. Windows before ``epoch`` are empty;
windows past the exchange calendars' horizon raise.

``dirty=True`` injects, in every calendar year, one of each fault at a seeded (symbol, session) of
four different generated names (the four named demo listings stay clean unless the universe has
fewer than four generated names; a fault that would land on a corporate action, on or before a
security's first listed session or from its delisting on is skipped) and
lists them in ``injected_faults``: ``tick_100x`` (that bar's close, only, times 100),
``duplicate_row`` (the bar emitted twice), ``missing_bar`` (the bar dropped), ``unrecorded_split``
(from that session on the symbol's prices halve and volume doubles, with no corporate action).
Corporate actions, total returns and the other datasets stay clean.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

import numpy as np
import polars as pl

from wealth_pipeline.core import calendars, identifiers
from wealth_pipeline.providers import reference_data
from wealth_pipeline.providers.base import (
    BARS_SCHEMA,
    BENCHMARK_RETURNS_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    FACTOR_RETURNS_SCHEMA,
    FACTORS,
    FX_RATES_SCHEMA,
    RISK_FREE_FACTOR,
    SYMBOL_MASTER_SCHEMA,
    conform,
    empty_frame,
)

BENCHMARK = "SYNTH500"
FX_BASE, FX_QUOTE = "USD", "CAD"
MAX_UNIVERSE = 10_000
MIN_UNIVERSE = 4
SIGNAL_LOOKBACK = 20  # sessions in the trailing-return feature
SIGNAL_HORIZON = 5  # sessions over which each z-score feeds the idiosyncratic returns

LOADINGS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "alpha": pl.Float64(),
    "beta_market": pl.Float64(),
    "beta_size": pl.Float64(),
    "beta_value": pl.Float64(),
    "beta_momentum": pl.Float64(),
    "idio_vol": pl.Float64(),
}
TOTAL_RETURNS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "session_date": pl.Date(),
    "return": pl.Float64(),
}
FAULTS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "session_date": pl.Date(),
    "fault": pl.Utf8(),
    "detail": pl.Utf8(),
}
FAULT_KINDS: tuple[str, ...] = ("tick_100x", "duplicate_row", "missing_bar", "unrecorded_split")

_EXCHANGES: tuple[str, ...] = ("NYSE", "NASDAQ", "TSX")
_CURRENCY = {"NYSE": "USD", "NASDAQ": "USD", "TSX": "CAD"}
# Lifecycle events the market plants inside the demo range (``wealth-pipeline demo``'s fixed
# 2023-01-02..2024-12-31, not relative to today), by universe position (see ``reference_order``;
# never the demo holdings 0-3): an IPO, three delistings (two S&P 500 names, the second one on NYSE,
# and one TSX listing) and a ticker change. The renamed security pays no dividend and never splits,
# so its per-symbol factors stay 1 and its two symbols' bars are one continuous series under its
# security_id. An event on or before ``epoch`` is not planted.
_IPO = (9, dt.date(2023, 6, 1))
_DELISTINGS: tuple[tuple[int, dt.date], ...] = (
    (10, dt.date(2024, 3, 15)),  # GEHC (NASDAQ)
    (14, dt.date(2024, 8, 16)),  # YUM (NYSE)
    (8, dt.date(2024, 10, 1)),  # BNS.TO (TSX)
)
_TICKER_CHANGE = (11, dt.date(2023, 10, 2))
FORMER_SYMBOL_SUFFIX = "OLD"  # the renamed security traded as its symbol + this before the change
# Index membership events of the S&P 500 constituents (position, joins, leaves); every other
# constituent is a member from epoch on. TSX and generated listings are in no index.
INDEX = reference_data.INDEX
_MEMBERSHIP_EVENTS: tuple[tuple[int, dt.date | None, dt.date | None], ...] = (
    (9, dt.date(2023, 12, 18), None),  # the IPO joins the index half a year after listing
    (10, None, dt.date(2024, 3, 15)),  # the delisted names leave the index with their listing
    (14, None, dt.date(2024, 8, 16)),
    (12, dt.date(2024, 3, 18), None),  # listed throughout, joins the index
    (13, None, dt.date(2023, 12, 18)),  # listed throughout, leaves the index
)
_OPEN_END = np.datetime64("9999-12-31", "D")
LIFECYCLE_EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "event": pl.Utf8(),
    "security_id": pl.Utf8(),
    "symbol": pl.Utf8(),
    "former_symbol": pl.Utf8(),
    "event_date": pl.Date(),
}
INDEX_MEMBERSHIP_SCHEMA: dict[str, pl.DataType] = {
    "index_name": pl.Utf8(),
    "security_id": pl.Utf8(),
    "valid_from": pl.Date(),
    "valid_to": pl.Date(),
}

_SECTORS = reference_data.GICS_SECTORS  # the generated names draw from the real GICS sectors
# symbol, name, exchange, sector, start close, beta_market, idio_vol, dividend (annual yield, first month, day)
_NAMED: tuple[tuple[str, str, str, str, float, float, float, tuple[float, int, int] | None], ...] = (
    ("AAPL", "Apple Inc. (synthetic)", "NASDAQ", "Information Technology", 110.0, 1.2, 0.014, (0.006, 2, 9)),
    (
        "MSFT",
        "Microsoft Corp. (synthetic)",
        "NASDAQ",
        "Information Technology",
        46.0,
        1.1,
        0.012,
        (0.009, 2, 15),
    ),
    (
        "GOOGL",
        "Alphabet Inc. Class A (synthetic)",
        "NASDAQ",
        "Communication Services",
        530.0,
        1.15,
        0.015,
        None,
    ),
    ("TD.TO", "Toronto-Dominion Bank (synthetic)", "TSX", "Financials", 55.0, 0.8, 0.010, (0.04, 1, 8)),
)
# The seeded demo portfolio buys these at these prices on these sessions; each one's raw price path
# is rescaled to close there (a change of price level only: returns, splits and dividend yields are
# unchanged), so the demo's purchases do not book a spurious gain or loss against the market.
_PRICE_ANCHORS: dict[str, tuple[dt.date, float]] = {
    "AAPL": (dt.date(2024, 1, 16), 150.0),
    "MSFT": (dt.date(2024, 2, 1), 400.0),
    "GOOGL": (dt.date(2024, 3, 11), 150.0),
    "TD.TO": (dt.date(2024, 1, 22), 80.0),
}
_FORCED_SPLITS: tuple[tuple[str, dt.date, float], ...] = (
    ("AAPL", dt.date(2020, 8, 31), 4.0),
    ("GOOGL", dt.date(2023, 7, 17), 4.0),
)

_FACTOR_MEAN = np.array([0.0003, 0.0, 0.0001, 0.0002])
_FACTOR_VOL = np.array([0.010, 0.005, 0.005, 0.006])
_BENCH_TRACKING_VOL = 0.0005
_RF_FLOOR, _RF_SPAN, _RF_STEP = 0.001, 0.055, 0.02
_FX_MEAN, _FX_VOL, _FX_REVERSION = 1.35, 0.004, 0.006
_SPLIT_PROBABILITY = 0.3
_SPLIT_MIN_PRICE = 10.0  # a forward split must leave the raw price at or above this
_REVERSE_SPLIT_BELOW = 1.0  # a candidate date with a lower raw price gets a 1-for-10 reverse split

# Random streams: each (seed, stream, year) has its own generator.
_S_UNIVERSE, _S_FACTORS, _S_RF, _S_FX, _S_BENCH, _S_RETURNS, _S_OHLC, _S_SPLITS, _S_FAULTS = range(1, 10)


def _year_weekdays(year: int) -> np.ndarray:
    days = np.arange(
        np.datetime64(f"{year}-01-01"), np.datetime64(f"{year + 1}-01-01"), dtype="datetime64[D]"
    )
    return days[np.is_busday(days)]


def _as_date(value: object, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"{name} must be a datetime.date, got {type(value).__name__}: {value!r}")


def _np_date(day: dt.date) -> np.datetime64:
    return np.datetime64(day.isoformat(), "D")


def _calendar_bounds() -> tuple[dt.date, dt.date]:
    """First and last dates every listing exchange's calendar covers."""
    # calendars has no public accessor for the loaded range yet; its cached calendar is the source.
    firsts, lasts = [], []
    for exchange in _EXCHANGES:
        calendar = calendars._calendar(exchange)
        firsts.append(calendar.first_session.date())
        lasts.append(calendar.last_session.date())
    return max(firsts), min(lasts)


def reference_order() -> pl.DataFrame:
    """The real listings in universe order, with their ``security_id``.

    The rule behind ``WEALTH_SYNTHETIC_UNIVERSE=N``: the demo portfolio's holdings (AAPL, MSFT,
    GOOGL, TD.TO) first, then the other TSX listings (so a small universe still has Canadian
    holidays), then the other S&P 500 constituents by ascending ``security_id``, a hash of the ISIN:
    stable, and spread across the alphabet and sectors. Past the 508 real listings come generated
    ``SYN0001``... names.
    """
    listings = reference_data.listings().with_columns(
        pl.struct("isin", "mic", "symbol")
        .map_elements(
            lambda row: identifiers.security_id(
                identifiers.origin_key(row["isin"], row["mic"], row["symbol"])
            ),
            return_dtype=pl.Utf8,
        )
        .alias("security_id")
    )
    named = [named[0] for named in _NAMED]
    rank = {symbol: k for k, symbol in enumerate(named)}
    tsx_rank = pl.when(pl.col("exchange") == "TSX").then(len(named)).otherwise(len(named) + 1)
    return (
        listings.with_columns(
            pl.col("symbol")
            .replace_strict(rank, default=None, return_dtype=pl.Int64)
            .fill_null(tsx_rank)
            .alias("_rank")
        )
        .sort("_rank", "security_id")
        .drop("_rank", "security_id")
    )


@dataclass(frozen=True)
class _Universe:
    symbols: np.ndarray  # str, internal order
    names: list[str]
    exchange_index: np.ndarray  # index into _EXCHANGES
    sectors: list[str]
    alpha: np.ndarray
    betas: np.ndarray  # (N, 4) in FACTORS order
    idio_vol: np.ndarray
    start_close: np.ndarray
    dollar_volume: np.ndarray
    pays_dividend: np.ndarray
    dividend_yield: np.ndarray
    dividend_month: np.ndarray  # first ex month 1..3, then every 3 months
    dividend_day: np.ndarray
    random_splits: np.ndarray  # bool: generated names only
    order: np.ndarray  # internal indices in symbol order
    currencies: np.ndarray  # str, listing currency
    reference: pl.DataFrame  # identifiers of each security (row k = security k; null beyond the real ones)
    listed_from: np.ndarray  # datetime64[D]: first date the security is listed (epoch unless an IPO)
    listed_to: np.ndarray  # datetime64[D]: first date it is no longer listed (_OPEN_END unless delisted)
    renamed: tuple[int, str, np.datetime64] | None  # (security, former symbol, change date)

    @property
    def size(self) -> int:
        return len(self.symbols)


@dataclass
class _Path:
    """Everything generated from epoch to ``horizon`` (grid rows are weekdays)."""

    horizon: dt.date
    dates: np.ndarray  # datetime64[D] (T,)
    years: np.ndarray  # int (T,)
    exchange_open: np.ndarray  # bool (T, 3)
    factors: np.ndarray  # (T, 4), zero off NYSE sessions
    rf: np.ndarray  # (T,), zero off NYSE sessions
    fx: np.ndarray  # (T,)
    bench_return: np.ndarray  # (T,), zero off NYSE sessions
    bench_level: np.ndarray  # (T,)
    returns: np.ndarray  # (T, N) total returns, zero where the security has no session
    close: np.ndarray  # (T, N) raw close, carried over non-sessions
    actions: pl.DataFrame  # _row, _sec, action_type, ratio, amount
    faults: list[tuple[int, int, str]]  # (row, security, kind)

    def open(self, exchange_index: np.ndarray) -> np.ndarray:
        return self.exchange_open[:, exchange_index]


class SyntheticMarket:
    """A deterministic synthetic market implementing ``MarketDataProvider`` (see module docstring)."""

    name = "synthetic"

    def __init__(
        self,
        seed: int = 7,
        universe_size: int = 50,
        epoch: dt.date = dt.date(2015, 1, 2),
        dirty: bool = False,
        signal_strength: float = 0.0,
        lifecycle: bool = True,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(universe_size, bool) or not isinstance(universe_size, int | np.integer):
            raise ValueError(f"universe_size must be an integer, got {universe_size!r}")
        if not MIN_UNIVERSE <= universe_size <= MAX_UNIVERSE:
            raise ValueError(
                f"universe_size must be between {MIN_UNIVERSE} and {MAX_UNIVERSE}, got {universe_size}"
            )
        epoch = _as_date(epoch, "epoch")
        first, last = _calendar_bounds()
        if not first <= epoch <= last:
            raise ValueError(f"epoch {epoch} is outside the exchange calendars' range {first}..{last}")
        strength = float(signal_strength)
        if not np.isfinite(strength) or strength < 0:
            raise ValueError(f"signal_strength must be a finite number >= 0, got {signal_strength!r}")
        self.seed = int(seed)
        self.universe_size = int(universe_size)
        self.epoch = epoch
        self.dirty = bool(dirty)
        self.lifecycle = bool(lifecycle)
        self.signal_strength = strength
        self._calendar_last = last
        self._universe = self._make_universe()
        self._path: _Path | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        """Pickle the parameters and universe only; the path cache and its lock are rebuilt on demand."""
        state = self.__dict__.copy()
        state["_path"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"SyntheticMarket(seed={self.seed}, universe_size={self.universe_size}, epoch={self.epoch!r}, "
            f"dirty={self.dirty}, signal_strength={self.signal_strength}, lifecycle={self.lifecycle})"
        )

    # ----------------------------------------------------------------- universe
    def _rng(self, stream: int, year: int = 0, sub: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, year, sub])

    def _make_universe(self) -> _Universe:
        n = self.universe_size
        real = reference_order()
        r = min(n, real.height)
        g = n - r  # generated names beyond the real listings

        def draw(sub: int) -> np.random.Generator:  # one stream per attribute: a smaller universe is a prefix
            return self._rng(_S_UNIVERSE, 0, sub)

        exch_u = draw(1).random(g)
        exchange_index = np.where(exch_u < 0.45, 0, np.where(exch_u < 0.80, 1, 2))
        sector_index = draw(2).integers(0, len(_SECTORS), g)
        chosen = real.head(r)
        generated = [f"SYN{j + 1:04d}{'.TO' if exchange_index[j] == 2 else ''}" for j in range(g)]
        symbols = chosen["symbol"].to_list() + generated
        names = chosen["name"].to_list() + [f"{symbol} Holdings (synthetic)" for symbol in generated]
        all_exchange = np.concatenate(
            [[_EXCHANGES.index(e) for e in chosen["exchange"].to_list()], exchange_index]
        ).astype(np.int64)
        sectors = chosen["sector"].to_list() + [_SECTORS[k] for k in sector_index]
        reference = pl.concat(
            [
                chosen,
                pl.DataFrame(
                    {
                        "symbol": generated,
                        "name": names[r:],
                        "exchange": [_EXCHANGES[k] for k in exchange_index],
                        "currency": [_CURRENCY[_EXCHANGES[k]] for k in exchange_index],
                        "sector": sectors[r:],
                        "mic": [reference_data.MIC[_EXCHANGES[k]] for k in exchange_index],
                        "security_type": ["STOCK"] * g,
                        "dividend_currency": [_CURRENCY[_EXCHANGES[k]] for k in exchange_index],
                        "in_sp500": [False] * g,
                    }
                ),
            ],
            how="diagonal_relaxed",
        ).select(list(reference_data.COLUMNS))
        listed_from = np.full(n, _np_date(self.epoch))
        listed_to = np.full(n, _OPEN_END)
        renamed = None
        if self.lifecycle:
            if _IPO[0] < n and _IPO[1] > self.epoch:
                listed_from[_IPO[0]] = _np_date(_IPO[1])
            for position, delisted in _DELISTINGS:
                if position < n and delisted > self.epoch:
                    listed_to[position] = _np_date(delisted)
            if _TICKER_CHANGE[0] < n and _TICKER_CHANGE[1] > self.epoch:
                k = _TICKER_CHANGE[0]
                renamed = (k, symbols[k] + FORMER_SYMBOL_SUFFIX, _np_date(_TICKER_CHANGE[1]))

        alpha = draw(3).normal(0.0, 0.00005, n)
        betas = np.column_stack(
            [draw(4).uniform(0.6, 1.4, n)] + [draw(5 + k).uniform(-0.5, 0.5, n) for k in range(3)]
        )
        idio = draw(8).uniform(0.010, 0.025, n)
        start = np.exp(draw(9).normal(np.log(40.0), 0.8, n)).clip(5.0, 400.0)
        dollar_volume = np.exp(draw(10).normal(np.log(2e7), 1.0, n))
        pays = draw(11).random(n) < 0.5
        dividend_yield = draw(12).uniform(0.01, 0.05, n)
        month = draw(13).integers(1, 4, n)
        day = draw(14).integers(1, 29, n)
        random_splits = np.ones(n, dtype=bool)
        for k, (_, _, _, _, start_close, beta, vol, dividend) in enumerate(_NAMED):
            start[k], betas[k, 0], idio[k], random_splits[k] = start_close, beta, vol, False
            pays[k] = dividend is not None
            if dividend is not None:
                dividend_yield[k], month[k], day[k] = dividend
        if renamed is not None:
            pays[renamed[0]] = random_splits[renamed[0]] = False
        symbol_array = np.array(symbols)
        return _Universe(
            symbols=symbol_array,
            names=names,
            exchange_index=all_exchange,
            sectors=sectors,
            alpha=alpha,
            betas=betas,
            idio_vol=idio,
            start_close=start,
            dollar_volume=dollar_volume,
            pays_dividend=pays,
            dividend_yield=dividend_yield,
            dividend_month=month,
            dividend_day=day,
            random_splits=random_splits,
            order=np.argsort(symbol_array, kind="stable"),
            currencies=np.array([_CURRENCY[_EXCHANGES[k]] for k in all_exchange]),
            reference=reference,
            listed_from=listed_from,
            listed_to=listed_to,
            renamed=renamed,
        )

    # --------------------------------------------------------------- generation
    def _year_block(
        self, stream: int, year: int, shape_tail: tuple[int, ...], dtype: type = np.float64
    ) -> np.ndarray:
        """Standard normal draws for every weekday of ``year`` (independent of any window)."""
        rows = len(_year_weekdays(year))
        return self._rng(stream, year).standard_normal((rows, *shape_tail), dtype=dtype)

    def _grid_slices(self, dates: np.ndarray) -> list[tuple[int, slice, slice]]:
        """(year, rows of the grid, rows of that year's full-weekday block) for each year in the grid."""
        years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
        out = []
        for year in np.unique(years):
            rows = np.flatnonzero(years == year)
            full = _year_weekdays(int(year))
            offset = int(np.searchsorted(full, dates[rows[0]]))
            out.append((int(year), slice(rows[0], rows[-1] + 1), slice(offset, offset + len(rows))))
        return out

    def _ensure(self, end: dt.date) -> _Path:
        # Always past the price anchors, so a window's prices never depend on how far it reaches.
        latest_anchor = max(day for day, _ in _PRICE_ANCHORS.values())
        horizon = min(dt.date(max(end, latest_anchor).year, 12, 31), self._calendar_last)
        with self._lock:
            if self._path is None or self._path.horizon < horizon:
                self._path = self._generate(horizon)
            return self._path

    def _generate(self, horizon: dt.date) -> _Path:
        u = self._universe
        all_days = np.arange(_np_date(self.epoch), _np_date(horizon) + 1, dtype="datetime64[D]")
        dates = all_days[np.is_busday(all_days)]
        t_count, n = len(dates), u.size
        years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
        exchange_open = np.zeros((t_count, len(_EXCHANGES)), dtype=bool)
        for k, exchange in enumerate(_EXCHANGES):
            session_days = np.array(calendars.sessions(exchange, self.epoch, horizon), dtype="datetime64[D]")
            exchange_open[:, k] = np.isin(dates, session_days)
        nyse = exchange_open[:, 0]
        slices = self._grid_slices(dates)

        factors = np.empty((t_count, len(FACTORS)))
        rf_steps = np.empty(t_count)
        fx_shocks = np.empty(t_count)
        tracking = np.empty(t_count)
        eps = np.empty((t_count, n))
        for year, rows, block in slices:
            factors[rows] = (
                self._year_block(_S_FACTORS, year, (len(FACTORS),))[block] * _FACTOR_VOL + _FACTOR_MEAN
            )
            rf_steps[rows] = self._year_block(_S_RF, year, ())[block] * _RF_STEP
            fx_shocks[rows] = self._year_block(_S_FX, year, ())[block] * _FX_VOL
            tracking[rows] = self._year_block(_S_BENCH, year, ())[block] * _BENCH_TRACKING_VOL
            eps[rows] = self._year_block(_S_RETURNS, year, (n,))[block]
        factors[~nyse] = 0.0
        w0 = np.log((0.04 - _RF_FLOOR) / (_RF_SPAN - (0.04 - _RF_FLOOR)))
        annual_rate = _RF_FLOOR + _RF_SPAN / (1.0 + np.exp(-(w0 + np.cumsum(rf_steps))))
        rf = np.where(nyse, annual_rate / 252.0, 0.0)

        log_fx = np.empty(t_count)
        level, mean = np.log(_FX_MEAN), np.log(_FX_MEAN)
        for t in range(t_count):  # scalar AR(1) recursion, a few thousand steps
            level = level + _FX_REVERSION * (mean - level) + fx_shocks[t]
            log_fx[t] = level
        bench_return = np.where(nyse, rf + factors[:, 0] + tracking, 0.0)
        bench_level = 1000.0 * np.cumprod(1.0 + bench_return)

        open_ = exchange_open[:, u.exchange_index]
        returns = eps
        returns *= u.idio_vol
        returns += rf[:, None] + u.alpha + factors @ u.betas.T
        if self.signal_strength > 0:
            self._plant_signal(returns, open_)
        returns[~open_] = 0.0
        if not np.all(returns > -1.0):
            raise RuntimeError("synthetic market produced a return <= -100%; choose another seed")

        close, actions = self._price_path(returns, dates, slices, exchange_open)
        faults = self._schedule_faults(dates, slices, exchange_open, actions) if self.dirty else []
        return _Path(
            horizon=horizon,
            dates=dates,
            years=years,
            exchange_open=exchange_open,
            factors=factors,
            rf=rf,
            fx=np.exp(log_fx),
            bench_return=bench_return,
            bench_level=bench_level,
            returns=returns,
            close=close,
            actions=actions,
            faults=faults,
        )

    def _plant_signal(self, returns: np.ndarray, open_: np.ndarray) -> None:
        """Add ``signal_strength * idio_vol * mean(last 5 z)`` to each session's return, in place."""
        t_count, n = returns.shape
        idio = self._universe.idio_vol
        log_index = np.zeros(n)
        history = np.zeros((n, SIGNAL_LOOKBACK + 1))
        z_history = np.zeros((n, SIGNAL_HORIZON))
        count = np.zeros(n, dtype=np.int64)
        for t in range(t_count):
            live = np.flatnonzero(open_[t])
            if live.size == 0:
                continue
            r = returns[t, live] + self.signal_strength * idio[live] * z_history[live].mean(axis=1)
            returns[t, live] = r
            log_index[live] += np.log1p(r)
            c = count[live]
            history[live, c % (SIGNAL_LOOKBACK + 1)] = log_index[live]
            count[live] = c + 1
            z = np.zeros(live.size)
            ready = c >= SIGNAL_LOOKBACK
            if np.count_nonzero(ready) >= 2:
                names, past = live[ready], (c[ready] - SIGNAL_LOOKBACK) % (SIGNAL_LOOKBACK + 1)
                trailing = np.expm1(log_index[names] - history[names, past])
                spread = trailing.std()
                if spread > 0:
                    z[ready] = (trailing - trailing.mean()) / spread
            z_history[live, c % SIGNAL_HORIZON] = z

    @staticmethod
    def _next_sessions(exchange_open: np.ndarray) -> np.ndarray:
        """(T, 3): for each grid row and exchange, the first session row at or after it (T if none)."""
        t_count = exchange_open.shape[0]
        candidate = np.where(exchange_open, np.arange(t_count)[:, None], t_count)
        return np.minimum.accumulate(candidate[::-1], axis=0)[::-1]

    def _price_path(
        self,
        returns: np.ndarray,
        dates: np.ndarray,
        slices: list[tuple[int, slice, slice]],
        exchange_open: np.ndarray,
    ) -> tuple[np.ndarray, pl.DataFrame]:
        """Raw closes and the corporate actions that shape them.

        Random split candidates are decided year by year on the raw price just before them: a
        candidate forward split happens only if it leaves the price at or above 10, and a candidate
        date whose price is below 1 gets a 1-for-10 reverse split (ratio 0.1) instead.
        """
        u = self._universe
        s = self._schedule_actions(dates, slices, exchange_open)
        growth = np.add(returns, 1.0)
        growth[s["div_row"], s["div_sec"]] *= 1.0 - s["div_q"]
        growth[s["split_row"], s["split_sec"]] /= s["split_ratio"]
        np.multiply.accumulate(growth, axis=0, out=growth)
        growth *= u.start_close  # raw closes without the candidate splits
        divisor = np.ones(u.size)
        keep = np.zeros(s["cand_row"].shape, dtype=bool)
        ratio = s["cand_ratio"].copy()
        for year in np.unique(s["cand_year"]):  # at most one candidate per security and year
            sel = np.flatnonzero(s["cand_year"] == year)
            secs = s["cand_sec"][sel]
            before = growth[s["cand_row"][sel] - 1, secs] / divisor[secs]
            reverse = before < _REVERSE_SPLIT_BELOW
            forward = s["cand_happens"][sel] & ~reverse & (before / ratio[sel] >= _SPLIT_MIN_PRICE)
            ratio[sel[reverse]] = 0.1
            keep[sel] = reverse | forward
            divisor[secs[keep[sel]]] *= ratio[sel][keep[sel]]
        split_row = np.concatenate([s["split_row"], s["cand_row"][keep]])
        split_sec = np.concatenate([s["split_sec"], s["cand_sec"][keep]])
        split_ratio = np.concatenate([s["split_ratio"], ratio[keep]])
        collide = np.isin(s["div_row"] * u.size + s["div_sec"], split_row * u.size + split_sec)
        div_row, div_sec, div_q = (s[key][~collide] for key in ("div_row", "div_sec", "div_q"))

        np.add(returns, 1.0, out=growth)
        growth[div_row, div_sec] *= 1.0 - div_q
        growth[split_row, split_sec] /= split_ratio
        np.multiply.accumulate(growth, axis=0, out=growth)
        growth *= u.start_close
        close = growth
        for symbol, (day, price) in _PRICE_ANCHORS.items():
            row = int(np.searchsorted(dates, np.datetime64(day)))
            if row < len(dates) and dates[row] == np.datetime64(day):
                (col,) = np.flatnonzero(u.symbols == symbol)
                close[:, col] *= price / close[row, col]
        actions = pl.concat(
            [
                pl.DataFrame(
                    {
                        "_row": split_row,
                        "_sec": split_sec,
                        "action_type": ["split"] * len(split_row),
                        "ratio": split_ratio,
                        "amount": np.full(len(split_row), np.nan),
                    }
                ),
                pl.DataFrame(
                    {
                        "_row": div_row,
                        "_sec": div_sec,
                        "action_type": ["dividend"] * len(div_row),
                        "ratio": np.full(len(div_row), np.nan),
                        "amount": div_q * close[div_row - 1, div_sec],  # rows >= 1: never a first session
                    }
                ),
            ]
        )
        actions = actions.with_columns(
            pl.col("_row").cast(pl.Int64),
            pl.col("_sec").cast(pl.Int64),
            pl.col("ratio").fill_nan(None),
            pl.col("amount").fill_nan(None),
        ).sort("_row", "_sec", "action_type")
        return close, actions

    def _schedule_actions(
        self, dates: np.ndarray, slices: list[tuple[int, slice, slice]], exchange_open: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Where splits and dividends may fall (never on a security's first session after epoch)."""
        u = self._universe
        t_count, n = len(dates), u.size
        next_session = self._next_sessions(exchange_open)
        years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
        sec_all = np.arange(n)
        first_row = next_session[0, u.exchange_index]

        def land(row: np.ndarray, sec: np.ndarray, year: int) -> np.ndarray:
            """Session row of ``sec`` at or after grid ``row`` in ``year`` (not its first), else -1."""
            out = np.full(row.shape, -1, dtype=np.int64)
            inside = np.flatnonzero((row >= 0) & (row < t_count))
            landed = next_session[row[inside], u.exchange_index[sec[inside]]]
            ok = landed < t_count
            ok[ok] = (years[landed[ok]] == year) & (landed[ok] > first_row[sec[inside][ok]])
            out[inside[ok]] = landed[ok]
            return out

        parts: dict[str, list[np.ndarray]] = {
            key: []
            for key in (
                "cand_row",
                "cand_sec",
                "cand_ratio",
                "cand_happens",
                "cand_year",
                "div_row",
                "div_sec",
            )
        }
        payers = np.flatnonzero(u.pays_dividend)
        for year, rows, block in slices:
            full = _year_weekdays(year)
            rng = self._rng(_S_SPLITS, year)
            happens = rng.random(n) < _SPLIT_PROBABILITY
            position = np.floor(rng.random(n) * len(full)).astype(np.int64)
            ratio = np.array([2.0, 3.0, 4.0])[np.searchsorted([0.6, 0.75], rng.random(n), side="right")]
            grid_row = position - block.start + rows.start
            grid_row[position < block.start] = -1  # before epoch
            landed = land(grid_row, sec_all, year)
            keep = u.random_splits & (landed >= 0)
            parts["cand_row"].append(landed[keep])
            parts["cand_sec"].append(sec_all[keep])
            parts["cand_ratio"].append(ratio[keep])
            parts["cand_happens"].append(happens[keep])
            parts["cand_year"].append(np.full(int(keep.sum()), year))
            for quarter in range(4):
                months = np.datetime64(f"{year}-01", "M") + (u.dividend_month[payers] - 1 + 3 * quarter)
                targets = months.astype("datetime64[D]") + (u.dividend_day[payers] - 1)
                landed = land(np.searchsorted(dates, targets).astype(np.int64), payers, year)
                parts["div_row"].append(landed[landed >= 0])
                parts["div_sec"].append(payers[landed >= 0])
        out = {
            key: np.concatenate(value) if value else np.array([], dtype=np.int64)
            for key, value in parts.items()
        }
        out["cand_happens"] = out["cand_happens"].astype(bool)
        out["div_q"] = u.dividend_yield[out["div_sec"]] / 4.0

        symbol_index = {symbol: k for k, symbol in enumerate(u.symbols)}
        forced = [
            (landed[0], symbol_index[symbol], ratio_value)
            for symbol, day, ratio_value in _FORCED_SPLITS
            if (
                landed := land(
                    np.array([np.searchsorted(dates, np.datetime64(day))]),
                    np.array([symbol_index[symbol]]),
                    day.year,
                )
            )[0]
            >= 0
        ]
        out["split_row"] = np.array([f[0] for f in forced], dtype=np.int64)
        out["split_sec"] = np.array([f[1] for f in forced], dtype=np.int64)
        out["split_ratio"] = np.array([f[2] for f in forced], dtype=np.float64)
        return out

    def _schedule_faults(
        self,
        dates: np.ndarray,
        slices: list[tuple[int, slice, slice]],
        exchange_open: np.ndarray,
        actions: pl.DataFrame,
    ) -> list[tuple[int, int, str]]:
        u = self._universe
        t_count = len(dates)
        next_session = self._next_sessions(exchange_open)
        years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
        taken = set(zip(actions["_row"].to_list(), actions["_sec"].to_list(), strict=True))
        # Generated names only (the demo holdings stay clean) unless there are too few of them.
        pool = np.flatnonzero(u.random_splits)
        if pool.size < len(FAULT_KINDS):
            pool = np.arange(u.size)
        faults = []
        for year, rows, block in slices:
            full = _year_weekdays(year)
            rng = self._rng(_S_FAULTS, year)
            secs = pool[rng.choice(pool.size, size=len(FAULT_KINDS), replace=False)]
            positions = rng.integers(0, len(full), size=len(FAULT_KINDS))
            for kind, sec, position in zip(FAULT_KINDS, secs, positions, strict=True):
                if position < block.start:
                    continue
                grid_row = position - block.start + rows.start
                if grid_row >= t_count:
                    continue
                landed = int(next_session[grid_row, u.exchange_index[sec]])
                # its first listed session (epoch's, or an IPO's): no fault there or before it
                listed_row = min(int(np.searchsorted(dates, u.listed_from[sec])), t_count - 1)
                first = int(next_session[listed_row, u.exchange_index[sec]])
                if (
                    landed >= t_count
                    or years[landed] != year
                    or landed <= first
                    or dates[landed] >= u.listed_to[sec]  # none from a delisting on: there is no bar
                    or (landed, int(sec)) in taken
                ):
                    continue
                faults.append((landed, int(sec), kind))
        return faults

    # ------------------------------------------------------------------ windows
    def _window(self, start: object, end: object) -> tuple[_Path, int, int] | None:
        """The cached path and grid rows [lo, hi) of the window, or None when it predates epoch."""
        start, end = _as_date(start, "start"), _as_date(end, "end")
        if start > end:
            raise ValueError(f"window start {start} is after end {end}")
        if end > self._calendar_last:
            raise ValueError(
                f"window end {end} is past {self._calendar_last}, the last date the exchange calendars cover"
            )
        if end < self.epoch:
            return None
        path = self._ensure(end)
        lo = int(np.searchsorted(path.dates, _np_date(max(start, self.epoch))))
        hi = int(np.searchsorted(path.dates, _np_date(end), side="right"))
        return path, lo, hi

    # -------------------------------------------------------------- lifecycle
    def _listed(self, dates: np.ndarray, secs: np.ndarray) -> np.ndarray:
        """(len(dates), len(secs)): whether each security is listed on each date."""
        u = self._universe
        return (dates[:, None] >= u.listed_from[secs]) & (dates[:, None] < u.listed_to[secs])

    def _first_listed_rows(self, path: _Path) -> np.ndarray:
        """Grid row of each security's first session on or after its listing date."""
        u = self._universe
        next_session = self._next_sessions(path.exchange_open)
        rows = np.searchsorted(path.dates, u.listed_from).clip(0, len(path.dates) - 1)
        return next_session[rows, u.exchange_index]

    def _former_symbols(self, frame: pl.DataFrame, date_column: str) -> pl.DataFrame:
        """The renamed security's rows before its ticker change carry its former symbol."""
        if self._universe.renamed is None or frame.is_empty():
            return frame
        k, former, change = self._universe.renamed
        current = str(self._universe.symbols[k])
        before = (pl.col("symbol") == current) & (pl.col(date_column) < change.item())
        renamed = frame.with_columns(
            pl.when(before).then(pl.lit(former)).otherwise(pl.col("symbol")).alias("symbol")
        )
        return renamed.sort(date_column, "symbol", maintain_order=True)

    def _security_ids(self) -> list[str]:
        u = self._universe
        first_symbol = u.symbols.tolist()
        if u.renamed is not None:
            first_symbol[u.renamed[0]] = u.renamed[1]
        return [
            identifiers.security_id(identifiers.origin_key(isin, mic, symbol))
            for isin, mic, symbol in zip(
                u.reference["isin"].to_list(), u.reference["mic"].to_list(), first_symbol, strict=True
            )
        ]

    # ------------------------------------------------------------- provider API
    def symbol_master(self) -> pl.DataFrame:
        """One row per symbol a security used, in symbol order; every row flagged ``is_synthetic``.

        Names and identifiers of the first 508 securities are real (``reference_data``); their
        prices, corporate actions and lifecycle events are synthetic. ``valid_from`` is epoch, or
        the IPO date; ``valid_to`` the delisting or the ticker change (the former symbol's row).
        """
        u = self._universe
        ref = u.reference
        epoch = self.epoch
        valid_to = [None if d == _OPEN_END else d.item() for d in u.listed_to]
        frame = pl.DataFrame(
            {
                "symbol": u.symbols.tolist(),
                "name": u.names,
                "exchange": [_EXCHANGES[k] for k in u.exchange_index],
                "currency": u.currencies.tolist(),
                "asset_class": ["equity"] * u.size,
                "sector": u.sectors,
                "is_synthetic": [True] * u.size,
                "security_id": self._security_ids(),
                "isin": ref["isin"],
                "cusip": ref["cusip"],
                "figi": pl.Series([None] * u.size, dtype=pl.Utf8),
                "mic": ref["mic"],
                "country": ref["country"],
                "security_type": ref["security_type"],
                "industry": ref["industry"],
                "dividend_currency": ref["dividend_currency"],
                "valid_from": pl.Series([max(d.item(), epoch) for d in u.listed_from], dtype=pl.Date),
                "valid_to": pl.Series(valid_to, dtype=pl.Date),
            }
        )
        if u.renamed is not None:
            k, former, change = u.renamed
            old = frame.slice(k, 1).with_columns(
                pl.lit(former).alias("symbol"), pl.lit(change.item()).alias("valid_to")
            )
            frame = pl.concat([frame, old]).with_columns(
                pl.when(pl.col("symbol") == str(u.symbols[k]))
                .then(pl.lit(change.item()))
                .otherwise(pl.col("valid_from"))
                .alias("valid_from")
            )
        return conform(frame.sort("symbol"), SYMBOL_MASTER_SCHEMA)

    def index_membership(self) -> pl.DataFrame:
        """S&P 500 membership intervals [valid_from, valid_to) of the real constituents in the universe."""
        u = self._universe
        ids = self._security_ids()
        members = np.flatnonzero(u.reference["in_sp500"].fill_null(False).to_numpy())
        frm = {int(k): max(u.listed_from[k].item(), self.epoch) for k in members}
        to: dict[int, dt.date | None] = {int(k): None for k in members}
        if self.lifecycle:
            for position, joins, leaves in _MEMBERSHIP_EVENTS:
                if position in frm:  # an event on or before epoch is not planted
                    if joins is not None and joins > frm[position]:
                        frm[position] = joins
                    if leaves is not None and leaves > frm[position]:
                        to[position] = leaves
        frame = pl.DataFrame(
            {
                "index_name": [INDEX] * len(members),
                "security_id": [ids[k] for k in members],
                "valid_from": pl.Series([frm[int(k)] for k in members], dtype=pl.Date),
                "valid_to": pl.Series([to[int(k)] for k in members], dtype=pl.Date),
            }
        )
        return conform(frame.sort("security_id"), INDEX_MEMBERSHIP_SCHEMA)

    def lifecycle_events(self) -> pl.DataFrame:
        """The planted lifecycle events (``event``, ``security_id``, ``symbol``, ``former_symbol``, ``event_date``).

        ``event`` is ``ipo`` (first listed date), ``delisting`` (first date no longer listed),
        ``ticker_change`` (first date of the new ``symbol``; the former one is ``former_symbol``),
        ``index_join`` or ``index_leave`` (``ref.index_membership``'s ``valid_from``/``valid_to``).
        Read from the universe and membership the market serves, so it is empty with
        ``lifecycle=False`` and holds only the events of securities inside ``universe_size``.
        """
        u = self._universe
        ids = self._security_ids()
        rows: list[tuple[str, str, str, str | None, dt.date]] = []
        for k in range(u.size):
            symbol = str(u.symbols[k])
            if u.listed_from[k] > _np_date(self.epoch):
                first = u.renamed[1] if u.renamed is not None and u.renamed[0] == k else symbol
                rows.append(("ipo", ids[k], first, None, u.listed_from[k].item()))
            if u.listed_to[k] != _OPEN_END:
                rows.append(("delisting", ids[k], symbol, None, u.listed_to[k].item()))
        if u.renamed is not None:
            k, former, change = u.renamed
            rows.append(("ticker_change", ids[k], str(u.symbols[k]), former, change.item()))
        symbol_of = dict(zip(ids, u.symbols.tolist(), strict=True))
        for member in self.index_membership().iter_rows(named=True):
            if member["valid_from"] > self.epoch:
                rows.append(("index_join", member["security_id"], symbol_of[member["security_id"]], None,
                             member["valid_from"]))
            if member["valid_to"] is not None:
                rows.append(("index_leave", member["security_id"], symbol_of[member["security_id"]], None,
                             member["valid_to"]))
        frame = pl.DataFrame(rows, schema=list(LIFECYCLE_EVENTS_SCHEMA.items()), orient="row")
        return frame.sort("event_date", "event", "symbol")

    def true_loadings(self) -> pl.DataFrame:
        """The true daily alpha, factor betas and idiosyncratic vol of every security (symbol order)."""
        u = self._universe
        frame = pl.DataFrame(
            {
                "symbol": u.symbols.tolist(),
                "alpha": u.alpha,
                **{f"beta_{factor}": u.betas[:, k] for k, factor in enumerate(FACTORS)},
                "idio_vol": u.idio_vol,
            }
        )
        return conform(frame.sort("symbol"), LOADINGS_SCHEMA)

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Raw daily OHLCV on each listing's exchange sessions, ordered by session_date then symbol."""
        window = self._window(start, end)
        if window is None or window[1] >= window[2]:
            return empty_frame(BARS_SCHEMA)
        path, lo, hi = window
        u = self._universe
        order = u.order
        open_all = path.open(u.exchange_index[order])
        faults = [(row, int(np.flatnonzero(order == sec)[0]), kind) for row, sec, kind in path.faults]
        symbols = pl.Series(u.symbols[order].tolist(), dtype=pl.Utf8)
        currencies = pl.Series(u.currencies[order].tolist(), dtype=pl.Utf8)
        idio = u.idio_vol[order].astype(np.float32)
        frames = []
        for year, rows, block in self._grid_slices(path.dates):
            a, b = max(rows.start, lo), min(rows.stop, hi)
            if a >= b:
                continue
            draws = self._year_block(_S_OHLC, year, (u.size, 4), dtype=np.float32)
            noise = draws[block.start + (a - rows.start) : block.start + (b - rows.start)][:, order]
            close = path.close[a:b][:, order]
            ret = path.returns[a:b][:, order]
            opened = close / (1.0 + ret) * np.exp(0.3 * idio * noise[:, :, 0])
            high = np.maximum(opened, close) * np.exp(0.5 * idio * np.abs(noise[:, :, 1]))
            low = np.minimum(opened, close) * np.exp(-0.5 * idio * np.abs(noise[:, :, 2]))
            volume = np.rint(
                u.dollar_volume[order] * np.exp(0.3 * noise[:, :, 3]) * (1.0 + 10.0 * np.abs(ret)) / close
            )
            volume = np.maximum(volume, 1.0)
            mask = open_all[a:b] & self._listed(path.dates[a:b], order)
            copies = np.ones(mask.shape, dtype=np.int64)
            for row, col, kind in faults:
                if kind == "unrecorded_split" and row < b:
                    affected = slice(max(row - a, 0), b - a)
                    for array in (opened, high, low, close):
                        array[affected, col] *= 0.5
                    volume[affected, col] *= 2.0
                if not a <= row < b:
                    continue
                if kind == "tick_100x":
                    close[row - a, col] *= 100.0
                elif kind == "missing_bar":
                    mask[row - a, col] = False
                elif kind == "duplicate_row":
                    copies[row - a, col] = 2
            t_idx, s_idx = np.nonzero(mask)
            repeat = copies[t_idx, s_idx]
            if np.any(repeat > 1):
                t_idx, s_idx = np.repeat(t_idx, repeat), np.repeat(s_idx, repeat)
            frames.append(
                pl.DataFrame(
                    {
                        "symbol": symbols.gather(s_idx),
                        "session_date": pl.Series(path.dates[a:b][t_idx], dtype=pl.Date),
                        "open": opened[t_idx, s_idx].astype(np.float64),
                        "high": high[t_idx, s_idx].astype(np.float64),
                        "low": low[t_idx, s_idx].astype(np.float64),
                        "close": close[t_idx, s_idx].astype(np.float64),
                        "volume": volume[t_idx, s_idx].astype(np.int64),
                        "currency": currencies.gather(s_idx),
                    }
                )
            )
        if not frames:
            return empty_frame(BARS_SCHEMA)
        return conform(self._former_symbols(pl.concat(frames), "session_date"), BARS_SCHEMA)

    def total_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The generated (clean) total simple return of every bar: the oracle for adjusted returns."""
        window = self._window(start, end)
        if window is None or window[1] >= window[2]:
            return empty_frame(TOTAL_RETURNS_SCHEMA)
        path, lo, hi = window
        u = self._universe
        mask = path.open(u.exchange_index[u.order])[lo:hi] & self._listed(path.dates[lo:hi], u.order)
        t_idx, s_idx = np.nonzero(mask)
        frame = pl.DataFrame(
            {
                "symbol": pl.Series(u.symbols[u.order].tolist(), dtype=pl.Utf8).gather(s_idx),
                "session_date": pl.Series(path.dates[lo:hi][t_idx], dtype=pl.Date),
                "return": path.returns[lo:hi][:, u.order][t_idx, s_idx],
            }
        )
        return conform(self._former_symbols(frame, "session_date"), TOTAL_RETURNS_SCHEMA)

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Splits (ratio) and cash dividends (amount in the listing currency) by ex_date, then symbol."""
        window = self._window(start, end)
        if window is None:
            return empty_frame(CORPORATE_ACTIONS_SCHEMA)
        path, lo, hi = window
        u = self._universe
        actions = path.actions.filter((pl.col("_row") >= lo) & (pl.col("_row") < hi))
        if self.lifecycle:  # none on or before an IPO's first session, none from a delisting on
            first_listed = self._first_listed_rows(path)
            rows, sec_arr = actions["_row"].to_numpy(), actions["_sec"].to_numpy()
            ipo = u.listed_from[sec_arr] > _np_date(self.epoch)
            keep = (path.dates[rows] < u.listed_to[sec_arr]) & (~ipo | (rows > first_listed[sec_arr]))
            actions = actions.filter(pl.Series(keep))
        secs = actions["_sec"].to_numpy()
        frame = actions.with_columns(
            pl.Series("symbol", u.symbols[secs].tolist(), dtype=pl.Utf8),
            pl.Series("ex_date", path.dates[actions["_row"].to_numpy()], dtype=pl.Date),
            pl.Series("currency", u.currencies[secs].tolist(), dtype=pl.Utf8),
            # one distribution per day and kind here: splits are "split", dividends "regular" (issue 14)
            pl.when(pl.col("action_type") == "split").then(pl.lit("split")).otherwise(pl.lit("regular"))
            .alias("distribution_type"),
        )
        frame = self._former_symbols(frame, "ex_date").sort("ex_date", "symbol", "action_type")
        return conform(frame, CORPORATE_ACTIONS_SCHEMA)

    def fx_rates(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """USD/CAD (CAD per USD) on every weekday; CAD/USD is its reciprocal, left to consumers."""
        window = self._window(start, end)
        if window is None:
            return empty_frame(FX_RATES_SCHEMA)
        path, lo, hi = window
        frame = pl.DataFrame(
            {
                "session_date": pl.Series(path.dates[lo:hi], dtype=pl.Date),
                "base_currency": FX_BASE,
                "quote_currency": FX_QUOTE,
                "rate": path.fx[lo:hi],
            }
        )
        return conform(frame, FX_RATES_SCHEMA)

    def _nyse_rows(self, start: object, end: object) -> tuple[_Path, np.ndarray] | None:
        window = self._window(start, end)
        if window is None:
            return None
        path, lo, hi = window
        return path, lo + np.flatnonzero(path.exchange_open[lo:hi, 0])

    def factor_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Long format on NYSE sessions: market (excess), size, value, momentum, then rf per date."""
        found = self._nyse_rows(start, end)
        if found is None:
            return empty_frame(FACTOR_RETURNS_SCHEMA)
        path, rows = found
        names = [*FACTORS, RISK_FREE_FACTOR]
        values = np.column_stack([path.factors[rows], path.rf[rows]])
        frame = pl.DataFrame(
            {
                "session_date": pl.Series(np.repeat(path.dates[rows], len(names)), dtype=pl.Date),
                "factor": names * len(rows),
                "value": values.reshape(-1),
            }
        )
        return conform(frame, FACTOR_RETURNS_SCHEMA)

    def benchmark_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """SYNTH500 level and simple return on NYSE sessions (rf + market + tracking noise)."""
        found = self._nyse_rows(start, end)
        if found is None:
            return empty_frame(BENCHMARK_RETURNS_SCHEMA)
        path, rows = found
        frame = pl.DataFrame(
            {
                "session_date": pl.Series(path.dates[rows], dtype=pl.Date),
                "benchmark": BENCHMARK,
                "level": path.bench_level[rows],
                "return": path.bench_return[rows],
            }
        )
        return conform(frame, BENCHMARK_RETURNS_SCHEMA)

    # ----------------------------------------------------------------- metadata
    def injected_faults(self, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
        """Faults injected into ``bars`` when ``dirty`` (empty when clean), by session_date then symbol.

        The window defaults to epoch through the last date the exchange calendars cover.
        """
        if not self.dirty:
            return empty_frame(FAULTS_SCHEMA)
        window = self._window(start or self.epoch, end or self._calendar_last)
        if window is None:
            return empty_frame(FAULTS_SCHEMA)
        path, lo, hi = window
        u = self._universe
        details = {
            "tick_100x": "close multiplied by 100 on this bar only (open/high/low untouched)",
            "duplicate_row": "this bar is emitted twice with identical values",
            "missing_bar": "this session's bar is absent although the exchange traded",
            "unrecorded_split": "prices halve and volume doubles from this session on; no corporate action recorded",
        }
        records = [
            {
                "symbol": str(u.symbols[sec]),
                "session_date": path.dates[row].item(),
                "fault": kind,
                "detail": details[kind],
            }
            for row, sec, kind in path.faults
            if lo <= row < hi
        ]
        if not records:
            return empty_frame(FAULTS_SCHEMA)
        return conform(pl.DataFrame(records).sort("session_date", "symbol"), FAULTS_SCHEMA)

    def describe(self) -> dict[str, object]:
        """Metadata for run logs and asset descriptions."""
        u = self._universe
        exchanges = [_EXCHANGES[k] for k in u.exchange_index]
        return {
            "provider": self.name,
            "is_synthetic": True,
            "seed": self.seed,
            "universe_size": u.size,
            "epoch": self.epoch.isoformat(),
            "dirty": self.dirty,
            "signal_strength": self.signal_strength,
            "signal": (
                f"idiosyncratic returns carry signal_strength * idio_vol * mean of the last {SIGNAL_HORIZON} "
                f"cross-sectional z-scores of the trailing {SIGNAL_LOOKBACK}-session total return"
            ),
            "exchanges": {exchange: exchanges.count(exchange) for exchange in _EXCHANGES},
            "reference_data": (
                f"names and identifiers of the first {min(u.size, reference_data.listings().height)} securities "
                f"from pytickersymbols {reference_data.version()} ({reference_data.INDEX} constituents) and typed-in "
                "TSX listings; prices, corporate actions and lifecycle events are synthetic"
            ),
            "lifecycle": self.lifecycle,
            "named_symbols": [named[0] for named in _NAMED],
            "factors": [*FACTORS, RISK_FREE_FACTOR],
            "factor_daily_vol": dict(zip(FACTORS, _FACTOR_VOL.tolist(), strict=True)),
            "benchmark": BENCHMARK,
            "fx_pairs": [f"{FX_BASE}/{FX_QUOTE}"],
            "fault_kinds": list(FAULT_KINDS) if self.dirty else [],
            "calendar_horizon": self._calendar_last.isoformat(),
        }
