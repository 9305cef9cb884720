"""Per-row source lineage (issue 22) through real runs on both database flavours: every raw, processed
and warehouse row of market data names the provider that delivered it.

Oracles: the landing files a row came from (the vendor the rights registry's ``files`` patterns name),
the synthetic provider's own rows, and the fake HTTP vendor's series.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest

from wealth_pipeline.core.schemas import BARS_SCHEMA, FX_RATES_SCHEMA, with_source
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration import test_http_fault_tolerance as http_vendor
from wealth_pipeline_tests.integration.test_http_fault_tolerance import Vendor, universe, vendor_series
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration
fake_vendor = http_vendor.make_vendor  # the fake HTTP vendor fixture of the fault-tolerance tests

D = dt.date.fromisoformat
HEADER = "symbol,session_date,open,high,low,close,volume,currency\n"
MARKET_TABLES = {
    "bars": "market.bars_daily",
    "corporate_actions": "market.corporate_actions",
    "fx_rates": "market.fx_rates",
    "factor_returns": "market.factor_returns",
    "benchmark_returns": "market.benchmark_returns",
}
ALL_MARKET = (
    "symbol_master raw_bars raw_corporate_actions raw_fx_rates raw_factor_returns raw_benchmark_returns "
    "corporate_actions fx_rates factor_returns benchmark_returns bars"
)


def _sources(pipeline: Pipeline, table: str) -> Counter:
    return Counter(r[0] for r in pipeline.query(f"SELECT source FROM {table}"))


def test_landing_rows_carry_the_vendor_of_their_file(migrated_flavoured_db: tuple[str, str], tmp_path: Path) -> None:
    """Files of two vendors (the registry's vendorx by its file pattern, the rest the default `vendor`)."""
    _, url = migrated_flavoured_db
    landing = tmp_path / "landing"
    (landing / "bars").mkdir(parents=True)
    (landing / "corporate_actions").mkdir()
    (landing / "bars" / "2024-07-02T2200Z-vendorx.csv").write_text(
        HEADER + "AAPL,2024-07-01,100,102,99,101,1000,USD\nAAPL,2024-07-02,101,103,100,102,1100,USD\n"
        "TD.TO,2024-07-02,80,81,79,80.5,500,CAD\n",
        encoding="utf-8",
    )
    # The later file (no vendor pattern: the registry's `vendor`) corrects AAPL 07-02 and adds 07-03.
    (landing / "bars" / "2024-07-03T2200Z-feed.csv").write_text(
        HEADER + "AAPL,2024-07-02,101,104,100,103.5,1200,USD\nAAPL,2024-07-03,103,105,102,104,900,USD\n"
        "TD.TO,2024-07-03,80.5,82,80,81,600,CAD\n",
        encoding="utf-8",
    )
    (landing / "corporate_actions" / "2024-07-02-vendorx.csv").write_text(
        "symbol,ex_date,action_type,ratio,amount,currency\nAAPL,2024-07-02,dividend,,0.25,USD\n", encoding="utf-8"
    )
    (landing / "corporate_actions" / "2024-07-03-feed.csv").write_text(
        "symbol,ex_date,action_type,ratio,amount,currency\nTD.TO,2024-07-03,dividend,,0.50,CAD\n", encoding="utf-8"
    )
    pipeline = Pipeline(url, str(tmp_path / "lake"), None, provider="vendor", landing_uri=str(landing))
    pipeline.run("2024-07-01", "2024-07-03", selection="symbol_master raw_bars raw_corporate_actions corporate_actions bars")

    assert pipeline.query("SELECT symbol, session_date, close, source FROM market.bars_daily ORDER BY 1, 2") == [
        ("AAPL", D("2024-07-01"), 101.0, "vendorx"),
        ("AAPL", D("2024-07-02"), 103.5, "vendor"),  # the later file's row, its vendor
        ("AAPL", D("2024-07-03"), 104.0, "vendor"),
        ("TD.TO", D("2024-07-02"), 80.5, "vendorx"),
        ("TD.TO", D("2024-07-03"), 81.0, "vendor"),
    ]
    assert pipeline.query("SELECT symbol, ex_date, amount, source FROM market.corporate_actions ORDER BY 2") == [
        ("AAPL", D("2024-07-02"), 0.25, "vendorx"),
        ("TD.TO", D("2024-07-03"), 0.50, "vendor"),
    ]
    # The raw and processed tiers carry it too.
    lake = pipeline.lake
    stored = raw.read_current(lake.store, "bars", D("2024-07-01"), D("2024-07-03"), with_source(BARS_SCHEMA))
    assert sorted(stored.select("symbol", "session_date", "source").rows()) == [
        (s, d, v) for s, d, _, v in pipeline.query("SELECT symbol, session_date, close, source FROM market.bars_daily ORDER BY 1, 2")
    ]
    processed = lake.read_partitions("processed", "corporate_actions", D("2024-07-01"), D("2024-07-03"))
    assert sorted(processed.select("symbol", "source").rows()) == [("AAPL", "vendorx"), ("TD.TO", "vendor")]
    # The session's lineage is the set of vendors whose files had rows on it (the superseded one included).
    lineage = dict(pipeline.query("SELECT session_date, sources FROM ops.lineage WHERE dataset = 'bars'"))
    assert lineage[D("2024-07-02")] == ["vendor", "vendorx"]


def test_the_synthetic_default_tags_all_five_datasets(migrated_flavoured_db: tuple[str, str], tmp_path: Path) -> None:
    _, url = migrated_flavoured_db
    pipeline = Pipeline(url, str(tmp_path / "lake"), None)
    pipeline.run("2024-01-05", "2024-01-09", selection=ALL_MARKET)
    market = SyntheticMarket(universe_size=12)
    start, end = D("2024-01-05"), D("2024-01-09")
    for dataset, table in MARKET_TABLES.items():
        expected = getattr(market, dataset)(start, end).height
        if dataset == "bars":
            expected = pipeline.query("SELECT count(*) FROM market.bars_daily")[0][0]  # after validation
        assert expected > 0, dataset
        assert _sources(pipeline, table) == Counter({"synthetic": expected}), table
    assert _sources(pipeline, "market.corporate_actions") == Counter({"synthetic": 1})  # TD.TO, 2024-01-08


def test_an_http_run_tags_rows_with_the_adapter_that_served_them(
    migrated_flavoured_db: tuple[str, str], tmp_path: Path, fake_vendor: Callable[..., Vendor]
) -> None:
    _, url = migrated_flavoured_db
    start, end = D("2024-03-04"), D("2024-03-08")
    master = universe(3)
    vendor = fake_vendor(master, vendor_series(master, start - dt.timedelta(days=30), end))
    market = {
        "provider": "http", "landing_uri": str(tmp_path / "landing"), "http_state_dir": str(tmp_path / "http"),
        "http_request_deadline_seconds": 2.0, "http_backoff_base_seconds": 0.002, "http_backoff_max_seconds": 0.01,
    }
    pipeline = Pipeline(url, str(tmp_path / "lake"), None, **market)
    pipeline.instance = vendor.instance
    pipeline.run(str(start), str(end), selection=ALL_MARKET)

    assert _sources(pipeline, "market.bars_daily") == Counter({"alphavantage": 3 * 5})
    assert _sources(pipeline, "market.fx_rates") == Counter({"fred": 5})
    # rf from the FRED T-bill series; the other factors, and benchmarks, from the synthetic supplement.
    assert dict(pipeline.query("SELECT factor, min(source) FROM market.factor_returns GROUP BY 1 HAVING "
                               "count(DISTINCT source) = 1")) == {
        "rf": "fred", "market": "synthetic", "size": "synthetic", "value": "synthetic", "momentum": "synthetic"}
    assert set(_sources(pipeline, "market.benchmark_returns")) == {"synthetic"}


def test_raw_versions_without_a_source_take_the_recorded_provider_else_unknown(
    migrated_flavoured_db: tuple[str, str], tmp_path: Path
) -> None:
    """A raw version written before rows carried a source (simulated: the column dropped)."""
    _, url = migrated_flavoured_db
    pipeline = Pipeline(url, str(tmp_path / "lake"), None)
    pipeline.run("2024-01-02", "2024-01-03", selection="raw_fx_rates fx_rates")
    store = pipeline.lake.store
    day = D("2024-01-03")
    current = raw.read_current(store, "fx_rates", day, day, FX_RATES_SCHEMA)
    older = current.with_columns(pl.col("rate") * 1.001)  # a new version, in the former layout (no source)
    assert [w.status for w in raw.write_versions(store, "fx_rates", older, "session_date", [day])] == ["superseded"]

    # The partition's materialization recorded one provider: its rows take it.
    result = pipeline.run("2024-01-02", "2024-01-03", selection="fx_rates")[-1]["result"]
    assert Counter(pipeline.query("SELECT source FROM market.fx_rates WHERE session_date = %s", (day,))) == Counter(
        {("synthetic",): older.height})
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("fx_rates")]
    assert events[-1].materialization.metadata["row_sources_filled"].value == {  # the window summary, last partition
        "rows_without_source": older.height, "from_lineage": older.height, "unknown": 0}

    # An instance without that record (raw data materialized elsewhere): 'unknown', never a guess.
    fresh = Pipeline(url, pipeline.lakehouse_uri, None)
    fresh.run("2024-01-02", "2024-01-03", selection="fx_rates")
    assert Counter(r for r in fresh.query("SELECT session_date, source FROM market.fx_rates")) == Counter(
        {(D("2024-01-02"), "synthetic"): current.height, (day, "unknown"): older.height})


