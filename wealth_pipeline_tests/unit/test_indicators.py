"""compute_indicators (TA-Lib underneath) against the indicators' definitions.

Oracles, neither of them TA-Lib: hand-computed cases whose values follow from the definitions in closed
form, and a second implementation written with pandas formulas (rolling means and deviations, ``ewm``
seeded the way TA-Lib seeds its EMAs, Wilder smoothing as an ``ewm`` with alpha 1/n seeded by the
first n-value mean).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest

from wealth_pipeline.core.indicators import (
    FIRST_DEFINED,
    INDICATOR_COLUMNS,
    WARMUP_SESSIONS,
    compute_indicators,
    lookback_sessions,
)

RTOL = 1e-9
# MACD, its signal and histogram cross zero, where a purely relative tolerance is meaningless: they
# also get an absolute floor of 1e-12 x the bar's close. RSI and the stochastic are bounded in [0, 100]
# and TA-Lib's running sums leave ~1e-12 residuals where they should be 0: absolute floor 1e-9.
ZERO_CROSSING = ("macd", "macd_signal", "macd_hist")
BOUNDED = ("rsi_14", "stoch_k", "stoch_d")
START = dt.date(2015, 1, 5)


def _bars(symbol: str, n: int, seed: int, price: float = 50.0, start: dt.date = START) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.005, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.01, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.01, n)))
    volume = np.round(rng.lognormal(12.0, 1.0, n))
    return _frame(symbol, close, high, low, volume, start)


def _frame(symbol: str, close, high, low, volume, start: dt.date = START) -> pl.DataFrame:
    n = len(close)
    return pl.DataFrame(
        {
            "symbol": [symbol] * n,
            "session_date": [start + dt.timedelta(days=i) for i in range(n)],
            "adj_open": np.asarray(close, dtype=float),
            "adj_high": np.asarray(high, dtype=float),
            "adj_low": np.asarray(low, dtype=float),
            "adj_close": np.asarray(close, dtype=float),
            "adj_volume": np.asarray(volume, dtype=float),
        }
    )


# ----------------------------------------------------------------------------------------------------
# Second implementation: pandas formulas
# ----------------------------------------------------------------------------------------------------


def _seeded_ewm(x: pd.Series, alpha: float, seed_at: int, seed: float) -> pd.Series:
    """``y[seed_at] = seed``, then ``y[t] = (1 - alpha) * y[t-1] + alpha * x[t]``; NaN before."""
    out = pd.Series(np.nan, index=x.index)
    if len(x) <= seed_at:
        return out
    tail = pd.concat([pd.Series([seed]), x.iloc[seed_at + 1 :].reset_index(drop=True)], ignore_index=True)
    out.iloc[seed_at:] = tail.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def _ema(x: pd.Series, n: int) -> pd.Series:
    """TA-Lib's EMA: seeded on bar n-1 with the mean of the first n values, alpha 2 / (n + 1)."""
    seed = x.iloc[:n].mean() if len(x) >= n else np.nan
    return _seeded_ewm(x, 2.0 / (n + 1), n - 1, seed)


def _wilder(x: pd.Series, n: int) -> pd.Series:
    """Wilder's average of ``x[1:]``: seeded on bar n with the mean of values 1..n, alpha 1 / n."""
    seed = x.iloc[1 : n + 1].mean() if len(x) > n else np.nan
    return _seeded_ewm(x, 1.0 / n, n, seed)


