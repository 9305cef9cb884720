"""raw_bars through a flaky HTTP vendor on 127.0.0.1, end to end through Dagster.

The fake vendor injects seeded faults (5xx, 429 with Retry-After, resets, slow-drip and truncated
bodies, HTML maintenance pages and throttling notes with status 200). The oracle for every bar is
the series the fake vendor was given. Timing is kept short with a fast rate limit, a short request
deadline and millisecond backoff; the one assertion on elapsed time is a generous upper bound
(the breaker must stop a total outage quickly), never a performance claim.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from wealth_pipeline.cli import materialize_range
from wealth_pipeline.core import calendars
from wealth_pipeline.core.universe import complete_master
from wealth_pipeline.definitions import build_definitions
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.providers.base import BARS_SCHEMA
from wealth_pipeline.providers.http import HttpClient, ProviderTransportError, reset_vendor_registry
from wealth_pipeline.providers.http_adapters import AlphaVantageDailyBars
from wealth_pipeline_tests.fake_vendor_server import (
    FAULT_KINDS,
    FakeVendorServer,
    Hit,
    Reply,
    alphavantage_handler,
    fred_handler,
)

pytestmark = pytest.mark.integration

AV_KEY = "AV-fault-test-key-7f3a"
FRED_KEY = "fred-fault-test-key-0c1d"
D = dt.date.fromisoformat
EXCHANGES = (("NYSE", "USD"), ("NASDAQ", "USD"), ("TSX", "CAD"))

Series = dict[str, dict[str, tuple[float, float, float, float, int]]]


def universe(n: int, exchanges: tuple[tuple[str, str], ...] = EXCHANGES) -> pl.DataFrame:
    """``n`` real (non-synthetic) listings spread over the exchanges."""
    rows = [(f"S{i:03d}", exchanges[i % len(exchanges)]) for i in range(n)]
    return complete_master(pl.DataFrame(
        {"symbol": [s for s, _ in rows], "name": [f"Security {s}" for s, _ in rows],
         "exchange": [e for _, (e, _) in rows], "currency": [c for _, (_, c) in rows],
         "asset_class": ["equity"] * n, "sector": ["Industrials"] * n, "is_synthetic": [False] * n},
    ))


def vendor_series(master: pl.DataFrame, start: dt.date, end: dt.date, seed: int = 3) -> Series:
    """Each listing's bars on its exchange's sessions, with 4-decimal prices as the vendor renders them."""
    rng = np.random.default_rng(seed)
    series: Series = {}
    for symbol, exchange in master.select("symbol", "exchange").iter_rows():
        days = calendars.sessions(exchange, start, end)
        close = np.round(50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))), 4)
        opens = np.round(close * (1 + rng.normal(0, 0.003, len(days))), 4)
        high = np.round(np.maximum(opens, close) * 1.004, 4)
        low = np.round(np.minimum(opens, close) * 0.996, 4)
        volume = rng.integers(10_000, 5_000_000, len(days))
        series[symbol] = {day.isoformat(): (float(o), float(h), float(lo), float(c), int(v))
                          for day, o, h, lo, c, v in zip(days, opens, high, low, close, volume, strict=True)}
    return series


def oracle(master: pl.DataFrame, series: Series, start: dt.date, end: dt.date,
           symbols: list[str] | None = None) -> pl.DataFrame:
    """The bars raw_bars must hold: exactly the vendor's series inside the window."""
    currency = dict(master.select("symbol", "currency").iter_rows())
    rows = [(symbol, D(day), *values[:4], values[4], currency[symbol])
            for symbol, days in series.items() if symbols is None or symbol in symbols
            for day, values in days.items() if start <= D(day) <= end]
    return pl.DataFrame(rows, schema=BARS_SCHEMA, orient="row").sort("symbol", "session_date")


