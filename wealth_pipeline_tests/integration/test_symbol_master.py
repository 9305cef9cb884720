"""The symbol master end to end (issue 21): identifiers, history, ref.universe_as_of, bars on the stable id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest

from wealth_pipeline.cli import materialize_range
from wealth_pipeline.core import universe
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
    _run(url, tmp_path / "lake", "2023-09-27", "2023-10-04", "group:ingest or group:processed")
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
    lake = Lakehouse.from_uri(str(tmp_path / "lake"))
    assert lake.read_dataset("processed", "securities_history").height == UNIVERSE + 1
    assert lake.read_dataset("processed", "index_membership").height == membership.height