def _pandas_reference(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    close, high, low, volume = pd.Series(c), pd.Series(h), pd.Series(lo), pd.Series(v)
    ref: dict[str, pd.Series] = {f"sma_{n}": close.rolling(n).mean() for n in (20, 50, 200)}
    ref["ema_12"], ref["ema_26"] = _ema(close, 12), _ema(close, 26)

    # MACD as TA-Lib seeds it: both EMAs start on bar 25 (fast: mean of closes 14..25), the signal on
    # bar 33 with the mean of the MACD values of bars 25..33; nothing is published before bar 33.
    fast_seed = close.iloc[14:26].mean() if len(c) >= 26 else np.nan
    macd = _seeded_ewm(close, 2.0 / 13.0, 25, fast_seed) - ref["ema_26"]
    signal = _seeded_ewm(macd, 0.2, 33, macd.iloc[25:34].mean() if len(c) >= 34 else np.nan)
    macd[:33] = np.nan
    ref["macd"], ref["macd_signal"], ref["macd_hist"] = macd, signal, macd - signal

    change = close.diff()
    gain, loss = _wilder(change.clip(lower=0.0), 14), _wilder((-change).clip(lower=0.0), 14)
    total = gain + loss
    ref["rsi_14"] = (100.0 * gain / total).where(total != 0.0, 0.0).where(total.notna())

    prev = close.shift()
    true_range = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1, skipna=False)
    ref["atr_14"] = _wilder(true_range, 14)

    lowest, highest = low.rolling(14).min(), high.rolling(14).max()
    span = highest - lowest
    fast_k = (100.0 * (close - lowest) / span).where(span != 0.0, 0.0).where(span.notna())
    slow_k = fast_k.rolling(3).mean()
    ref["stoch_d"] = slow_k.rolling(3).mean()
    ref["stoch_k"] = slow_k.where(ref["stoch_d"].notna())  # TA-Lib publishes %K from %D's first bar

    deviation = close.rolling(20).std(ddof=0)
    ref["bb_middle_20"] = ref["sma_20"]
    ref["bb_upper_20"] = ref["sma_20"] + 2.0 * deviation
    ref["bb_lower_20"] = ref["sma_20"] - 2.0 * deviation

    ref["obv"] = (np.sign(change).fillna(1.0) * volume).cumsum()
    ref["return_1d"] = close / prev - 1.0
    ref["log_return_1d"] = np.log(close / prev)
    for n in (20, 60):
        ref[f"realized_vol_{n}"] = ref["log_return_1d"].rolling(n).std(ddof=1) * math.sqrt(252.0)
    return {name: series.to_numpy(dtype=float) for name, series in ref.items()}


def _assert_matches(out: pl.DataFrame, source: pl.DataFrame) -> None:
    """Every column of ``out`` for one symbol equals the pandas formulas on that symbol's ``source`` rows."""
    src = source.sort("session_date")
    h, lo, c, v = (src[k].to_numpy() for k in ("adj_high", "adj_low", "adj_close", "adj_volume"))
    ref = _pandas_reference(h, lo, c, v)
    assert set(ref) == set(INDICATOR_COLUMNS)
    assert out["session_date"].to_list() == src["session_date"].to_list()
    for name in INDICATOR_COLUMNS:
        got = out[name]
        assert got.dtype == pl.Float64
        assert got.is_nan().sum() == 0, f"{name}: NaN instead of null"
        got_np = got.fill_null(np.nan).to_numpy()
        expected = ref[name]
        np.testing.assert_array_equal(np.isnan(got_np), np.isnan(expected), err_msg=f"{name}: warm-up")
        ok = ~np.isnan(expected)
        atol = 1e-12 * c[ok] if name in ZERO_CROSSING else 1e-9 if name in BOUNDED else 0.0
        bad = np.abs(got_np[ok] - expected[ok]) > RTOL * np.abs(expected[ok]) + atol
        assert not bad.any(), f"{name}: {got_np[ok][bad][:3]} != {expected[ok][bad][:3]}"


# ----------------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------------