def test_migration_0013_gives_earlier_rows_their_single_recorded_provider(flavoured_db: tuple[str, str]) -> None:
    _, url = flavoured_db
    migrate.upgrade(url, 12)
    d1, d2, d3 = D("2024-01-02"), D("2024-01-03"), D("2024-01-04")
    with psycopg.connect(url) as conn:
        for day in (d1, d2, d3):
            conn.execute(
                "INSERT INTO market.bars_daily (symbol, session_date, currency, open, high, low, close, source) "
                "VALUES ('AAA', %s, 'USD', 1, 1, 1, 1, 'raw')", (day,))
            conn.execute("INSERT INTO market.fx_rates (base_currency, quote_currency, session_date, rate) "
                         "VALUES ('USD', 'CAD', %s, 1.3)", (day,))
        conn.execute("INSERT INTO ops.lineage (dataset, session_date, sources) VALUES "
                     "('bars', %s, '{vendorx}'), ('bars', %s, '{vendor,vendorx}'), ('fx_rates', %s, '{fred}')",
                     (d1, d2, d3))
    migrate.upgrade(url, 13)
    with psycopg.connect(url) as conn:
        bars = conn.execute("SELECT session_date, source FROM market.bars_daily ORDER BY 1").fetchall()
        fx = conn.execute("SELECT session_date, source FROM market.fx_rates ORDER BY 1").fetchall()
    assert bars == [(d1, "vendorx"), (d2, "unknown"), (d3, "unknown")]  # two providers / none on record
    assert fx == [(d1, "unknown"), (d2, "unknown"), (d3, "fred")]
    migrate.downgrade(url, 12)
    with psycopg.connect(url) as conn:
        assert {r[0] for r in conn.execute("SELECT source FROM market.bars_daily")} == {"raw"}
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'market' "
            "AND table_name = 'fx_rates' ORDER BY ordinal_position")]
    assert columns == ["base_currency", "quote_currency", "session_date", "rate"]
