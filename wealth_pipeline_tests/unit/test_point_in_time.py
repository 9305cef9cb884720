"""The point-in-time adjustment model (issue 14): factor table by hand, stability, indicators' basis.

Oracles: hand-computed factors; the same table computed in one pass vs window by window; TA-Lib on
the series adjusted as of a session, built from scratch with plain Python lists.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
import talib

from wealth_pipeline.core import adjustments, indicators
from wealth_pipeline.core.schemas import BARS_SCHEMA, CORPORATE_ACTIONS_SCHEMA

D = dt.date


def _bars(
    symbol: str, closes: list[float], start: dt.date = dt.date(2024, 1, 1), volume: int = 1000
) -> pl.DataFrame:
    days = [start + dt.timedelta(days=k) for k in range(len(closes))]
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(closes),
            "session_date": days,
            "open": closes,
            "high": [c * 1.01 for c in closes],
            "low": [c * 0.99 for c in closes],
            "close": closes,
            "volume": [volume] * len(closes),
            "currency": ["USD"] * len(closes),
        },
        schema=BARS_SCHEMA,
    )


def _actions(rows: list[tuple[str, dt.date, str, float | None, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(*r, "USD", "split" if r[2] == "split" else "regular") for r in rows],
        schema=CORPORATE_ACTIONS_SCHEMA,
        orient="row",
    )


def _pit(bars: pl.DataFrame, actions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    table = adjustments.cumulate(adjustments.action_factors(bars, actions))
    return adjustments.point_in_time(bars, table), table


def test_split_dividend_and_two_same_day_dividends_by_hand() -> None:
    # closes on Jan 1..6; 2-for-1 split ex Jan 3; dividend 1.0 ex Jan 5 (close before: 50);
    # a regular 0.5 and a special 2.0 ex Jan 6 (close before: 52): they add up.
    bars = _bars("X", [100.0, 102.0, 51.0, 50.0, 52.0, 49.5])
    actions = _actions(
        [
            ("X", D(2024, 1, 3), "split", 2.0, None),
            ("X", D(2024, 1, 5), "dividend", None, 1.0),
            ("X", D(2024, 1, 6), "dividend", None, 0.5),
            ("X", D(2024, 1, 6), "dividend", None, 2.0),
        ]
    )
    out, table = _pit(bars, actions)
    f_split, f_div, f_two = 0.5, 1 - 1.0 / 50.0, 1 - 2.5 / 52.0
    assert table.select("ex_date", "factor", "volume_factor").rows() == [
        (D(2024, 1, 3), f_split, 2.0),
        (D(2024, 1, 5), pytest.approx(f_div, rel=1e-15), 1.0),
        (D(2024, 1, 6), pytest.approx(f_two, rel=1e-15), 1.0),
    ]
    g = [1.0, 1.0, f_split, f_split, f_split * f_div, f_split * f_div * f_two]
    assert out["cum_factor"].to_list() == pytest.approx(g, rel=1e-15)
    assert out["adj_factor"].to_list() == pytest.approx([1 / x for x in g], rel=1e-15)
    assert out["split_factor"].to_list() == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert (out["split_factor"] * out["dividend_factor"]).to_list() == pytest.approx(
        out["adj_factor"].to_list()
    )
    assert out["adj_close"].to_list() == pytest.approx(
        [c / x for c, x in zip(bars["close"], g, strict=True)], rel=1e-15
    )
    assert out["adj_volume"].to_list() == [1000.0, 1000.0, 500.0, 500.0, 500.0, 500.0]
    # the return through an ex-date is the close over the close less the day's dividends (CRSP)
    adj = out["adj_close"].to_list()
    assert adj[4] / adj[3] == pytest.approx(52.0 / (50.0 - 1.0), rel=1e-14)
    assert adj[5] / adj[4] == pytest.approx(49.5 / (52.0 - 2.5), rel=1e-14)
    # adjusted as of the last session: raw * G(latest) / G(t); the last bar is as traded
    now = adjustments.adjusted_as_of(out, table)
    assert now["adj_close"].to_list() == pytest.approx(
        [c * g[-1] / x for c, x in zip(bars["close"], g, strict=True)], rel=1e-14
    )
    assert now["adj_close"][-1] == pytest.approx(49.5, rel=1e-15)
    assert now["adj_volume"].to_list() == [2000.0, 2000.0, 1000.0, 1000.0, 1000.0, 1000.0]
    # the backward view of the same factors (apply_adjustments) agrees with the on-read view
    backward = adjustments.apply_adjustments(bars, actions)
    assert backward["adj_close"].to_list() == pytest.approx(now["adj_close"].to_list(), rel=1e-14)


def test_a_later_action_never_changes_an_earlier_row_and_windows_chain() -> None:
    closes = [40.0 + math.sin(k / 3.0) * 3 for k in range(30)]
    bars = _bars("X", closes)
    early = [("X", D(2024, 1, 5), "dividend", None, 0.4), ("X", D(2024, 1, 12), "split", 3.0, None)]
    late = [("X", D(2024, 1, 22), "dividend", None, 0.7)]
    before, _ = _pit(bars, _actions(early))
    after, table = _pit(bars, _actions(early + late))
    cut = D(2024, 1, 22)
    assert after.filter(pl.col("session_date") < cut).equals(before.filter(pl.col("session_date") < cut))
    assert not after.filter(pl.col("session_date") >= cut).equals(
        before.filter(pl.col("session_date") >= cut)
    )
    # Window by window (carrying the table's last row before each window) equals one pass, bit for bit.
    all_actions = _actions(early + late)
    chained = pl.DataFrame(schema=adjustments.ADJUSTMENT_FACTORS_SCHEMA)
    frames = []
    for lo, hi in (
        (D(2024, 1, 1), D(2024, 1, 10)),
        (D(2024, 1, 11), D(2024, 1, 20)),
        (D(2024, 1, 21), D(2024, 1, 30)),
    ):
        seen = bars.filter(pl.col("session_date") <= hi)
        in_window = all_actions.filter(pl.col("ex_date").is_between(lo, hi))
        window_table = adjustments.cumulate(
            adjustments.action_factors(seen, in_window), adjustments.last_before(chained, lo)
        )
        chained = pl.concat([chained.filter(pl.col("ex_date") < lo), window_table])
        frames.append(adjustments.point_in_time(seen, chained).filter(pl.col("session_date") >= lo))
    assert chained.equals(table)
    assert pl.concat(frames).equals(after)


def test_an_action_before_the_first_bar_changes_nothing() -> None:
    bars = _bars("X", [10.0, 11.0], start=D(2024, 1, 2))
    out, table = _pit(
        bars, _actions([("X", D(2024, 1, 1), "split", 2.0, None), ("Y", D(2024, 1, 3), "split", 2.0, None)])
    )
    assert table.is_empty()
    assert out["cum_factor"].to_list() == [1.0, 1.0]


def _walk(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n))))


def test_scale_invariant_indicators_are_unchanged_by_a_split_and_level_ones_follow_the_model() -> None:
    n, k = 120, 70
    path = _walk(n, 7)
    plain = _bars("X", path)
    split_day = plain["session_date"][k]
    traded = _bars("X", [c / 4.0 if i >= k else c for i, c in enumerate(path)])  # 4-for-1 on day k
    traded = traded.with_columns(
        pl.when(pl.col("session_date") >= split_day)
        .then(pl.col("volume") * 4)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )
    a, _ = _pit(plain, _actions([]))
    b, _ = _pit(traded, _actions([("X", split_day, "split", 4.0, None)]))
    ia = indicators.to_session_basis(indicators.compute_indicators(a), a)
    ib = indicators.to_session_basis(indicators.compute_indicators(b), b)
    invariant = [
        "rsi_14",
        "stoch_k",
        "stoch_d",
        "return_1d",
        "log_return_1d",
        "realized_vol_20",
        "realized_vol_60",
        "obv",
    ]
    for column in invariant:
        left, right = ia[column].to_numpy(), ib[column].to_numpy()
        np.testing.assert_allclose(right, left, rtol=1e-12, atol=1e-12, err_msg=column)
    scale = np.where(np.arange(n) >= k, 0.25, 1.0)
    for column in indicators.LEVEL_COLUMNS:
        np.testing.assert_allclose(
            ib[column].to_numpy(), ia[column].to_numpy() * scale, rtol=1e-12, atol=1e-12, err_msg=column
        )


def test_level_indicators_equal_talib_on_the_series_adjusted_as_of_each_session() -> None:
    n = 90
    path = _walk(n, 11)
    bars = _bars("X", path)
    days = bars["session_date"].to_list()
    actions = _actions(
        [
            ("X", days[30], "dividend", None, 0.8),
            ("X", days[55], "split", 2.0, None),
            ("X", days[80], "dividend", None, 0.3),
        ]
    )
    out, _ = _pit(bars, actions)
    stored = indicators.to_session_basis(indicators.compute_indicators(out), out)
    g = out["cum_factor"].to_list()
    close = out["close"].to_list()
    for t in (40, 60, 85):
        as_of_t = np.array(
            [close[s] * g[t] / g[s] for s in range(t + 1)]
        )  # adjusted as of session t, from scratch
        assert stored["sma_20"][t] == pytest.approx(talib.SMA(as_of_t, 20)[-1], rel=1e-12)
        assert stored["ema_12"][t] == pytest.approx(talib.EMA(as_of_t, 12)[-1], rel=1e-12)
        macd, signal, _ = talib.MACD(as_of_t, 12, 26, 9)
        assert stored["macd"][t] == pytest.approx(macd[-1], rel=1e-10)
        assert stored["macd_signal"][t] == pytest.approx(signal[-1], rel=1e-10)
        assert stored["rsi_14"][t] == pytest.approx(talib.RSI(as_of_t, 14)[-1], rel=1e-12)


def test_session_basis_needs_the_cumulative_factor() -> None:
    frame = indicators.compute_indicators(_pit(_bars("X", _walk(5, 1)), _actions([]))[0])
    with pytest.raises(ValueError, match="bars: missing column 'cum_factor'"):
        indicators.to_session_basis(frame, _bars("X", _walk(5, 1)))


# ---- one chain per security across a ticker change (issue 21) -------------------------------------------
# FB trades Jan 1..3, renamed META from Jan 4 (one security_id S1); X (no id) alongside.
# FB dividend 1.00 ex Jan 2 (close before: 200), META 2-for-1 split ex Jan 5, X dividend 0.5 ex Jan 3 (close 50).
def _renamed() -> tuple[pl.DataFrame, pl.DataFrame]:
    bars = pl.concat(
        [_bars("FB", [200.0, 199.0, 198.0]), _bars("META", [198.0, 99.0], start=D(2024, 1, 4)),
         _bars("X", [50.0, 50.0, 49.5, 49.0, 48.0])]
    ).with_columns(pl.when(pl.col("symbol") == "X").then(None).otherwise(pl.lit("S1")).alias("security_id"))
    actions = _actions(
        [("FB", D(2024, 1, 2), "dividend", None, 1.0), ("META", D(2024, 1, 5), "split", 2.0, None),
         ("X", D(2024, 1, 3), "dividend", None, 0.5)]
    ).with_columns(pl.when(pl.col("symbol") == "X").then(None).otherwise(pl.lit("S1")).alias("security_id"))
    return bars, actions


def test_a_ticker_change_keeps_one_continuous_chain_under_the_security_id() -> None:
    bars, actions = _renamed()
    fb_div, meta_split, x_div = 1 - 1.0 / 200.0, 0.5, 1 - 0.5 / 50.0  # oracle: the numbers above
    adjusted, table = _pit(bars, actions)
    assert table.columns == [*adjustments.FACTOR_TABLE_COLUMNS, "security_id"]
    rows = {(r["symbol"], r["ex_date"]): r for r in table.to_dicts()}
    assert rows[("FB", D(2024, 1, 2))]["cum_factor"] == pytest.approx(fb_div, rel=1e-12)
    # META's first cumulative factor continues from FB's last (not 0.5 alone); X keeps its own chain.
    assert rows[("META", D(2024, 1, 5))]["cum_factor"] == pytest.approx(fb_div * meta_split, rel=1e-12)
    assert rows[("META", D(2024, 1, 5))]["cum_volume_factor"] == pytest.approx(2.0, rel=1e-12)
    assert rows[("X", D(2024, 1, 3))]["cum_factor"] == pytest.approx(x_div, rel=1e-12)
    assert rows[("X", D(2024, 1, 3))]["security_id"] is None
    # Point in time: META's first session carries FB's factor; adjusted as of now, FB's history is
    # raw x FB dividend x META split (the latest META bar as traded).
    pit = {(r["symbol"], r["session_date"]): r for r in adjusted.to_dicts()}
    assert pit[("META", D(2024, 1, 4))]["adj_close"] == pytest.approx(198.0 / fb_div, rel=1e-12)
    now = {
        (r["symbol"], r["session_date"]): r
        for r in adjustments.adjusted_as_of(adjusted, table).to_dicts()
    }
    assert now[("FB", D(2024, 1, 1))]["adj_close"] == pytest.approx(200.0 * fb_div * meta_split, rel=1e-12)
    assert now[("FB", D(2024, 1, 3))]["adj_close"] == pytest.approx(198.0 * meta_split, rel=1e-12)
    assert now[("FB", D(2024, 1, 3))]["adj_volume"] == pytest.approx(1000 * 2.0, rel=1e-12)
    assert now[("META", D(2024, 1, 5))]["adj_close"] == pytest.approx(99.0, rel=1e-12)
    assert now[("X", D(2024, 1, 2))]["adj_close"] == pytest.approx(50.0 * x_div, rel=1e-12)
    assert now[("X", D(2024, 1, 5))]["adj_close"] == pytest.approx(48.0, rel=1e-12)
    # Window by window (the window after the change carries FB's row) equals the single pass.
    first = adjustments.cumulate(
        adjustments.action_factors(bars, actions.filter(pl.col("ex_date") <= D(2024, 1, 3)))
    )
    second = adjustments.cumulate(
        adjustments.action_factors(bars, actions.filter(pl.col("ex_date") >= D(2024, 1, 4))),
        adjustments.last_before(first, D(2024, 1, 4)),
    )
    assert pl.concat([first, second]).sort("symbol", "ex_date").equals(table)


def test_a_dividend_on_the_new_tickers_first_session_uses_the_former_tickers_close() -> None:
    bars, _ = _renamed()
    actions = _actions([("META", D(2024, 1, 4), "dividend", None, 0.99)]).with_columns(
        pl.lit("S1").alias("security_id")
    )
    table = adjustments.cumulate(adjustments.action_factors(bars, actions))
    assert table["factor"].to_list() == [pytest.approx(1 - 0.99 / 198.0, rel=1e-12)]  # FB's Jan 3 close
    # Keyed by symbol (no id on either side) META has no bar before it: the action changes nothing.
    assert adjustments.action_factors(bars.drop("security_id"), actions.drop("security_id")).height == 0


def test_symbol_frames_keep_per_symbol_chains_and_a_carried_frame_without_ids_is_refused() -> None:
    bars, actions = _renamed()
    table = adjustments.cumulate(adjustments.action_factors(bars.drop("security_id"), actions.drop("security_id")))
    assert table.columns == list(adjustments.FACTOR_TABLE_COLUMNS)
    meta = table.filter(pl.col("symbol") == "META").row(0, named=True)
    assert meta["cum_factor"] == pytest.approx(0.5, rel=1e-12)  # META's own product: no id, no chain
    with pytest.raises(adjustments.AdjustmentInputError, match=r"carried cumulative factors.*'security_id'"):
        adjustments.cumulate(adjustments.action_factors(bars, actions), table)
