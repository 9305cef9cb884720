"""The synthetic market: determinism, schemas, calendars, prices, corporate actions, faults, signal."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from wealth_pipeline.core import calendars
from wealth_pipeline.providers.base import (
    BARS_SCHEMA,
    BENCHMARK_RETURNS_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    FACTOR_RETURNS_SCHEMA,
    FX_RATES_SCHEMA,
    SYMBOL_MASTER_SCHEMA,
    MarketDataProvider,
)
from wealth_pipeline.providers.synthetic import (
    FAULTS_SCHEMA,
    LOADINGS_SCHEMA,
    TOTAL_RETURNS_SCHEMA,
    SyntheticMarket,
)

D = dt.date
WINDOW_METHODS = {
    "bars": (BARS_SCHEMA, "session_date"),
    "corporate_actions": (CORPORATE_ACTIONS_SCHEMA, "ex_date"),
    "fx_rates": (FX_RATES_SCHEMA, "session_date"),
    "factor_returns": (FACTOR_RETURNS_SCHEMA, "session_date"),
    "benchmark_returns": (BENCHMARK_RETURNS_SCHEMA, "session_date"),
    "total_returns": (TOTAL_RETURNS_SCHEMA, "session_date"),
}


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket()


@pytest.fixture(scope="module")
def bars_2023_2024(market: SyntheticMarket) -> pl.DataFrame:
    return market.bars(D(2023, 1, 1), D(2024, 12, 31))


def test_is_a_market_data_provider(market: SyntheticMarket) -> None:
    assert isinstance(market, MarketDataProvider)
    assert market.name == "synthetic"


@pytest.mark.parametrize("dirty", [False, True])
def test_window_alone_equals_window_inside_larger_window(dirty: bool) -> None:
    alone = SyntheticMarket(seed=7, dirty=dirty)
    large = SyntheticMarket(seed=7, dirty=dirty)
    start, end = D(2023, 3, 6), D(2023, 4, 14)
    for method, (_, date_column) in WINDOW_METHODS.items():
        small = getattr(alone, method)(start, end)
        big = getattr(large, method)(D(2015, 1, 1), D(2026, 6, 30))
        assert small.height > 0, method
        assert small.equals(big.filter(pl.col(date_column).is_between(start, end))), method
    assert alone.injected_faults(start, end).equals(large.injected_faults(start, end))


def test_same_seed_same_data_and_other_seed_differs() -> None:
    window = (D(2024, 1, 1), D(2024, 3, 31))
    first, again, other = SyntheticMarket(seed=3), SyntheticMarket(seed=3), SyntheticMarket(seed=4)
    assert first.bars(*window).equals(again.bars(*window))
    assert first.symbol_master().equals(again.symbol_master())
    assert first.true_loadings().equals(again.true_loadings())
    assert not first.bars(*window)["close"].equals(other.bars(*window)["close"])
    # a smaller universe is a prefix of a larger one: same symbols, listings and loadings
    small, large = SyntheticMarket(seed=3, universe_size=20), SyntheticMarket(seed=3, universe_size=50)
    assert set(small.symbol_master()["symbol"]) < set(large.symbol_master()["symbol"])
    assert small.true_loadings().equals(
        large.true_loadings().filter(pl.col("symbol").is_in(small.true_loadings()["symbol"].implode()))
    )


def test_every_method_conforms_to_its_schema(market: SyntheticMarket) -> None:
    assert market.symbol_master().schema == pl.Schema(SYMBOL_MASTER_SCHEMA)
    assert market.true_loadings().schema == pl.Schema(LOADINGS_SCHEMA)
    for method, (schema, _) in WINDOW_METHODS.items():
        frame = getattr(market, method)(D(2024, 6, 1), D(2024, 6, 30))
        assert frame.schema == pl.Schema(schema), method
        assert frame.height > 0, method
        assert frame.null_count().sum_horizontal().item() == 0 or method == "corporate_actions", method
        before_epoch = getattr(market, method)(D(2010, 1, 1), D(2014, 12, 31))
        assert before_epoch.height == 0 and before_epoch.schema == pl.Schema(schema), method
    assert market.injected_faults().schema == pl.Schema(FAULTS_SCHEMA)
    assert SyntheticMarket(dirty=True).injected_faults(D(2024, 1, 1), D(2024, 12, 31)).schema == pl.Schema(
        FAULTS_SCHEMA
    )


def test_symbol_master_universe(market: SyntheticMarket) -> None:
    master = market.symbol_master()
    events = market.lifecycle_events()  # planted by default (#21): the former ticker is one more row
    changes = events.filter(pl.col("event") == "ticker_change")
    assert master.height == 50 + changes.height and master["symbol"].n_unique() == master.height
    assert master["is_synthetic"].all()  # prices are synthetic; names and identifiers are real (issue 21)
    named = {row["symbol"]: row for row in master.iter_rows(named=True)}
    for symbol in ("AAPL", "MSFT", "GOOGL"):
        assert (named[symbol]["exchange"], named[symbol]["currency"], named[symbol]["mic"]) == ("NASDAQ", "USD", "XNAS")
    assert (named["TD.TO"]["exchange"], named["TD.TO"]["currency"], named["TD.TO"]["mic"]) == ("TSX", "CAD", "XTSE")
    assert (named["AAPL"]["name"], named["AAPL"]["isin"], named["AAPL"]["cusip"]) == ("Apple Inc.", "US0378331005", "037833100")
    assert (named["MSFT"]["isin"], named["MSFT"]["cusip"], named["MSFT"]["country"]) == ("US5949181045", "594918104", "US")
    assert (named["GOOGL"]["isin"], named["TD.TO"]["isin"], named["TD.TO"]["cusip"]) == (
        "US02079K3059", "CA8911605092", "891160509")
    assert master["security_id"].n_unique() == 50 and master["security_id"].str.contains(r"^S[0-9A-F]{11}$").all()
    assert master.filter(pl.col("isin").is_not_null()).height >= 45 and set(master["security_type"]) == {"STOCK"}
    # listed from epoch to the end, but for the IPO, the delistings and the two sides of the ticker change
    starts = {**dict.fromkeys(master["symbol"], D(2015, 1, 2)),
              **dict(events.filter(pl.col("event").is_in(["ipo", "ticker_change"])).select("symbol", "event_date").iter_rows())}
    ends = {**dict.fromkeys(master["symbol"]),
            **dict(events.filter(pl.col("event") == "delisting").select("symbol", "event_date").iter_rows()),
            **dict(changes.select("former_symbol", "event_date").iter_rows())}
    assert dict(master.select("symbol", "valid_from").iter_rows()) == starts
    assert dict(master.select("symbol", "valid_to").iter_rows()) == ends
    assert master.filter(pl.col("symbol").is_in(["AAPL", "MSFT", "GOOGL", "TD.TO"]))["valid_to"].is_null().all()
    tsx = master.filter(pl.col("exchange") == "TSX")
    us = master.filter(pl.col("exchange") != "TSX")
    assert tsx.height >= 3 and us.filter(pl.col("exchange") == "NYSE").height >= 3
    assert tsx["symbol"].str.ends_with(".TO").all() and (tsx["currency"] == "CAD").all()
    assert (~us["symbol"].str.ends_with(".TO")).all() and (us["currency"] == "USD").all()
    assert set(master["asset_class"]) == {"equity"}
    assert master["sector"].n_unique() >= 5
    assert master["symbol"].to_list() == sorted(master["symbol"].to_list())


def test_bars_follow_each_listing_exchange_calendar(market: SyntheticMarket) -> None:
    bars = market.bars(D(2024, 6, 24), D(2024, 7, 12))
    days = {s: set(g["session_date"]) for (s,), g in bars.group_by("symbol")}
    assert D(2024, 7, 4) in days["TD.TO"] and D(2024, 7, 4) not in days["AAPL"]
    assert D(2024, 7, 1) not in days["TD.TO"] and D(2024, 7, 1) in days["AAPL"]
    master = market.symbol_master()
    for row in master.iter_rows(named=True):  # while listed (a delisting or ticker change ends a symbol)
        expected = {d for d in calendars.sessions(row["exchange"], D(2024, 6, 24), D(2024, 7, 12))
                    if row["valid_from"] <= d and (row["valid_to"] is None or d < row["valid_to"])}
        assert days.get(row["symbol"], set()) == expected, row["symbol"]
    assert master.filter(pl.col("valid_to") < D(2024, 6, 24))["symbol"].to_list()  # some are not listed here
    assert bars.select("symbol", "session_date").is_duplicated().sum() == 0
    assert bars.height == sum(len(v) for v in days.values())
    currency = dict(master.select("symbol", "currency").iter_rows())
    assert all(currency[s] == c for s, c in bars.select("symbol", "currency").iter_rows())


def test_ohlcv_is_consistent(bars_2023_2024: pl.DataFrame) -> None:
    bars = bars_2023_2024
    assert bars.height == bars.select("symbol", "session_date").n_unique()
    checks = bars.select(
        (pl.col("low") > 0).all().alias("positive"),
        (pl.col("low") <= pl.min_horizontal("open", "close")).all().alias("low"),
        (pl.max_horizontal("open", "close") <= pl.col("high")).all().alias("high"),
        (pl.col("volume") > 0).all().alias("volume"),
        pl.any_horizontal(pl.all().is_null()).any().not_().alias("no_nulls"),
    )
    assert checks.row(0, named=True) == dict.fromkeys(checks.columns, True)


def test_factor_benchmark_and_fx_datasets(market: SyntheticMarket) -> None:
    start, end = D(2024, 1, 1), D(2024, 12, 31)
    nyse = calendars.sessions("NYSE", start, end)
    factors = market.factor_returns(start, end)
    assert factors.height == 5 * len(nyse)
    assert sorted(set(factors["session_date"])) == nyse
    wide = factors.pivot(on="factor", index="session_date", values="value")
    assert set(wide.columns) == {"session_date", "market", "size", "value", "momentum", "rf"}
    assert wide["rf"].is_between(0.0, 0.06 / 252).all()
    assert 0.007 < wide["market"].std() < 0.013
    for name, vol in (("size", 0.005), ("value", 0.005), ("momentum", 0.006)):
        assert 0.7 * vol < wide[name].std() < 1.3 * vol, name

    bench = market.benchmark_returns(start, end)
    assert bench["session_date"].to_list() == nyse and set(bench["benchmark"]) == {"SYNTH500"}
    level = bench["level"].to_numpy()
    assert np.allclose(level[1:] / level[:-1] - 1.0, bench["return"].to_numpy()[1:], rtol=0, atol=1e-12)
    joined = bench.join(wide, on="session_date")
    tracking = joined["return"] - joined["market"] - joined["rf"]
    assert tracking.abs().max() < 0.003 and tracking.std() < 0.001

    fx = market.fx_rates(start, end)
    assert fx["session_date"].to_list() == calendars.weekdays(start, end)  # holidays included
    assert set(fx["base_currency"]) == {"USD"} and set(fx["quote_currency"]) == {"CAD"}
    assert fx["rate"].is_between(1.2, 1.6).all()
    log_changes = np.diff(np.log(fx["rate"].to_numpy()))
    assert 0.003 < log_changes.std() < 0.005


def test_returns_follow_the_documented_factor_model() -> None:
    market = SyntheticMarket(seed=11, universe_size=30)
    start, end = D(2021, 1, 1), D(2024, 12, 31)
    wide = market.factor_returns(start, end).pivot(on="factor", index="session_date", values="value")
    master = market.symbol_master()
    ids = master.select("symbol", "security_id")
    # per security: the planted ticker change gives one security two symbols (#21)
    loadings = market.true_loadings().join(ids, on="symbol").drop("symbol")
    us = master.filter(pl.col("exchange") != "TSX")["security_id"].unique()
    total = (
        market.total_returns(start, end)
        .join(ids, on="symbol")
        .filter(pl.col("security_id").is_in(us.implode()))
        .join(wide, on="session_date")
    )
    residual = total.join(loadings, on="security_id").with_columns(
        (
            pl.col("return")
            - pl.col("rf")
            - pl.col("alpha")
            - pl.col("beta_market") * pl.col("market")
            - pl.col("beta_size") * pl.col("size")
            - pl.col("beta_value") * pl.col("value")
            - pl.col("beta_momentum") * pl.col("momentum")
        ).alias("eps")
    )
    per_symbol = residual.group_by("security_id").agg(
        pl.col("eps").std().alias("sd"),
        pl.col("idio_vol").first(),
        pl.corr("eps", "market").alias("corr_market"),
        pl.col("eps").mean().alias("mean"),
        pl.len().alias("n"),
    )
    assert per_symbol.height == us.len()
    assert ((per_symbol["sd"] / per_symbol["idio_vol"]) - 1).abs().max() < 0.1
    assert per_symbol["corr_market"].abs().max() < 0.12
    # 4 standard errors of the mean: an IPO or a delisting has fewer sessions in the window
    assert (per_symbol["mean"].abs() < 4 * per_symbol["idio_vol"] / per_symbol["n"].sqrt()).all()
    assert loadings["beta_market"].is_between(0.6, 1.4).all()
    for name in ("beta_size", "beta_value", "beta_momentum"):
        assert loadings[name].is_between(-0.5, 0.5).all()
    assert loadings["idio_vol"].is_between(0.01, 0.025).all()
    assert loadings["alpha"].abs().max() < 0.0003


def test_true_loadings_shape(market: SyntheticMarket) -> None:
    loadings = market.true_loadings()
    assert loadings.shape == (50, 7)
    former = market.lifecycle_events()["former_symbol"].drop_nulls()  # loadings are per security: latest symbol
    master = market.symbol_master().filter(~pl.col("symbol").is_in(former.implode()))
    assert loadings["symbol"].to_list() == master["symbol"].to_list()


def test_splits_inside_2023_2024_and_dividends(market: SyntheticMarket, bars_2023_2024: pl.DataFrame) -> None:
    actions = market.corporate_actions(D(2023, 1, 1), D(2024, 12, 31))
    splits = actions.filter(pl.col("action_type") == "split")
    googl = splits.filter(pl.col("symbol") == "GOOGL")
    assert googl.select("ex_date", "ratio", "currency").rows() == [(D(2023, 7, 17), 4.0, "USD")]
    around = bars_2023_2024.filter(
        (pl.col("symbol") == "GOOGL") & pl.col("session_date").is_between(D(2023, 7, 14), D(2023, 7, 17))
    )["close"]
    assert around[1] / around[0] < 0.3  # the raw price quarters
    assert splits["ratio"].is_in([0.1, 2.0, 3.0, 4.0]).all() and splits["amount"].is_null().all()
    dividends = actions.filter(pl.col("action_type") == "dividend")
    assert dividends["ratio"].is_null().all() and (dividends["amount"] > 0).all()
    per_symbol = dividends.group_by("symbol").len()
    counts = dict(per_symbol.iter_rows())
    assert counts["AAPL"] == counts["MSFT"] == counts["TD.TO"] == 8 and "GOOGL" not in counts
    assert dividends.filter(pl.col("symbol") == "TD.TO")["currency"].unique().to_list() == ["CAD"]
    # every action falls on a bar of its symbol
    keys = bars_2023_2024.select("symbol", pl.col("session_date").alias("ex_date"))
    assert actions.join(keys, on=["symbol", "ex_date"], how="anti").height == 0
    assert actions.select("symbol", "ex_date", "action_type").is_duplicated().sum() == 0


def test_clean_market_has_no_faults(market: SyntheticMarket, bars_2023_2024: pl.DataFrame) -> None:
    assert market.injected_faults().height == 0
    assert bars_2023_2024.select("symbol", "session_date").is_duplicated().sum() == 0
    assert (bars_2023_2024["close"] <= bars_2023_2024["high"]).all()


def _apply_faults(clean: pl.DataFrame, faults: pl.DataFrame) -> pl.DataFrame:
    """The dirty bars expected from the clean bars and the recorded faults (all since epoch)."""
    rows = []
    by_symbol = {symbol: group for (symbol,), group in faults.group_by("symbol")}
    for bar in clean.iter_rows(named=True):
        own = by_symbol.get(bar["symbol"])
        kinds = (
            []
            if own is None
            else own.filter(pl.col("session_date") == bar["session_date"])["fault"].to_list()
        )
        halvings = (
            0
            if own is None
            else own.filter(
                (pl.col("fault") == "unrecorded_split") & (pl.col("session_date") <= bar["session_date"])
            ).height
        )
        for name in ("open", "high", "low", "close"):
            bar[name] *= 0.5**halvings
        bar["volume"] *= 2**halvings
        if "tick_100x" in kinds:
            bar["close"] *= 100.0
        if "missing_bar" not in kinds:
            rows.extend([bar] * (2 if "duplicate_row" in kinds else 1))
    return pl.DataFrame(rows, schema=BARS_SCHEMA)


def test_dirty_faults_are_injected_and_recorded(bars_2023_2024: pl.DataFrame) -> None:
    dirty_market = SyntheticMarket(dirty=True)
    dirty = dirty_market.bars(D(2023, 1, 1), D(2024, 12, 31))
    faults = dirty_market.injected_faults(D(2023, 1, 1), D(2024, 12, 31))
    assert sorted(faults["fault"].to_list()) == sorted(
        ["tick_100x", "duplicate_row", "missing_bar", "unrecorded_split"] * 2
    )
    assert not faults["symbol"].is_in(["AAPL", "MSFT", "GOOGL", "TD.TO"]).any()
    assert faults["detail"].str.len_chars().min() > 10
    since_epoch = dirty_market.injected_faults(D(2015, 1, 1), D(2024, 12, 31))
    assert since_epoch.height >= 4 * 9
    expected = _apply_faults(bars_2023_2024, since_epoch)
    assert dirty.height == expected.height == bars_2023_2024.height  # one duplicate, one missing per year
    assert dirty.equals(expected)
    # each fault is visible on its own: the duplicate, the gap, the 100x close
    for fault in faults.iter_rows(named=True):
        at = (pl.col("symbol") == fault["symbol"]) & (pl.col("session_date") == fault["session_date"])
        n_rows = dirty.filter(at).height
        assert n_rows == {"duplicate_row": 2, "missing_bar": 0}.get(fault["fault"], 1)
        if fault["fault"] == "tick_100x":
            bar = dirty.filter(at).row(0, named=True)
            assert bar["close"] > 50 * bar["high"] / 1.1
    # other datasets stay clean
    assert dirty_market.corporate_actions(D(2023, 1, 1), D(2024, 12, 31)).equals(
        SyntheticMarket().corporate_actions(D(2023, 1, 1), D(2024, 12, 31))
    )


def _mean_rank_ic(market: SyntheticMarket, start: dt.date, end: dt.date) -> float:
    """Mean daily Spearman correlation of the trailing 20-session return with the next 5 sessions'."""
    log_index = (
        market.total_returns(start, end)
        .sort("symbol", "session_date")
        .with_columns(pl.col("return").log1p().cum_sum().over("symbol").alias("li"))
    )
    frame = log_index.with_columns(
        (pl.col("li") - pl.col("li").shift(20).over("symbol")).alias("feature"),
        (pl.col("li").shift(-5).over("symbol") - pl.col("li")).alias("forward"),
    ).drop_nulls()
    per_day = frame.group_by("session_date").agg(pl.corr("feature", "forward", method="spearman").alias("ic"))
    return float(per_day["ic"].mean())


