"""Late data without stale history (issue 14): incremental reactions equal a from-scratch backfill.

One history of vendor files in a landing zone, on plain PostgreSQL and on TimescaleDB:
(a) a split dated in the past, (b) a dividend in today's session, (c) a corrected vendor file for an
old bar, (d) a one-bar spike on a window's last session. The history is long enough (about 150
sessions) for the 126-observation factor exposures, and a USD portfolio holds both securities. The
sensors (landing zone, restatement) decide what runs; the runs they request are the ``vendor_ingest``
job's assets (every daily asset downstream of the vendor files, dbt marts included), executed as the
daemon would. The oracle is a fresh lakehouse backfilled once over the final inputs, loaded into the
same warehouse: every derived table must be unchanged by it. Processed tier: bars, adjustment factors,
corporate actions, indicators, factor exposures. Warehouse: bars, factors, corporate actions,
indicators, factor exposures, rollups and adjusted-on-read views, every portfolio table
(positions, cash, valuations, metrics, currency attribution, factor exposures), predictions and the
marts (``security_daily``, ``portfolio_performance``, ``model_signals``). Features are not stored:
the model computes them from these tables when it trains; no model is trained on this short history.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal
from psycopg import sql

from wealth_pipeline.core import calendars
from wealth_pipeline.definitions import defs as DEFS
from wealth_pipeline.defs.automation.landing_sensor import landing_zone_sensor
from wealth_pipeline.defs.processed.restatement import restatement_sensor
from wealth_pipeline.defs.resources import MarketDataResource
from wealth_pipeline.lakehouse.store import open_store
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration

# What the landing and restatement sensors launch (defs/automation/jobs.py: vendor_ingest).
REACTION = dg.AssetSelection.assets(*DEFS.resolve_job_def("vendor_ingest").asset_layer.executable_asset_keys)
# A backfill also builds the reference data and the daily inputs that do not come from vendor files.
BACKFILL = REACTION | dg.AssetSelection.assets(
    "symbol_master",
    "portfolio_reference",
    "raw_factor_returns",
    "factor_returns",
    "raw_benchmark_returns",
    "benchmark_returns",
)
HISTORY = calendars.sessions("NASDAQ", dt.date(2023, 12, 1), dt.date(2024, 7, 5))
H = len(HISTORY)  # DAYS[H + k] is the scenario's session k
DAYS = HISTORY + calendars.weekdays(dt.date(2024, 7, 8), dt.date(2024, 7, 26))[:13]
BOOKKEEPING = {"lake_date", "lake_year", "lake_file", "lake_row"}
# Warehouse columns that record when/by which run a row was written, not what it holds.
WRITE_COLUMNS = {"loaded_at", "load_id", "run_id", "known_at", "superseded_at", "updated_at", "created_at"}
HEADER = "symbol,session_date,open,high,low,close,volume,currency\n"
TOLERANCE = 1e-9


def _aapl(g: int) -> float:  # trades 2-for-1 split-adjusted from session 3 on (the split arrives late)
    price = 200.0 + 4.0 * math.sin(g / 2.0) + 3.0 * math.sin(g * 1.7)
    return round(price / 2.0 if g >= H + 3 else price, 4)


def _msft(g: int) -> float:
    return round(13.0 + 0.02 * (g - H) + 0.05 * math.cos(g) + 0.2 * math.sin(g * 2.3), 4)


def _bar(symbol: str, day: dt.date, close: float, volume: int = 1000) -> str:
    return f"{symbol},{day},{close},{round(close * 1.01, 4)},{round(close * 0.99, 4)},{close},{volume},USD\n"


def _bars_file(indices: list[int], overrides: dict[tuple[str, int], float] | None = None) -> bytes:
    """Bars of the scenario's sessions ``indices`` (negative: the history before session 0)."""
    overrides = overrides or {}
    lines = [HEADER]
    for k in indices:
        g = H + k
        lines.append(_bar("AAPL", DAYS[g], overrides.get(("AAPL", k), _aapl(g)), 1000 + g))
        lines.append(_bar("MSFT", DAYS[g], overrides.get(("MSFT", k), _msft(g)), 5000 + g))
    return "".join(lines).encode()


