"""Late data without stale history (issue 14): incremental reactions equal a from-scratch backfill.

One history of vendor files in a landing zone, on plain PostgreSQL and on TimescaleDB:
(a) a split dated in the past, (b) a dividend in today's session, (c) a corrected vendor file for an
old bar, (d) a one-bar spike on a window's last session. The sensors (landing zone, restatement)
decide what runs; the runs they request are executed as the daemon would. The oracle is a fresh
lakehouse backfilled once over the final inputs, loaded into the same warehouse: every derived
table (processed bars, factors, indicators; warehouse bars, factors, indicators, rollups and the
adjusted-on-read views) must be unchanged by it.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from wealth_pipeline.core import calendars
from wealth_pipeline.defs.automation.landing_sensor import landing_zone_sensor
from wealth_pipeline.defs.processed.restatement import restatement_sensor
from wealth_pipeline.defs.resources import MarketDataResource
from wealth_pipeline.lakehouse.store import open_store
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration

SELECTION = "symbol_master raw_bars raw_corporate_actions corporate_actions bars indicators"
DAYS = calendars.weekdays(dt.date(2024, 7, 8), dt.date(2024, 7, 26))[:13]
BOOKKEEPING = ["lake_date", "lake_year", "lake_file", "lake_row"]
HEADER = "symbol,session_date,open,high,low,close,volume,currency\n"


def _aapl(k: int) -> float:  # trades 2-for-1 split-adjusted from DAYS[3] on (the split arrives late)
    price = 200.0 + 4.0 * math.sin(k / 2.0)
    return round(price / 2.0 if k >= 3 else price, 4)


def _msft(k: int) -> float:
    return round(13.0 + 0.02 * k + 0.05 * math.cos(k), 4)


def _bar(symbol: str, day: dt.date, close: float, volume: int = 1000) -> str:
    return f"{symbol},{day},{close},{round(close * 1.01, 4)},{round(close * 0.99, 4)},{close},{volume},USD\n"


def _bars_file(indices: list[int], overrides: dict[tuple[str, int], float] | None = None) -> bytes:
    overrides = overrides or {}
    lines = [HEADER]
    for k in indices:
        lines.append(_bar("AAPL", DAYS[k], overrides.get(("AAPL", k), _aapl(k)), 1000 + k))
        lines.append(_bar("MSFT", DAYS[k], overrides.get(("MSFT", k), _msft(k)), 5000 + k))
    return "".join(lines).encode()


def _actions_file(rows: list[str]) -> bytes:
    return ("symbol,ex_date,action_type,ratio,amount,currency\n" + "".join(r + "\n" for r in rows)).encode()


class Reactor:
    """The landing zone, the pipeline and the two sensors' cursors: what the daemon would run."""

    def __init__(self, pipeline: Pipeline, landing: Any, landing_uri: str) -> None:
        self.p, self.landing, self.landing_uri = pipeline, landing, landing_uri
        self.cursors: dict[str, str | None] = {"landing": None, "restatement": None}

    def _evaluate(self, name: str) -> list[dg.RunRequest]:
        if name == "landing":
            context = dg.build_sensor_context(
                instance=self.p.instance,
                cursor=self.cursors[name],
                resources={
                    "market_data": MarketDataResource(
                        provider="vendor", landing_uri=self.landing_uri, synthetic_universe=12
                    )
                },
            )
            result = landing_zone_sensor(context)
        else:
            result = restatement_sensor(
                dg.build_sensor_context(instance=self.p.instance, cursor=self.cursors[name])
            )
        self.cursors[name] = result.cursor or self.cursors[name]
        return list(result.run_requests or [])

    def react(self, sensor: str) -> list[tuple[str, str]]:
        """Evaluate ``sensor`` and run what it requests (distinct ranges, in order); the ranges."""
        ranges = []
        for request in self._evaluate(sensor):
            rng = (
                request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"],
            )
            if rng not in ranges:
                ranges.append(rng)
        for first, last in ranges:
            self.runs = self.p.run(first, last, selection=SELECTION)
        return ranges


def _lake_state(p: Pipeline) -> dict[str, pl.DataFrame]:
    lake = p.lake
    out = {}
    for dataset, keys in (
        ("bars", ["symbol", "session_date"]),
        ("indicators", ["symbol", "session_date"]),
        ("adjustment_factors", ["symbol", "ex_date"]),
    ):
        frame = lake.read_partitions("processed", dataset)
        out[dataset] = frame.drop([c for c in BOOKKEEPING if c in frame.columns]).sort(keys)
    return out


