"""The symbol master end to end (issue 21): identifiers, history, ref.universe_as_of, and every fact
table on the stable id (bars, indicators, factor exposures, predictions, positions, the marts)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest
from psycopg import sql

from wealth_pipeline.cli import materialize_range
from wealth_pipeline.core import features, modeling, portfolio_daily, universe
from wealth_pipeline.definitions import build_definitions
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline.warehouse import migrate

pytestmark = pytest.mark.integration
D = dt.date
UNIVERSE = 14


def _run(url: str, lake: Path, start: str, end: str, selection: str) -> None:
    resources = {
        "warehouse": WarehouseResource(url=url),
        "lakehouse": LakehouseResource(uri=str(lake)),
        "market_data": MarketDataResource(synthetic_universe=UNIVERSE, synthetic_lifecycle=True),
    }
    summary = materialize_range(
        start,
        end,
        selection,
        progress=False,
        definitions=build_definitions(resources),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=True,
    )
    assert all(r["success"] for r in summary["runs"])


def test_symbol_master_history_and_point_in_time_universe_in_sql(
    flavoured_db: tuple[str, str], tmp_path: Path
) -> None:
    _, url = flavoured_db
    migrate.upgrade(url)
    _run(url, tmp_path / "lake", "2023-09-27", "2023-10-04",
         "group:ingest or group:processed or group:analytics or group:marts")
    market = SyntheticMarket(universe_size=UNIVERSE, lifecycle=True)
    master = market.symbol_master()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT symbol, security_id, isin, cusip, mic, valid_from, valid_to FROM ref.securities "
            "ORDER BY symbol"
        ).fetchall()
        assert (
            rows
            == master.select("symbol", "security_id", "isin", "cusip", "mic", "valid_from", "valid_to").rows()
        )
        assert ("AAPL", "US0378331005", "037833100") in [(r[0], r[2], r[3]) for r in rows]
        changes = conn.execute(
            "SELECT change, count(*) FROM ref.securities_history GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert changes == [("listing", UNIVERSE), ("ticker_change", 1)]
        # SQL and core agree on the point-in-time universe, around the ticker change, the IPO, the
        # index join/leave and the delisting, with and without the index.
        history = universe.securities_history(master)
        membership = market.index_membership()
        for day in (
            D(2023, 5, 31),
            D(2023, 6, 1),
            D(2023, 9, 29),
            D(2023, 10, 2),
            D(2023, 12, 15),
            D(2023, 12, 18),
            D(2024, 3, 14),
            D(2024, 3, 15),
            D(2024, 3, 18),
        ):
            for index in (None, "S&P 500"):
                sql_rows = conn.execute(
                    "SELECT security_id, symbol FROM ref.universe_as_of(%s, %s) ORDER BY symbol", (day, index)
                ).fetchall()
                core_rows = (
                    universe.universe_as_of(history, day, membership, index)
                    .select("security_id", "symbol")
                    .rows()
                )
                assert sql_rows == core_rows, (day, index)
        sizes = [
            conn.execute("SELECT count(*) FROM ref.universe_as_of(%s, 'S&P 500')", (d,)).fetchone()[0]
            for d in (D(2023, 5, 31), D(2023, 12, 18), D(2024, 3, 18))
        ]
        # 8 S&P names (AAPL, MSFT, GOOGL, universe positions 9-13; positions 4-8 are TSX): the IPO and the
        # joiner are out first; on 2023-12-18 the IPO joins as the leaver leaves; by 2024-03-18 the joiner
        # has joined and the delisted name has left.
        assert sizes == [6, 6, 6]
        # Bars carry the stable id; the renamed security is one series under it across the change.
        renamed_id = master.filter(pl.col("symbol").str.ends_with("OLD"))["security_id"][0]
        series = conn.execute(
            "SELECT session_date, symbol FROM market.bars_daily WHERE security_id = %s ORDER BY 1",
            (renamed_id,),
        ).fetchall()
        assert [d for d, _ in series] == [
            D(2023, 9, 27),
            D(2023, 9, 28),
            D(2023, 9, 29),
            D(2023, 10, 2),
            D(2023, 10, 3),
            D(2023, 10, 4),
        ]
        assert {s for d, s in series if d < D(2023, 10, 2)} == {series[-1][1] + "OLD"}
        assert (
            conn.execute("SELECT count(*) FROM market.bars_daily WHERE security_id IS NULL").fetchone()[0]
            == 0
        )
        facts_on_the_stable_id(conn, master, renamed_id, series)
    lake = Lakehouse.from_uri(str(tmp_path / "lake"))
    assert lake.read_dataset("processed", "securities_history").height == UNIVERSE + 1
    assert lake.read_dataset("processed", "index_membership").height == membership.height
    lake_facts_on_the_stable_id(lake, master, renamed_id)


# The security-keyed fact tables of the warehouse besides bars (issue 21: facts join on the stable id).
FACT_TABLES = ("analytics.indicators_daily", "analytics.factor_exposures", "marts.security_daily")


def facts_on_the_stable_id(
    conn: psycopg.Connection, master: pl.DataFrame, renamed_id: str, series: list[tuple[dt.date, str]]
) -> None:
    """Each fact table: the renamed security's rows are the bars' series under one id, equal to
    ref.securities' id of every symbol; a join on security_id reaches the bar of every row."""
    ids = dict(master.select("symbol", "security_id").iter_rows())
    bars = conn.execute("SELECT count(*) FROM market.bars_daily").fetchone()[0]
    for table in FACT_TABLES:
        schema, name = table.split(".")
        ident = sql.Identifier(schema, name)
        rows = conn.execute(
            sql.SQL("SELECT symbol, security_id, session_date FROM {} ORDER BY session_date, symbol").format(ident)
        ).fetchall()
        assert len(rows) == bars, table  # a row per bar in the window
        assert all(sid == ids[symbol] for symbol, sid, _ in rows), table  # ref.securities' id of the symbol
        renamed = [(day, symbol) for symbol, sid, day in rows if sid == renamed_id]
        assert renamed == series, table  # former then current symbol, one id across 2023-10-02
        joined = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE f.symbol = b.symbol) FROM {} f "
                "JOIN market.bars_daily b ON b.security_id = f.security_id AND b.session_date = f.session_date"
            ).format(ident)
        ).fetchone()
        assert joined == (bars, bars), table  # every row finds its bar on (security_id, session_date)
    # The mart's indicators are those of its bar's security and session (joined on security_id).
    mismatched = conn.execute(
        "SELECT count(*) FROM marts.security_daily m JOIN analytics.indicators_daily i "
        "ON i.symbol = m.symbol AND i.session_date = m.session_date "
        "WHERE m.return_1d IS DISTINCT FROM i.return_1d OR m.security_id <> i.security_id"
    ).fetchone()[0]
    assert mismatched == 0
    names = conn.execute(
        "SELECT DISTINCT m.symbol, m.security_name FROM marts.security_daily m WHERE m.security_id = %s ORDER BY 1",
        (renamed_id,),
    ).fetchall()
    assert names == sorted(master.filter(pl.col("security_id") == renamed_id).select("symbol", "name").rows())