def _actions_file(rows: list[str]) -> bytes:
    return ("symbol,ex_date,action_type,ratio,amount,currency\n" + "".join(r + "\n" for r in rows)).encode()


def _portfolio(landing: Any) -> None:
    """A USD portfolio holding both securities from the history on: buys AAPL after the split, sells MSFT."""
    landing.put_bytes("portfolio/users.csv", b"user_id,display_name\ncarol,Carol\n")
    landing.put_bytes(
        "portfolio/portfolios.csv",
        b"portfolio_id,owner_id,name,base_currency,benchmark,allow_short\ncarol-usd,carol,Carol USD,USD,SYNTH500,false\n",
    )
    h, s = HISTORY, DAYS[H:]
    landing.put_bytes(
        "portfolio/transactions/2023.csv",
        (
            "portfolio_id,transaction_id,trade_date,type,symbol,quantity,price,amount,currency\n"
            f"carol-usd,C1,{h[0]},deposit,,,,100000,USD\n"
            f"carol-usd,C2,{h[1]},buy,AAPL,100,{_aapl(1)},,USD\n"
            f"carol-usd,C3,{h[2]},buy,MSFT,1000,{_msft(2)},,USD\n"
            f"carol-usd,C4,{s[5]},buy,AAPL,50,{_aapl(H + 5)},,USD\n"
            f"carol-usd,C5,{s[8]},sell,MSFT,300,{_msft(H + 8)},,USD\n"
            # out of MSFT before the spike of (d): a spiked bar would fail the portfolio's blocking checks
            f"carol-usd,C6,{s[10]},sell,MSFT,700,{_msft(H + 10)},,USD\n"
        ).encode(),
    )


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
            self.runs = self.p.run(first, last, selection=REACTION)
        return ranges

    def start_watching(self) -> list[tuple[str, str]]:
        """The sensors' first ticks after the hand backfill: they record what is there; nothing is run."""
        requested = [
            (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in self._evaluate("landing")
        ]
        self._evaluate("restatement")
        return requested


LAKE_DATASETS = {
    "bars": ["symbol", "session_date"],
    "indicators": ["symbol", "session_date"],
    "factor_exposures": ["symbol", "session_date"],
    "adjustment_factors": ["symbol", "ex_date"],
    "corporate_actions": ["symbol", "ex_date", "action_type"],
}


def _lake_state(p: Pipeline) -> dict[str, pl.DataFrame]:
    lake = p.lake
    out = {}
    for dataset, keys in LAKE_DATASETS.items():
        frame = lake.read_partitions("processed", dataset)
        out[dataset] = frame.drop([c for c in BOOKKEEPING if c in frame.columns]).sort(keys)
    return out


# The adjusted-on-read views and rollups, by the columns they publish.
WAREHOUSE_QUERIES = {
    "adjustment_factors": "SELECT symbol, ex_date, factor, volume_factor, cum_factor, cum_volume_factor "
    "FROM market.adjustment_factors WHERE superseded_at IS NULL",
    "bars_adjusted": "SELECT symbol, session_date, adj_open, adj_close, adj_volume FROM market.bars_adjusted",
    "indicators_adjusted": "SELECT symbol, session_date, sma_20, ema_12, rsi_14, atr_14 FROM analytics.indicators_adjusted",
    "bars_weekly": "SELECT symbol, week_start, open, high, low, close, volume, adj_open, adj_high, adj_low, adj_close, "
    "adj_volume, sessions FROM market.bars_weekly",
    "bars_weekly_adjusted": "SELECT symbol, week_start, adj_close, adj_volume FROM market.bars_weekly_adjusted",
}
# Every derived warehouse table and mart, all columns but the write bookkeeping.
WAREHOUSE_TABLES = (
    "market.bars_daily",
    "market.corporate_actions",
    "analytics.indicators_daily",
    "analytics.factor_exposures",
    "portfolio.positions",
    "portfolio.cash_balances",
    "portfolio.valuations",
    "portfolio.portfolio_metrics",
    "portfolio.currency_attribution",
    "portfolio.factor_exposures",
    "models.predictions",
    "marts.security_daily",
    "marts.portfolio_performance",
    "marts.model_signals",
)


def _warehouse_frame(conn: psycopg.Connection, query: sql.Composable | str) -> pl.DataFrame:
    cursor = conn.execute(query)
    names = [c.name for c in cursor.description or []]
    rows = cursor.fetchall()
    frame = pl.DataFrame([list(r) for r in rows], schema=names, orient="row", infer_schema_length=None)
    # numeric columns come back as Decimal: compare them as floats, within the tolerance
    return frame.with_columns(pl.col(pl.Decimal).cast(pl.Float64)).sort(names, nulls_last=True)


def _warehouse_state(p: Pipeline) -> dict[str, pl.DataFrame]:
    with psycopg.connect(p.warehouse_url) as conn:
        out = {name: _warehouse_frame(conn, q) for name, q in WAREHOUSE_QUERIES.items()}
        for table in WAREHOUSE_TABLES:
            schema, name = table.split(".")
            columns = [
                c
                for (c,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                    "ORDER BY ordinal_position",
                    (schema, name),
                ).fetchall()
                if c not in WRITE_COLUMNS
            ]
            assert columns, f"{table} does not exist"
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema, name)
            )
            out[table] = _warehouse_frame(conn, query)
    return out


