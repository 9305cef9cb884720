"""Vendor files dropped in a landing zone (folder or S3 prefix) are ingested by a run for their partitions."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest

from wealth_pipeline.core import identifiers
from wealth_pipeline.lakehouse.store import open_store
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline
from wealth_pipeline_tests.s3_server import create_bucket

pytestmark = pytest.mark.integration

GOOD_AND_BAD = (
    "symbol,session_date,open,high,low,close,volume,currency\n"
    "AAPL,2024-07-01,100,102,99,101,1000,USD\n"
    "AAPL,2024-07-02,101,103,100,102,1100,USD\n"
    "TD.TO,2024-07-02,80,81,79,80.5,500,CAD\n"
    "TD.TO,2024-07-04,80.5,82,80,81,600,CAD\n"          # TSX trades on US Independence Day
    "MSFT,2024-07-02,400,399,401,400,10,USD\n"           # high < low: rejected
    "MSFT,2024-07-03,-5,1,1,1,10,USD\n"                  # negative price: rejected
    "NOPE,2024-07-02,1,1,1,1,1,USD\n"                    # unknown symbol: rejected
    "AAPL,2024-07-04,101,103,100,102,1100,USD\n"         # not a NYSE session: rejected
)


@pytest.fixture(params=["local", "s3"])
def landing(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> tuple[Pipeline, object]:
    migrate.upgrade(pg_url)
    if request.param == "local":
        uri, endpoint = str(tmp_path / "landing"), None
        pipeline = Pipeline(pg_url, str(tmp_path / "lake"), None, provider="vendor", landing_uri=uri)
    else:
        endpoint = request.getfixturevalue("s3_endpoint_url")
        bucket = create_bucket(endpoint)
        uri = f"s3://{bucket}/landing"
        pipeline = Pipeline(pg_url, f"s3://{bucket}/lake", endpoint, provider="vendor", landing_uri=uri,
                            s3_endpoint_url=endpoint)
    return pipeline, open_store(uri, endpoint)


def test_a_dropped_file_is_ingested_for_its_partitions_bad_rows_quarantined(landing: tuple[Pipeline, object]) -> None:
    pipeline, drop = landing
    data = GOOD_AND_BAD.encode()
    drop.put_bytes("bars/2024-07-05T2200Z-vendor.csv", data)
    pipeline.run("2024-07-01", "2024-07-05", selection="symbol_master raw_bars raw_corporate_actions corporate_actions bars")

    rows = pipeline.query("SELECT symbol, session_date, close FROM market.bars_daily ORDER BY 1, 2")
    assert rows == [
        ("AAPL", dt.date(2024, 7, 1), 101.0), ("AAPL", dt.date(2024, 7, 2), 102.0),
        ("TD.TO", dt.date(2024, 7, 2), 80.5), ("TD.TO", dt.date(2024, 7, 4), 81.0),
    ]
    store = pipeline.lake.store
    sha = hashlib.sha256(data).hexdigest()
    kept = store.get_bytes(f"raw/vendor_files/bars/{sha}/2024-07-05T2200Z-vendor.csv")
    assert kept == data, "the vendor file is kept byte-for-byte under its content hash"
    report = pipeline.lake.read_dataset("quarantine", "vendor/bars", sha)
    assert report.height and (report["file_sha256"] == sha).all()
    by_line = {(r["row_number"], r["field"]) for r in report.to_dicts()}
    assert (6, "high") in by_line or (6, "low") in by_line  # line 6: high < low
    assert (7, "open") in by_line                            # line 7: negative open
    assert (8, "symbol") in by_line                          # line 8: unknown symbol
    assert (9, "session_date") in by_line                    # line 9: not a session on NYSE
    assert report["file_name"].str.contains("2024-07-05T2200Z-vendor.csv").all()

    # Re-delivering the same file is a no-op (raw objects and the file's quarantine rows alike).
    raw_before = store.list_keys("raw/")
    reported = pipeline.lake.version("quarantine", "vendor/bars")
    pipeline.run("2024-07-01", "2024-07-05", selection="raw_bars bars")
    assert store.list_keys("raw/") == raw_before
    assert pipeline.lake.version("quarantine", "vendor/bars") == reported

    # A corrected file supersedes the earlier row, and the supersession is recorded.
    drop.put_bytes("bars/2024-07-06T0900Z-vendor-correction.csv",
                   b"symbol,session_date,open,high,low,close,volume,currency\nAAPL,2024-07-02,101,104,100,103.5,1200,USD\n")
    pipeline.run("2024-07-01", "2024-07-05", selection="raw_bars bars")
    assert pipeline.query("SELECT close FROM market.bars_daily WHERE symbol='AAPL' AND session_date='2024-07-02'") == [(103.5,)]
    recorded = [k for k in store.list_keys("artifacts/vendor_supersessions/bars/")]
    assert recorded, "supersession recorded"
    superseded = pl.read_parquet(store.get_bytes(recorded[-1]))
    assert superseded.filter(pl.col("symbol") == "AAPL")["superseded_by"][0].endswith("2024-07-06T0900Z-vendor-correction.csv")
    versions = [k for k in store.list_keys("raw/bars/") if "date=2024-07-02" in k]
    assert len(versions) == 2, "the earlier raw version stays; the new one supersedes it"


def test_a_malformed_file_is_refused_whole_and_kept(landing: tuple[Pipeline, object]) -> None:
    pipeline, drop = landing
    bad = b"symbol,session_date,open,high,low,close,volume,currency\nAAPL,2024-07-01,100,102,99,101,1000,US\xffD\n"
    drop.put_bytes("bars/latin1.csv", bad)
    runs = pipeline.run("2024-07-01", "2024-07-02", selection="symbol_master raw_bars")
    result = runs[-1]["result"]
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["vendor_deliveries_clean"].passed is False
    store = pipeline.lake.store
    sha = hashlib.sha256(bad).hexdigest()
    assert store.get_bytes(f"raw/vendor_files/bars/{sha}/latin1.csv") == bad
    report = pipeline.lake.read_dataset("quarantine", "vendor/bars", sha)
    assert report["field"].to_list() == ["(file)"] and "UTF-8" in report["reason"][0]
    assert store.list_keys("raw/bars/") == []


def test_a_symbol_master_with_a_duplicate_symbol_fails_once_unretried(landing: tuple[Pipeline, object]) -> None:
    """A blocking data-quality failure is deterministic: the step (retry policy of 3) starts once."""
    import dagster as dg

    pipeline, drop = landing
    drop.put_bytes("symbol_master/master.csv", b"symbol,name,exchange,currency,asset_class,sector\n"
                   b"AAPL,Apple Inc.,NASDAQ,USD,equity,Technology\nAAPL,Apple again,NASDAQ,USD,equity,Technology\n")
    (run,) = pipeline.run("2024-07-01", selection="symbol_master", raise_on_error=False)
    result = run["result"]
    assert not run["success"]
    starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(starts) == 1 and retries == []
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "symbol_unique" in failure.step_failure_data.user_failure_data.description
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}["symbol_unique"] is False


def test_a_vendor_symbol_master_with_a_bad_isin_check_digit_fails_once_naming_file_row_and_field(
        landing: tuple[Pipeline, object]) -> None:
    """Issue 21: identifier check digits are validated like any vendor input; nothing is published."""
    import dagster as dg

    pipeline, drop = landing
    drop.put_bytes("symbol_master/master.csv", b"symbol,name,exchange,currency,asset_class,sector,isin\n"
                   b"AAPL,Apple Inc.,NASDAQ,USD,equity,Technology,US0378331005\n"
                   b"MSFT,Microsoft,NASDAQ,USD,equity,Technology,US5949181046\n")
    (run,) = pipeline.run("2024-07-01", selection="symbol_master", raise_on_error=False)
    assert not run["success"]
    events = run["result"].all_events
    assert len([e for e in events if e.event_type == dg.DagsterEventType.STEP_START]) == 1
    [failure] = [e for e in events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "master.csv" in message and "row 2, field isin: 'US5949181046'" in message and "check digit" in message
    assert pipeline.query("SELECT count(*) FROM ref.securities")[0][0] == 0


@pytest.mark.parametrize("landing", ["local"], indirect=True)
def test_gzip_csv_is_ingested_and_kept_compressed_and_an_unknown_extension_is_reported(
        landing: tuple[Pipeline, object]) -> None:
    """Issue 14: a .csv.gz was ignored without a word. Two distributions of one ex-date ride along."""
    import gzip

    pipeline, drop = landing
    bars = gzip.compress(GOOD_AND_BAD.encode(), mtime=0)
    actions = gzip.compress(b"symbol,ex_date,action_type,ratio,amount,currency,distribution_type\n"
                            b"AAPL,2024-07-02,dividend,,1.00,USD,special\n"
                            b"AAPL,2024-07-02,dividend,,0.25,USD,regular\n", mtime=0)
    other = b"PK\x03\x04 not a csv"
    drop.put_bytes("bars/2024-07-05T2200Z-vendor.csv.gz", bars)
    drop.put_bytes("bars/2024-07-05T2300Z-vendor.xlsx", other)
    drop.put_bytes("corporate_actions/2024-07-05-vendor.csv.gz", actions)
    runs = pipeline.run("2024-07-01", "2024-07-05",
                        selection="symbol_master raw_bars raw_corporate_actions corporate_actions bars")
    assert pipeline.query("SELECT symbol, session_date, close FROM market.bars_daily ORDER BY 1, 2") == [
        ("AAPL", dt.date(2024, 7, 1), 101.0), ("AAPL", dt.date(2024, 7, 2), 102.0),
        ("TD.TO", dt.date(2024, 7, 2), 80.5), ("TD.TO", dt.date(2024, 7, 4), 81.0),
    ]
    store = pipeline.lake.store
    sha = hashlib.sha256(bars).hexdigest()
    assert store.get_bytes(f"raw/vendor_files/bars/{sha}/2024-07-05T2200Z-vendor.csv.gz") == bars  # as delivered
    report = pipeline.lake.read_dataset("quarantine", "vendor/bars", sha)
    assert {(6, "high"), (7, "open"), (8, "symbol"), (9, "session_date")} <= {
        (r["row_number"], r["field"]) for r in report.to_dicts()}  # lines of the decompressed CSV

    other_sha = hashlib.sha256(other).hexdigest()
    assert store.get_bytes(f"raw/vendor_files/bars/{other_sha}/2024-07-05T2300Z-vendor.xlsx") == other
    refused = pipeline.lake.read_dataset("quarantine", "vendor/bars", other_sha)
    assert refused["field"].to_list() == ["(file)"]
    assert refused["reason"][0].endswith("unsupported file type 'xlsx'; expected .csv, .csv.gz or .parquet")
    checks = {e.check_name: e for r in runs for e in r["result"].get_asset_check_evaluations()
              if e.asset_key.path == ["raw_bars"]}
    assert checks["vendor_deliveries_clean"].passed is False

    stored = pipeline.query("SELECT distribution_type, amount FROM market.corporate_actions ORDER BY amount DESC")
    assert stored == [("special", 1.00), ("regular", 0.25)]
    lake_bars = pipeline.lake.read_partitions("processed", "bars", dt.date(2024, 7, 1), dt.date(2024, 7, 2))
    cum = dict(lake_bars.filter(pl.col("symbol") == "AAPL").select("session_date", "cum_factor").iter_rows())
    # The day's factor combines both distributions against the previous close (101): T3's model, issue 14.
    assert cum[dt.date(2024, 7, 2)] / cum[dt.date(2024, 7, 1)] == pytest.approx(1 - 1.25 / 101.0, rel=1e-12)


def test_vendor_master_ticker_change_membership_and_name_change_land_in_the_history(
        landing: tuple[Pipeline, object]) -> None:
    """Issue 21: a vendor's ticker change (two rows, one ISIN), index membership and a dated name change."""
    pipeline, drop = landing
    drop.put_bytes("symbol_master/master.csv", b"symbol,name,exchange,currency,asset_class,sector,isin,valid_from,valid_to\n"
                   b"AAPL,Apple Inc.,NASDAQ,USD,equity,Technology,US0378331005,,\n"
                   b"FB,Meta Platforms,NASDAQ,USD,equity,Communication,US30303M1027,,2022-06-09\n"
                   b"META,Meta Platforms,NASDAQ,USD,equity,Communication,US30303M1027,2022-06-09,\n")
    drop.put_bytes("index_membership/spx.csv", b"index_name,isin,valid_from,valid_to\n"
                   b"S&P 500,US0378331005,1982-11-30,\nS&P 500,US30303M1027,2013-12-23,\n")
    drop.put_bytes("identifier_changes/names.csv", b"security_id,effective_date,field,old_value\n"
                   + f"{identifiers.security_id('US30303M1027')},2021-10-28,name,\"Facebook, Inc.\"\n".encode())
    (run,) = pipeline.run("2024-07-01", selection="symbol_master")
    assert run["success"]
    meta = identifiers.security_id("US30303M1027")
    assert pipeline.query("SELECT valid_from, valid_to, symbol, name, change FROM ref.securities_history "
                          "WHERE security_id = %s ORDER BY valid_from", (meta,)) == [
        (dt.date(1, 1, 1), dt.date(2021, 10, 28), "FB", "Facebook, Inc.", "listing"),
        (dt.date(2021, 10, 28), dt.date(2022, 6, 9), "FB", "Meta Platforms", "name_change"),
        (dt.date(2022, 6, 9), None, "META", "Meta Platforms", "ticker_change"),
    ]
    assert pipeline.query("SELECT symbol, name FROM ref.universe_as_of('2021-01-04', 'S&P 500')") == [
        ("AAPL", "Apple Inc."), ("FB", "Facebook, Inc.")]
    assert pipeline.query("SELECT symbol FROM ref.universe_as_of('2024-07-01', 'S&P 500')") == [("AAPL",), ("META",)]