def lake_facts_on_the_stable_id(lake: Lakehouse, master: pl.DataFrame, renamed_id: str) -> None:
    """The processed tier carries the same ids; predictions and portfolio rows take them from their inputs."""
    ids = master.select("symbol", pl.col("security_id").alias("expected"))
    bars = lake.read_partitions("processed", "bars")
    indicators = lake.read_partitions("processed", "indicators")
    exposures = lake.read_partitions("processed", "factor_exposures")
    assert bars.filter(pl.col("security_id") == renamed_id)["symbol"].n_unique() == 2
    for name, frame in (("indicators", indicators), ("factor_exposures", exposures)):
        checked = frame.join(ids, on="symbol", how="left")
        assert checked.height == bars.height and (checked["security_id"] == checked["expected"]).all(), name
    # Predictions: the scored feature rows carry their bar's id (a booster on the window's features).
    frame = features.build_features(bars, indicators, exposures)
    labels = frame["session_date"].rank("dense").cast(pl.Float64)
    rows = frame.select(features.FEATURE_COLUMNS).fill_null(0.0).to_numpy()
    import xgboost as xgb

    booster = xgb.train(
        {"max_depth": 2, "nthread": 1}, xgb.DMatrix(rows, label=labels, feature_names=list(features.FEATURE_COLUMNS)), 3
    )
    days = sorted(set(frame["session_date"].to_list()))
    scored = modeling.score_sessions(frame, {d: "m" for d in days}, {"m": booster})
    assert scored.height == bars.height
    by_bar = scored.join(bars.select("symbol", "session_date", pl.col("security_id").alias("bar_id")),
                         on=["symbol", "session_date"])
    assert by_bar.height == bars.height and (by_bar["security_id"] == by_bar["bar_id"]).all()
    assert scored.filter(pl.col("security_id") == renamed_id)["symbol"].n_unique() == 2
    # Positions and currency attribution: the id of the holding's symbol, the former ticker's too;
    # the attribution's portfolio total has none.
    former = master.filter(pl.col("security_id") == renamed_id).sort("valid_from")["symbol"].to_list()
    held = pl.DataFrame({"portfolio_id": ["p"] * 3, "symbol": [*former, "__portfolio__"]})
    assert portfolio_daily.with_security_ids(held, master)["security_id"].to_list() == [renamed_id, renamed_id, None]