def test_planted_signal_has_positive_rank_ic_and_none_without_it() -> None:
    start, end = D(2022, 1, 1), D(2023, 12, 31)
    with_signal = _mean_rank_ic(SyntheticMarket(seed=5, universe_size=200, signal_strength=0.1), start, end)
    without = _mean_rank_ic(SyntheticMarket(seed=5, universe_size=200), start, end)
    assert with_signal > 0.12
    assert abs(without) < 0.03


def test_universe_of_5000(market: SyntheticMarket) -> None:
    big = SyntheticMarket(universe_size=5000)
    master = big.symbol_master()
    assert master["security_id"].n_unique() == 5000 and master["symbol"].n_unique() == master.height
    bars = big.bars(D(2024, 7, 1), D(2024, 7, 5))
    listed = (pl.col("valid_from") <= D(2024, 7, 1)) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > D(2024, 7, 5)))
    assert master.filter(listed).height < 5000  # the planted delistings (and the former ticker) are not listed then
    per_exchange = master.filter(listed).group_by("exchange").len()
    expected = sum(
        count * len(calendars.sessions(exchange, D(2024, 7, 1), D(2024, 7, 5)))
        for exchange, count in per_exchange.iter_rows()
    )
    assert bars.height == expected
    assert big.true_loadings().shape == (5000, 7)
    assert big.describe()["universe_size"] == 5000


