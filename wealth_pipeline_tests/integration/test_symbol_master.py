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