# ---- corporate actions and adjustment factors on the stable id (migration 0015) --------------------------
# A vendor's ticker change inside the window: FB until 2024-06-12, META from 2024-06-13 (one ISIN, so one
# security_id), a dividend under the former ticker and a split under the new one; AAPL alongside.
TICKER_MASTER = (
    "symbol,name,exchange,currency,asset_class,sector,isin,valid_from,valid_to\n"
    "AAPL,Apple Inc.,NASDAQ,USD,equity,Technology,US0378331005,,\n"
    "FB,Meta Platforms,NASDAQ,USD,equity,Communication,US30303M1027,,2024-06-13\n"
    "META,Meta Platforms,NASDAQ,USD,equity,Communication,US30303M1027,2024-06-13,\n"
)
TICKER_BARS = (
    "symbol,session_date,open,high,low,close,volume,currency\n"
    "AAPL,2024-06-10,150,151,149,150,1000,USD\n"
    "AAPL,2024-06-11,150,152,149,151,1000,USD\n"
    "AAPL,2024-06-12,151,152,150,150,1000,USD\n"
    "AAPL,2024-06-13,150,151,149,149,1000,USD\n"
    "AAPL,2024-06-14,149,150,148,148,1000,USD\n"
    "FB,2024-06-10,200,202,198,200,500,USD\n"
    "FB,2024-06-11,199,201,197,199,500,USD\n"
    "FB,2024-06-12,199,201,197,198,500,USD\n"
    "META,2024-06-13,198,200,196,198,500,USD\n"
    "META,2024-06-14,99,100,98,99,1000,USD\n"
)
TICKER_ACTIONS = (
    "symbol,ex_date,action_type,ratio,amount,currency\n"
    "FB,2024-06-11,dividend,,1.00,USD\n"
    "AAPL,2024-06-12,dividend,,0.75,USD\n"
    "META,2024-06-14,split,2,,\n"
    "NOPE,2024-06-12,dividend,,1.00,USD\n"  # line 5: a symbol the master does not know: rejected
)


