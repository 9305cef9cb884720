"""Technical indicators for every symbol at once, with the same values as TA-Lib.

``compute_indicators(bars)`` takes a long polars frame (one row per symbol and session, any order) and
returns one row per input row, sorted by ``(symbol, session_date)``, with the float64 columns listed in
``INDICATOR_COLUMNS``. Nothing loops over symbols: the rows of all symbols are laid out as a
symbol x position matrix and every step is a numpy operation across all symbols.

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
- The recursions (EMA, MACD, Wilder averages, OBV) and the running sums of the moving averages repeat
  TA-Lib's arithmetic in the same order, so these columns are bit-identical to TA-Lib (which matters
  where a value crosses zero, e.g. MACD or a flat %K). The Bollinger standard deviation is computed
  block-locally (cancellation-free); it agrees with TA-Lib to ~1e-13 relative on the deviation, far
  below 1e-9 on the band.
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
window's seed on its last row is below ``tolerance`` (1e-12 by default, giving ``WARMUP_SESSIONS``).
The residual error of a row is at most that weight times the seed's discrepancy (for EMA and MACD at
most the price range of the history, for ATR its largest true range, for RSI's averages the largest
close-to-close move), i.e. about 1e-12 relative to the price level.
"""

from __future__ import annotations

import math
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

# Matrix cells (symbols x longest history) computed in one block; bounds memory (~45 float64 arrays of
# this size are alive at the peak) while keeping the per-time-step numpy calls wide.
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
    out_schema = {"symbol": pl.Utf8(), "session_date": pl.Date(), **dict.fromkeys(INDICATOR_COLUMNS, pl.Float64())}
    if frame.height == 0:
        return pl.DataFrame(schema=out_schema)

    frame = _sorted_by_symbol_and_date(frame)
    _check_unique(frame)

    usable = frame.select(
        pl.all_horizontal(
            [pl.col(c).is_not_null() & pl.col(c).is_not_nan() for c in (*PRICE_COLUMNS, VOLUME_COLUMN)]
        )
    ).to_series()
    all_usable = bool(usable.all())
    rows = frame if all_usable else frame.filter(usable)
    _check_values(rows)

    results = _compute_all(rows) if rows.height else {}
    keep = None if all_usable else np.flatnonzero(usable.to_numpy())
    columns: list[pl.Series] = []
    for name in INDICATOR_COLUMNS:
        values = results.get(name, np.empty(0))
        if keep is not None:
            full = np.full(frame.height, np.nan)
            full[keep] = values
            values = full
        columns.append(pl.Series(name, values, dtype=pl.Float64, nan_to_null=True))
    return frame.select("symbol", "session_date").with_columns(columns)


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