def test_a_price_ramp_hand_computed() -> None:
    """close = 100 + t, high/low = close +- 1, volume 10: every TA-Lib indicator has a closed form.

    An EMA seeded with the mean of its first n values lags a line by exactly (n - 1) / 2 and keeps that
    lag (each step adds alpha * (lag + 1) = 1), so EMA-12 = close - 5.5, EMA-26 = close - 12.5 and MACD
    = 7 with signal 7; every change is a gain (RSI 100); true range is 2; the 14-bar range spans
    close - 14 .. close + 1 (fast %K = 100 * 14 / 15); 20 consecutive integers have variance 399 / 12.
    """
    n = 240
    close = 100.0 + np.arange(n)
    out = compute_indicators(_frame("RAMP", close, close + 1.0, close - 1.0, np.full(n, 10.0)))
    c = out.with_columns(pl.lit(close).alias("c"))

    def col(name: str, first: int) -> np.ndarray:
        values = c[name].to_numpy()
        assert c[name][:first].null_count() == first, f"{name}: warm-up"
        return values[first:]

    np.testing.assert_allclose(col("sma_20", 19), close[19:] - 9.5, rtol=1e-13)
    np.testing.assert_allclose(col("sma_50", 49), close[49:] - 24.5, rtol=1e-13)
    np.testing.assert_allclose(col("sma_200", 199), close[199:] - 99.5, rtol=1e-13)
    np.testing.assert_allclose(col("ema_12", 11), close[11:] - 5.5, rtol=1e-13)
    np.testing.assert_allclose(col("ema_26", 25), close[25:] - 12.5, rtol=1e-13)
    np.testing.assert_allclose(col("macd", 33), 7.0, rtol=1e-11)
    np.testing.assert_allclose(col("macd_signal", 33), 7.0, rtol=1e-11)
    np.testing.assert_allclose(col("macd_hist", 33), 0.0, atol=1e-10)
    np.testing.assert_allclose(col("rsi_14", 14), 100.0, rtol=1e-13)
    np.testing.assert_allclose(col("atr_14", 14), 2.0, rtol=1e-13)
    np.testing.assert_allclose(col("stoch_k", 17), 1400.0 / 15.0, rtol=1e-12)
    np.testing.assert_allclose(col("stoch_d", 17), 1400.0 / 15.0, rtol=1e-12)
    dev = 2.0 * math.sqrt(399.0 / 12.0)
    np.testing.assert_allclose(col("bb_upper_20", 19), close[19:] - 9.5 + dev, rtol=1e-11)
    np.testing.assert_allclose(col("bb_lower_20", 19), close[19:] - 9.5 - dev, rtol=1e-11)
    assert out["obv"].to_list() == [10.0 * (t + 1) for t in range(n)]
    np.testing.assert_allclose(col("return_1d", 1), 1.0 / close[:-1], rtol=1e-13)


def test_alternating_prices_hand_computed() -> None:
    """close alternates 100, 110: log returns are +-ln(1.1), every window of 20 or 60 holds as many of
    each (mean 0, sample deviation ln(1.1) * sqrt(n / (n - 1))); RSI's first value averages 7 gains and
    7 losses of 10 (RSI 50); OBV alternates between the first volume and twice it."""
    n = 130
    close = np.where(np.arange(n) % 2 == 0, 100.0, 110.0)
    out = compute_indicators(_frame("ALT", close, close, close, np.full(n, 5.0)))
    for window in (20, 60):
        got = out[f"realized_vol_{window}"]
        assert got[:window].null_count() == window
        expected = math.log(1.1) * math.sqrt(window / (window - 1) * 252.0)
        np.testing.assert_allclose(got[window:].to_numpy(), expected, rtol=1e-9)
    assert out["rsi_14"][14] == pytest.approx(50.0, rel=1e-13)
    # The next change is a gain of 10: gain (5 * 13 + 10) / 14, loss 5 * 13 / 14.
    assert out["rsi_14"][15] == pytest.approx(100.0 * 75.0 / (75.0 + 65.0), rel=1e-13)
    assert out["obv"].to_list() == [5.0 if t % 2 == 0 else 10.0 for t in range(n)]
    # high = low = close: true range is the 10-point gap to the previous close.
    np.testing.assert_allclose(out["atr_14"][14:].to_numpy(), 10.0, rtol=1e-13)