def test_corporate_actions_and_adjustment_factors_carry_the_stable_id_across_a_ticker_change(
    migrated_flavoured_db: tuple[str, str], tmp_path: Path
) -> None:
    """Issue 21: every action and factor row names its security, the former ticker's and the new one's alike."""
    import hashlib

    from wealth_pipeline.core import identifiers
    from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

    _, url = migrated_flavoured_db
    landing = tmp_path / "landing"
    for folder, name, text in (("symbol_master", "master.csv", TICKER_MASTER), ("bars", "2024-06-14-vendor.csv", TICKER_BARS),
                               ("corporate_actions", "2024-06-14-vendor.csv", TICKER_ACTIONS)):
        (landing / folder).mkdir(parents=True)
        (landing / folder / name).write_text(text)
    pipeline = Pipeline(url, str(tmp_path / "lake"), None, provider="vendor", landing_uri=str(landing))
    runs = pipeline.run("2024-06-10", "2024-06-14",
                        selection="symbol_master raw_bars raw_corporate_actions corporate_actions bars")
    assert all(r["success"] for r in runs)
    meta, aapl = identifiers.security_id("US30303M1027"), identifiers.security_id("US0378331005")
    assert meta != aapl
    assert pipeline.query("SELECT symbol, security_id FROM ref.securities ORDER BY 1") == [
        ("AAPL", aapl), ("FB", meta), ("META", meta)]
    # Oracle: the CSV's numbers. Dividend factor 1 - amount / previous close; a 2-for-1 split 1/2, volume x 2.
    fb_factor, aapl_factor = 1 - 1.00 / 200.0, 1 - 0.75 / 151.0
    actions = pipeline.query("SELECT symbol, ex_date, action_type, security_id FROM market.corporate_actions ORDER BY 2, 1")
    assert actions == [("FB", D(2024, 6, 11), "dividend", meta), ("AAPL", D(2024, 6, 12), "dividend", aapl),
                       ("META", D(2024, 6, 14), "split", meta)]  # NOPE rejected
    factors = pipeline.query("SELECT symbol, ex_date, security_id, factor, volume_factor, cum_factor FROM "
                             "market.adjustment_factors WHERE superseded_at IS NULL ORDER BY 2, 1")
    assert [r[:3] for r in factors] == [("FB", D(2024, 6, 11), meta), ("AAPL", D(2024, 6, 12), aapl),
                                        ("META", D(2024, 6, 14), meta)]
    assert [r[3:] for r in factors] == [pytest.approx((fb_factor, 1.0, fb_factor), rel=1e-12),
                                        pytest.approx((aapl_factor, 1.0, aapl_factor), rel=1e-12),
                                        # one chain per security: META's cum_factor continues from FB's
                                        pytest.approx((0.5, 2.0, fb_factor * 0.5), rel=1e-12)]
    # One series on the stable id: the security's actions and factors under both tickers, the bars and the
    # adjusted views too; every row's id is its symbol's master id.
    assert pipeline.query("SELECT symbol, ex_date FROM market.corporate_actions WHERE security_id = %s ORDER BY 2",
                          (meta,)) == [("FB", D(2024, 6, 11)), ("META", D(2024, 6, 14))]
    assert pipeline.query("SELECT symbol, ex_date FROM market.adjustment_factors WHERE security_id = %s ORDER BY 2",
                          (meta,)) == [("FB", D(2024, 6, 11)), ("META", D(2024, 6, 14))]
    series = [(D(2024, 6, 10), "FB"), (D(2024, 6, 11), "FB"), (D(2024, 6, 12), "FB"), (D(2024, 6, 13), "META"),
              (D(2024, 6, 14), "META")]
    for relation in ("market.bars_daily", "market.bars_adjusted", "market.bars_adjusted_as_of(now())"):
        assert pipeline.query(f"SELECT session_date, symbol FROM {relation} WHERE security_id = %s ORDER BY 1",
                              (meta,)) == series, relation
    # Adjusted as of now, one series: FB's closes before its dividend are raw x FB's dividend factor x
    # META's split factor, after it raw x the split factor; META's last close as traded (oracle: the CSV).
    raw = {(D(2024, 6, 10), "FB"): 200.0, (D(2024, 6, 11), "FB"): 199.0, (D(2024, 6, 12), "FB"): 198.0,
           (D(2024, 6, 13), "META"): 198.0, (D(2024, 6, 14), "META"): 99.0}
    expected = [raw[k] * (fb_factor if k[0] < D(2024, 6, 11) else 1.0) * (0.5 if k[0] < D(2024, 6, 14) else 1.0)
                for k in series]
    for relation in ("market.bars_adjusted", "market.bars_adjusted_as_of(now())"):
        closes = pipeline.query(f"SELECT adj_close FROM {relation} WHERE security_id = %s ORDER BY session_date",
                                (meta,))
        assert [c for (c,) in closes] == pytest.approx(expected, rel=1e-12), relation
    volumes = pipeline.query("SELECT adj_volume FROM market.bars_adjusted WHERE security_id = %s ORDER BY session_date",
                             (meta,))
    assert [v for (v,) in volumes] == pytest.approx([1000.0] * 5, rel=1e-12)  # 500 x 2 before the split
    # The per-symbol latest factor (the rollups' *_adjusted views join it) is the security's, former ticker too.
    assert pipeline.query("SELECT symbol, cum_factor FROM market.latest_adjustment WHERE symbol IN ('FB', 'META') "
                          "ORDER BY 1") == [("FB", pytest.approx(fb_factor * 0.5, rel=1e-12)),
                                            ("META", pytest.approx(fb_factor * 0.5, rel=1e-12))]
    unmatched = pipeline.query(
        "SELECT count(*) FROM (SELECT symbol, security_id FROM market.corporate_actions UNION ALL "
        "SELECT symbol, security_id FROM market.adjustment_factors) f "
        "LEFT JOIN ref.securities s ON s.symbol = f.symbol WHERE f.security_id IS DISTINCT FROM s.security_id")
    assert unmatched == [(0,)]
    # The processed lake tiers carry the same ids.
    lake = pipeline.lake
    for name in ("corporate_actions", "adjustment_factors"):
        frame = lake.read_partitions("processed", name, D(2024, 6, 10), D(2024, 6, 14))
        assert sorted(frame.select("symbol", "ex_date", "security_id").rows()) == sorted(
            (s, d, sid) for s, d, _, sid in actions), name
    # The unknown symbol's action is quarantined with its file's row and field (not published without an id).
    sha = hashlib.sha256(TICKER_ACTIONS.encode()).hexdigest()
    report = lake.read_dataset("quarantine", "vendor/corporate_actions", sha)
    assert (5, "symbol") in {(r["row_number"], r["field"]) for r in report.to_dicts()}
    # The blocking checks passed on both datasets.
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for r in runs
              for e in r["result"].get_asset_check_evaluations()}
    assert checks[("corporate_actions", "security_id_known")] is True
    assert checks[("bars", "adjustment_factors_security_id_known")] is True


