"""Split/dividend adjustment: hand-computed cases, a naive oracle, and the synthetic market's returns."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

from wealth_pipeline.core.adjustments import AdjustmentInputError, adjustment_factors, apply_adjustments
from wealth_pipeline.providers.base import BARS_SCHEMA, CORPORATE_ACTIONS_SCHEMA
from wealth_pipeline.providers.synthetic import SyntheticMarket

D = dt.date


def _bars(rows: list[tuple[str, dt.date, float, int]]) -> pl.DataFrame:
    """Bars with open = close - 1, high = close + 1, low = close - 2."""
    return pl.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "session_date": [r[1] for r in rows],
            "open": [r[2] - 1 for r in rows],
            "high": [r[2] + 1 for r in rows],
            "low": [r[2] - 2 for r in rows],
            "close": [r[2] for r in rows],
            "volume": [r[3] for r in rows],
            "currency": ["USD"] * len(rows),
        },
        schema=BARS_SCHEMA,
    )


def _actions(rows: list[tuple[str, dt.date, str, float | None, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "ex_date": [r[1] for r in rows],
            "action_type": [r[2] for r in rows],
            "ratio": [r[3] for r in rows],
            "amount": [r[4] for r in rows],
            "currency": ["USD"] * len(rows),
            "distribution_type": ["split" if r[2] == "split" else "regular" for r in rows],
        },
        schema=CORPORATE_ACTIONS_SCHEMA,
    )


NO_ACTIONS = _actions([])


def test_four_for_one_split_hand_computed() -> None:
    bars = _bars(
        [
            ("X", D(2024, 6, 3), 400.0, 100),
            ("X", D(2024, 6, 4), 404.0, 110),
            ("X", D(2024, 6, 5), 102.0, 500),
            ("X", D(2024, 6, 6), 103.0, 450),
        ]
    )
    out = apply_adjustments(bars, _actions([("X", D(2024, 6, 5), "split", 4.0, None)]))
    assert out["split_factor"].to_list() == [0.25, 0.25, 1.0, 1.0]
    assert out["dividend_factor"].to_list() == [1.0] * 4
    assert out["adj_factor"].to_list() == [0.25, 0.25, 1.0, 1.0]
    assert out["adj_close"].to_list() == [100.0, 101.0, 102.0, 103.0]
    assert out["adj_open"].to_list() == [99.75, 100.75, 101.0, 102.0]
    assert out["adj_high"].to_list() == [100.25, 101.25, 103.0, 104.0]
    assert out["adj_low"].to_list() == [99.5, 100.5, 100.0, 101.0]
    assert out["adj_volume"].to_list() == [400.0, 440.0, 500.0, 450.0]
    # the raw columns are untouched
    assert out.select(list(BARS_SCHEMA)).equals(bars)


def test_dividend_uses_close_before_ex_date() -> None:
    bars = _bars(
        [
            ("X", D(2024, 6, 3), 80.0, 10),
            ("X", D(2024, 6, 4), 50.0, 10),
            ("X", D(2024, 6, 5), 49.5, 10),
        ]
    )
    out = adjustment_factors(bars, _actions([("X", D(2024, 6, 5), "dividend", None, 1.0)]))
    # 1 - 1.0 / 50.0 = 0.98 before the ex_date, 1 from it on
    assert out["dividend_factor"].to_list() == pytest.approx([0.98, 0.98, 1.0], abs=1e-15)
    assert out["split_factor"].to_list() == [1.0, 1.0, 1.0]
    assert out["adj_factor"].to_list() == pytest.approx([0.98, 0.98, 1.0], abs=1e-15)
    assert out.columns == ["symbol", "session_date", "split_factor", "dividend_factor", "adj_factor"]
    adjusted = apply_adjustments(bars, _actions([("X", D(2024, 6, 5), "dividend", None, 1.0)]))
    assert adjusted["adj_volume"].to_list() == [10.0, 10.0, 10.0]  # dividends leave volume alone
    assert adjusted["adj_close"].to_list() == pytest.approx([78.4, 49.0, 49.5], abs=1e-12)


def test_several_actions_multiply_and_same_day_split_uses_pre_split_close() -> None:
    bars = _bars(
        [
            ("X", D(2024, 1, 2), 100.0, 1),
            ("X", D(2024, 1, 3), 100.0, 1),  # dividend 2.0 ex on 01-04: 1 - 2/100 = 0.98
            ("X", D(2024, 1, 4), 200.0, 1),  # split 2:1 and dividend 4.0 ex on 01-05: 0.5 * (1 - 4/200)
            ("X", D(2024, 1, 5), 98.0, 1),
        ]
    )
    actions = _actions(
        [
            ("X", D(2024, 1, 5), "dividend", None, 4.0),
            ("X", D(2024, 1, 4), "dividend", None, 2.0),
            ("X", D(2024, 1, 5), "split", 2.0, None),
        ]
    )
    out = adjustment_factors(bars, actions)
    assert out["split_factor"].to_list() == [0.5, 0.5, 0.5, 1.0]
    assert out["dividend_factor"].to_list() == pytest.approx([0.98 * 0.98, 0.98 * 0.98, 0.98, 1.0], abs=1e-15)
    assert out["adj_factor"].to_list() == pytest.approx([0.5 * 0.9604, 0.5 * 0.9604, 0.49, 1.0], abs=1e-15)


def test_reverse_split_divides_earlier_volume() -> None:
    bars = _bars([("X", D(2024, 1, 2), 0.5, 1000), ("X", D(2024, 1, 3), 5.0, 100)])
    out = apply_adjustments(bars, _actions([("X", D(2024, 1, 3), "split", 0.1, None)]))
    assert out["split_factor"].to_list() == [10.0, 1.0]
    assert out["adj_close"].to_list() == [5.0, 5.0]
    assert out["adj_volume"].to_list() == pytest.approx([100.0, 100.0], rel=1e-15)


def test_edge_cases_of_action_dates_and_symbols() -> None:
    bars = _bars(
        [
            ("X", D(2024, 7, 2), 100.0, 1),
            ("X", D(2024, 7, 3), 110.0, 1),
            ("X", D(2024, 7, 5), 55.0, 1),  # 07-04 is a holiday: no bar
            ("Y", D(2024, 7, 2), 20.0, 1),
            ("Y", D(2024, 7, 3), 21.0, 1),
        ]
    )
    actions = _actions(
        [
            ("X", D(2024, 7, 4), "split", 2.0, None),  # ex_date without a bar: applies before it
            ("X", D(2024, 7, 4), "dividend", None, 11.0),  # uses the 07-03 close 110: 0.9
            ("X", D(2024, 7, 1), "split", 3.0, None),  # before the first bar: nothing to adjust
            ("Y", D(2024, 7, 8), "split", 5.0, None),  # after the last bar: not yet reflected
            ("Z", D(2024, 7, 3), "split", 2.0, None),  # no bars at all: ignored
        ]
    )
    out = adjustment_factors(bars, actions)
    assert out["symbol"].to_list() == ["X", "X", "X", "Y", "Y"]
    assert out["split_factor"].to_list() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert out["dividend_factor"].to_list() == pytest.approx([0.9, 0.9, 1.0, 1.0, 1.0], abs=1e-15)
    assert out["adj_factor"].to_list() == pytest.approx([0.45, 0.45, 1.0, 1.0, 1.0], abs=1e-15)


def test_no_actions_gives_unit_factors_and_keeps_row_order() -> None:
    bars = _bars(
        [
            ("B", D(2024, 1, 3), 10.0, 1),
            ("A", D(2024, 1, 2), 20.0, 1),
            ("B", D(2024, 1, 2), 30.0, 1),
        ]
    )
    out = apply_adjustments(bars, NO_ACTIONS)
    assert out["symbol"].to_list() == ["B", "A", "B"]
    assert out["session_date"].to_list() == [D(2024, 1, 3), D(2024, 1, 2), D(2024, 1, 2)]
    assert out["adj_factor"].to_list() == [1.0, 1.0, 1.0]
    assert out["adj_close"].to_list() == [10.0, 20.0, 30.0]


def _naive_factors(bars: list[tuple[str, dt.date, float]], actions: list[tuple]) -> dict:
    """Row-by-row oracle written straight from the convention."""
    out = {}
    for symbol, day, _ in bars:
        own = sorted((d, c) for s, d, c in bars if s == symbol)
        last = own[-1][0]
        split = dividend = 1.0
        paid: dict[dt.date, float] = {}  # several distributions of one ex-date add up
        for a_symbol, ex, kind, ratio, amount in actions:
            if a_symbol != symbol or not (day < ex <= last) or not [d for d, _ in own if d < ex]:
                continue
            if kind == "split":
                split *= 1.0 / ratio
            else:
                paid[ex] = paid.get(ex, 0.0) + amount
        for ex, total in paid.items():
            dividend *= 1.0 - total / [c for d, c in own if d < ex][-1]
        out[(symbol, day)] = (split, dividend)
    return out


def test_matches_a_naive_row_by_row_oracle_on_random_input() -> None:
    rng = random.Random(3)
    days = [D(2024, 1, 1) + dt.timedelta(days=k) for k in range(40)]
    bars, actions = [], []
    for symbol in ("A", "B", "C"):
        for day in sorted(rng.sample(days, 25)):
            bars.append((symbol, day, rng.uniform(20, 60)))
        for _ in range(6):
            ex = rng.choice(days)
            if rng.random() < 0.5:
                actions.append((symbol, ex, "split", rng.choice([2.0, 3.0, 0.5]), None))
            else:
                actions.append((symbol, ex, "dividend", None, rng.uniform(0.1, 2.0)))
    rng.shuffle(bars)
    frame = pl.DataFrame(
        bars, schema={"symbol": pl.Utf8, "session_date": pl.Date, "close": pl.Float64}, orient="row"
    )
    out = adjustment_factors(frame, _actions(actions))
    expected = _naive_factors(bars, actions)
    assert out.height == len(bars)
    for row in out.iter_rows(named=True):
        split, dividend = expected[(row["symbol"], row["session_date"])]
        assert row["split_factor"] == pytest.approx(split, rel=1e-12)
        assert row["dividend_factor"] == pytest.approx(dividend, rel=1e-12)
        assert row["adj_factor"] == pytest.approx(split * dividend, rel=1e-12)
    assert [(r[0], r[1]) for r in out.select("symbol", "session_date").rows()] == [(b[0], b[1]) for b in bars]


@pytest.mark.parametrize(
    ("bars", "actions", "message"),
    [
        (
            _bars([("X", D(2024, 1, 2), 10.0, 1), ("X", D(2024, 1, 2), 11.0, 1)]),
            NO_ACTIONS,
            "bars row 1: duplicate bar for symbol 'X' on 2024-01-02",
        ),
        (
            _bars([("X", D(2024, 1, 2), 10.0, 1), ("X", D(2024, 1, 3), -1.0, 1)]),
            NO_ACTIONS,
            "bars row 1 (symbol 'X', session_date 2024-01-03): field 'close' must be a positive finite price",
        ),
        (
            _bars([("X", D(2024, 1, 2), 10.0, 1)]).drop("close"),
            NO_ACTIONS,
            "bars: missing columns ['close']",
        ),
        (
            _bars([("X", D(2024, 1, 2), 10.0, 1)]),
            _actions([("X", D(2024, 1, 3), "spinoff", 1.0, None)]),
            "corporate actions row 0 (symbol 'X', ex_date 2024-01-03): field 'action_type' is 'spinoff'",
        ),
        (
            _bars([("X", D(2024, 1, 2), 10.0, 1)]),
            _actions([("X", D(2024, 1, 3), "dividend", None, 0.1), ("X", D(2024, 1, 3), "split", 0.0, None)]),
            "corporate actions row 1 (symbol 'X', ex_date 2024-01-03): field 'ratio' of a split",
        ),
        (
            _bars([("X", D(2024, 1, 2), 10.0, 1)]),
            _actions([("X", D(2024, 1, 3), "dividend", None, None)]),
            "corporate actions row 0 (symbol 'X', ex_date 2024-01-03): field 'amount' of a dividend",
        ),
        (
            _bars([("X", D(2024, 1, 2), 10.0, 1), ("X", D(2024, 1, 3), 9.0, 1)]),
            _actions([("X", D(2024, 1, 3), "dividend", None, 10.0)]),
            "corporate actions row 0 (symbol 'X', ex_date 2024-01-03): field 'amount' 10.0 (the day's dividends in total) is not smaller than the close 10.0",
        ),
    ],
)
def test_bad_input_names_row_and_field(bars: pl.DataFrame, actions: pl.DataFrame, message: str) -> None:
    with pytest.raises(AdjustmentInputError) as excinfo:
        apply_adjustments(bars, actions)
    assert message in str(excinfo.value)


@pytest.fixture(scope="module")
def synthetic() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    market = SyntheticMarket(seed=7, universe_size=60)
    start, end = D(2015, 1, 1), D(2024, 12, 31)
    return market.bars(start, end), market.corporate_actions(start, end), market.total_returns(start, end)


def test_synthetic_adjusted_returns_equal_generated_total_returns(synthetic) -> None:
    bars, actions, total = synthetic
    assert actions.filter(pl.col("action_type") == "split").height >= 10
    assert actions.filter(pl.col("action_type") == "dividend").height >= 100
    adjusted = (
        apply_adjustments(bars, actions)
        .sort("symbol", "session_date")
        .with_columns(
            (pl.col("adj_close") / pl.col("adj_close").shift(1).over("symbol") - 1.0).alias("adj_return")
        )
    )
    joined = adjusted.join(total, on=["symbol", "session_date"], how="inner", validate="1:1")
    assert joined.height == bars.height == total.height
    compared = joined.drop_nulls("adj_return")
    assert compared.height == bars.height - bars["symbol"].n_unique()
    assert (compared["adj_return"] - compared["return"]).abs().max() < 1e-10
    latest = adjusted.group_by("symbol").agg(pl.col("adj_factor").last())
    assert latest["adj_factor"].to_list() == [1.0] * latest.height


def test_synthetic_raw_prices_jump_on_split_days_and_drop_by_dividends(synthetic) -> None:
    bars, actions, total = synthetic
    raw = (
        bars.sort("symbol", "session_date")
        .with_columns(pl.col("close").shift(1).over("symbol").alias("prev_close"))
        .join(total, on=["symbol", "session_date"])
    )
    splits = actions.filter(pl.col("action_type") == "split").join(
        raw, left_on=["symbol", "ex_date"], right_on=["symbol", "session_date"]
    )
    assert splits.height == actions.filter(pl.col("action_type") == "split").height
    for row in splits.iter_rows(named=True):
        raw_ratio = row["close"] / row["prev_close"]
        assert raw_ratio == pytest.approx((1 + row["return"]) / row["ratio"], rel=1e-12)
        if row["ratio"] >= 2:
            assert raw_ratio < 0.7  # a visible jump down, far beyond a day's move
        else:
            assert raw_ratio > 5.0  # reverse split
    dividends = actions.filter(pl.col("action_type") == "dividend").join(
        raw, left_on=["symbol", "ex_date"], right_on=["symbol", "session_date"]
    )
    for row in dividends.iter_rows(named=True):
        assert 0 < row["amount"] < 0.02 * row["prev_close"]
        assert row["close"] == pytest.approx(
            (row["prev_close"] - row["amount"]) * (1 + row["return"]), rel=1e-12
        )
    assert dividends.height == actions.filter(pl.col("action_type") == "dividend").height


def test_backward_factors_chain_by_security_id_across_a_ticker_change() -> None:
    # FB until Jan 4, META (same security_id) from Jan 5; FB dividend 1.0 ex Jan 3 (close before 100),
    # META 2-for-1 split ex Jan 6. With the ids FB's history is scaled by both, the last META bar as traded.
    bars = _bars([("FB", D(2024, 1, 2), 100.0, 10), ("FB", D(2024, 1, 3), 99.0, 10), ("FB", D(2024, 1, 4), 98.0, 10),
                  ("META", D(2024, 1, 5), 98.0, 10), ("META", D(2024, 1, 6), 49.0, 20)])
    actions = _actions([("FB", D(2024, 1, 3), "dividend", None, 1.0), ("META", D(2024, 1, 6), "split", 2.0, None)])
    ids = pl.lit("S1").alias("security_id")
    adjusted = apply_adjustments(bars.with_columns(ids), actions.with_columns(ids))
    div = 1 - 1.0 / 100.0
    assert adjusted["adj_factor"].to_list() == pytest.approx([div * 0.5, 0.5, 0.5, 0.5, 1.0], rel=1e-12)
    assert adjusted["adj_close"][0] == pytest.approx(100.0 * div * 0.5, rel=1e-12)
    assert adjusted["adj_volume"].to_list() == pytest.approx([20.0, 20.0, 20.0, 20.0, 20.0], rel=1e-12)
    # Without the ids each symbol is its own series: FB's last bar as traded, the split only on META.
    by_symbol = adjustment_factors(bars, actions)
    assert by_symbol["adj_factor"].to_list() == pytest.approx([div, 1.0, 1.0, 0.5, 1.0], rel=1e-12)