class Vendor:
    """The fake vendor (Alpha Vantage bars + FRED) and a pipeline wired to it through the environment."""

    def __init__(self, server: FakeVendorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 master: pl.DataFrame, series: Series) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.master = master
        self.series = series
        self.failing: dict[str, int] = {}  # symbol -> requests still to answer with 500 (-1: always)
        handler = alphavantage_handler(series, AV_KEY)

        def bars(hit: Hit) -> Reply:
            symbol = hit.query.get("symbol", "")
            left = self.failing.get(symbol, 0)
            if left:
                self.failing[symbol] = left - 1 if left > 0 else left
                return Reply(500, "<html>internal error</html>", {"Content-Type": "text/html"})
            return handler(hit)

        server.route("/query", bars)
        fx = [(day, "1.35") for day in (d.isoformat() for d in calendars.weekdays(D("2022-01-03"), D("2027-01-01")))]
        server.route("/fred/series/observations", fred_handler({"DEXCAUS": fx, "DTB3": [(d, "5.0") for d, _ in fx]},
                                                               FRED_KEY))
        landing = tmp_path / "landing" / "symbol_master"
        landing.mkdir(parents=True)
        master.with_columns(pl.col("is_synthetic").cast(pl.Utf8).str.to_lowercase()).write_csv(landing / "master.csv")
        for name, value in {"WEALTH_HTTP_BARS_URL": server.url, "WEALTH_HTTP_BARS_API_KEY": AV_KEY,
                            "WEALTH_HTTP_BARS_RATE_LIMIT": "2000", "WEALTH_HTTP_FX_URL": server.url,
                            "WEALTH_HTTP_FX_API_KEY": FRED_KEY, "WEALTH_HTTP_FX_RATE_LIMIT": "2000"}.items():
            monkeypatch.setenv(name, value)
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, start: str, end: str, *, lake: str = "lake", selection: str = "raw_bars",
            **market: Any) -> dg.ExecuteInProcessResult:
        options: dict[str, Any] = {
            "provider": "http", "landing_uri": str(self.tmp_path / "landing"),
            "http_state_dir": str(self.tmp_path / "http"), "http_request_deadline_seconds": 2.0,
            "http_max_retries": 5, "http_backoff_base_seconds": 0.002, "http_backoff_max_seconds": 0.01,
            "http_breaker_failures": 5, "http_breaker_reset_seconds": 60.0, **market,
        }
        resources = {
            "warehouse": WarehouseResource(url="postgresql://unused@127.0.0.1:1/unused"),  # raw assets never connect
            "lakehouse": LakehouseResource(uri=str(self.tmp_path / lake)),
            "market_data": MarketDataResource(**options),
        }
        summary = materialize_range(start, end, selection, progress=False, raise_on_error=False,
                                    definitions=build_definitions(resources), instance=self.instance)
        return summary["runs"][-1]["result"]

    def raw_bars(self, start: dt.date, end: dt.date, lake: str = "lake") -> pl.DataFrame:
        store = Lakehouse.from_uri(str(self.tmp_path / lake)).store
        return raw.read_current(store, "bars", start, end, BARS_SCHEMA).sort("symbol", "session_date")

    def raw_keys(self, lake: str = "lake") -> list[str]:
        return Lakehouse.from_uri(str(self.tmp_path / lake)).store.list_keys("raw/")

    def bar_hits(self, since: int = 0) -> list[Hit]:
        return [hit for hit in self.server.hits[since:] if hit.path == "/query"]


@pytest.fixture
def make_vendor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Vendor]]:
    reset_vendor_registry()
    servers: list[FakeVendorServer] = []

    def make(master: pl.DataFrame, series: Series) -> Vendor:
        server = FakeVendorServer().start()
        servers.append(server)
        return Vendor(server, tmp_path, monkeypatch, master, series)

    yield make
    for server in servers:
        server.stop()
    reset_vendor_registry()


def _materialization(result: dg.ExecuteInProcessResult, asset: str = "raw_bars") -> dict[str, Any]:
    """The metadata of the asset's materialization: one event per partition of the range, the window's
    summary (the request counts among it) on the last one only."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    assert events, f"{asset} was not materialized"
    metadata = [{k: v.value for k, v in e.materialization.metadata.items()} for e in events]
    assert all("http_request_count" not in m for m in metadata[:-1]), "the window's summary is on its last partition"
    return metadata[-1]


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            texts.append(data.error.to_string() if data.error else "")
            if data.user_failure_data is not None:
                texts.append(data.user_failure_data.description or "")
    return "\n".join(texts)


def _max_in_window(times: list[float], window: float) -> int:
    """The most arrivals inside any half-open interval of ``window`` seconds."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


# -- the acceptance case -------------------------------------------------------------------------------