WAREHOUSE_QUERIES = {
    "bars_daily": "SELECT symbol, session_date, open, high, low, close, volume, split_factor, dividend_factor, "
    "adj_factor, adj_open, adj_high, adj_low, adj_close, adj_volume, cum_factor FROM market.bars_daily",
    "adjustment_factors": "SELECT symbol, ex_date, factor, volume_factor, cum_factor, cum_volume_factor "
    "FROM market.adjustment_factors WHERE superseded_at IS NULL",
    "indicators": "SELECT * FROM analytics.indicators_daily",
    "bars_adjusted": "SELECT symbol, session_date, adj_open, adj_close, adj_volume FROM market.bars_adjusted",
    "indicators_adjusted": "SELECT symbol, session_date, sma_20, ema_12, rsi_14, atr_14 FROM analytics.indicators_adjusted",
    "bars_weekly": "SELECT symbol, week_start, open, high, low, close, volume, adj_open, adj_high, adj_low, adj_close, "
    "adj_volume, sessions FROM market.bars_weekly",
    "bars_weekly_adjusted": "SELECT symbol, week_start, adj_close, adj_volume FROM market.bars_weekly_adjusted",
}


def _warehouse_state(p: Pipeline) -> dict[str, list[tuple]]:
    return {name: sorted(p.query(q), key=lambda r: (r[0], r[1])) for name, q in WAREHOUSE_QUERIES.items()}


def _assert_same_rows(left: list[tuple], right: list[tuple], what: str) -> None:
    assert len(left) == len(right), what
    for a, b in zip(left, right, strict=True):
        assert a[:2] == b[:2], what
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12, nan_ok=True), f"{what}: {a} != {b}"