def test_migration_0015_gives_earlier_actions_and_factors_the_id_of_their_symbol_on_the_ex_date(
    flavoured_db: tuple[str, str]
) -> None:
    """Rows loaded before 0015: the security whose dated record held the symbol on the ex-date (a reused
    ticker names two securities), else ref.securities' row of the symbol; unknown symbols stay null."""
    from wealth_pipeline.warehouse.adjustments import publish_factors

    _, url = flavoured_db
    migrate.upgrade(url, 14)
    with psycopg.connect(url) as conn:
        # XYZ was security A's ticker over [2010-01-04, 2015-01-02), then B's from 2020-01-02 (B holds it now).
        conn.execute("INSERT INTO ref.securities (symbol, security_id, valid_from) VALUES ('XYZ', 'B', '2020-01-02'), "
                     "('QQQ', 'A', '2015-01-02')")
        conn.execute("INSERT INTO ref.securities_history (security_id, valid_from, valid_to, symbol, change) VALUES "
                     "('A', '2010-01-04', '2015-01-02', 'XYZ', 'listing'), ('A', '2015-01-02', NULL, 'QQQ', 'ticker_change'), "
                     "('B', '2020-01-02', NULL, 'XYZ', 'listing')")
        for symbol, day in (("XYZ", D(2012, 3, 1)), ("XYZ", D(2017, 3, 1)), ("XYZ", D(2021, 3, 1)),
                            ("QQQ", D(2016, 3, 1)), ("NOPE", D(2021, 3, 1))):
            conn.execute("INSERT INTO market.corporate_actions (symbol, ex_date, action_type, amount, currency) "
                         "VALUES (%s, %s, 'dividend', 0.1, 'USD')", (symbol, day))
            conn.execute("INSERT INTO market.adjustment_factors (symbol, ex_date, factor, volume_factor, cum_factor, "
                         "cum_volume_factor) VALUES (%s, %s, 0.99, 1, 0.99, 1)", (symbol, day))
        # a superseded version is backfilled too
        conn.execute("UPDATE market.adjustment_factors SET superseded_at = known_at + interval '1 day' WHERE symbol = 'QQQ'")
        conn.execute("INSERT INTO market.adjustment_factors (symbol, ex_date, factor, volume_factor, cum_factor, "
                     "cum_volume_factor, known_at) VALUES ('QQQ', '2016-03-01', 0.98, 1, 0.98, 1, now() + interval '1 day')")
    migrate.upgrade(url, 15)
    expected = [("NOPE", D(2021, 3, 1), None), ("QQQ", D(2016, 3, 1), "A"), ("XYZ", D(2012, 3, 1), "A"),
                ("XYZ", D(2017, 3, 1), "B"), ("XYZ", D(2021, 3, 1), "B")]
    with psycopg.connect(url) as conn:
        actions = conn.execute("SELECT symbol, ex_date, security_id FROM market.corporate_actions ORDER BY 1, 2").fetchall()
        factors = conn.execute("SELECT symbol, ex_date, security_id, superseded_at IS NULL FROM "
                               "market.adjustment_factors ORDER BY 1, 2, 4").fetchall()
        indexes = {r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'market' AND indexname LIKE '%%security_id_idx'")}
    assert actions == expected
    assert factors == [(*expected[0], True), (*expected[1], False), (*expected[1], True), *[(*e, True) for e in expected[2:]]]
    assert any("corporate_actions" in d and "(security_id, ex_date)" in d for d in indexes)
    assert any("adjustment_factors" in d and "(security_id, ex_date)" in d for d in indexes)
    # A later publish with the same values and another id (a corrected master) relabels the current row in
    # place, no new version; a null id never overwrites one.
    frame = pl.DataFrame({"symbol": ["NOPE", "XYZ"], "ex_date": [D(2021, 3, 1)] * 2, "factor": [0.99] * 2,
                          "volume_factor": [1.0] * 2, "cum_factor": [0.99] * 2, "cum_volume_factor": [1.0] * 2,
                          "security_id": [None, "C"]})
    written = publish_factors(url, frame, D(2021, 3, 1), D(2021, 3, 1))
    assert (written.inserted, written.superseded) == (0, 0)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT symbol, security_id FROM market.adjustment_factors WHERE ex_date = '2021-03-01' "
                            "ORDER BY 1").fetchall() == [("NOPE", None), ("XYZ", "C")]
    migrate.downgrade(url, 14)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'market' AND "
                            "column_name = 'security_id' AND table_name IN ('corporate_actions', 'adjustment_factors', "
                            "'bars_adjusted')").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM market.corporate_actions").fetchone() == (5,)


