"""Point-in-time universes (issue 21): history, listing intervals, index membership, bars outside a listing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import wealth_pipeline
from wealth_pipeline.core import bars as bar_compute
from wealth_pipeline.core import calendars, identifiers, universe
from wealth_pipeline.core.schemas import SYMBOL_MASTER_SCHEMA
from wealth_pipeline.providers.synthetic import SyntheticMarket

D = dt.date


def _master(rows: list[dict]) -> pl.DataFrame:
    base = {c: None for c in SYMBOL_MASTER_SCHEMA}
    frame = pl.DataFrame(
        [{**base, "exchange": "NYSE", "currency": "USD", **r} for r in rows], schema=SYMBOL_MASTER_SCHEMA
    )
    return frame


# A hand-made master: OLDCO renamed NEWCO on 2020-03-02; GONE delisted 2021-01-04; IPO listed 2020-06-15.
HAND = _master(
    [
        {"symbol": "OLDCO", "security_id": "S1", "valid_to": D(2020, 3, 2), "name": "Old Co"},
        {"symbol": "NEWCO", "security_id": "S1", "valid_from": D(2020, 3, 2), "name": "Old Co"},
        {"symbol": "GONE", "security_id": "S2", "valid_to": D(2021, 1, 4), "name": "Gone Inc"},
        {"symbol": "IPO", "security_id": "S3", "valid_from": D(2020, 6, 15), "name": "IPO Corp"},
    ]
)
MEMBERS = pl.DataFrame(
    {
        "index_name": ["X"] * 3,
        "security_id": ["S1", "S2", "S3"],
        "valid_from": [D(2019, 1, 2), D(2019, 1, 2), D(2020, 9, 21)],
        "valid_to": [None, D(2020, 12, 21), None],
    },
    schema=universe.INDEX_MEMBERSHIP_SCHEMA,
)


def test_history_has_one_record_per_symbol_interval() -> None:
    history = universe.securities_history(HAND)
    rows = {(r["security_id"], r["symbol"]): r for r in history.iter_rows(named=True)}
    assert rows[("S1", "OLDCO")]["change"] == "listing" and rows[("S1", "NEWCO")]["change"] == "ticker_change"
    assert rows[("S1", "NEWCO")]["valid_from"] == rows[("S1", "OLDCO")]["valid_to"] == D(2020, 3, 2)
    assert rows[("S2", "GONE")]["valid_to"] == D(2021, 1, 4)
    assert history.height == 4


def test_universe_as_of_follows_ticker_change_delisting_ipo_and_membership() -> None:
    h = universe.securities_history(HAND)
    as_of = {
        day: universe.universe_as_of(h, day)["symbol"].to_list()
        for day in (D(2020, 2, 28), D(2020, 3, 2), D(2020, 6, 15), D(2021, 1, 4))
    }
    assert as_of == {
        D(2020, 2, 28): ["GONE", "OLDCO"],
        D(2020, 3, 2): ["GONE", "NEWCO"],  # the ticker change day: the new symbol, same security
        D(2020, 6, 15): ["GONE", "IPO", "NEWCO"],
        D(2021, 1, 4): ["IPO", "NEWCO"],  # valid_to is exclusive: delisted that day
    }
    members = {
        day: universe.universe_as_of(h, day, MEMBERS, "X")["security_id"].to_list()
        for day in (D(2020, 9, 18), D(2020, 9, 21), D(2020, 12, 21))
    }
    assert members == {
        D(2020, 9, 18): ["S2", "S1"],
        D(2020, 9, 21): ["S2", "S3", "S1"],
        D(2020, 12, 21): ["S3", "S1"],
    }
    with pytest.raises(ValueError, match="needs the index membership"):
        universe.universe_as_of(h, D(2020, 1, 2), None, "X")


def test_overlapping_symbols_of_one_security_are_refused() -> None:
    bad = HAND.with_columns(
        pl.when(pl.col("symbol") == "OLDCO").then(None).otherwise(pl.col("valid_to")).alias("valid_to")
    )
    with pytest.raises(ValueError, match="S1 has overlapping symbols OLDCO and NEWCO"):
        universe.securities_history(bad)


def test_listed_and_index_members_per_row() -> None:
    rows = pl.DataFrame(
        {
            "symbol": ["OLDCO", "OLDCO", "NEWCO", "GONE", "IPO", "UNKNOWN"],
            "session_date": [
                D(2020, 2, 28),
                D(2020, 3, 2),
                D(2020, 3, 2),
                D(2021, 1, 4),
                D(2020, 6, 12),
                D(2020, 1, 2),
            ],
        }
    )
    assert universe.listed(rows, HAND).to_list() == [True, False, True, False, False, False]
    reasons = universe.listing_reason(rows, HAND).to_list()
    assert reasons[0] is None and reasons[5] is None  # listed, and unknown (validation names unknown symbols)
    assert reasons[3] == (
        "GONE is not listed on 2021-01-04: the symbol master lists it over [start, 2021-01-04) "
        "(valid_to exclusive: the delisting or ticker change)"
    )
    ids = pl.DataFrame(
        {"security_id": ["S3", "S3", "S2"], "session_date": [D(2020, 9, 18), D(2020, 9, 21), D(2020, 12, 21)]}
    )
    assert universe.index_members(ids, MEMBERS, "X").to_list() == [False, True, False]


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(universe_size=14, lifecycle=True)


# Issue 21 item 3, written out by hand: what the default market (universe 50) plants inside the demo's range.
DEFAULT_EVENTS = [
    ("ipo", "EXE", None, D(2023, 6, 1)),
    ("ticker_change", "DLTR", "DLTROLD", D(2023, 10, 2)),
    ("index_join", "EXE", None, D(2023, 12, 18)),
    ("index_leave", "CB", None, D(2023, 12, 18)),
    ("delisting", "GEHC", None, D(2024, 3, 15)),
    ("index_leave", "GEHC", None, D(2024, 3, 15)),
    ("index_join", "CME", None, D(2024, 3, 18)),
    ("delisting", "YUM", None, D(2024, 8, 16)),
    ("index_leave", "YUM", None, D(2024, 8, 16)),
    ("delisting", "BNS.TO", None, D(2024, 10, 1)),
]


def test_the_default_market_plants_a_few_delistings_a_ticker_change_and_an_ipo_inside_the_demo_range() -> None:
    from wealth_pipeline.cli import DEMO_END, DEMO_START

    market = SyntheticMarket()  # the embedded default: lifecycle on
    events = market.lifecycle_events()
    assert events.select("event", "symbol", "former_symbol", "event_date").rows() == DEFAULT_EVENTS
    assert events["event_date"].is_between(D.fromisoformat(DEMO_START), D.fromisoformat(DEMO_END)).all()
    holdings = set(pl.read_csv(Path(wealth_pipeline.__file__).parent / "defs/portfolio/demo/transactions.csv")["symbol"].drop_nulls())
    assert holdings == {"AAPL", "MSFT", "GOOGL", "TD.TO"} and not holdings & set(events["symbol"])
    master = market.symbol_master()
    assert set(events.select("symbol", "security_id").rows()) <= set(master.select("symbol", "security_id").rows())
    # each delisted security's last bar is its exchange's session before the delisting; none after
    bars = market.bars(D(2024, 1, 2), D(2024, 12, 31))
    exchange = dict(master.select("symbol", "exchange").iter_rows())
    for symbol, day in events.filter(pl.col("event") == "delisting").select("symbol", "event_date").iter_rows():
        days = bars.filter(pl.col("symbol") == symbol)["session_date"]
        assert days.max() == calendars.previous_sessions(exchange[symbol], day - dt.timedelta(days=1), 1)[0], symbol
    assert len({exchange[s] for s in events.filter(pl.col("event") == "delisting")["symbol"]}) == 3  # NASDAQ, NYSE, TSX
    # off: a master listed from epoch throughout, no events, every symbol trading through 2024
    plain = SyntheticMarket(lifecycle=False)
    assert plain.lifecycle_events().is_empty() and plain.symbol_master()["valid_to"].is_null().all()
    assert plain.symbol_master().height == 50 and plain.index_membership()["valid_to"].is_null().all()


def test_synthetic_lifecycle_events(market: SyntheticMarket) -> None:
    master = market.symbol_master()
    assert master.height == 15 and master["security_id"].n_unique() == 14  # the former ticker is its own row
    history = universe.securities_history(master)
    renamed = history.filter(pl.col("change") == "ticker_change").row(0, named=True)
    former = history.filter(
        (pl.col("security_id") == renamed["security_id"]) & (pl.col("change") == "listing")
    ).row(0, named=True)
    assert (former["symbol"], former["valid_to"], renamed["valid_from"]) == (
        renamed["symbol"] + "OLD",
        D(2023, 10, 2),
        D(2023, 10, 2),
    )
    delisted = master.filter(pl.col("valid_to") == D(2024, 3, 15))["symbol"].to_list()
    ipo = master.filter(pl.col("valid_from") == D(2023, 6, 1))["symbol"].to_list()
    assert len(delisted) == 1 and len(ipo) == 1
    bars = market.bars(D(2023, 5, 1), D(2024, 6, 28))
    days = {s: g["session_date"] for (s,), g in bars.group_by("symbol")}
    assert days[ipo[0]].min() == D(2023, 6, 1) and days[delisted[0]].max() == D(2024, 3, 14)
    assert days[former["symbol"]].max() == D(2023, 9, 29) and days[renamed["symbol"]].min() == D(2023, 10, 2)
    actions = market.corporate_actions(D(2015, 1, 1), D(2024, 12, 31))
    assert not actions.filter(pl.col("symbol").is_in([former["symbol"], renamed["symbol"]])).height
    assert actions.filter(
        (pl.col("symbol") == delisted[0]) & (pl.col("ex_date") >= D(2024, 3, 15))
    ).is_empty()
    membership = market.index_membership()
    id_of = dict(master.select("symbol", "security_id").iter_rows())
    joined = membership.filter(pl.col("valid_from") > D(2015, 1, 2))
    assert id_of[ipo[0]] in joined["security_id"].to_list() and joined.height == 2
    before = universe.universe_as_of(history, D(2023, 12, 15), membership, "S&P 500")["security_id"].to_list()
    after = universe.universe_as_of(history, D(2023, 12, 18), membership, "S&P 500")["security_id"].to_list()
    assert id_of[ipo[0]] not in before and id_of[ipo[0]] in after
    assert len(set(before) - set(after)) == 1  # one leaves the index that day (still listed)


def test_ticker_change_is_one_continuous_series_under_the_security_id(market: SyntheticMarket) -> None:
    master = market.symbol_master()
    start, end = D(2023, 9, 1), D(2023, 10, 31)
    raw = market.bars(start - dt.timedelta(days=20), end)
    built = bar_compute.build_bars(
        raw, market.corporate_actions(start, end), master, start, end, source="raw"
    )
    renamed_id = master.filter(pl.col("symbol").str.ends_with("OLD"))["security_id"][0]
    series = built.frame.filter(pl.col("security_id") == renamed_id).sort("session_date")
    assert series["symbol"].unique().sort().to_list() == sorted(
        master.filter(pl.col("security_id") == renamed_id)["symbol"]
    )
    assert series["session_date"].to_list() == calendars.sessions(series["exchange"][0], start, end)
    # one series: its adjusted returns across the change are the market's generated total returns
    truth = market.total_returns(start, end).with_columns(
        pl.col("symbol")
        .replace(dict(master.select("symbol", "security_id").iter_rows()))
        .alias("security_id")
    )
    truth = truth.filter(pl.col("security_id") == renamed_id).sort("session_date")["return"].to_numpy()[1:]
    returns = series["adj_close"].to_numpy()
    np.testing.assert_allclose(returns[1:] / returns[:-1] - 1.0, truth, rtol=1e-12, atol=1e-12)


def test_bars_after_a_delisting_are_rejected_with_row_field_and_reason(market: SyntheticMarket) -> None:
    master = market.symbol_master()
    gone = master.filter(pl.col("valid_to") == D(2024, 3, 15))["symbol"][0]
    raw = market.bars(D(2024, 3, 1), D(2024, 3, 22))
    late = (
        raw.filter(pl.col("symbol") == gone)
        .tail(1)
        .with_columns(pl.lit(D(2024, 3, 18)).alias("session_date"))
    )
    built = bar_compute.build_bars(
        pl.concat([raw, late]),
        market.corporate_actions(D(2024, 3, 1), D(2024, 3, 22)),
        master,
        D(2024, 3, 1),
        D(2024, 3, 22),
        source="raw",
    )
    rejects = built.rejects.filter(pl.col("field") == "session_date")
    assert rejects.select("row_number", "symbol", "session_date").rows() == [
        (raw.height + 1, gone, D(2024, 3, 18))
    ]
    assert rejects["reason"][0].startswith(
        f"{gone} is not listed on 2024-03-18: the symbol master lists it over [2015-01-02, 2024-03-15)"
    )
    assert built.frame.filter(
        (pl.col("symbol") == gone) & (pl.col("session_date") >= D(2024, 3, 15))
    ).is_empty()
    expected = bar_compute.expected_bars(master, D(2024, 3, 1), D(2024, 3, 22))
    assert expected.filter((pl.col("symbol") == gone) & (pl.col("session_date") >= D(2024, 3, 15))).is_empty()
    complete, details = bar_compute.completeness(built.frame, expected)
    assert complete, details  # a security listed mid-window is not counted as missing bars


def test_a_security_that_joins_later_never_appears_in_earlier_training_rows(market: SyntheticMarket) -> None:
    """The model's training set filter: rows only while listed and, with an index, while a member."""
    master = market.symbol_master()
    membership = market.index_membership()
    days = [D(2023, 5, 31), D(2023, 6, 1), D(2023, 12, 15), D(2023, 12, 18), D(2024, 3, 14), D(2024, 3, 15)]
    symbols = master.filter(pl.col("valid_to").is_null() | (pl.col("valid_to") > D(2023, 10, 2)))["symbol"]
    training = pl.DataFrame({"symbol": symbols}).join(pl.DataFrame({"session_date": days}), how="cross")
    id_of = dict(master.select("symbol", "security_id").iter_rows())
    joiner = membership.filter(pl.col("valid_from") == D(2024, 3, 18))["security_id"][0]
    ipo = master.filter(pl.col("valid_from") == D(2023, 6, 1))["symbol"][0]
    leaver = membership.filter(pl.col("valid_to") == D(2023, 12, 18))["security_id"][0]
    gone = master.filter(pl.col("valid_to") == D(2024, 3, 15))["symbol"][0]

    listed_rows = universe.point_in_time(training, master)
    got = {(id_of[s], d) for s, d in listed_rows.select("symbol", "session_date").iter_rows()}
    assert (id_of[ipo], D(2023, 5, 31)) not in got and (id_of[ipo], D(2023, 6, 1)) in got
    assert (id_of[gone], D(2024, 3, 14)) in got and (id_of[gone], D(2024, 3, 15)) not in got
    assert (joiner, D(2023, 5, 31)) in got  # listed all along: only the index filter drops it

    members = universe.point_in_time(training, master, membership, "S&P 500")
    got = {(id_of[s], d) for s, d in members.select("symbol", "session_date").iter_rows()}
    assert not {d for i, d in got if i == joiner}  # joins 2024-03-18: after every training day here
    assert {d for i, d in got if i == id_of[ipo]} == {D(2023, 12, 18), D(2024, 3, 14), D(2024, 3, 15)}
    assert {d for i, d in got if i == leaver} == {D(2023, 5, 31), D(2023, 6, 1), D(2023, 12, 15)}
    assert not {s for s, _ in members.select("symbol", "session_date").iter_rows() if s.endswith(".TO")}
    with pytest.raises(ValueError, match="no membership rows"):
        universe.point_in_time(training, master, membership, "NASDAQ 100")


