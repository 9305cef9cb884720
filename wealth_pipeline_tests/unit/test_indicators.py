"""compute_indicators against TA-Lib (the oracle), numpy and hand-computed cases."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

import wealth_pipeline.core.indicators as ind
from wealth_pipeline.core.indicators import (
    INDICATOR_COLUMNS,
    WARMUP_SESSIONS,
    compute_indicators,
    lookback_sessions,
)

talib = pytest.importorskip("talib")  # dev extra; the oracle for every TA-Lib-defined column

RTOL = 1e-9
# MACD, its signal and histogram cross zero, where a purely relative tolerance is meaningless (TA-Lib
# itself dispatches to FMA kernels on capable CPUs, which move the last ulp): they also get an absolute
# floor of 1e-12 x the bar's close.
ZERO_CROSSING = ("macd", "macd_signal", "macd_hist")
START = dt.date(2015, 1, 5)


def _bars(symbol: str, n: int, seed: int, price: float = 50.0, start: dt.date = START) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.005, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.01, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.01, n)))
    volume = np.round(rng.lognormal(12.0, 1.0, n))
    return pl.DataFrame(
        {
            "symbol": [symbol] * n,
            "session_date": [start + dt.timedelta(days=i) for i in range(n)],
            "adj_open": open_,
            "adj_high": high,
            "adj_low": low,
            "adj_close": close,
            "adj_volume": volume,
        }
    )


def _talib_reference(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    ref = {
        "sma_20": talib.SMA(c, 20),
        "sma_50": talib.SMA(c, 50),
        "sma_200": talib.SMA(c, 200),
        "ema_12": talib.EMA(c, 12),
        "ema_26": talib.EMA(c, 26),
        "rsi_14": talib.RSI(c, 14),
        "atr_14": talib.ATR(h, lo, c, 14),
        "obv": talib.OBV(c, v),
    }
    ref["bb_upper_20"], ref["bb_middle_20"], ref["bb_lower_20"] = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    ref["macd"], ref["macd_signal"], ref["macd_hist"] = talib.MACD(c, 12, 26, 9)
    ref["stoch_k"], ref["stoch_d"] = talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
    return ref


def _numpy_reference(c: np.ndarray) -> dict[str, np.ndarray]:
    """Returns and realized volatility computed independently, row by row, with numpy."""
    n = c.size
    ret = np.full(n, np.nan)
    log_ret = np.full(n, np.nan)
    ret[1:] = c[1:] / c[:-1] - 1.0
    log_ret[1:] = np.log(c[1:] / c[:-1])
    ref = {"return_1d": ret, "log_return_1d": log_ret}
    for window in (20, 60):
        vol = np.full(n, np.nan)
        for t in range(window, n):
            vol[t] = np.std(log_ret[t - window + 1 : t + 1], ddof=1) * math.sqrt(252.0)
        ref[f"realized_vol_{window}"] = vol
    return ref


def _assert_matches(out: pl.DataFrame, source: pl.DataFrame) -> None:
    """Every column of ``out`` for one symbol equals TA-Lib / numpy on that symbol's ``source`` rows."""
    src = source.sort("session_date")
    h, lo, c, v = (src[k].to_numpy() for k in ("adj_high", "adj_low", "adj_close", "adj_volume"))
    ref = {**_talib_reference(h, lo, c, v), **_numpy_reference(c)}
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
        atol = 1e-12 * c[ok] if name in ZERO_CROSSING else 0.0
        bad = np.abs(got_np[ok] - expected[ok]) > RTOL * np.abs(expected[ok]) + atol
        assert not bad.any(), f"{name}: {got_np[ok][bad][:3]} != {expected[ok][bad][:3]}"


def test_matches_talib_for_several_symbols_in_shuffled_order() -> None:
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


def test_several_blocks_give_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Symbols of very different lengths, computed in several matrix blocks, give identical values."""
    bars = pl.concat([_bars(f"S{i}", n, seed=20 + i) for i, n in enumerate((700, 650, 90, 30, 700, 260))])
    reference = compute_indicators(bars)
    monkeypatch.setattr(ind, "_MAX_CELLS_PER_BLOCK", 1_500)
    assert len(list(ind._blocks(np.array([700, 650, 90, 30, 700, 260])))) > 2
    assert compute_indicators(bars).equals(reference)
    _assert_matches(reference.filter(pl.col("symbol") == "S3"), bars.filter(pl.col("symbol") == "S3"))


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


def test_obv_and_returns_hand_computed() -> None:
    close = [10.0, 11.0, 11.0, 10.5, 12.0]
    volume = [100.0, 200.0, 300.0, 400.0, 500.0]
    bars = pl.DataFrame(
        {
            "symbol": ["X"] * 5,
            "session_date": [START + dt.timedelta(days=i) for i in range(5)],
            "adj_open": close,
            "adj_high": [c + 1.0 for c in close],
            "adj_low": [c - 1.0 for c in close],
            "adj_close": close,
            "adj_volume": volume,
        }
    )
    out = compute_indicators(bars)
    # OBV starts at the first volume; +volume on an up close, -volume on a down close, unchanged on a tie.
    assert out["obv"].to_list() == [100.0, 300.0, 300.0, -100.0, 400.0]
    assert out["return_1d"].to_list()[0] is None
    assert out["return_1d"].to_list()[1:] == pytest.approx([0.1, 0.0, -0.5 / 11.0, 1.5 / 10.5], rel=1e-15)
    assert out["log_return_1d"].to_list()[1:] == pytest.approx(
        [math.log(1.1), 0.0, math.log(10.5 / 11.0), math.log(12.0 / 10.5)], rel=1e-15
    )


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


def test_flat_prices_match_talib_edge_cases() -> None:
    """Flat prices: zero high-low ranges (TA-Lib's fast %K is 0), zero changes, collapsed bands."""
    bars = _bars("FLAT", 120, seed=12).with_columns(
        pl.when(pl.int_range(pl.len()) >= 60).then(25.0).otherwise(pl.col(c)).alias(c)
        for c in ("adj_high", "adj_low", "adj_close")
    )
    out = compute_indicators(bars)
    _assert_matches(out, bars)
    last = out.row(-1, named=True)
    assert last["bb_upper_20"] == last["bb_middle_20"] == last["bb_lower_20"]
    assert last["bb_middle_20"] == pytest.approx(25.0, rel=1e-14)  # TA-Lib's running sum keeps a residual
    assert abs(last["stoch_k"]) < 1e-12  # fast %K is 0; TA-Lib's running sums leave a tiny residual
    # No change: both Wilder averages shrink by 13/14 a step, so RSI holds its last value.
    assert last["rsi_14"] == pytest.approx(out["rsi_14"][75], rel=1e-12)
    assert last["atr_14"] == pytest.approx(out["atr_14"][-2] * 13.0 / 14.0, rel=1e-12)  # true range 0


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