def test_describe(market: SyntheticMarket) -> None:
    info = market.describe()
    assert info["is_synthetic"] is True and info["provider"] == "synthetic"
    assert (info["seed"], info["universe_size"], info["epoch"], info["dirty"]) == (7, 50, "2015-01-02", False)
    assert info["signal_strength"] == 0.0 and info["benchmark"] == "SYNTH500"
    assert sum(info["exchanges"].values()) == 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"universe_size": 3}, "universe_size must be between 4 and 10000"),
        ({"universe_size": 10_001}, "universe_size must be between 4 and 10000"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"signal_strength": -0.1}, "signal_strength must be a finite number >= 0"),
        ({"epoch": D(1980, 1, 2)}, "epoch 1980-01-02 is outside the exchange calendars' range"),
    ],
)
def test_bad_parameters_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticMarket(**kwargs)


def test_bad_windows_raise(market: SyntheticMarket) -> None:
    with pytest.raises(ValueError, match="window start 2024-02-01 is after end 2024-01-01"):
        market.bars(D(2024, 2, 1), D(2024, 1, 1))
    with pytest.raises(ValueError, match=r"past .* the last date the exchange calendars cover"):
        market.fx_rates(D(2024, 1, 1), D(2100, 1, 1))
    with pytest.raises(TypeError, match=r"start must be a datetime\.date"):
        market.bars("2024-01-01", D(2024, 1, 2))  # type: ignore[arg-type]