def test_the_whole_reference_list_at_508_and_generated_names_after_it() -> None:
    """WEALTH_SYNTHETIC_UNIVERSE=508 is every real listing (502 S&P 500 constituents + 6 TSX); more adds SYN names."""
    from pytickersymbols import PyTickerSymbols

    shipped = {s["symbol"] for s in PyTickerSymbols().get_stocks_by_index("S&P 500")}
    # one row per listing of the reference list: without the planted ticker change's former-symbol row
    master = SyntheticMarket(universe_size=510, lifecycle=False).symbol_master()
    real = master.filter(~pl.col("symbol").str.starts_with("SYN"))
    assert real.height == 508 and master.height == 510
    assert set(real.filter(pl.col("exchange") != "TSX")["symbol"]) == shipped - {"CBOE"}
    assert real.filter(pl.col("exchange") == "TSX").height == 6
    assert real["isin"].drop_nulls().len() == 454 and real["security_id"].n_unique() == 508
    head = SyntheticMarket(universe_size=500, lifecycle=False).symbol_master()
    assert head.height == 500 and set(head["symbol"]) <= set(real["symbol"])  # a prefix of the same order


def test_a_master_without_identity_columns_gets_derived_ids() -> None:
    plain = pl.DataFrame(
        {
            "symbol": ["AAPL", "TD.TO"],
            "name": ["Apple", "TD"],
            "exchange": ["NASDAQ", "TSX"],
            "currency": ["USD", "CAD"],
            "asset_class": ["equity"] * 2,
            "sector": ["IT", "Financials"],
            "is_synthetic": [False, False],
        }
    )
    full = universe.complete_master(plain)
    assert full.columns == list(SYMBOL_MASTER_SCHEMA)
    assert full["mic"].to_list() == ["XNAS", "XTSE"]
    assert full["security_id"].to_list() == [
        identifiers.security_id("XNAS:AAPL"),
        identifiers.security_id("XTSE:TD.TO"),
    ]
    given = universe.complete_master(
        plain.with_columns(pl.Series("security_id", ["S1", None]), pl.Series("isin", [None, "CA8911605092"]))
    )
    assert given["security_id"].to_list() == ["S1", identifiers.security_id("CA8911605092")]