def test_migration_0016_keys_the_latest_factor_and_the_as_of_product_by_security_and_0015_restores_symbols(
    flavoured_db: tuple[str, str]
) -> None:
    """FB -> META (one id S1) with a dividend under FB and a split under META, X without an id: as of
    now FB's earlier prices carry both factors; downgraded to 0015 the views are per symbol again."""
    _, url = flavoured_db
    migrate.upgrade(url)
    fb, split, x = 0.995, 0.5, 0.98  # factor rows written by hand: the oracle is these numbers
    bars = [("FB", D(2024, 6, 10), 200.0, 1.0, "S1"), ("FB", D(2024, 6, 11), 199.0, fb, "S1"),
            ("META", D(2024, 6, 13), 198.0, fb, "S1"), ("META", D(2024, 6, 14), 99.0, fb * split, "S1"),
            ("X", D(2024, 6, 10), 50.0, 1.0, None), ("X", D(2024, 6, 11), 49.0, x, None)]
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO ref.securities (symbol, security_id, valid_from) VALUES ('FB', 'S1', NULL), "
                     "('META', 'S1', '2024-06-13')")
        for symbol, day, close, cum, sid in bars:
            conn.execute("INSERT INTO market.bars_daily (symbol, session_date, currency, open, high, low, close, volume, "
                         "cum_factor, adj_open, adj_high, adj_low, adj_close, adj_volume, security_id) VALUES "
                         "(%s, %s, 'USD', %s, %s, %s, %s, 100, %s, %s, %s, %s, %s, 100, %s)",
                         (symbol, day, close, close, close, close, cum, *[close / cum] * 4, sid))
        conn.execute("INSERT INTO analytics.indicators_daily (symbol, session_date, sma_20, security_id) VALUES "
                     "('FB', '2024-06-10', 190.0, 'S1')")
        conn.execute("INSERT INTO market.adjustment_factors (symbol, ex_date, factor, volume_factor, cum_factor, "
                     "cum_volume_factor, security_id) VALUES ('FB', '2024-06-11', %s, 1, %s, 1, 'S1'), "
                     "('META', '2024-06-14', %s, 2, %s, 2, 'S1'), ('X', '2024-06-11', %s, 1, %s, 1, NULL)",
                     (fb, fb, split, fb * split, x, x))

    def read(relation: str) -> list[tuple]:
        with psycopg.connect(url) as conn:
            return conn.execute(f"SELECT symbol, session_date, adj_close FROM {relation} ORDER BY 1, 2").fetchall()

    def latest() -> list[tuple]:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT symbol, cum_factor, cum_volume_factor FROM market.latest_adjustment "
                                "ORDER BY 1").fetchall()

    def sma() -> float:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT sma_20 FROM analytics.indicators_adjusted").fetchone()[0]

    by_security = [200.0 * fb * split, 199.0 * split, 198.0 * split, 99.0, 50.0 * x, 49.0]
    for relation in ("market.bars_adjusted", "market.bars_adjusted_as_of(now())"):
        assert [r[2] for r in read(relation)] == pytest.approx(by_security, rel=1e-12), relation
    assert latest() == [("FB", pytest.approx(fb * split), 2.0), ("META", pytest.approx(fb * split), 2.0), ("X", x, 1.0)]
    assert sma() == pytest.approx(190.0 * fb * split, rel=1e-12)
    migrate.downgrade(url, 15)
    by_symbol = [200.0 * fb, 199.0, 198.0 / fb * fb * split, 99.0, 50.0 * x, 49.0]
    for relation in ("market.bars_adjusted", "market.bars_adjusted_as_of(now())"):
        assert [r[2] for r in read(relation)] == pytest.approx(by_symbol, rel=1e-12), relation
    assert latest() == [("FB", fb, 1.0), ("META", pytest.approx(fb * split), 2.0), ("X", x, 1.0)]
    assert sma() == pytest.approx(190.0 * fb, rel=1e-12)
    migrate.upgrade(url)
    assert [r[2] for r in read("market.bars_adjusted")] == pytest.approx(by_security, rel=1e-12)