def test_obv_and_returns_hand_computed() -> None:
    close = [10.0, 11.0, 11.0, 10.5, 12.0]
    out = compute_indicators(
        _frame("X", close, [c + 1.0 for c in close], [c - 1.0 for c in close], [100.0, 200.0, 300.0, 400.0, 500.0])
    )
    # OBV starts at the first volume; +volume on an up close, -volume on a down close, unchanged on a tie.
    assert out["obv"].to_list() == [100.0, 300.0, 300.0, -100.0, 400.0]
    assert out["return_1d"].to_list()[0] is None
    assert out["return_1d"].to_list()[1:] == pytest.approx([0.1, 0.0, -0.5 / 11.0, 1.5 / 10.5], rel=1e-15)
    assert out["log_return_1d"].to_list()[1:] == pytest.approx(
        [math.log(1.1), 0.0, math.log(10.5 / 11.0), math.log(12.0 / 10.5)], rel=1e-15
    )


def test_flat_prices_edge_cases() -> None:
    """Flat prices: zero high-low ranges (fast %K is 0), zero changes, collapsed bands, zero volatility."""
    bars = _bars("FLAT", 120, seed=12).with_columns(
        pl.when(pl.int_range(pl.len()) >= 60).then(25.0).otherwise(pl.col(c)).alias(c)
        for c in ("adj_high", "adj_low", "adj_close")
    )
    out = compute_indicators(bars)
    _assert_matches(out, bars)
    last = out.row(-1, named=True)
    assert last["bb_upper_20"] == pytest.approx(25.0, rel=1e-12)
    assert last["bb_lower_20"] == pytest.approx(25.0, rel=1e-12)
    assert last["bb_middle_20"] == pytest.approx(25.0, rel=1e-14)  # TA-Lib's running sum keeps a residual
    assert abs(last["stoch_k"]) < 1e-9  # fast %K is 0; the running sums leave a tiny residual
    assert last["realized_vol_20"] == pytest.approx(0.0, abs=1e-12)
    # No change: both Wilder averages shrink by 13/14 a step, so RSI holds its last value.
    assert last["rsi_14"] == pytest.approx(out["rsi_14"][75], rel=1e-12)
    assert last["atr_14"] == pytest.approx(out["atr_14"][-2] * 13.0 / 14.0, rel=1e-12)  # true range 0


# ----------------------------------------------------------------------------------------------------
# Against the pandas implementation; layout, gaps, missing rows
# ----------------------------------------------------------------------------------------------------


def test_matches_the_pandas_formulas_for_several_symbols_in_shuffled_order() -> None:
    sources = {
        "AAA": _bars("AAA", 900, seed=1, price=50.0),
        "BBB": _bars("BBB", 640, seed=2, price=3.0),
        "CCC": _bars("CCC", 900, seed=3, price=2500.0),
        "DDD": _bars("DDD", 420, seed=4, price=0.8),
    }
    bars = pl.concat(sources.values()).sample(fraction=1.0, shuffle=True, seed=11)
    out = compute_indicators(bars)

    assert out.columns == ["symbol", "session_date", *INDICATOR_COLUMNS]
    assert out.height == bars.height
    assert out.select("symbol", "session_date").equals(
        bars.select("symbol", "session_date").sort("symbol", "session_date")
    )
    for symbol, source in sources.items():
        _assert_matches(out.filter(pl.col("symbol") == symbol), source)


def test_a_symbol_alone_equals_the_symbol_among_others() -> None:
    """Each symbol is computed on its own rows only: alone or among others, the same float64 bits."""
    lengths = (700, 650, 90, 30, 700, 260, 1)
    parts = [_bars(f"S{i}", n, seed=20 + i) for i, n in enumerate(lengths)]
    together = compute_indicators(pl.concat(parts).reverse())
    for i, part in enumerate(parts):
        assert together.filter(pl.col("symbol") == f"S{i}").equals(compute_indicators(part)), f"S{i}"


def test_warm_up_rows_are_null_as_documented() -> None:
    out = compute_indicators(_bars("W", 250, seed=17))
    for name, first in FIRST_DEFINED.items():
        assert out[name][:first].null_count() == first, name
        assert out[name][first:].null_count() == 0, name