def test_500_listings_one_year_at_30_percent_faults_equal_the_fault_free_run(make_vendor):
    master = universe(500)
    start, end = D("2024-01-02"), D("2024-12-31")
    series = vendor_series(master, D("2023-10-02"), end)
    vendor = make_vendor(master, series)

    clean = vendor.run(start.isoformat(), end.isoformat(), lake="clean", http_request_deadline_seconds=5.0)
    assert clean.success, _failure_text(clean)
    assert len(vendor.bar_hits()) == _materialization(clean)["http_request_count"] >= 500
    before = len(vendor.server.hits)
    vendor.server.inject_faults("/query", 0.30, seed=15, slow_drip=0.35)  # 2 x 0.35 s > the 0.5 s deadline
    faulty = vendor.run(start.isoformat(), end.isoformat(), lake="faulty", http_request_deadline_seconds=0.5)
    assert faulty.success, _failure_text(faulty)
    served = vendor.server.faults_served
    assert len(served) > 150 and set(served) == set(FAULT_KINDS), "every kind of fault was really served"
    # Each fault costs one extra request, no more: nothing fetched is fetched again (a few spare
    # for answers that missed the deadline on a loaded machine).
    assert 500 + len(served) <= len(vendor.bar_hits(before)) <= 500 + len(served) + 10

    expected = oracle(master, series, start, end)
    assert expected.height > 500 * 240
    assert_frame_equal(vendor.raw_bars(start, end, lake="clean"), expected)
    assert_frame_equal(vendor.raw_bars(start, end, lake="faulty"), expected)
    assert _checks(faulty)["http_fetch_complete"] is True


# -- breaker -------------------------------------------------------------------------------------------------

def test_total_outage_opens_the_breaker_fails_fast_keeps_state_and_the_next_run_probes_once(make_vendor):
    master = universe(20)
    series = vendor_series(master, D("2024-02-01"), D("2024-03-29"))
    vendor = make_vendor(master, series)
    options = {"http_breaker_failures": 3, "http_max_retries": 2, "http_breaker_reset_seconds": 3.0}
    good = vendor.run("2024-03-04", "2024-03-15", **options)
    assert good.success, _failure_text(good)
    keys_before = vendor.raw_keys()
    bars_before = vendor.raw_bars(D("2024-03-01"), D("2024-03-29"))

    vendor.server.inject_faults("/query", 1.0, seed=1, kinds=("500", "503", "html_200", "reset", "truncated"))
    hits = len(vendor.bar_hits())
    started = time.monotonic()
    outage = vendor.run("2024-03-18", "2024-03-29", **options)
    elapsed = time.monotonic() - started
    assert not outage.success
    text = _failure_text(outage)
    assert "circuit open for alphavantage" in text and AV_KEY not in text
    assert _retries(outage) == 0, "an open circuit is not retried by Dagster"
    assert len(vendor.bar_hits(hits)) == 3 * 3  # 3 failed calls x (1 + 2 retries), then no more
    assert elapsed < 30, f"a total outage must fail quickly, took {elapsed:.1f} s"
    assert vendor.raw_keys() == keys_before, "nothing written: the previous state is intact"
    assert_frame_equal(vendor.raw_bars(D("2024-03-01"), D("2024-03-29")), bars_before)

    hits = len(vendor.bar_hits())
    again = vendor.run("2024-03-18", "2024-03-29", **options)  # within the reset period
    assert not again.success and "circuit open for alphavantage" in _failure_text(again)
    assert len(vendor.bar_hits(hits)) == 0

    time.sleep(3.1)
    probe = vendor.run("2024-03-18", "2024-03-29", **options)  # still down: one probe, no more
    assert not probe.success and "circuit open for alphavantage" in _failure_text(probe)
    assert len(vendor.bar_hits(hits)) == 1

    vendor.server.inject_faults("/query", 0.0, seed=1)
    time.sleep(3.1)
    hits = len(vendor.bar_hits())
    healed = vendor.run("2024-03-18", "2024-03-29", **options)
    assert healed.success, _failure_text(healed)
    assert len(vendor.bar_hits(hits)) == 20  # the probe succeeded and closed the circuit
    assert_frame_equal(vendor.raw_bars(D("2024-03-04"), D("2024-03-29")),
                       oracle(master, series, D("2024-03-04"), D("2024-03-29")))


# -- resumability ------------------------------------------------------------------------------------------------