@pytest.mark.parametrize("landing", ["local"], indirect=True)
def test_a_daily_run_judges_its_session_against_the_stored_sessions_before_it(
        landing: tuple[Pipeline, object]) -> None:
    """Issue 14: the jump check of a one-session run sees the previous close (an unreported 2:1 split)."""
    pipeline, drop = landing
    drop.put_bytes("bars/2024-07-03-vendor.csv", (
        b"symbol,session_date,open,high,low,close,volume,currency\n"
        b"AAPL,2024-07-01,100,102,99,101,1000,USD\n"
        b"AAPL,2024-07-02,101,103,100,102,1100,USD\n"
        b"AAPL,2024-07-03,51,52,50,51.5,1050,USD\n"))  # halved, same volume, no split reported
    pipeline.run("2024-07-01", "2024-07-02", selection="symbol_master raw_bars raw_corporate_actions corporate_actions bars")
    runs = pipeline.run("2024-07-03", "2024-07-03", selection="raw_bars raw_corporate_actions corporate_actions bars")
    [check] = [e for r in runs for e in r["result"].get_asset_check_evaluations()
               if e.asset_key.path == ["bars"] and e.check_name == "no_unexplained_jumps"]
    assert check.passed is False
    assert check.metadata["jumps"].value == 1
    [example] = check.metadata["examples"].value
    assert example.startswith("AAPL 2024-07-03: -49.5%: split-like: price ratio 0.5049 near a 2:1 split, volume unknown")