def test_symbol_shorter_than_the_warm_up() -> None:
    long = _bars("LONG", 300, seed=5)
    short = _bars("SHORT", 30, seed=6)
    single = _bars("ONE", 1, seed=7)
    out = compute_indicators(pl.concat([long, short, single]))

    short_out = out.filter(pl.col("symbol") == "SHORT")
    _assert_matches(short_out, short)
    for name in ("sma_50", "sma_200", "macd", "macd_signal", "macd_hist", "realized_vol_60"):
        assert short_out[name].null_count() == 30, name
    assert short_out["sma_20"].null_count() == 19
    one = out.filter(pl.col("symbol") == "ONE")
    assert one["obv"].to_list() == [single["adj_volume"][0]]
    assert all(one[name].null_count() == 1 for name in INDICATOR_COLUMNS if name != "obv")
    _assert_matches(out.filter(pl.col("symbol") == "LONG"), long)


def test_gaps_are_not_filled() -> None:
    """A missing session is skipped: indicators run over the observed rows; returns span the gap."""
    full = _bars("GAP", 320, seed=8)
    observed = full.filter(
        ~pl.col("session_date").is_in([START + dt.timedelta(days=d) for d in (100, 101, 250)])
    )
    out = compute_indicators(observed)

    assert out.height == observed.height
    _assert_matches(out, observed)
    after_gap = START + dt.timedelta(days=102)
    row = out.filter(pl.col("session_date") == after_gap)
    closes = dict(zip(full["session_date"].to_list(), full["adj_close"].to_list(), strict=True))
    before = closes[START + dt.timedelta(days=99)]
    assert row["return_1d"].item() == pytest.approx(closes[after_gap] / before - 1.0, rel=1e-15)
    assert row["log_return_1d"].item() == pytest.approx(math.log(closes[after_gap] / before), rel=1e-15)


def test_rows_with_a_missing_price_are_skipped_and_returned_null() -> None:
    bars = _bars("NAN", 260, seed=9)
    holes = {40: "adj_close", 41: "adj_volume", 150: "adj_high"}
    broken = (
        bars.with_row_index("i")
        .with_columns(
            [
                pl.when(pl.col("i") == i)
                .then(None if col != "adj_close" else float("nan"))
                .otherwise(pl.col(col))
                .alias(col)
                for i, col in holes.items()
            ]
        )
        .drop("i")
    )
    out = compute_indicators(broken)

    assert out.height == bars.height
    hole_dates = [bars["session_date"][i] for i in holes]
    nulls = out.filter(pl.col("session_date").is_in(hole_dates))
    assert all(nulls[name].null_count() == len(holes) for name in INDICATOR_COLUMNS)
    kept = bars.filter(~pl.col("session_date").is_in(hole_dates))
    _assert_matches(out.filter(~pl.col("session_date").is_in(hole_dates)), kept)


def test_every_row_missing_gives_null_rows() -> None:
    bars = _bars("GONE", 5, seed=18).with_columns(pl.lit(None, dtype=pl.Float64).alias("adj_close"))
    out = compute_indicators(bars)
    assert out.height == 5
    assert all(out[name].null_count() == 5 for name in INDICATOR_COLUMNS)


def test_realized_vol_against_numpy() -> None:
    bars = _bars("VOL", 130, seed=10)
    out = compute_indicators(bars)
    log_ret = np.diff(np.log(bars["adj_close"].to_numpy()))  # log_ret[t-1] is the return of row t
    for window in (20, 60):
        got = out[f"realized_vol_{window}"].to_list()
        assert got[:window] == [None] * window
        for t in (window, window + 1, 77, 129):
            expected = np.std(log_ret[t - window : t], ddof=1) * np.sqrt(252.0)
            assert got[t] == pytest.approx(expected, rel=1e-9)