def assert_same_tables(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame], what: str) -> None:
    """Every table of ``left`` equals its namesake in ``right``: same rows (sorted), floats within 1e-9."""
    assert left.keys() == right.keys(), what
    for name, frame in left.items():
        try:
            assert_frame_equal(frame, right[name], check_exact=False, rtol=TOLERANCE, atol=TOLERANCE)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {what}: {exc}") from None


# ~10 runs of the vendor graph with dbt (4-5 min idle; 9-10 min on a loaded shared 2-core box)
@pytest.mark.timeout(1800)
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
    d = [str(x) for x in DAYS[H:]]  # the scenario's sessions
    first = str(DAYS[0])

    # History: the sessions before 0 and sessions 0..9, backfilled by hand (with the daily inputs that are
    # not vendor files: factor and benchmark returns, through session 12), then the sensors start.
    # Files apply in path order: names start with the delivery time.
    landing.put_bytes("bars/2024-07-19T2200Z-history.csv", _bars_file(list(range(-H, 10))))
    _portfolio(landing)
    p.run(first, d[12], selection="raw_factor_returns factor_returns raw_benchmark_returns benchmark_returns")
    p.run(first, d[9], selection=BACKFILL)
    assert r.start_watching() == [(first, d[9])], "the history file is already in: nothing new to run"
    (positions,) = p.query(
        "SELECT count(*) FROM portfolio.positions WHERE session_date = %s", (DAYS[H + 2],)
    )[0]
    (exposures,) = p.query(
        "SELECT count(beta_market) FROM analytics.factor_exposures WHERE session_date = %s", (d[0],)
    )[0]
    assert (positions, exposures) == (2, 2), "the portfolio holds both securities, both have factor exposures"

    # (a) AAPL's 2-for-1 split on session 3, delivered late: sessions 3..9 restated in ONE run.
    before = _lake_state(p)["bars"]
    landing.put_bytes(
        "corporate_actions/2024-07-20T0900Z-late-split.csv", _actions_file([f"AAPL,{d[3]},split,2.0,,USD"])
    )
    assert r.react("landing") == [(d[3], d[9])]
    after = _lake_state(p)["bars"]
    early = pl.col("session_date") < DAYS[H + 3]
    assert after.filter(early).equals(before.filter(early)), "sessions before the ex-date are untouched"
    restated = {m.partition for m in r.runs[-1]["result"].asset_materializations_for_node("bars")}
    assert restated == set(d[3:10]), "every restated partition has its own materialization"
    assert after.filter((pl.col("symbol") == "AAPL") & ~early)["split_factor"].unique().to_list() == [2.0]
    assert p.query(
        "SELECT quantity FROM portfolio.positions WHERE symbol = 'AAPL' AND session_date = %s", (d[4],)
    ) == [(pytest.approx(200.0),)], "the split doubled the position"

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
    assert bars_loads == [("market.bars_daily", DAYS[H + 10], DAYS[H + 10], 2)], (
        "2 securities, 1 session: 2 rows written"
    )
    event = r.runs[-1]["result"].asset_materializations_for_node("bars")[0]
    factors = event.metadata["adjustment_factors"].value
    assert factors["warehouse_versions_inserted"] == 1 and factors["warehouse_versions_superseded"] == 0
    lake_after = _lake_state(p)
    for name in ("bars", "adjustment_factors", "indicators", "factor_exposures"):
        frame = lake_after[name]
        column = "ex_date" if name == "adjustment_factors" else "session_date"
        assert frame.filter(pl.col(column) < DAYS[H + 10]).equals(
            lake_before[name].filter(pl.col(column) < DAYS[H + 10])
        ), name
    assert lake_after["adjustment_factors"].height == 2

    # (c) a corrected vendor file for MSFT's session 6: sessions 6..10 restated in one run.
    landing.put_bytes("bars/2024-07-23T0900Z-correction.csv", _bars_file([6], {("MSFT", 6): 13.5}))
    assert r.react("landing") == [(d[6], d[10])]
    assert p.query(
        "SELECT close FROM market.bars_daily WHERE symbol='MSFT' AND session_date=%s", (d[6],)
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
        "SELECT count(*) FROM market.bars_daily WHERE symbol='MSFT' AND session_date=%s", (d[11],)
    ) == [(0,)]
    quarantined = p.lake.read("quarantine", "bars").filter(
        (pl.col("symbol") == "MSFT") & (pl.col("session_date") == DAYS[H + 11])
    )
    assert (
        quarantined.height == 1 and quarantined["field"][0] == "close" and "20x" in quarantined["reason"][0]
    )
    # The report names the delivered vendor file and line (header, AAPL, MSFT), not the raw-tier version.
    assert (quarantined["source_file"][0], quarantined["source_row"][0]) == (
        landing.uri("bars/2024-07-23T2200Z-day11.csv"),
        3,
    )
    assert r.react("restatement") == [], "the restatement run itself asks for nothing more"

    # Re-running an old partition after later actions leaves identical content.
    lake_state, warehouse_state = _lake_state(p), _warehouse_state(p)
    p.run(d[4], d[4], selection=REACTION)
    assert_same_tables(_lake_state(p), lake_state, "re-running session 4 changed it")
    assert_same_tables(_warehouse_state(p), warehouse_state, "re-running session 4 changed it")

    # The oracle: one backfill over the final inputs into a fresh lakehouse, loaded into the same warehouse.
    fresh = Pipeline(url, str(tmp_path / "fresh-lake"), None, provider="vendor", landing_uri=landing_uri)
    fresh.run(first, d[12], selection=BACKFILL)
    oracle_lake, oracle_warehouse = _lake_state(fresh), _warehouse_state(fresh)
    assert_same_tables(lake_state, oracle_lake, "processed tier differs from a fresh backfill")
    assert_same_tables(warehouse_state, oracle_warehouse, "warehouse differs from a fresh backfill")
    for table in (
        "analytics.factor_exposures",
        "portfolio.valuations",
        "portfolio.portfolio_metrics",
        "marts.security_daily",
        "marts.portfolio_performance",
    ):
        assert warehouse_state[table].filter(pl.col("session_date") >= DAYS[H + 3]).height > 0, (
            f"{table} holds restated sessions: the comparison is not vacuous"
        )
    # As-of reads: before the split was known, AAPL's history was not split-adjusted.
    (known,) = p.query("SELECT min(known_at) FROM market.adjustment_factors WHERE symbol='AAPL'")[0]
    then = p.query(
        "SELECT adj_close, close FROM market.bars_adjusted_as_of(%s) WHERE symbol='AAPL' AND session_date=%s",
        (known - dt.timedelta(microseconds=1), d[0]),
    )
    now = p.query(
        "SELECT adj_close, close FROM market.bars_adjusted_as_of(now()) WHERE symbol='AAPL' AND session_date=%s",
        (d[0],),
    )
    assert then == [(pytest.approx(then[0][1]), then[0][1])]
    assert now[0][0] == pytest.approx(now[0][1] * 0.5, rel=1e-12)
