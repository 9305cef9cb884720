"""Technical indicators for every symbol at once, with the same values as TA-Lib.

``compute_indicators(bars)`` takes a long polars frame (one row per symbol and session, any order) and
returns one row per input row, sorted by ``(symbol, session_date)``, with the float64 columns listed in
``INDICATOR_COLUMNS``. Nothing loops over symbols or bars in Python: the rows are sorted on one
integer key, laid out as a symbol x position matrix (symbols of very different lengths go to separate
blocks to bound padding and memory), and every step is a numpy / scipy operation along all rows.

Definitions (TA-Lib defaults of the C library shipped with the ``ta-lib`` wheel, compatibility mode
"default", no unstable period):

- ``sma_20/50/200``: ``SMA(adj_close, n)``; ``ema_12/26``: ``EMA(adj_close, n)``, seeded with the simple
  average of the first ``n`` closes; ``rsi_14``: Wilder ``RSI(adj_close, 14)``;
  ``bb_upper_20/bb_middle_20/bb_lower_20``: ``BBANDS(adj_close, 20, 2, 2, matype=0)`` (population
  standard deviation); ``macd/macd_signal/macd_hist``: ``MACD(adj_close, 12, 26, 9)`` with TA-Lib's own
  seeding (both price EMAs seeded on bar 25 from the last 12 / 26 closes, signal seeded with the mean
  of the first 9 MACD values, first output on bar 33); ``atr_14``: Wilder ``ATR(high, low, close, 14)``;
  ``stoch_k/stoch_d``: slow %K and %D of ``STOCH(high, low, close, 14, 3, SMA, 3, SMA)``;
  ``obv``: ``OBV(adj_close, adj_volume)`` (starts at the first volume).
- Agreement with TA-Lib (C library 0.8.1 of the ``ta-lib`` 0.8.2 wheel): SMA, stochastic and OBV
  repeat TA-Lib's running sums in TA-Lib's order and are bit-identical (this matters where a value
  should be 0: TA-Lib's running sums leave residuals like 3e-14 that a relative test would otherwise
  trip on). The recursions (EMA, MACD, Wilder RSI/ATR) run through ``scipy.signal.lfilter`` along all
  symbols at once and differ from TA-Lib by a few ulps (<= ~3e-15 relative on EMA, RSI and ATR).
  TA-Lib itself is not bit-stable across machines here: its EMA/MACD/ATR/BBANDS kernels are dispatched
  at run time to FMA variants on CPUs that have FMA. MACD, its signal and its histogram cross zero,
  so they are compared with an absolute floor of 1e-12 x close besides the 1e-9 relative tolerance.
  The Bollinger deviation is computed block-locally (cancellation-free), ~1e-12 relative on the band.
- ``return_1d`` = ``adj_close[t] / adj_close[t-1] - 1``; ``log_return_1d`` = ``ln(adj_close[t] /
  adj_close[t-1])``, both versus the previous row of the same symbol.
- ``realized_vol_20/60`` = sample standard deviation (ddof=1) of the last 20 / 60 ``log_return_1d``
  values (the current one included) times ``sqrt(252)``: annualized, first defined on a symbol's row 20
  / 60.

Conventions:

- Warm-up: where TA-Lib returns NaN (too little history) the output is **null** (never NaN). A symbol
  shorter than an indicator's warm-up gets nulls for that indicator on every row.
- Gaps: a missing session of a symbol (suspension, missing vendor day) is not filled. Every indicator
  runs over the rows that exist for that symbol ("the last N observed sessions"), and ``return_1d``
  across a gap is the return since the previous observed bar.
- Missing prices: a row whose ``adj_high``, ``adj_low``, ``adj_close`` or ``adj_volume`` is null or NaN
  is treated as a missing session: the other rows are computed as if it did not exist, and the row
  itself is returned with every indicator null. ``adj_open`` is accepted and ignored (no indicator here
  uses it).
- Bad input raises ``ValueError`` naming the column and, where it applies, the symbol and session:
  missing columns, null symbol or session date, duplicate ``(symbol, session_date)``, infinite values,
  prices <= 0, negative volume.

History needed (``WARMUP_SESSIONS``): a partition computed from its own rows plus ``WARMUP_SESSIONS``
earlier sessions of each symbol matches the same rows computed inside a long backfill. The finite
windows need 199 earlier rows (SMA-200). The recursive ones (EMA, MACD, RSI, ATR) depend on all of
history; their dependence on what precedes the window decays geometrically and is never exactly zero,
so ``lookback_sessions(tolerance)`` returns the number of earlier rows after which the weight of the
window's seed on its last row is below ``tolerance`` (1e-12 by default, giving ``WARMUP_SESSIONS`` =
390). The residual error of a row is at most that weight times the seed's discrepancy (for EMA and MACD
at most the price range of the history, for ATR its largest true range, for RSI's averages the largest
close-to-close move), i.e. about 1e-12 relative to the price level. ``obv`` is the exception: like
TA-Lib's it is a running total from the first row it is given, so its *level* depends on where the
input starts and only its changes are history-independent; a partitioned job must chain it from the
previous partition (``obv_prev_last + obv - obv_at_first_row``) or read the symbol's whole history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.signal import lfilter

INDICATOR_COLUMNS: tuple[str, ...] = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "rsi_14",
    "bb_upper_20",
    "bb_middle_20",
    "bb_lower_20",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_14",
    "stoch_k",
    "stoch_d",
    "obv",
    "return_1d",
    "log_return_1d",
    "realized_vol_20",
    "realized_vol_60",
)

PRICE_COLUMNS: tuple[str, ...] = ("adj_high", "adj_low", "adj_close")
VOLUME_COLUMN = "adj_volume"
REQUIRED_COLUMNS: tuple[str, ...] = ("symbol", "session_date", *PRICE_COLUMNS, VOLUME_COLUMN)

TRADING_DAYS_PER_YEAR = 252
_EPOCH = dt.date(1970, 1, 1)
_DAY_OFFSET = 1 << 31

# Index (0-based position within a symbol's rows) of the first defined value of each column: TA-Lib's
# lookback. Everything before is null.
FIRST_DEFINED: dict[str, int] = {
    "sma_20": 19,
    "sma_50": 49,
    "sma_200": 199,
    "ema_12": 11,
    "ema_26": 25,
    "rsi_14": 14,
    "bb_upper_20": 19,
    "bb_middle_20": 19,
    "bb_lower_20": 19,
    "macd": 33,
    "macd_signal": 33,
    "macd_hist": 33,
    "atr_14": 14,
    "stoch_k": 17,
    "stoch_d": 17,
    "obv": 0,
    "return_1d": 1,
    "log_return_1d": 1,
    "realized_vol_20": 20,
    "realized_vol_60": 60,
}

# Matrix cells (symbols x longest history) computed in one block. Bounds memory: the peak numpy
# footprint is about 32 float64 arrays of this many cells (~320 MB for 500 symbols x 2,520 sessions,
# which fits one block; larger inputs are split by symbol).
_MAX_CELLS_PER_BLOCK = 1_500_000

_K12 = 2.0 / 13.0
_K26 = 2.0 / 27.0
_K9 = 2.0 / 10.0
_INV14 = 1.0 / 14.0


# ----------------------------------------------------------------------------------------------------
# History needed
# ----------------------------------------------------------------------------------------------------


def lookback_sessions(tolerance: float = 1e-12) -> int:
    """Earlier rows per symbol after which no output of the last row depends on older history.

    Finite windows need 199 rows (SMA-200). For the recursions, the returned count is the smallest one
    for which the weight that the window's seed still has on the last row is below ``tolerance``
    (EMA-12/26 and RSI/ATR averages: ``(1 - alpha) ** steps``; MACD and its signal: the propagated
    weights of the fast, slow and signal seeds, summed as if their errors had the same sign).
    """
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    r12, r26, r9, r14 = 1.0 - _K12, 1.0 - _K26, 1.0 - _K9, 13.0 / 14.0
    m = FIRST_DEFINED["sma_200"]
    while True:
        # m earlier rows: the last row has index m in its window.
        w_ema12 = r12 ** (m - 11)
        w_ema26 = r26 ** (m - 25)
        w_wilder = r14 ** (m - 14)
        w_signal = _signal_seed_weight(m, r12, r26, r9)
        if max(w_ema12, w_ema26, w_wilder, w_signal) < tolerance:
            return m
        m += 1


def _signal_seed_weight(last: int, r12: float, r26: float, r9: float) -> float:
    """Weight of the MACD seeds (fast, slow, signal; unit errors, same sign) on bar ``last``."""
    if last < 33:
        return 1.0
    macd_err = [r12 ** (t - 25) + r26 ** (t - 25) for t in range(25, last + 1)]
    sig = sum(macd_err[:9]) / 9.0 + 1.0  # the signal seed averages the first 9 MACD errors, plus its own
    worst_macd = macd_err[-1]
    for t in range(34, last + 1):
        sig = r9 * sig + (1.0 - r9) * macd_err[t - 25]
    return max(sig, worst_macd)


WARMUP_SESSIONS: int = lookback_sessions()


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


def compute_indicators(bars: pl.DataFrame) -> pl.DataFrame:
    """Indicators for every symbol of ``bars`` (see the module docstring), sorted by symbol and session."""
    frame = _validated(bars)
    if frame.height == 0:
        schema = {
            "symbol": pl.Utf8(),
            "session_date": pl.Date(),
            **dict.fromkeys(INDICATOR_COLUMNS, pl.Float64()),
        }
        return pl.DataFrame(schema=schema)

    # Sort on one integer key (lexical symbol rank << 32 | day number): far faster than a string sort.
    names = frame.get_column("symbol").unique().sort()
    code = frame.get_column("symbol").cast(pl.Enum(names)).to_physical().to_numpy().astype(np.int64)
    day = frame.get_column("session_date").cast(pl.Int32).to_numpy().astype(np.int64)
    key = (code << 32) | (day + _DAY_OFFSET)  # day + offset is in [0, 2**32)
    order = None if bool(np.all(key[1:] > key[:-1])) else np.argsort(key, kind="stable")
    if order is not None:
        key = key[order]
    dup = np.flatnonzero(key[1:] == key[:-1])
    if dup.size:
        i = int(dup[0])
        raise ValueError(
            f"bars: duplicate row for symbol {names[int(key[i] >> 32)]!r} and session_date {_day(int(key[i]))}"
        )
    values = {}
    for column in (*PRICE_COLUMNS, VOLUME_COLUMN):
        v = frame.get_column(column).to_numpy()  # nulls arrive as NaN
        values[column] = v if order is None else v.take(order)

    usable = _usable_rows(values, key, names)
    all_usable = usable is None
    if not all_usable:
        values = {c: v[usable] for c, v in values.items()}
    row_code = (key if all_usable else key[usable]) >> 32
    results = _compute_all(values, row_code) if row_code.size else {}

    columns: list[pl.Series] = []
    keep = None if all_usable else np.flatnonzero(usable)
    for name in INDICATOR_COLUMNS:
        col = results.get(name, np.empty(0))
        if keep is not None:
            full = np.full(frame.height, np.nan)
            full[keep] = col
            col = full
        columns.append(pl.Series(name, col, dtype=pl.Float64, nan_to_null=True))
    symbol = frame.get_column("symbol") if order is None else frame.get_column("symbol").gather(order)
    session = pl.Series("session_date", ((key & 0xFFFFFFFF) - _DAY_OFFSET).astype(np.int32)).cast(pl.Date)
    return pl.DataFrame([symbol.alias("symbol"), session, *columns])


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------


def _validated(bars: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(bars, pl.DataFrame):
        raise TypeError(f"bars must be a polars DataFrame, got {type(bars).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars: missing columns {missing}; required {list(REQUIRED_COLUMNS)}")
    if bars.schema["session_date"] != pl.Date:
        raise ValueError(f"bars: column 'session_date' must be pl.Date, got {bars.schema['session_date']}")
    if bars.schema["symbol"] not in (pl.Utf8, pl.Categorical) and not isinstance(
        bars.schema["symbol"], pl.Enum
    ):
        raise ValueError(f"bars: column 'symbol' must be a string column, got {bars.schema['symbol']}")
    casts = [pl.col("symbol").cast(pl.Utf8), pl.col("session_date")]
    for c in (*PRICE_COLUMNS, VOLUME_COLUMN):
        dtype = bars.schema[c]
        if not (dtype.is_numeric() or dtype == pl.Null):
            raise ValueError(f"bars: column {c!r} must be numeric, got {dtype}")
        casts.append(pl.col(c).cast(pl.Float64))
    frame = bars.select(casts)
    for key in ("symbol", "session_date"):
        nulls = frame.get_column(key).is_null()
        if nulls.any():
            row = int(nulls.arg_max())  # first null, in input order
            raise ValueError(f"bars: null {key!r} at input row {row}")
    return frame


def _day(key: int) -> dt.date:
    """The session date encoded in the low 32 bits of a sort key."""
    return _EPOCH + dt.timedelta(days=(key & 0xFFFFFFFF) - _DAY_OFFSET)


def _usable_rows(values: dict[str, np.ndarray], key: np.ndarray, names: pl.Series) -> np.ndarray | None:
    """Rows to compute on (None: all of them). NaN/null rows are missing sessions; raise on infinite
    values, non-positive prices and negative volume, naming the first offending symbol and session."""
    volume = values[VOLUME_COLUMN]
    fine = (volume >= 0.0) & (volume < np.inf)
    for column in PRICE_COLUMNS:
        v = values[column]
        fine &= (v > 0.0) & (v < np.inf)
    if bool(fine.all()):
        return None
    missing = np.zeros(key.size, dtype=bool)
    for v in values.values():
        missing |= np.isnan(v)
    rules = [(c, np.isinf, "is infinite") for c in (*PRICE_COLUMNS, VOLUME_COLUMN)]
    rules += [(c, lambda v: v <= 0.0, "is not positive") for c in PRICE_COLUMNS]
    rules.append((VOLUME_COLUMN, lambda v: v < 0.0, "is negative"))
    for column, test, what in rules:
        with np.errstate(invalid="ignore"):
            bad = test(values[column]) & ~missing
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"bars: {column} {what} ({float(values[column][i])!r}) for symbol "
                f"{names[int(key[i] >> 32)]!r} on {_day(int(key[i]))}"
            )
    return ~missing


# ----------------------------------------------------------------------------------------------------
# Layout: long rows <-> symbol x position matrices
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """Symbols computed together: rows ``starts[i] : starts[i] + lengths[i]`` of the long arrays."""

    starts: np.ndarray
    lengths: np.ndarray

    @property
    def width(self) -> int:
        return int(self.lengths.max())

    @property
    def dense(self) -> bool:
        """Whether the symbols are contiguous and equally long (the matrix is a reshape of the rows)."""
        if not bool((self.lengths == self.lengths[0]).all()):
            return False
        return bool((np.diff(self.starts) == self.lengths[0]).all())


def _blocks(lengths: np.ndarray) -> Iterator[_Block]:
    """Group symbols into blocks of similar length (padding <= 1/3 of a block) within the cell budget."""
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    if lengths.min() == lengths.max() and lengths.size * int(lengths[0]) <= _MAX_CELLS_PER_BLOCK:
        yield _Block(starts, lengths)
        return
    order = np.argsort(-lengths, kind="stable")
    i = 0
    while i < order.size:
        longest = int(lengths[order[i]])
        j, total = i, 0
        while j < order.size:
            length = int(lengths[order[j]])
            count = j - i + 1
            if count > 1 and (
                count * longest > 1.5 * (total + length) or count * longest > _MAX_CELLS_PER_BLOCK
            ):
                break
            total += length
            j += 1
        chosen = np.sort(order[i:j])  # keep symbol order inside a block (contiguous rows when possible)
        yield _Block(starts[chosen], lengths[chosen])
        i = j


def _to_matrix(values: np.ndarray, block: _Block, flat: np.ndarray | None) -> np.ndarray:
    """Symbols x positions matrix of ``values`` (NaN after each symbol's last row)."""
    s, width = block.lengths.size, block.width
    if flat is None:
        start = int(block.starts[0])
        return values[start : start + s * width].reshape(s, width)
    out = np.full(s * width, np.nan)
    out[flat] = values[_row_index(block)]
    return out.reshape(s, width)


def _row_index(block: _Block) -> np.ndarray:
    """Long-array row of every (symbol, position) cell that holds data, symbol-major."""
    total = int(block.lengths.sum())
    seg_start = np.repeat(block.starts, block.lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(block.lengths) - block.lengths, block.lengths)
    return seg_start + offsets


def _flat_index(block: _Block) -> np.ndarray:
    """Flat matrix cell of every data cell, in the order of ``_row_index``."""
    width = block.width
    seg = np.repeat(np.arange(block.lengths.size), block.lengths)
    offsets = np.arange(int(block.lengths.sum())) - np.repeat(
        np.cumsum(block.lengths) - block.lengths, block.lengths
    )
    return seg * width + offsets


# ----------------------------------------------------------------------------------------------------
# Computation
# ----------------------------------------------------------------------------------------------------


def _compute_all(values: dict[str, np.ndarray], row_code: np.ndarray) -> dict[str, np.ndarray]:
    """Every indicator for the sorted usable rows (``row_code``: symbol rank of each row)."""
    starts = np.concatenate(([0], np.flatnonzero(row_code[1:] != row_code[:-1]) + 1))
    lengths = np.diff(np.concatenate((starts, [row_code.size])))
    inputs = [values[c] for c in ("adj_high", "adj_low", "adj_close", VOLUME_COLUMN)]

    blocks = list(_blocks(lengths))
    if len(blocks) == 1 and blocks[0].dense:
        mats = _indicator_matrices(*(_to_matrix(v, blocks[0], None) for v in inputs))
        return {name: mats[name].ravel() for name in INDICATOR_COLUMNS}

    results = {name: np.empty(row_code.size) for name in INDICATOR_COLUMNS}
    for block in blocks:
        flat = None if block.dense else _flat_index(block)
        mats = _indicator_matrices(*(_to_matrix(v, block, flat) for v in inputs))
        if flat is None:
            start = int(block.starts[0])
            stop = start + int(block.lengths.sum())
            for name in INDICATOR_COLUMNS:
                results[name][start:stop] = mats[name].ravel()
        else:
            target = _row_index(block)
            for name in INDICATOR_COLUMNS:
                results[name][target] = mats[name].ravel().take(flat)
    return results


def _indicator_matrices(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    """All indicators on symbols x positions matrices (row = symbol, NaN-padded after its last bar).

    Every operation runs along the rows for all symbols at once; nothing loops over symbols or bars.
    """
    s, width = close.shape
    out: dict[str, np.ndarray] = {}

    # Simple moving averages: TA-Lib's running sums, bit-identical.
    for n in (20, 50, 200):
        out[f"sma_{n}"] = _ta_sma(close, n)

    # EMA-12 / EMA-26, seeded with the mean of the first n closes.
    out["ema_12"] = _ema(close, _K12, 11, _seq_sum(close, 0, 12) / 12.0)
    ema26 = _ema(close, _K26, 25, _seq_sum(close, 0, 26) / 26.0)
    out["ema_26"] = ema26

    # MACD (TA-Lib): the slow EMA is EMA-26; the fast EMA is seeded on bar 25 with the mean of closes
    # 14..25; the signal is seeded on bar 33 with the mean of the MACD values of bars 25..33.
    fast = _ema(close, _K12, 25, _seq_sum(close, 14, 26) / 12.0)
    macd = fast - ema26
    del fast
    signal = _ema(macd, _K9, 33, _seq_sum(macd, 25, 34) / 9.0)
    out["macd"] = macd
    out["macd_signal"] = signal
    out["macd_hist"] = macd - signal

    # Wilder averages: RSI gain / loss and ATR's true range, stacked (3 * symbols rows).
    diff = np.empty((s, width))
    diff[:, 0] = np.nan
    np.subtract(close[:, 1:], close[:, :-1], out=diff[:, 1:])
    wilder_in = np.empty((3 * s, width))
    np.maximum(diff, 0.0, out=wilder_in[:s])  # gain (TA-Lib adds the change when it is not negative)
    np.negative(diff, out=wilder_in[s : 2 * s])
    np.maximum(wilder_in[s : 2 * s], 0.0, out=wilder_in[s : 2 * s])  # loss
    tr = wilder_in[2 * s :]
    tr[:, 0] = np.nan
    if width > 1:
        prev_close = close[:, :-1]
        np.subtract(high[:, 1:], low[:, 1:], out=tr[:, 1:])
        spare = np.empty((s, width - 1))
        np.subtract(prev_close, high[:, 1:], out=spare)
        np.abs(spare, out=spare)
        np.maximum(tr[:, 1:], spare, out=tr[:, 1:])
        np.subtract(prev_close, low[:, 1:], out=spare)
        np.abs(spare, out=spare)
        np.maximum(tr[:, 1:], spare, out=tr[:, 1:])
        del spare, prev_close
    seed = _seq_sum(wilder_in, 1, 15)
    seed[: 2 * s] *= _INV14  # RSI scales by the reciprocal (TA-Lib 0.8), ATR divides
    seed[2 * s :] /= 14.0
    wilder = _ema(wilder_in, _INV14, 14, seed, out=wilder_in)
    gain, loss = wilder[:s], wilder[s : 2 * s]
    total = gain + loss
    rsi = np.zeros((s, width))
    np.divide(gain, total, out=rsi, where=total != 0.0)
    rsi *= 100.0  # TA-Lib: 100 * (gain / (gain + loss)), 0 when both averages are 0
    out["rsi_14"] = rsi
    out["atr_14"] = wilder[2 * s :]
    del gain, loss, total, seed

    # Stochastic: fast %K = ((close - lowest low) / (highest high - lowest low)) * 100 (0 on a zero
    # range), slow %K = SMA-3 of fast %K, slow %D = SMA-3 of slow %K (TA-Lib running sums).
    slowk = np.empty((s, width))
    slowd = np.empty((s, width))
    if width >= 14:
        lowest = _rolling_extreme(low, 14, np.minimum)[:, 13:]
        highest = _rolling_extreme(high, 14, np.maximum)[:, 13:]
        np.subtract(highest, lowest, out=highest)  # the range
        num = np.subtract(close[:, 13:], lowest, out=lowest)
        fastk = np.zeros((s, width - 13))
        np.divide(num, highest, out=fastk, where=highest != 0.0)
        fastk *= 100.0
        del lowest, highest, num
        k = _ta_sma(fastk, 3)
        slowk[:, 13:] = k
        if width >= 16:
            slowd[:, 15:] = _ta_sma(k[:, 2:], 3)
        del fastk, k
    out["stoch_k"] = slowk
    out["stoch_d"] = slowd

    # Bollinger bands: TA-Lib's middle band (its SMA-20) +- 2 population standard deviations.
    s1, s2 = _window_sums(close, 20, anchored=True)
    s1 /= 20.0
    np.square(s1, out=s1)
    s2 /= 20.0
    s2 -= s1
    np.maximum(s2, 0.0, out=s2)
    dev = np.sqrt(s2, out=s2)
    dev *= 2.0
    middle = out["sma_20"]
    out["bb_upper_20"] = middle + dev
    out["bb_middle_20"] = middle  # the same array: identical values
    out["bb_lower_20"] = np.subtract(middle, dev, out=dev)
    del s1, s2, dev

    # OBV: running sum of +-volume in TA-Lib's order (bit-identical): sign(change) * volume.
    signed = np.sign(diff, out=diff)
    np.multiply(signed, volume, out=signed)
    signed[:, 0] = volume[:, 0]
    out["obv"] = np.cumsum(signed, axis=1, out=signed)
    del signed, diff

    # Returns and realized volatility.
    ratio = np.empty((s, width))
    ratio[:, 0] = np.nan
    np.divide(close[:, 1:], close[:, :-1], out=ratio[:, 1:])
    out["return_1d"] = ratio - 1.0
    log_ret = np.log(ratio, out=ratio)
    out["log_return_1d"] = log_ret
    first = log_ret[:, 0].copy()
    log_ret[:, 0] = 0.0  # never inside a complete window; keeps the block sums finite
    # Sums over 20 returns (block-local); a 60-return window is three consecutive 20-return windows.
    s1, s2 = _window_sums(log_ret, 20, anchored=False)
    sums = {20: (s1, s2)}
    if width > 40:
        t1, t2 = s1.copy(), s2.copy()
        t1[:, 20:] += s1[:, :-20]
        t2[:, 20:] += s2[:, :-20]
        t1[:, 40:] += s1[:, :-40]
        t2[:, 40:] += s2[:, :-40]
        sums[60] = (t1, t2)
    else:
        sums[60] = (np.full((s, width), np.nan), np.full((s, width), np.nan))
    for n, name in ((60, "realized_vol_60"), (20, "realized_vol_20")):
        s1, s2 = sums.pop(n)
        np.square(s1, out=s1)
        s1 /= n
        s2 -= s1
        s2 *= TRADING_DAYS_PER_YEAR / (n - 1)
        np.maximum(s2, 0.0, out=s2)
        out[name] = np.sqrt(s2, out=s2)
        del s1, s2
    log_ret[:, 0] = first

    for name, first in FIRST_DEFINED.items():
        out[name][:, : min(first, width)] = np.nan
    return out


def _seq_sum(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Sum of columns ``start:stop`` accumulated from 0.0 in column order (TA-Lib's seed sums)."""
    total = np.zeros(x.shape[0])
    for j in range(start, min(stop, x.shape[1])):
        total += x[:, j]
    if stop > x.shape[1]:
        total[:] = np.nan  # too short: no seed (the rows are masked anyway)
    return total


def _ema(
    x: np.ndarray, alpha: float, start: int, seed: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``y[start] = seed``, ``y[t] = alpha * x[t] + (1 - alpha) * y[t-1]`` after; NaN before ``start``.

    One ``lfilter`` call runs the recursion along every row. Rounding differs from TA-Lib's
    ``(x - y) * alpha + y`` by a few ulps at most (the filter is contractive, errors do not grow).
    ``out`` may be ``x`` itself.
    """
    rows, width = x.shape
    y = np.empty((rows, width)) if out is None else out
    if width > start + 1:
        keep = 1.0 - alpha
        y[:, start + 1 :], _ = lfilter(
            [alpha], [1.0, -keep], x[:, start + 1 :], axis=1, zi=(keep * seed)[:, None]
        )
    if width > start:
        y[:, start] = seed
    y[:, : min(start, width)] = np.nan
    return y


def _ta_sma(x: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib's SMA along rows, bit-identical: its running total (add the newest value, output
    total / n, subtract the oldest) reproduced as one sequential cumulative sum of the interleaved
    sequence ``x0 .. x[n-1], -x0, x[n], -x1, x[n+1], ...``."""
    rows, width = x.shape
    out = np.empty((rows, width))
    out[:, : min(n - 1, width)] = np.nan
    if width < n:
        return out
    m = width - n
    buf = np.empty((rows, n + 2 * m))
    buf[:, :n] = x[:, :n]
    np.negative(x[:, :m], out=buf[:, n::2])
    buf[:, n + 1 :: 2] = x[:, n:]
    np.cumsum(buf, axis=1, out=buf)
    np.divide(buf[:, n - 1], float(n), out=out[:, n - 1])
    np.divide(buf[:, n + 1 :: 2], float(n), out=out[:, n:])
    return out


def _window_sums(x: np.ndarray, n: int, *, anchored: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``x - K`` and ``(x - K)**2`` over the last ``n`` columns (window ending at each column).

    Computed block-locally (blocks of ``n`` columns) so that rounding never accumulates over the whole
    history: a window is the head of its block plus the tail of the previous one. ``K`` is the block's
    first value when ``anchored`` (removes the price level before squaring; only differences of sums
    are used by the callers, which do not depend on ``K``) and 0 otherwise. Columns before ``n - 1``
    hold partial sums (callers mask them). Returns new arrays, ``x`` is not modified.
    """
    rows, width = x.shape
    nb = -(-width // n)
    p1 = np.empty((rows, nb * n))
    p1[:, :width] = x
    p1[:, width:] = np.nan
    y = p1.reshape(rows, nb, n)
    anchor = None
    if anchored:
        anchor = y[:, :, :1].copy()
        y -= anchor
    p2 = np.square(y).reshape(rows, nb, n)
    np.cumsum(y, axis=2, out=y)
    np.cumsum(p2, axis=2, out=p2)
    if nb > 1:
        # Tail of the previous block (positions j+1..n-1), added to the head of this one.
        tail = np.subtract(y[:, :-1, -1:], y[:, :-1, :])
        if anchor is None:
            tail2 = np.subtract(p2[:, :-1, -1:], p2[:, :-1, :])
            y[:, 1:] += tail
        else:
            # Re-anchor the tail on this block's anchor: d = K_prev - K_this, c = tail count:
            # sum (x-K)^2 += 2 * d * (tail1 + c * d / 2), then sum (x-K) += c * d.
            delta = anchor[:, :-1] - anchor[:, 1:]
            half = np.arange(n - 1, -1, -1, dtype=np.float64) * 0.5 * delta
            tail2 = np.subtract(p2[:, :-1, -1:], p2[:, :-1, :])
            tail += half
            scaled = tail * delta
            scaled *= 2.0
            tail2 += scaled
            del scaled
            tail += half
            y[:, 1:] += tail
        p2[:, 1:] += tail2
    return p1[:, :width], p2.reshape(rows, nb * n)[:, :width]


def _rolling_extreme(x: np.ndarray, n: int, fn: np.ufunc) -> np.ndarray:
    """Min or max over the last ``n`` columns (by doubling); only columns >= n-1 are meaningful."""
    cur = x
    span = 1
    while span < n:
        step = min(span, n - span)  # window span + step from windows of size span
        nxt = np.empty_like(x)
        lo = span + step - 1  # first column where the wider window is complete
        fn(cur[:, lo:], cur[:, lo - step : x.shape[1] - step], out=nxt[:, lo:])
        cur = nxt
        span += step
    return cur


__all__ = ["INDICATOR_COLUMNS", "WARMUP_SESSIONS", "compute_indicators", "lookback_sessions"]