def _sorted_by_symbol_and_date(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by (symbol, session_date): returned as is when already sorted, otherwise
    sorted on one integer key (symbol rank << 32 | day number), much faster than a string sort."""
    in_order = frame.select(
        (
            (pl.col("symbol") > pl.col("symbol").shift(1))
            | (
                (pl.col("symbol") == pl.col("symbol").shift(1))
                & (pl.col("session_date") >= pl.col("session_date").shift(1))
            )
        )
        .fill_null(True)
        .all()
    ).item()
    if in_order:
        return frame
    symbols = frame.get_column("symbol")
    names = symbols.unique().sort()
    rank = symbols.replace_strict(names, pl.Series(np.arange(names.len(), dtype=np.int64)), return_dtype=pl.Int64)
    key = (rank * (1 << 32)) + frame.get_column("session_date").cast(pl.Int32).cast(pl.Int64)
    return frame[key.arg_sort()]


def _check_unique(frame: pl.DataFrame) -> None:
    dup = frame.select(
        (pl.col("symbol") == pl.col("symbol").shift(1)) & (pl.col("session_date") == pl.col("session_date").shift(1))
    ).to_series()
    if dup.any():
        i = int(dup.arg_max())
        raise ValueError(
            f"bars: duplicate row for symbol {frame['symbol'][i]!r} and session_date {frame['session_date'][i]}"
        )


def _check_values(rows: pl.DataFrame) -> None:
    """Raise on infinite values, non-positive prices or negative volume (rows already free of nulls)."""
    checks = [(c, pl.col(c).is_infinite(), "is infinite") for c in (*PRICE_COLUMNS, VOLUME_COLUMN)]
    checks += [(c, pl.col(c) <= 0.0, "is not positive") for c in PRICE_COLUMNS]
    checks.append((VOLUME_COLUMN, pl.col(VOLUME_COLUMN) < 0.0, "is negative"))
    flags = rows.select([expr.alias(f"f{i}") for i, (_, expr, _) in enumerate(checks)])
    anys = flags.select(pl.all().any()).row(0)
    for (column, _, what), flag_name, bad in zip(checks, flags.columns, anys, strict=True):
        if bad:
            i = int(flags.get_column(flag_name).arg_max())
            raise ValueError(
                f"bars: {column} {what} ({rows[column][i]!r}) for symbol {rows['symbol'][i]!r} "
                f"on {rows['session_date'][i]}"
            )


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
            if count > 1 and (count * longest > 1.5 * (total + length) or count * longest > _MAX_CELLS_PER_BLOCK):
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
    offsets = np.arange(int(block.lengths.sum())) - np.repeat(np.cumsum(block.lengths) - block.lengths, block.lengths)
    return seg * width + offsets


# ----------------------------------------------------------------------------------------------------
# Computation
# ----------------------------------------------------------------------------------------------------


def _compute_all(rows: pl.DataFrame) -> dict[str, np.ndarray]:
    """Every indicator for the (sorted, usable) rows, as long arrays aligned with ``rows``."""
    high = rows.get_column("adj_high").to_numpy()
    low = rows.get_column("adj_low").to_numpy()
    close = rows.get_column("adj_close").to_numpy()
    volume = rows.get_column(VOLUME_COLUMN).to_numpy()
    lengths = rows.get_column("symbol").rle().struct.field("len").to_numpy().astype(np.int64)

    blocks = list(_blocks(lengths))
    if len(blocks) == 1 and blocks[0].dense:
        mats = _indicator_matrices(*(_to_matrix(v, blocks[0], None) for v in (high, low, close, volume)))
        return {name: mats[name].ravel() for name in INDICATOR_COLUMNS}

    results = {name: np.empty(rows.height) for name in INDICATOR_COLUMNS}
    for block in blocks:
        flat = None if block.dense else _flat_index(block)
        mats = _indicator_matrices(*(_to_matrix(v, block, flat) for v in (high, low, close, volume)))
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
    wilder_in = np.full((3 * s, width), np.nan)
    if width > 1:
        diff = close[:, 1:] - close[:, :-1]
        neg = diff < 0.0
        wilder_in[:s, 1:] = np.where(neg, 0.0, diff)
        wilder_in[s : 2 * s, 1:] = np.where(neg, -diff, 0.0)
        prev_close = close[:, :-1]
        tr = wilder_in[2 * s :, 1:]
        np.subtract(high[:, 1:], low[:, 1:], out=tr)
        np.maximum(tr, np.abs(prev_close - high[:, 1:]), out=tr)
        np.maximum(tr, np.abs(prev_close - low[:, 1:]), out=tr)
        del diff, neg, prev_close, tr
    seed = _seq_sum(wilder_in, 1, 15)
    seed[: 2 * s] *= _INV14  # RSI scales by the reciprocal (TA-Lib 0.8), ATR divides
    seed[2 * s :] /= 14.0
    wilder = _ema(wilder_in, _INV14, 14, seed)
    del wilder_in, seed
    gain, loss = wilder[:s], wilder[s : 2 * s]
    total = gain + loss
    rsi = np.zeros((s, width))
    np.divide(gain, total, out=rsi, where=total != 0.0)
    rsi *= 100.0  # TA-Lib: 100 * (gain / (gain + loss)), 0 when both averages are 0
    rsi[np.isnan(total)] = np.nan
    out["rsi_14"] = rsi
    out["atr_14"] = wilder[2 * s :]
    del gain, loss, total

    # Stochastic: fast %K = ((close - lowest low) / (highest high - lowest low)) * 100 (0 on a zero
    # range), slow %K = SMA-3 of fast %K, slow %D = SMA-3 of slow %K (TA-Lib running sums).
    slowk = np.full((s, width), np.nan)
    slowd = np.full((s, width), np.nan)
    if width >= 14:
        lowest = _rolling_extreme(low, 14, np.minimum)[:, 13:]
        highest = _rolling_extreme(high, 14, np.maximum)[:, 13:]
        rng = highest - lowest
        fastk = np.zeros_like(rng)
        np.divide(close[:, 13:] - lowest, rng, out=fastk, where=rng != 0.0)
        fastk *= 100.0
        fastk[np.isnan(rng)] = np.nan
        del lowest, highest, rng
        k = _ta_sma(fastk, 3)
        slowk[:, 13:] = k
        if width >= 16:
            slowd[:, 15:] = _ta_sma(k[:, 2:], 3)
    out["stoch_k"] = slowk
    out["stoch_d"] = slowd

    # Bollinger bands: TA-Lib's middle band (its SMA-20) +- 2 population standard deviations.
    _, s1, s2 = _window_sums(close, 20, anchored=True)
    s1 /= 20.0
    s2 /= 20.0
    s2 -= np.square(s1)
    np.maximum(s2, 0.0, out=s2)
    dev = np.sqrt(s2)
    dev *= 2.0
    middle = out["sma_20"]
    out["bb_upper_20"] = middle + dev
    out["bb_middle_20"] = middle.copy()
    out["bb_lower_20"] = middle - dev
    del s1, s2, dev

    # OBV: running sum of +-volume in TA-Lib's order (bit-identical).
    signed = volume.copy()
    if width > 1:
        up = close[:, 1:] > close[:, :-1]
        down = close[:, 1:] < close[:, :-1]
        signed[:, 1:] = np.where(down, -volume[:, 1:], 0.0)
        np.copyto(signed[:, 1:], volume[:, 1:], where=up)
        del up, down
    out["obv"] = np.cumsum(signed, axis=1, out=signed)

    # Returns and realized volatility.
    ratio = np.full((s, width), np.nan)
    if width > 1:
        np.divide(close[:, 1:], close[:, :-1], out=ratio[:, 1:])
    out["return_1d"] = ratio - 1.0
    log_ret = np.log(ratio, out=ratio)
    out["log_return_1d"] = log_ret
    work = log_ret.copy()
    work[:, 0] = 0.0  # never inside a complete window; keeps the block sums finite
    for n, name in ((20, "realized_vol_20"), (60, "realized_vol_60")):
        _, s1, s2 = _window_sums(work, n, anchored=False)
        np.square(s1, out=s1)
        s1 /= n
        s2 -= s1
        s2 *= TRADING_DAYS_PER_YEAR / (n - 1)
        np.maximum(s2, 0.0, out=s2)
        out[name] = np.sqrt(s2, out=s2)
    del work

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


def _ema(x: np.ndarray, alpha: float, start: int, seed: np.ndarray) -> np.ndarray:
    """``y[start] = seed``, ``y[t] = alpha * x[t] + (1 - alpha) * y[t-1]`` after; NaN before ``start``.

    One ``lfilter`` call runs the recursion along every row. Rounding differs from TA-Lib's
    ``(x - y) * alpha + y`` by a few ulps at most (the filter is contractive, errors do not grow).
    """
    rows, width = x.shape
    y = np.empty((rows, width))
    y[:, : min(start, width)] = np.nan
    if width <= start:
        return y
    y[:, start] = seed
    if width > start + 1:
        keep = 1.0 - alpha
        y[:, start + 1 :], _ = lfilter([alpha], [1.0, -keep], x[:, start + 1 :], axis=1, zi=(keep * seed)[:, None])
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
    out[:, n - 1] = buf[:, n - 1]
    out[:, n:] = buf[:, n + 1 :: 2]
    out[:, n - 1 :] /= float(n)
    return out


def _window_sums(x: np.ndarray, n: int, *, anchored: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Sums of ``x - K`` and ``(x - K)**2`` over the last ``n`` columns (window ending at each column).

    Computed block-locally (blocks of ``n`` columns) so that rounding never accumulates over the whole
    history: a window is the head of its block plus the tail of the previous one. ``K`` is the block's
    first value when ``anchored`` (removes the price level before squaring) and 0 otherwise. Columns
    before ``n - 1`` hold partial sums (callers mask them).
    """
    rows, width = x.shape
    nb = -(-width // n)
    if nb * n != width:
        padded = np.full((rows, nb * n), np.nan)
        padded[:, :width] = x
    else:
        padded = x
    y = padded.reshape(rows, nb, n)
    anchor = None
    if anchored:
        anchor = y[:, :, :1].copy()
        dev = y - anchor
    else:
        dev = y
    p2 = np.square(dev)
    p1 = np.cumsum(dev, axis=2, out=dev if dev is not y else None)
    np.cumsum(p2, axis=2, out=p2)
    if nb > 1:
        tail1 = p1[:, :-1, -1:] - p1[:, :-1, :]  # sum over positions j+1..n-1 of the previous block
        tail2 = p2[:, :-1, -1:] - p2[:, :-1, :]
        if anchor is not None:
            delta = anchor[:, :-1] - anchor[:, 1:]  # re-anchor the previous block's tail on this block
            count = np.arange(n - 1, -1, -1, dtype=np.float64)
            tail2 += delta * (2.0 * tail1 + count * delta)
            tail1 += count * delta
        p1[:, 1:] += tail1
        p2[:, 1:] += tail2
    s1 = p1.reshape(rows, nb * n)[:, :width]
    s2 = p2.reshape(rows, nb * n)[:, :width]
    k = None if anchor is None else np.repeat(anchor[:, :, 0], n, axis=1)[:, :width]
    return k, s1, s2


def _rolling_extreme(x: np.ndarray, n: int, fn: np.ufunc) -> np.ndarray:
    """Min or max over the last ``n`` columns by doubling; columns < n-1 are partial."""
    cur = x
    span = 1
    while span * 2 <= n:
        nxt = cur.copy()
        fn(cur[:, span:], cur[:, :-span], out=nxt[:, span:])
        cur = nxt
        span *= 2
    if span < n:
        out = cur.copy()
        shift = n - span
        fn(cur[:, shift:], cur[:, :-shift], out=out[:, shift:])
        cur = out
    return cur


__all__ = ["INDICATOR_COLUMNS", "WARMUP_SESSIONS", "compute_indicators", "lookback_sessions"]