def test_step_retry_fetches_only_the_failed_symbol_and_the_rate_limit_holds_across_attempts(make_vendor, monkeypatch):
    master = universe(24)
    series = vendor_series(master, D("2024-04-01"), D("2024-04-30"))
    vendor = make_vendor(master, series)
    monkeypatch.setenv("WEALTH_HTTP_BARS_RATE_LIMIT", "25")
    monkeypatch.setenv("WEALTH_HTTP_FX_RATE_LIMIT", "10")
    vendor.failing = {"S007": 3}  # fails all 3 attempts of the first step attempt, then recovers
    result = vendor.run("2024-04-15", "2024-04-26", selection="raw_bars raw_fx_rates raw_factor_returns",
                        http_max_retries=2)
    assert result.success, _failure_text(result)
    assert _retries(result) == 1
    retry = next(e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")
    retry_text = retry.event_specific_data.error.to_string()
    assert "raw_bars: 1 of 24 symbol(s) not fetched (S007: alphavantage: GET" in retry_text
    assert "HTTP 500 after 3 attempt(s)" in retry_text and AV_KEY not in retry_text
    # The failed attempt wrote no partial partition (each has one version, with every symbol).
    versions = [k for k in vendor.raw_keys() if k.startswith("raw/bars/")]
    assert len(versions) == 10 and all("/v0001-" in k for k in versions)
    assert len([k for k in vendor.raw_keys() if k.startswith("raw/http_fetches/bars/")]) == 24
    hits = vendor.bar_hits()
    symbols = [hit.query["symbol"] for hit in hits]
    assert sorted(symbols) == sorted([f"S{i:03d}" for i in range(24)] + ["S007"] * 3)
    assert symbols[-1] == "S007" and symbols.count("S007") == 4  # the step retry asked for S007 only
    assert _materialization(result)["http_request_count"] == 1  # metadata of the successful attempt
    assert_frame_equal(vendor.raw_bars(D("2024-04-15"), D("2024-04-26")),
                       oracle(master, series, D("2024-04-15"), D("2024-04-26")))
    # The limits hold over both step attempts (bars) and across the two assets sharing FRED.
    for arrivals, rate in (([h.at for h in hits], 25.0),
                           ([h.at for h in vendor.server.hits if h.path.startswith("/fred")], 10.0)):
        # Arrival times at the server carry loopback jitter, hence the 50 ms slack on the window
        # and the half-interval floor on gaps (without the limiter they are ~1 ms).
        gaps = [b - a for a, b in itertools.pairwise(sorted(arrivals))]
        assert len(arrivals) >= 2 and min(gaps) >= 0.5 / rate, (rate, min(gaps))
        assert _max_in_window(arrivals, 0.95) <= rate
    fred_series = [h.query["series_id"] for h in vendor.server.hits if h.path.startswith("/fred")]
    assert sorted(fred_series) == ["DEXCAUS", "DTB3"]


def test_rerun_after_partial_failure_fetches_only_the_missing_symbols(make_vendor):
    master = universe(20)
    series = vendor_series(master, D("2024-05-01"), D("2024-05-31"))
    vendor = make_vendor(master, series)
    vendor.failing = {"S003": -1, "S011": -1, "S016": -1}
    first = vendor.run("2024-05-13", "2024-05-24", selection="raw_bars bars", http_max_retries=1,
                       http_incomplete_policy="complete_others")
    checks = _checks(first)
    assert checks["http_fetch_complete"] is False
    assert not first.success and _retries(first) == 0  # the step shows failed; its materialization stays
    executed = {e.step_key for e in first.all_events if e.event_type_value == "STEP_START"}
    assert "raw_bars" in executed and "bars" not in executed  # blocking: bars never ran on the partial data
    meta = _materialization(first)
    assert meta["http_fetch"]["failed_count"] == 3 and meta["http_request_count"] == 17 + 3 * 2
    assert "S011" in meta["http_fetch"]["failed"] and "HTTP 500" in meta["http_fetch"]["failed"]["S011"]
    got = vendor.raw_bars(D("2024-05-13"), D("2024-05-24"))
    assert set(got["symbol"]) == {f"S{i:03d}" for i in range(20)} - {"S003", "S011", "S016"}

    vendor.failing = {}
    hits = len(vendor.bar_hits())
    second = vendor.run("2024-05-13", "2024-05-24", http_incomplete_policy="complete_others")
    assert second.success and _checks(second)["http_fetch_complete"] is True
    assert sorted(h.query["symbol"] for h in vendor.bar_hits(hits)) == ["S003", "S011", "S016"]
    assert _materialization(second)["http_request_count"] == 3
    assert_frame_equal(vendor.raw_bars(D("2024-05-13"), D("2024-05-24")),
                       oracle(master, series, D("2024-05-13"), D("2024-05-24")))

    hits = len(vendor.bar_hits())
    third = vendor.run("2024-05-13", "2024-05-24")  # everything is in raw: no request at all
    assert third.success and len(vendor.bar_hits(hits)) == 0


# -- incremental daily runs ------------------------------------------------------------------------------------

def test_a_daily_run_asks_one_compact_request_per_symbol(make_vendor):
    today = dt.date.today()
    days = calendars.sessions("NYSE", today - dt.timedelta(days=40), today - dt.timedelta(days=1))
    history_start, history_end, daily = days[0], days[-2], days[-1]
    master = universe(12, exchanges=(("NYSE", "USD"), ("NASDAQ", "USD")))
    series = vendor_series(master, history_start - dt.timedelta(days=30), daily)
    vendor = make_vendor(master, series)
    first = vendor.run(history_start.isoformat(), history_end.isoformat())
    assert first.success, _failure_text(first)
    hits = len(vendor.bar_hits())
    second = vendor.run(daily.isoformat(), daily.isoformat())
    assert second.success, _failure_text(second)
    asked = vendor.bar_hits(hits)
    assert len(asked) == 12 and {h.query["outputsize"] for h in asked} == {"compact"}
    meta = _materialization(second)
    assert meta["http_request_count"] == 12 and meta["http_requests"] == {"alphavantage": 12}
    assert meta["http_fetch"]["outputsize"] == {"compact": 12}
    assert_frame_equal(vendor.raw_bars(history_start, daily), oracle(master, series, history_start, daily))


def test_compact_answer_too_short_falls_back_to_full(make_vendor):
    master = universe(1)
    series = vendor_series(master, D("2023-06-01"), D("2024-06-28"))
    vendor = make_vendor(master, series)
    client = HttpClient(vendor.server.url, api_key=AV_KEY, name="alphavantage", backoff_base=0.001)
    adapter = AlphaVantageDailyBars(client, master, today=lambda: D("2024-06-28"))
    got = adapter.fetch("S000", D("2024-01-16"), D("2024-01-19"))  # 119 weekdays ago: full at once
    assert got.outputsize == "full" and got.requests == 1
    adapter.today = lambda: D("2024-05-24")  # 94 weekdays: compact, but the vendor's latest 100 start later
    got = adapter.fetch("S000", D("2024-01-16"), D("2024-01-19"))
    assert (got.outputsize, got.requests) == ("full", 2)
    assert [h.query["outputsize"] for h in vendor.bar_hits()] == ["full", "compact", "full"]
    assert_frame_equal(got.frame, oracle(master, series, D("2024-01-16"), D("2024-01-19")))
    assert got.covered_end == D("2024-01-19")
    client.close()


# -- deadlines and configuration ---------------------------------------------------------------------------------

def test_slow_drip_body_hits_the_total_request_deadline(make_vendor):
    vendor = make_vendor(universe(1), {})
    # Three chunks 0.4 s apart: each read is well inside a 0.5 s read timeout, the whole is not.
    vendor.server.script("/slow", *[Reply(200, {"ok": True, "pad": "x" * 3000}, drip=0.4)] * 4)
    started = time.monotonic()
    plain = httpx.get(f"{vendor.server.url}/slow", timeout=0.5)  # httpx alone: 0.5 s per read, no total
    assert plain.json()["ok"] is True and time.monotonic() - started >= 0.8
    client = HttpClient(vendor.server.url, name="drip", timeout=0.5, max_retries=0)
    started = time.monotonic()
    with pytest.raises(ProviderTransportError, match=r"deadline of 0\.50 s for the whole request exceeded"):
        client.get_json("/slow")
    assert time.monotonic() - started < 0.5 + 0.3
    # A fetch deadline bounds the retries too: 3 attempts would need 1.5 s, 0.7 s are allowed.
    client = HttpClient(vendor.server.url, name="drip2", timeout=0.5, max_retries=2, backoff_base=0.001)
    started = time.monotonic()
    with pytest.raises(ProviderTransportError):
        client.get_json("/slow", deadline=time.monotonic() + 0.7)
    assert time.monotonic() - started < 0.7 + 0.3
    assert vendor.server.hit_count("/slow") == 1 + 1 + 2  # the retry got only what was left: no third
    client.close()


def test_missing_api_key_is_a_configuration_error_that_is_not_retried(make_vendor, monkeypatch):
    vendor = make_vendor(universe(3), vendor_series(universe(3), D("2024-05-01"), D("2024-05-31")))
    monkeypatch.delenv("WEALTH_HTTP_BARS_API_KEY")
    result = vendor.run("2024-05-20", "2024-05-24")
    assert not result.success and _retries(result) == 0
    text = _failure_text(result)
    assert "configuration error" in text and "set the environment variable WEALTH_HTTP_BARS_API_KEY" in text
    assert vendor.server.hit_count() == 0
    bad_policy = vendor.run("2024-05-20", "2024-05-24", http_incomplete_policy="skip")
    assert not bad_policy.success and _retries(bad_policy) == 0
    assert "http_incomplete_policy must be 'fail' or 'complete_others', got 'skip'" in _failure_text(bad_policy)