def test_a_retraction_under_the_new_ticker_carries_the_former_tickers_cumulative_factors(
    flavoured_db: tuple[str, str]
) -> None:
    """A retracted META split (S1) is superseded by factor 1 with the chain's previous cum: FB's (same id)."""
    from wealth_pipeline.core.schemas import PROCESSED_ADJUSTMENT_FACTORS_SCHEMA
    from wealth_pipeline.warehouse.adjustments import publish_factors

    _, url = flavoured_db
    migrate.upgrade(url)

    def row(symbol: str, day: dt.date, factor: float, volume: float, cum: float, cum_volume: float) -> pl.DataFrame:
        return pl.DataFrame([(symbol, day, factor, volume, cum, cum_volume, "S1")],
                            schema=PROCESSED_ADJUSTMENT_FACTORS_SCHEMA, orient="row")

    publish_factors(url, row("FB", D(2024, 6, 11), 0.995, 1.0, 0.995, 1.0), D(2024, 6, 11), D(2024, 6, 11))
    publish_factors(url, row("META", D(2024, 6, 14), 0.5, 2.0, 0.4975, 2.0), D(2024, 6, 14), D(2024, 6, 14))
    written = publish_factors(url, pl.DataFrame(schema=PROCESSED_ADJUSTMENT_FACTORS_SCHEMA), D(2024, 6, 14), D(2024, 6, 14))
    assert (written.inserted, written.superseded) == (1, 1)
    with psycopg.connect(url) as conn:
        current = conn.execute("SELECT symbol, factor, volume_factor, cum_factor, cum_volume_factor, security_id FROM "
                               "market.adjustment_factors WHERE superseded_at IS NULL ORDER BY ex_date").fetchall()
    assert current == [("FB", 0.995, 1.0, 0.995, 1.0, "S1"), ("META", 1.0, 1.0, 0.995, 1.0, "S1")]