def test_dates_before_1970_sort_correctly() -> None:
    bars = pl.concat(
        [_bars("OLD", 80, seed=13, start=dt.date(1969, 11, 1)), _bars("NEW", 40, seed=14)]
    ).reverse()
    out = compute_indicators(bars)
    assert out["symbol"].to_list() == ["NEW"] * 40 + ["OLD"] * 80
    assert out.filter(pl.col("symbol") == "OLD")["session_date"].is_sorted()
    _assert_matches(out.filter(pl.col("symbol") == "OLD"), bars.filter(pl.col("symbol") == "OLD"))


def test_warm_up_makes_a_partition_independent_of_earlier_history() -> None:
    assert lookback_sessions() == WARMUP_SESSIONS
    assert WARMUP_SESSIONS >= 199  # SMA-200
    assert lookback_sessions(1e-6) < WARMUP_SESSIONS < lookback_sessions(1e-15)
    bars = _bars("HIST", 1500, seed=15)
    full = compute_indicators(bars)
    window = compute_indicators(bars.tail(WARMUP_SESSIONS + 1))
    close = bars["adj_close"][-1]
    for name in INDICATOR_COLUMNS:
        if name == "obv":
            continue  # cumulative from the first row given: only its changes are history-independent
        expected, got = full[name][-1], window[name][-1]
        assert got == pytest.approx(
            expected, rel=1e-9, abs=1e-12 * close if name in ZERO_CROSSING else 0.0
        ), name
    assert np.array_equal(
        np.diff(window["obv"].to_numpy()), np.diff(full["obv"].to_numpy()[-WARMUP_SESSIONS - 1 :])
    )
    # With too little history the recursions still remember their seed.
    short = compute_indicators(bars.tail(60))
    assert short["ema_26"][-1] != pytest.approx(full["ema_26"][-1], rel=1e-9)


def test_empty_input_gives_the_output_schema() -> None:
    out = compute_indicators(_bars("E", 1, seed=1).clear())
    assert out.height == 0
    assert out.schema == {
        "symbol": pl.Utf8,
        "session_date": pl.Date,
        **dict.fromkeys(INDICATOR_COLUMNS, pl.Float64),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop("adj_low"), "missing columns ['adj_low']"),
        (
            lambda df: pl.concat([df, df.tail(1)]),
            "duplicate row for symbol 'BAD' and session_date 2015-01-14",
        ),
        (lambda df: df.with_columns(pl.col("adj_close").cast(pl.Utf8)), "'adj_close' must be numeric"),
        (lambda df: df.with_columns(pl.col("session_date").cast(pl.Utf8)), "'session_date' must be pl.Date"),
        (
            lambda df: df.with_columns(
                pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise("symbol").alias("symbol")
            ),
            "null 'symbol' at input row 3",
        ),
        (
            lambda df: df.with_columns(
                pl.when(pl.int_range(pl.len()) == 4).then(0.0).otherwise("adj_low").alias("adj_low")
            ),
            "adj_low is not positive (0.0) for symbol 'BAD' on 2015-01-09",
        ),
        (
            lambda df: df.with_columns(
                pl.when(pl.int_range(pl.len()) == 5)
                .then(float("inf"))
                .otherwise("adj_high")
                .alias("adj_high")
            ),
            "adj_high is infinite (inf) for symbol 'BAD' on 2015-01-10",
        ),
        (
            lambda df: df.with_columns(
                pl.when(pl.int_range(pl.len()) == 6).then(-1.0).otherwise("adj_volume").alias("adj_volume")
            ),
            "adj_volume is negative (-1.0) for symbol 'BAD' on 2015-01-11",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(change, message: str) -> None:
    bars = _bars("BAD", 10, seed=16)
    with pytest.raises(ValueError) as excinfo:
        compute_indicators(change(bars))
    assert message in str(excinfo.value)


def test_not_a_frame_raises() -> None:
    with pytest.raises(TypeError, match="polars DataFrame"):
        compute_indicators({"symbol": ["A"]})  # type: ignore[arg-type]