def test_name_and_isin_changes_split_the_history_at_their_dates() -> None:
    history = universe.securities_history(HAND)
    changes = pl.DataFrame(
        {
            "security_id": ["S1", "S1"],
            "effective_date": [D(2021, 5, 3), D(2019, 6, 3)],
            "field": ["name", "name"],
            "old_value": ["Newco Holdings", "Oldest Co"],
        },
        schema=universe.IDENTIFIER_CHANGES_SCHEMA,
    )
    s1 = universe.apply_changes(history, changes).filter(pl.col("security_id") == "S1")
    assert s1.select("valid_from", "valid_to", "symbol", "name", "change").rows() == [
        (D(1, 1, 1), D(2019, 6, 3), "OLDCO", "Oldest Co", "listing"),
        (D(2019, 6, 3), D(2020, 3, 2), "OLDCO", "Newco Holdings", "name_change"),
        (D(2020, 3, 2), D(2021, 5, 3), "NEWCO", "Newco Holdings", "ticker_change"),
        (D(2021, 5, 3), None, "NEWCO", "Old Co", "name_change"),
    ]
    as_of = universe.universe_as_of(universe.apply_changes(history, changes), D(2020, 1, 2))
    assert as_of.filter(pl.col("security_id") == "S1")["name"].to_list() == ["Newco Holdings"]
    with pytest.raises(ValueError, match="expected one of name, isin"):
        universe.apply_changes(history, changes.with_columns(pl.lit("cusip").alias("field")))