@pytest.mark.parametrize("flavour", ["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def test_late_split_todays_dividend_corrected_bar_and_edge_spike_equal_a_fresh_backfill(
    flavour: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue("pg_url" if flavour == "postgres" else "timescale_url")
    migrate.upgrade(url)
    landing_uri = str(tmp_path / "landing")
    landing = open_store(landing_uri, None)
    p = Pipeline(url, str(tmp_path / "lake"), None, provider="vendor", landing_uri=landing_uri)
    r = Reactor(p, landing, landing_uri)
    d = [str(x) for x in DAYS]

    # History: sessions 0..9 delivered at once. Files apply in path order: names start with the delivery time.
    landing.put_bytes("bars/2024-07-19T2200Z-history.csv", _bars_file(list(range(10))))
    assert r.react("landing") == [(d[0], d[9])]

    # (a) AAPL's 2-for-1 split on session 3, delivered late: sessions 3..9 restated in ONE run.
    before = _lake_state(p)["bars"]
    landing.put_bytes(
        "corporate_actions/2024-07-20T0900Z-late-split.csv", _actions_file([f"AAPL,{d[3]},split,2.0,,USD"])
    )
    assert r.react("landing") == [(d[3], d[9])]
    after = _lake_state(p)["bars"]
    early = pl.col("session_date") < DAYS[3]
    assert after.filter(early).equals(before.filter(early)), "sessions before the ex-date are untouched"
    restated = {m.partition for m in r.runs[-1]["result"].asset_materializations_for_node("bars")}
    assert restated == set(d[3:10]), "every restated partition has its own materialization"
    assert after.filter((pl.col("symbol") == "AAPL") & ~early)["split_factor"].unique().to_list() == [2.0]

    # (b) a dividend in today's session: the run writes that session's rows only.
    landing.put_bytes("bars/2024-07-22T2200Z-day10.csv", _bars_file([10]))
    landing.put_bytes(
        "corporate_actions/2024-07-22T2200Z-day10.csv", _actions_file([f"MSFT,{d[10]},dividend,,0.1,USD"])
    )
    lake_before = _lake_state(p)
    loads_before = p.query("SELECT count(*) FROM ops.loads")[0][0]
    assert r.react("landing") == [(d[10], d[10])]
    loads = p.query(
        "SELECT table_name, window_start, window_end, rows FROM ops.loads ORDER BY load_id OFFSET %s",
        (loads_before,),
    )
    bars_loads = [row for row in loads if row[0] == "market.bars_daily"]
    assert bars_loads == [("market.bars_daily", DAYS[10], DAYS[10], 2)], (
        "2 securities, 1 session: 2 rows written"
    )
    event = r.runs[-1]["result"].asset_materializations_for_node("bars")[0]
    factors = event.metadata["adjustment_factors"].value
    assert factors["warehouse_versions_inserted"] == 1 and factors["warehouse_versions_superseded"] == 0
    lake_after = _lake_state(p)
    for name in ("bars", "adjustment_factors"):
        frame = lake_after[name]
        column = "session_date" if name == "bars" else "ex_date"
        assert frame.filter(pl.col(column) < DAYS[10]).equals(
            lake_before[name].filter(pl.col(column) < DAYS[10])
        ), name
    assert lake_after["adjustment_factors"].height == 2

    # (c) a corrected vendor file for MSFT's session 6: sessions 6..10 restated in one run.
    landing.put_bytes("bars/2024-07-23T0900Z-correction.csv", _bars_file([6], {("MSFT", 6): 13.5}))
    assert r.react("landing") == [(d[6], d[10])]
    assert p.query(
        "SELECT close FROM market.bars_daily WHERE symbol='MSFT' AND session_date=%s", (DAYS[6],)
    ) == [(13.5,)]

    # (d) a one-bar spike on the last session of the window: loaded (nothing to judge it against) ...
    landing.put_bytes("bars/2024-07-23T2200Z-day11.csv", _bars_file([11], {("MSFT", 11): 1201.0}))
    assert r.react("landing") == [(d[11], d[11])]
    assert r.react("restatement") == []
    # ... and quarantined once its next session arrives: the bars run asks for a restatement of 11..12.
    landing.put_bytes("bars/2024-07-24T2200Z-day12.csv", _bars_file([12]))
    assert r.react("landing") == [(d[12], d[12])]
    assert r.react("restatement") == [(d[11], d[12])]
    assert p.query(
        "SELECT count(*) FROM market.bars_daily WHERE symbol='MSFT' AND session_date=%s", (DAYS[11],)
    ) == [(0,)]
    quarantined = p.lake.read("quarantine", "bars").filter(
        (pl.col("symbol") == "MSFT") & (pl.col("session_date") == DAYS[11])
    )
    assert (
        quarantined.height == 1 and quarantined["field"][0] == "close" and "20x" in quarantined["reason"][0]
    )
    assert r.react("restatement") == [], "the restatement run itself asks for nothing more"

    # Re-running an old partition after later actions leaves identical content.
    lake_state, warehouse_state = _lake_state(p), _warehouse_state(p)
    p.run(d[4], d[4], selection=SELECTION)
    assert all(_lake_state(p)[k].equals(v) for k, v in lake_state.items())
    assert _warehouse_state(p) == warehouse_state

    # The oracle: one backfill over the final inputs into a fresh lakehouse, loaded into the same warehouse.
    fresh = Pipeline(url, str(tmp_path / "fresh-lake"), None, provider="vendor", landing_uri=landing_uri)
    fresh.run(d[0], d[12], selection=SELECTION)
    oracle_lake = _lake_state(fresh)
    for name, frame in lake_state.items():
        assert frame.equals(oracle_lake[name]), f"processed/{name} differs from a fresh backfill"
    oracle_warehouse = _warehouse_state(fresh)
    for name, rows in warehouse_state.items():
        _assert_same_rows(rows, oracle_warehouse[name], name)
    # As-of reads: before the split was known, AAPL's history was not split-adjusted.
    (known,) = p.query("SELECT min(known_at) FROM market.adjustment_factors WHERE symbol='AAPL'")[0]
    then = p.query(
        "SELECT adj_close, close FROM market.bars_adjusted_as_of(%s) WHERE symbol='AAPL' AND session_date=%s",
        (known - dt.timedelta(microseconds=1), DAYS[0]),
    )
    now = p.query(
        "SELECT adj_close, close FROM market.bars_adjusted_as_of(now()) WHERE symbol='AAPL' AND session_date=%s",
        (DAYS[0],),
    )
    assert then == [(pytest.approx(then[0][1]), then[0][1])]
    assert now[0][0] == pytest.approx(now[0][1] * 0.5, rel=1e-12)
