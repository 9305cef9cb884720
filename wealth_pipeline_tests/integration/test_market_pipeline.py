"""Ingest and processed assets end to end: real PostgreSQL, local folder and S3 (moto) lakehouse."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest

from wealth_pipeline.cli import materialize_range
from wealth_pipeline.definitions import build_definitions
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.s3_server import create_bucket

pytestmark = pytest.mark.integration


MARKET = "group:ingest or group:processed"
ANALYTICS = "group:ingest or group:processed or group:analytics"


class Pipeline:
    """One warehouse database, one lakehouse root and Definitions wired to them."""

    def __init__(self, warehouse_url: str, lakehouse_uri: str, s3_endpoint: str | None, **market: Any) -> None:
        self.warehouse_url = warehouse_url
        self.lakehouse_uri = lakehouse_uri
        self.s3_endpoint = s3_endpoint
        self.market = market
        self.instance = dg.DagsterInstance.ephemeral()

    def resources(self, **market: Any) -> dict[str, Any]:
        return {
            "warehouse": WarehouseResource(url=self.warehouse_url),
            "lakehouse": LakehouseResource(uri=self.lakehouse_uri, s3_endpoint_url=self.s3_endpoint),
            "market_data": MarketDataResource(**{"synthetic_universe": 12, **self.market, **market}),
        }

    def run(self, start: str, end: str | None = None, selection: str = MARKET, raise_on_error: bool = True, **market: Any) -> list[dict[str, Any]]:
        summary = materialize_range(
            start, end or start, selection, progress=False,
            definitions=build_definitions(self.resources(**market)), instance=self.instance, raise_on_error=raise_on_error,
        )
        return summary["runs"]

    @property
    def lake(self) -> Lakehouse:
        return Lakehouse.from_uri(self.lakehouse_uri, s3_endpoint_url=self.s3_endpoint)

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.warehouse_url) as conn:
            return conn.execute(statement, params).fetchall()


@pytest.fixture(params=["local", "s3"])
def pipeline(request: pytest.FixtureRequest, pg_url: str, tmp_path: Path) -> Pipeline:
    migrate.upgrade(pg_url)
    if request.param == "local":
        return Pipeline(pg_url, str(tmp_path / "lake"), None)
    endpoint = request.getfixturevalue("s3_endpoint_url")
    return Pipeline(pg_url, f"s3://{create_bucket(endpoint)}/lakehouse", endpoint)


@pytest.fixture
def local_pipeline(pg_url: str, tmp_path: Path) -> Callable[..., Pipeline]:
    migrate.upgrade(pg_url)
    return lambda **market: Pipeline(pg_url, str(tmp_path / "lake"), None, **market)


def _bars_content(p: Pipeline) -> list[tuple]:
    return p.query("SELECT symbol, session_date, close, adj_close, adj_factor FROM market.bars_daily ORDER BY 1, 2")


def test_window_lands_in_both_tiers_and_the_warehouse_and_reruns_change_nothing(pipeline: Pipeline) -> None:
    runs = pipeline.run("2024-06-26", "2024-07-09")
    assert all(r["success"] for r in runs)
    lake = pipeline.lake
    processed = lake.read_partitions("processed", "bars", dt.date(2024, 6, 26), dt.date(2024, 7, 9))
    (count,) = pipeline.query("SELECT count(*) FROM market.bars_daily")[0]
    assert count == processed.height > 0
    # Each listing trades on its own exchange's sessions.
    days = {(s, d) for s, d in pipeline.query("SELECT symbol, session_date FROM market.bars_daily WHERE symbol IN ('AAPL','TD.TO')")}
    assert ("TD.TO", dt.date(2024, 7, 4)) in days and ("AAPL", dt.date(2024, 7, 4)) not in days
    assert ("AAPL", dt.date(2024, 7, 1)) in days and ("TD.TO", dt.date(2024, 7, 1)) not in days
    from wealth_pipeline.providers.synthetic import SyntheticMarket

    master = SyntheticMarket(seed=7, universe_size=12).symbol_master()  # one row per symbol: a ticker change is two (#21)
    assert pipeline.query("SELECT count(*), count(DISTINCT security_id) FROM ref.securities")[0] == (master.height, 12)
    fx = pipeline.query("SELECT count(*) FROM market.fx_rates WHERE base_currency='USD' AND quote_currency='CAD'")[0][0]
    assert fx == 10  # every weekday of the window
    factors = {f for (f,) in pipeline.query("SELECT DISTINCT factor FROM market.factor_returns")}
    assert factors == {"market", "size", "value", "momentum", "rf"}

    weekly = pipeline.query("SELECT open, high, low, close, volume, sessions FROM market.bars_weekly "
                            "WHERE symbol = 'AAPL' AND week_start = '2024-07-01'")
    daily = pipeline.query("SELECT open, high, low, close, volume FROM market.bars_daily WHERE symbol = 'AAPL' "
                           "AND session_date BETWEEN '2024-07-01' AND '2024-07-05' ORDER BY session_date")
    assert weekly == [(daily[0][0], max(r[1] for r in daily), min(r[2] for r in daily), daily[-1][3],
                       sum(r[4] for r in daily), len(daily))], "weekly rollup refreshed and rolled up correctly"

    before = _bars_content(pipeline)
    raw_files = lake.store.list_keys("raw/")
    audits = pipeline.query("SELECT count(*) FROM ops.loads WHERE table_name = 'market.bars_daily'")[0][0]
    pipeline.run("2024-06-26", "2024-07-09")
    assert _bars_content(pipeline) == before, "re-running a window leaves identical warehouse content"
    assert lake.store.list_keys("raw/") == raw_files, "the same delivery again adds no raw version"
    checksums = pipeline.query("SELECT DISTINCT checksum FROM ops.loads WHERE table_name = 'market.bars_daily'")
    assert len(checksums) == 1 and pipeline.query("SELECT count(*) FROM ops.loads WHERE table_name = 'market.bars_daily'")[0][0] == audits + 1


def test_one_partition_alone_equals_the_same_partition_inside_a_backfill(local_pipeline: Callable[..., Pipeline]) -> None:
    backfilled = local_pipeline()
    backfilled.run("2024-03-01", "2024-03-29")
    inside = backfilled.lake.read_partition("processed", "bars", dt.date(2024, 3, 15))
    alone = local_pipeline()
    alone.lakehouse_uri = alone.lakehouse_uri + "-alone"
    alone.run("2024-03-15")
    single = alone.lake.read_partition("processed", "bars", dt.date(2024, 3, 15))
    raw_cols = ["symbol", "session_date", "open", "high", "low", "close", "volume"]
    assert single.select(raw_cols).equals(inside.select(raw_cols).sort("symbol"))


def test_a_day_closed_everywhere_is_an_explicit_market_closed_result(local_pipeline: Callable[..., Pipeline]) -> None:
    p = local_pipeline()
    runs = p.run("2024-12-25", selection="raw_bars")
    result = runs[-1]["result"]
    materialization = result.asset_materializations_for_node("raw_bars")[0]
    assert materialization.metadata["market_status"].value == "closed"
    assert materialization.metadata["dagster/row_count"].value == 0
    assert p.lake.store.list_keys("raw/bars/") == []


def test_dirty_data_is_quarantined_with_file_row_field_and_reason(local_pipeline: Callable[..., Pipeline]) -> None:
    from wealth_pipeline.providers.synthetic import SyntheticMarket

    p = local_pipeline(synthetic_dirty=True)
    faults = SyntheticMarket(seed=7, universe_size=12, dirty=True).injected_faults(dt.date(2024, 1, 2), dt.date(2024, 12, 31))
    spike = faults.filter(pl.col("fault") == "tick_100x")
    assert spike.height >= 1
    day = spike["session_date"][0]
    p.run(str(day - dt.timedelta(days=7)), str(day + dt.timedelta(days=7)))
    quarantined = p.lake.read("quarantine", "bars")
    assert {"source_file", "source_row", "field", "reason", "symbol", "session_date"} <= set(quarantined.columns)
    spike = spike.filter(pl.col("session_date") == day)
    for symbol, day in spike.select("symbol", "session_date").iter_rows():
        hit = quarantined.filter((pl.col("symbol") == symbol) & (pl.col("session_date") == day))
        assert hit.height >= 1 and set(hit["field"].to_list()) & {"close", "high"}, hit
        assert hit["source_file"][0].endswith(".parquet") and hit["source_row"][0] >= 1
        assert p.query("SELECT count(*) FROM market.bars_daily WHERE symbol=%s AND session_date=%s", (symbol, day))[0][0] == 0
    # the raw tier still holds every delivered row, including the bad ones
    delivered = pl.concat([pl.read_parquet(p.lake.store.get_bytes(k)) for k in p.lake.store.list_keys("raw/bars/")])
    for symbol, day in spike.select("symbol", "session_date").iter_rows():
        assert delivered.filter((pl.col("symbol") == symbol) & (pl.col("session_date") == day)).height >= 1


def test_a_failed_blocking_check_keeps_the_previous_good_state(local_pipeline: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch) -> None:
    p = local_pipeline()
    p.run("2024-05-06", "2024-05-10")
    before = _bars_content(p)
    files_before = p.lake.store.list_keys("processed/bars/")
    import importlib

    bars_module = importlib.import_module("wealth_pipeline.core.bars")

    # A regression upstream of the checks: the adjusted close comes out negative.
    original = bars_module.adjustments.point_in_time
    monkeypatch.setattr(
        bars_module.adjustments, "point_in_time",
        lambda b, t: original(b, t).with_columns((-pl.col("adj_close")).alias("adj_close")),
    )
    runs = p.run("2024-05-06", "2024-05-10", raise_on_error=False)
    result = runs[-1]["result"]
    assert not result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("bars")}
    assert evaluations["ohlcv_valid"] is False
    assert _bars_content(p) == before
    assert p.lake.store.list_keys("processed/bars/") == files_before
    # A data-quality failure is deterministic: bars (retry policy: 2 retries) ran once, with no retry.
    bars_events = [e for e in result.all_events if e.step_key == "bars"]
    assert [e.event_type for e in bars_events].count(dg.DagsterEventType.STEP_START) == 1
    assert not any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in bars_events)


def test_each_partition_materialization_carries_its_own_figures_and_checks_follow_it(
        local_pipeline: Callable[..., Pipeline]) -> None:
    from wealth_pipeline.core import calendars
    from wealth_pipeline.providers.synthetic import SyntheticMarket

    p = local_pipeline(synthetic_dirty=True)
    faults = SyntheticMarket(seed=7, universe_size=12, dirty=True).injected_faults(dt.date(2024, 1, 2), dt.date(2024, 12, 31))
    day = faults.filter(pl.col("fault") == "tick_100x")["session_date"][0]
    start, end = day - dt.timedelta(days=3), day + dt.timedelta(days=3)
    runs = p.run(str(start), str(end))
    result = next(r["result"] for r in runs
                  if any(e.asset_key == dg.AssetKey("bars") for e in r["result"].get_asset_materialization_events()))
    per_day = dict(p.query("SELECT session_date, count(*) FROM market.bars_daily GROUP BY 1"))
    assert sum(per_day.values()) > max(per_day.values())  # a window total differs from a partition's count
    materializations = result.asset_materializations_for_node("bars")
    partitions = sorted(m.partition for m in materializations)
    first, last = dt.date.fromisoformat(partitions[0]), dt.date.fromisoformat(partitions[-1])
    assert partitions == [d.isoformat() for d in calendars.weekdays(first, last)] and day.isoformat() in partitions
    for m in materializations:
        assert m.metadata["dagster/row_count"].value == per_day.get(dt.date.fromisoformat(m.partition), 0)
        assert m.metadata["window"].value == f"{first}..{last}"
    # raw_bars too: each partition's count is that session's delivered rows (read back from the raw tier)
    from wealth_pipeline.lakehouse import raw

    raw_result = next(r["result"] for r in runs
                      if any(e.asset_key == dg.AssetKey("raw_bars") for e in r["result"].get_asset_materialization_events()))
    delivered = raw.read_current(p.lake.store, "bars", first, last, {"session_date": pl.Date()})
    delivered_per_day = {d.isoformat(): n for d, n in delivered.group_by("session_date").len().iter_rows()}
    raw_counts = {m.partition: m.metadata["dagster/row_count"].value for m in raw_result.asset_materializations_for_node("raw_bars")}
    assert raw_counts == {k: delivered_per_day.get(k, 0) for k in raw_counts} and set(delivered_per_day) <= set(raw_counts)
    assert len(set(raw_counts.values())) > 1, "the dirty market delivers a different count on some session"
    # the window's summary once, on its last partition (the asset's latest materialization), not copied to each
    *earlier, final = sorted(materializations, key=lambda m: m.partition)
    assert all("window_rows" not in m.metadata and "preview" not in m.metadata for m in earlier)
    assert final.metadata["window_rows"].value == sum(per_day.values())
    latest = final.metadata["preview"].value
    assert {r.data["session_date"] for r in latest.records} == {max(per_day).isoformat()}
    assert [c.name for c in latest.schema.columns][:2] == ["symbol", "session_date"]
    quarantined = p.lake.read("quarantine", "bars")
    by_day = quarantined.drop_nulls("session_date").group_by("session_date").len()
    assert by_day.height >= 1
    for day, n in by_day.iter_rows():
        m = next(m for m in materializations if m.partition == day.isoformat())
        assert m.metadata["rejected_rows"].value == n
    # the Delta commit of the window is the materialization's table version and data version
    version = p.lake.version("processed", "bars")
    assert version is not None
    for m in materializations:
        assert m.metadata["lakehouse/table_version"].value == version
        assert m.tags["dagster/data_version"] == f"v{version}"
    # check results come after the materialization they judge
    kinds = [e.event_type for e in result.all_events if e.step_key == "bars"]
    first_materialization = kinds.index(dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert dg.DagsterEventType.ASSET_CHECK_EVALUATION in kinds
    assert all(i > first_materialization for i, k in enumerate(kinds) if k == dg.DagsterEventType.ASSET_CHECK_EVALUATION)


@pytest.mark.timescale
def test_the_same_pipeline_on_timescaledb_hypertables_and_continuous_aggregates(timescale_url: str, tmp_path: Path) -> None:
    migrate.upgrade(timescale_url)
    p = Pipeline(timescale_url, str(tmp_path / "lake"), None)
    hypertables = {r[0] for r in p.query("SELECT hypertable_schema || '.' || hypertable_name FROM timescaledb_information.hypertables")}
    assert {"market.bars_daily", "market.fx_rates", "analytics.indicators_daily"} <= hypertables
    p.run("2024-06-03", "2024-06-28", selection="symbol_master raw_bars raw_corporate_actions corporate_actions bars")
    before = _bars_content(p)
    p.run("2024-06-03", "2024-06-28", selection="raw_bars bars")
    assert _bars_content(p) == before, "re-running a window on hypertables changes nothing"
    weekly = p.query(
        "SELECT symbol, week_start, open, high, low, close, volume FROM market.bars_weekly "
        "WHERE symbol = 'AAPL' AND week_start = '2024-06-10'")
    daily = p.query("SELECT open, high, low, close, volume FROM market.bars_daily WHERE symbol = 'AAPL' "
                    "AND session_date BETWEEN '2024-06-10' AND '2024-06-14' ORDER BY session_date")
    assert weekly
    (materialized,) = p.query(
        "SELECT materialization_hypertable_schema || '.' || materialization_hypertable_name "
        "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'bars_weekly'")[0]
    assert p.query(f"SELECT count(*) FROM {materialized}")[0][0] > 0, "bars refreshed the aggregate after its load"
    _, _, w_open, w_high, w_low, w_close, w_volume = weekly[0]
    assert (w_open, w_close) == (daily[0][0], daily[-1][3])
    assert w_high == max(r[1] for r in daily) and w_low == min(r[2] for r in daily)
    assert w_volume == sum(r[4] for r in daily)


def test_a_split_changes_no_earlier_row_and_adjusted_prices_follow_on_read(local_pipeline: Callable[..., Pipeline]) -> None:
    """GOOGL splits 4:1 on 2023-07-17: run the weeks before, then the split week alone (issue 14).

    Point-in-time model: the stored rows before the ex-date stay as they were; the split shows in
    the cumulative factor from its ex-date on and in the adjusted-as-of-now view.
    """
    daily = local_pipeline()
    daily.run("2023-07-03", "2023-07-14")
    stored_before = daily.lake.read_partitions("processed", "bars").drop("lake_date", "lake_year", "lake_file", "lake_row", strict=False)
    warehouse_before = daily.query("SELECT * FROM market.bars_daily ORDER BY symbol, session_date")
    runs = daily.run("2023-07-17", "2023-07-21")
    bars_event = runs[-1]["result"].asset_materializations_for_node("bars")[-1]  # the window's summary
    assert bars_event.metadata["restatement"].value == "none"
    stored = daily.lake.read_partitions("processed", "bars").drop("lake_date", "lake_year", "lake_file", "lake_row", strict=False)
    assert stored.filter(pl.col("session_date") < dt.date(2023, 7, 17)).sort(["symbol", "session_date"]).equals(
        stored_before.sort(["symbol", "session_date"]))
    assert daily.query("SELECT * FROM market.bars_daily WHERE session_date < '2023-07-17' ORDER BY symbol, session_date") == warehouse_before
    googl = stored.filter(pl.col("symbol") == "GOOGL").sort("session_date")
    assert googl.filter(pl.col("session_date") >= dt.date(2023, 7, 17))["split_factor"].to_list() == [4.0] * 5
    factor = daily.query("SELECT factor, volume_factor FROM market.adjustment_factors WHERE symbol='GOOGL' AND ex_date='2023-07-17'")
    assert factor == [(0.25, 4.0)]
    # adjusted as of now, on read: the session before the split at a quarter of its raw price
    (close, adj_close, adj_volume, volume), = daily.query(
        "SELECT close, adj_close, adj_volume, volume FROM market.bars_adjusted WHERE symbol='GOOGL' AND session_date='2023-07-14'")
    assert adj_close == pytest.approx(close * 0.25, rel=1e-12) and adj_volume == pytest.approx(volume * 4.0, rel=1e-12)

    # The result equals one backfill over the whole range, exactly.
    backfill = local_pipeline()
    backfill.lakehouse_uri += "-backfill"
    backfill.warehouse_url = daily.warehouse_url
    backfill.run("2023-07-03", "2023-07-21", selection="symbol_master raw_bars raw_corporate_actions corporate_actions bars")
    whole = backfill.lake.read_partitions("processed", "bars").drop("lake_date", "lake_year", "lake_file", "lake_row", strict=False)
    assert whole.sort(["symbol", "session_date"]).equals(stored.sort(["symbol", "session_date"]))
