"""HTTP providers against a real HTTP server on 127.0.0.1: resilience and vendor-format parsing.

Backoff and Retry-After are asserted on the delays the client asks an injected sleep for; the rate
limit on the arrival times the server records; the breaker with short real reset periods.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import random
import socket
import time
from collections.abc import Iterator

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from wealth_pipeline.core.universe import complete_master
from wealth_pipeline.providers.base import (
    BARS_SCHEMA,
    BENCHMARK_RETURNS_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    FACTOR_RETURNS_SCHEMA,
    FX_RATES_SCHEMA,
    MarketDataProvider,
    empty_frame,
)
from wealth_pipeline.providers.http import (
    CircuitOpenError,
    HttpClient,
    ProviderHTTPError,
    ProviderPayloadError,
    ProviderRateLimitError,
    ProviderTransportError,
    parse_retry_after,
    reset_vendor_registry,
)
from wealth_pipeline.providers.http_adapters import (
    AlphaVantageDailyBars,
    FredRates,
    HttpMarketData,
    ProviderConfigError,
    ProviderIncompleteError,
    ProviderVendorError,
)
from wealth_pipeline_tests.fake_vendor_server import (
    FakeVendorServer,
    Reply,
    alphavantage_handler,
    fred_handler,
)

pytestmark = pytest.mark.integration

AV_KEY = "AVKEY-s3cr3t-0001"
FRED_KEY = "fredkey0123456789abcdef"
D = dt.date.fromisoformat

# (open, high, low, close, volume) per ticker and day.
AV_DATA = {
    "AAPL": {
        "2024-01-02": (187.15, 188.44, 183.885, 185.64, 82488700),
        "2024-01-03": (184.22, 185.88, 183.43, 184.25, 58414460),
        "2024-01-04": (182.15, 183.0872, 180.88, 181.91, 71983570),
        "2024-01-05": (181.99, 182.76, 180.17, 181.18, 62303300),
    },
    "TD.TRT": {
        "2024-01-02": (85.97, 86.41, 85.10, 85.69, 4381200),
        "2024-01-03": (85.30, 85.52, 84.55, 84.93, 5120300),
        "2024-01-04": (85.10, 85.99, 84.90, 85.70, 3985500),
    },
    "SPY": {
        "2023-12-29": (476.49, 477.03, 473.30, 475.31, 122283100),
        "2024-01-02": (472.16, 473.67, 470.49, 472.65, 123623700),
        "2024-01-03": (470.43, 471.19, 468.17, 468.79, 103585900),
        "2024-01-04": (468.30, 470.96, 467.05, 467.28, 84232200),
    },
}

FRED_DATA = {
    "DEXCAUS": [
        ("2024-01-01", "."),  # New Year's Day: no observation
        ("2024-01-02", "1.3316"),
        ("2024-01-03", "1.3346"),
        ("2024-01-04", "1.3365"),
        ("2024-01-05", "1.3372"),
        ("2024-01-08", "1.3366"),
    ],
    "DTB3": [
        ("2024-01-01", "."),
        ("2024-01-02", "5.25"),
        ("2024-01-03", "5.24"),
        ("2024-01-04", "."),
        ("2024-01-05", "5.22"),
    ],
}


def _master() -> pl.DataFrame:
    return complete_master(pl.DataFrame(
        {
            "symbol": ["AAPL", "TD.TO", "SPY", "SYN1", "SPX"],
            "name": ["Apple", "Toronto-Dominion", "SPDR S&P 500", "Synthetic 1", "S&P 500 index"],
            "exchange": ["NASDAQ", "TSX", "NYSE", "NYSE", "NYSE"],
            "currency": ["USD", "CAD", "USD", "USD", "USD"],
            "asset_class": ["equity", "equity", "etf", "equity", "index"],
            "sector": ["Technology", "Financials", "Fund", "Industrials", "Index"],
            "is_synthetic": [False, False, False, True, False],
        },
    ))


class FakeTime:
    """A sleep that records the requested backoff delays without waiting."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture(autouse=True)
def _fresh_vendor_registry() -> Iterator[None]:
    reset_vendor_registry()  # every test starts with closed breakers and fresh limits
    yield
    reset_vendor_registry()


@pytest.fixture
def server() -> Iterator[FakeVendorServer]:
    with FakeVendorServer() as srv:
        srv.route("/query", alphavantage_handler(AV_DATA, AV_KEY))
        srv.route("/fred/series/observations", fred_handler(FRED_DATA, FRED_KEY))
        srv.route("/ok", lambda hit: Reply(200, {"ok": True, "n": len(hit.query)}))
        yield srv


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def _client(server: FakeVendorServer, fake_time: FakeTime, **kwargs) -> HttpClient:
    options = {"timeout": 2.0, "max_retries": 3, "backoff_base": 0.5, "backoff_max": 30.0,
               "sleep": fake_time.sleep, "rng": random.Random(42), "name": "vendor"}
    options.update(kwargs)
    return HttpClient(server.url, **options)


# -- retries and backoff ----------------------------------------------------------------------------

def test_500_then_success_is_retried_with_jittered_backoff(server, fake_time):
    server.script("/ok", Reply(500, "internal error"), Reply(502, "bad gateway"))
    with _client(server, fake_time) as client:
        assert client.get_json("/ok", {"x": 1}) == {"ok": True, "n": 1}
    assert server.hit_count("/ok") == 3
    oracle = random.Random(42)
    assert fake_time.sleeps == [oracle.uniform(0, 0.5), oracle.uniform(0, 1.0)]


def test_exhausted_retries_raise_with_status_url_and_body(server, fake_time):
    server.script("/ok", *[Reply(503, "upstream down for maintenance")] * 4)
    client = _client(server, fake_time, max_retries=3, backoff_base=10.0, backoff_max=25.0)
    with client, pytest.raises(ProviderHTTPError) as info:
        client.get("/ok", {"symbol": "AAPL"})
    err = info.value
    assert (err.status, err.attempts) == (503, 4)
    assert err.url == f"{server.url}/ok?symbol=AAPL"
    assert "upstream down for maintenance" in str(err) and "vendor" in str(err)
    assert server.hit_count("/ok") == 4
    # Full jitter under ceilings min(25, 10 * 2**n): 10, 20, 25.
    oracle = random.Random(42)
    assert fake_time.sleeps == [oracle.uniform(0, 10), oracle.uniform(0, 20), oracle.uniform(0, 25)]


def test_429_retry_after_seconds_is_the_sleep(server, fake_time):
    server.script("/ok", Reply(429, "slow down", {"Retry-After": "7"}))
    with _client(server, fake_time) as client:
        assert client.get_json("/ok") == {"ok": True, "n": 0}
    assert fake_time.sleeps == [7.0]
    assert server.hit_count("/ok") == 2


def test_retry_after_http_date_and_cap(server, fake_time):
    server.script(
        "/ok",
        Reply(503, "busy", {"Retry-After": "Wed, 21 Oct 2015 07:28:12 GMT", "Date": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        Reply(429, "slow", {"Retry-After": "120"}),
    )
    with _client(server, fake_time, backoff_max=30.0) as client:
        assert client.get_json("/ok") == {"ok": True, "n": 0}
    assert fake_time.sleeps == [12.0, 30.0]


def test_parse_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:00 GMT") == 37.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 09:00:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_429_without_retry_after_uses_backoff_and_raises_rate_limit_error(server, fake_time):
    server.script("/ok", *[Reply(429, "quota")] * 3)
    with _client(server, fake_time, max_retries=2) as client, pytest.raises(ProviderRateLimitError) as info:
        client.get("/ok")
    assert info.value.status == 429 and info.value.attempts == 3
    oracle = random.Random(42)
    assert fake_time.sleeps == [oracle.uniform(0, 0.5), oracle.uniform(0, 1.0)]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_not_retried(server, fake_time, status):
    server.script("/ok", Reply(status, {"error": "nope"}))
    with _client(server, fake_time) as client, pytest.raises(ProviderHTTPError) as info:
        client.get("/ok")
    assert info.value.status == status and info.value.attempts == 1
    assert '"error": "nope"' in info.value.body_excerpt
    assert server.hit_count("/ok") == 1
    assert fake_time.sleeps == []


def test_timeout_is_retried_then_succeeds(server, fake_time):
    server.script("/ok", Reply(200, {"late": True}, delay=1.0))
    with _client(server, fake_time, timeout=0.1) as client:
        assert client.get_json("/ok") == {"ok": True, "n": 0}
    assert server.hit_count("/ok") == 2
    assert len(fake_time.sleeps) == 1


def test_timeouts_exhausted_raise_transport_error(server, fake_time):
    server.script("/ok", *[Reply(200, {"late": True}, delay=1.0)] * 2)
    client = _client(server, fake_time, timeout=0.1, max_retries=1)
    with client, pytest.raises(ProviderTransportError) as info:
        client.get("/ok")
    assert info.value.status is None and info.value.attempts == 2
    assert ("Timeout" in str(info.value) or "deadline of 0.10 s" in str(info.value)) and "no response" in str(info.value)
    assert server.hit_count("/ok") == 2


def test_connection_refused_is_retried_then_raises(fake_time):
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", max_retries=2, sleep=fake_time.sleep, rng=random.Random(1))
    with client, pytest.raises(ProviderTransportError) as info:
        client.get("/ok")
    assert info.value.attempts == 3 and "ConnectError" in str(info.value)
    assert len(fake_time.sleeps) == 2


# -- circuit breaker ------------------------------------------------------------------------------

def test_breaker_opens_fails_fast_and_half_opens(server, fake_time):
    server.script("/ok", *[Reply(500, "boom")] * 6)  # 2 calls x 3 attempts
    client = _client(server, fake_time, max_retries=2, breaker_failures=2, breaker_reset_seconds=0.6)
    with client:
        for _ in range(2):
            with pytest.raises(ProviderHTTPError):
                client.get("/ok")
        assert server.hit_count("/ok") == 6
        assert client.circuit_state == "open"
        for _ in range(5):
            with pytest.raises(CircuitOpenError) as info:
                client.get("/ok")
        assert server.hit_count("/ok") == 6  # failing fast: the server saw nothing more
        message = str(info.value)
        assert message.startswith("circuit open for vendor") and server.url in message
        assert "HTTP 500" in message and "next trial request allowed in 0." in message
        time.sleep(0.7)
        assert client.circuit_state == "half-open"
        assert client.get_json("/ok") == {"ok": True, "n": 0}  # the trial succeeds: closed again
        assert client.circuit_state == "closed"
        assert server.hit_count("/ok") == 7


def test_failed_half_open_trial_reopens_after_one_attempt(server, fake_time):
    server.script("/ok", Reply(500), Reply(500), Reply(500))
    # The breaker runs on the wall clock: a 2 s reset leaves room on a loaded CI box between the
    # failed trial and the next call (with 0.4 s the circuit had half-opened again in between).
    client = _client(server, fake_time, max_retries=1, breaker_failures=1, breaker_reset_seconds=2.0)
    with client:
        with pytest.raises(ProviderHTTPError):
            client.get("/ok")
        assert server.hit_count("/ok") == 2
        time.sleep(2.1)
        with pytest.raises(ProviderHTTPError) as info:  # the trial: one attempt, no retries
            client.get("/ok")
        assert info.value.attempts == 1 and server.hit_count("/ok") == 3
        with pytest.raises(CircuitOpenError):
            client.get("/ok")
        time.sleep(2.1)
        assert client.get_json("/ok") == {"ok": True, "n": 0}
        assert server.hit_count("/ok") == 4


def test_breaker_and_limiter_are_shared_by_every_client_of_a_vendor(server, fake_time):
    """A new client (a step retry, another asset) for the same base URL sees the open circuit."""
    server.script("/ok", Reply(500), Reply(500))
    first = _client(server, fake_time, max_retries=1, breaker_failures=1, breaker_reset_seconds=30.0,
                    rate_limit_per_second=50.0)
    with first, pytest.raises(ProviderHTTPError):
        first.get("/ok")
    second = _client(server, fake_time, max_retries=1, breaker_failures=1, breaker_reset_seconds=30.0,
                     rate_limit_per_second=50.0)
    with second, pytest.raises(CircuitOpenError, match="circuit open for vendor"):
        second.get("/ok")
    assert second.vendor is first.vendor and second.vendor.limiter is first.vendor.limiter
    assert server.hit_count("/ok") == 2


def test_breaker_state_file_makes_the_next_process_fail_fast_then_probe_once(server, fake_time, tmp_path):
    server.script("/ok", Reply(503), Reply(503))
    options = {"max_retries": 1, "breaker_failures": 1, "breaker_reset_seconds": 0.5, "state_dir": tmp_path}
    with _client(server, fake_time, **options) as client, pytest.raises(ProviderHTTPError):
        client.get("/ok")
    assert list(tmp_path.glob("breaker-*.json")), "the open circuit is written down"
    reset_vendor_registry()  # what a new process starts with: nothing in memory
    with _client(server, fake_time, **options) as client:
        with pytest.raises(CircuitOpenError):
            client.get("/ok")
        assert server.hit_count("/ok") == 2
        time.sleep(0.6)
        server.script("/ok", Reply(503))
        with pytest.raises(ProviderHTTPError) as info:
            client.get("/ok")  # the probe: a single attempt
        assert info.value.attempts == 1 and server.hit_count("/ok") == 3
        with pytest.raises(CircuitOpenError):
            client.get("/ok")


def test_4xx_and_success_do_not_trip_the_breaker(server, fake_time):
    client = _client(server, fake_time, max_retries=0, breaker_failures=2)
    with client:
        server.script("/ok", Reply(500), Reply(404), Reply(500))
        for _ in range(3):
            with pytest.raises(ProviderHTTPError):
                client.get("/ok")
        assert client.circuit_state == "closed"  # 500, 404 (server is up: resets), 500
        server.script("/ok", Reply(500))
        with pytest.raises(ProviderHTTPError):
            client.get("/ok")
        assert client.circuit_state == "open"


# -- secrets ------------------------------------------------------------------------------------------

def test_api_key_is_sent_but_never_in_errors_or_logs(server, fake_time, caplog):
    caplog.set_level(logging.DEBUG)
    # The vendor echoes the full query string (key included) in its error body.
    server.route("/echo", lambda hit: Reply(500, f"failed for query {hit.raw_query}"))
    client = _client(server, fake_time, api_key=AV_KEY, api_key_param="apikey", max_retries=1, breaker_failures=1)
    errors: list[Exception] = []
    with client:
        assert client.get_json("/ok", {"a": "1"}) == {"ok": True, "n": 2}
        assert server.hits[-1].query == {"a": "1", "apikey": AV_KEY}
        for path in ("/echo", "/echo"):
            try:
                client.get(path, {"symbol": "AAPL"})
            except (ProviderHTTPError, CircuitOpenError) as exc:
                errors.append(exc)
    assert [type(e) for e in errors] == [ProviderHTTPError, CircuitOpenError]
    assert AV_KEY in server.hits[-1].raw_query  # the body really contained it
    assert "failed for query symbol=AAPL&apikey=***" in str(errors[0])
    for exc in errors:
        assert AV_KEY not in str(exc) and AV_KEY not in repr(exc.__dict__)
    server.script("/ok", Reply(404, f"unknown key {AV_KEY}"))
    reset_vendor_registry()  # the vendor's shared breaker is open now; start afresh
    with _client(server, fake_time, api_key=AV_KEY) as client2, pytest.raises(ProviderHTTPError) as info:
        client2.get("/ok")
    assert AV_KEY not in str(info.value) and "unknown key ***" in str(info.value)
    assert caplog.records, "expected retry/breaker/httpx log lines"
    assert all(AV_KEY not in record.getMessage() for record in caplog.records)


def test_api_key_in_header(server, fake_time):
    with _client(server, fake_time, api_key="tok-123", api_key_header="Authorization",
                 api_key_header_prefix="Token ") as client:
        client.get("/ok")
    assert server.hits[-1].headers["authorization"] == "Token tok-123"
    assert "tok-123" not in server.hits[-1].raw_query


# -- rate limit -----------------------------------------------------------------------------------------

def _max_in_window(times: list[float], window: float) -> int:
    """The most arrivals inside any half-open interval of ``window`` seconds."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_rate_limiter_spaces_requests_retries_included(server, fake_time):
    server.script("/ok", Reply(500), Reply(503))
    with _client(server, fake_time, rate_limit_per_second=20.0, max_retries=2) as client:
        for _ in range(8):
            client.get("/ok")
    arrivals = [hit.at for hit in server.hits]
    assert len(arrivals) == 10  # 8 calls, 2 retries: every attempt takes a slot
    # 20/s: one request per 50 ms (~1 ms apart unlimited). The server stamps arrivals, which jitter on a
    # loaded box (one gap of 12 ms was seen on the 2-core CI machine, the next one longer), so the
    # assertions are the span and the median gap, which one late arrival cannot move.
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert arrivals[-1] - arrivals[0] >= 9 * 0.05 - 0.05
    assert gaps[len(gaps) // 2] >= 0.05 * 0.8
    assert _max_in_window(arrivals, 0.5 - 0.05) <= 10  # at most 10 in any 0.5 s


def test_rate_limiter_burst(server, fake_time):
    with _client(server, fake_time, rate_limit_per_second=10.0, rate_limit_burst=3) as client:
        for _ in range(6):
            client.get("/ok")
    arrivals = [hit.at for hit in server.hits]
    assert _max_in_window(arrivals, 0.3 - 0.05) <= 3  # 3 in any 300 ms (50 ms for arrival jitter)
    assert arrivals[3] - arrivals[0] >= 0.3 - 0.05


# -- Alpha Vantage bars -------------------------------------------------------------------------------

def _bars_adapter(server, fake_time, symbols=("AAPL", "TD.TO"), **kwargs) -> AlphaVantageDailyBars:
    client = _client(server, fake_time, api_key=AV_KEY, api_key_param="apikey", name="alphavantage", **kwargs)
    return AlphaVantageDailyBars(client, _master(), list(symbols), vendor_symbols={"TD.TO": "TD.TRT"})


def test_alphavantage_bars_parse_exactly(server, fake_time):
    adapter = _bars_adapter(server, fake_time)
    frame = adapter.bars(D("2024-01-03"), D("2024-01-04"))
    expected = pl.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "TD.TO", "TD.TO"],
            "session_date": [D("2024-01-03"), D("2024-01-04"), D("2024-01-03"), D("2024-01-04")],
            "open": [184.22, 182.15, 85.30, 85.10],
            "high": [185.88, 183.0872, 85.52, 85.99],
            "low": [183.43, 180.88, 84.55, 84.90],
            "close": [184.25, 181.91, 84.93, 85.70],
            "volume": [58414460, 71983570, 5120300, 3985500],
            "currency": ["USD", "USD", "CAD", "CAD"],
        },
        schema=BARS_SCHEMA,
    )
    assert frame.schema == pl.Schema(BARS_SCHEMA)
    assert_frame_equal(frame, expected)
    sent = [hit.query for hit in server.hits if hit.path == "/query"]
    assert [(q["function"], q["symbol"], q["outputsize"]) for q in sent] == [
        ("TIME_SERIES_DAILY", "AAPL", "full"), ("TIME_SERIES_DAILY", "TD.TRT", "full")]
    empty = adapter.bars(D("2023-06-01"), D("2023-06-30"))
    assert empty.height == 0 and empty.schema == pl.Schema(BARS_SCHEMA)


def test_alphavantage_default_symbols_skip_synthetic_and_index():
    client = HttpClient("http://127.0.0.1:9")
    adapter = AlphaVantageDailyBars(client, _master())
    assert adapter.symbols == ["AAPL", "TD.TO", "SPY"]
    with pytest.raises(ProviderConfigError, match=r"\['MSFT'\] are not in the symbol master"):
        AlphaVantageDailyBars(client, _master(), ["AAPL", "MSFT"])
    client.close()


def test_alphavantage_unknown_symbol_is_a_vendor_error(server, fake_time):
    master = _master().vstack(complete_master(pl.DataFrame(
        {"symbol": ["ZZZZ"], "name": ["?"], "exchange": ["NYSE"], "currency": ["USD"],
         "asset_class": ["equity"], "sector": ["?"], "is_synthetic": [False]})))
    client = _client(server, fake_time, api_key=AV_KEY, name="alphavantage", breaker_failures=1)
    adapter = AlphaVantageDailyBars(client, master, ["ZZZZ", "AAPL"])
    with pytest.raises(ProviderVendorError, match=r"alphavantage: vendor rejected the request for symbol ZZZZ: Invalid API call"):
        adapter.history("ZZZZ")
    assert server.hit_count("/query") == 1  # not retried
    assert client.circuit_state == "closed"  # the vendor answered: not a breaker failure
    with pytest.raises(ProviderIncompleteError, match=r"1 of 2 symbol\(s\) failed .*ZZZZ: .*Invalid API call"):
        adapter.bars(D("2024-01-01"), D("2024-01-31"))  # AAPL was still fetched
    assert server.hit_count("/query") == 3


def test_alphavantage_note_body_is_throttling_and_retried(server, fake_time):
    note = {"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute."}
    server.script("/query", Reply(200, note), Reply(200, {"Information": "rate limit is 25 requests per day"}))
    adapter = _bars_adapter(server, fake_time, symbols=["AAPL"])
    assert adapter.bars(D("2024-01-02"), D("2024-01-02"))["close"].to_list() == [185.64]
    assert server.hit_count("/query") == 3 and len(fake_time.sleeps) == 2
    server.script("/query", *[Reply(200, note)] * 4)
    with pytest.raises(ProviderRateLimitError, match="throttled: Note: Thank you") as info:
        adapter.history("AAPL")
    assert info.value.attempts == 4


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ("{not json", "<body>", "not valid JSON"),
        ([1, 2], "<root>", "expected a JSON object"),
        ({"Meta Data": {}}, "Time Series (Daily)", "missing"),
        ({"Time Series (Daily)": []}, "Time Series (Daily)", "expected an object keyed by date"),
        ({"Time Series (Daily)": {"2024-01-02": {"1. open": "1", "2. high": "2", "3. low": "1",
                                                 "5. volume": "10"}}},
         "Time Series (Daily).2024-01-02.4. close", "missing"),
        ({"Time Series (Daily)": {"2024-13-02": {}}}, "Time Series (Daily).2024-13-02", "not a YYYY-MM-DD date"),
        ({"Time Series (Daily)": {"2024-01-02": {"1. open": "abc", "2. high": "2", "3. low": "1",
                                                 "4. close": "1.5", "5. volume": "10"}}},
         "Time Series (Daily).2024-01-02.1. open", "not a number"),
        ({"Time Series (Daily)": {"2024-01-02": {"1. open": "1", "2. high": "2", "3. low": "1",
                                                 "4. close": "NaN", "5. volume": "10"}}},
         "Time Series (Daily).2024-01-02.4. close", "not a finite number"),
        ({"Time Series (Daily)": {"2024-01-02": {"1. open": "1", "2. high": "2", "3. low": "1",
                                                 "4. close": "1.5", "5. volume": "10.5"}}},
         "Time Series (Daily).2024-01-02.5. volume", "not an integer"),
        ({"Meta Data": {"2. Symbol": "MSFT"}, "Time Series (Daily)": {}}, "Meta Data.2. Symbol", "not 'AAPL'"),
    ],
)
def test_alphavantage_malformed_payloads_name_provider_symbol_field(server, fake_time, body, field, detail):
    server.script("/query", *[Reply(200, body)] * 4)
    adapter = _bars_adapter(server, fake_time, symbols=["AAPL"])
    with pytest.raises(ProviderPayloadError) as info:
        adapter.history("AAPL")
    err = info.value
    assert (err.provider, err.subject, err.field) == ("alphavantage", "symbol AAPL", field)
    assert detail in str(err) and str(err).endswith("(after 4 attempts)")
    assert str(err).startswith(f"alphavantage: malformed payload for symbol AAPL, field {field!r}")
    assert AV_KEY not in str(err)
    assert server.hit_count("/query") == 4  # retried like a 5xx: max_retries + 1 answers were malformed
    assert len(fake_time.sleeps) == 3


def test_alphavantage_malformed_then_good_answer_succeeds(server, fake_time):
    server.script("/query", Reply(200, '{"Meta Data": {"2. Symbol": "AAPL"}, "Time Series (Da'),
                  Reply(200, "<html><title>Maintenance</title></html>", {"Content-Type": "text/html"}))
    frame = _bars_adapter(server, fake_time, symbols=["AAPL"]).bars(D("2024-01-02"), D("2024-01-03"))
    assert frame["close"].to_list() == [185.64, 184.25]
    assert server.hit_count("/query") == 3


def test_alphavantage_integral_float_volume_accepted(server, fake_time):
    body = {"Time Series (Daily)": {"2024-01-02": {"1. open": 1, "2. high": "2.5", "3. low": "0.5",
                                                   "4. close": 2, "5. volume": "1200.0"}}}
    server.script("/query", Reply(200, body))
    frame = _bars_adapter(server, fake_time, symbols=["AAPL"]).bars(D("2024-01-01"), D("2024-01-31"))
    assert frame.row(0) == ("AAPL", D("2024-01-02"), 1.0, 2.5, 0.5, 2.0, 1200, "USD")


# -- FRED ---------------------------------------------------------------------------------------------------

def _fred(server, fake_time, **kwargs) -> FredRates:
    client = _client(server, fake_time, api_key=FRED_KEY, api_key_param="api_key", name="fred")
    return FredRates(client, **kwargs)


def test_fred_fx_rates_drop_missing_values(server, fake_time):
    frame = _fred(server, fake_time).fx_rates(D("2024-01-01"), D("2024-01-05"))
    expected = pl.DataFrame(
        {
            "session_date": [D("2024-01-02"), D("2024-01-03"), D("2024-01-04"), D("2024-01-05")],
            "base_currency": ["USD"] * 4,
            "quote_currency": ["CAD"] * 4,
            "rate": [1.3316, 1.3346, 1.3365, 1.3372],
        },
        schema=FX_RATES_SCHEMA,
    )
    assert_frame_equal(frame, expected)
    query = server.hits[-1].query
    assert (query["series_id"], query["file_type"], query["observation_start"], query["observation_end"],
            query["api_key"]) == ("DEXCAUS", "json", "2024-01-01", "2024-01-05", FRED_KEY)


def test_fred_risk_free_daily_conversion(server, fake_time):
    frame = _fred(server, fake_time).factor_returns(D("2024-01-01"), D("2024-01-31"))
    assert frame.schema == pl.Schema(FACTOR_RETURNS_SCHEMA)
    assert frame["session_date"].to_list() == [D("2024-01-02"), D("2024-01-03"), D("2024-01-05")]
    assert frame["factor"].to_list() == ["rf"] * 3
    # Hand-computed: ln(1.0525) = 0.0511683, / 252 = 0.00020305, exp(x) - 1 = x + x²/2 = 0.00020307.
    assert frame["value"][0] == pytest.approx(0.0002030694, abs=1e-10)
    assert frame["value"].to_list() == pytest.approx([math.exp(math.log1p(p / 100) / 252) - 1
                                                      for p in (5.25, 5.24, 5.22)], rel=1e-12)
    assert 0.0 not in frame["value"].to_list()


def test_fred_pages_through_observations(server, fake_time):
    frame = _fred(server, fake_time, page_limit=2).observations("DEXCAUS", D("2024-01-01"), D("2024-01-31"))
    offsets = [hit.query["offset"] for hit in server.hits if hit.path == "/fred/series/observations"]
    assert offsets == ["0", "2", "4"]
    assert frame["session_date"].to_list() == [D(d) for d in
                                               ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08")]
    with pytest.raises(ProviderPayloadError, match="more than 1 pages"):
        _fred(server, fake_time, page_limit=2, max_pages=1).observations("DEXCAUS", D("2024-01-01"), D("2024-01-31"))


def test_fred_unknown_series_400_not_retried(server, fake_time):
    fred = _fred(server, fake_time, fx_series={"DEXXXXX": ("USD", "XXX")})
    with pytest.raises(ProviderHTTPError) as info:
        fred.fx_rates(D("2024-01-01"), D("2024-01-31"))
    assert info.value.status == 400 and "The series does not exist" in str(info.value)
    assert "series_id=DEXXXXX" in info.value.url and FRED_KEY not in str(info.value)
    assert server.hit_count() == 1


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"count": 0}, "observations", "missing"),
        ({"observations": {"date": "2024-01-02"}}, "observations", "expected a list"),
        ({"observations": [{"date": "2024-01-02"}]}, "observations[0].value", "missing"),
        ({"observations": [{"date": "2024-01-02", "value": "1.3"}, {"date": "01/03/2024", "value": "1.3"}]},
         "observations[1].date", "not a YYYY-MM-DD date"),
        ({"observations": [{"date": "2024-01-02", "value": "n/a"}]}, "observations[0].value", "not a number"),
        ({"observations": [{"date": "2024-01-02", "value": "1.3"}, {"date": "2024-01-02", "value": "1.4"}]},
         "observations.date", "duplicate dates"),
        ("<html>gateway</html>", "<body>", "not valid JSON"),
    ],
)
def test_fred_malformed_payloads_name_provider_series_field(server, fake_time, body, field, detail):
    server.script("/fred/series/observations", *[Reply(200, body)] * 4)  # retried: 4 malformed answers
    with pytest.raises(ProviderPayloadError) as info:
        _fred(server, fake_time).fx_rates(D("2024-01-01"), D("2024-01-31"))
    err = info.value
    assert (err.provider, err.subject, err.field) == ("fred", "series DEXCAUS", field)
    assert detail in str(err) and FRED_KEY not in str(err)


# -- composite and configuration -------------------------------------------------------------------------

class _Supplement:
    """A minimal provider standing in for vendor files (corporate actions and factors)."""

    name = "supplement"

    def symbol_master(self) -> pl.DataFrame:
        return _master()

    def bars(self, start, end):
        return empty_frame(BARS_SCHEMA)

    def corporate_actions(self, start, end):
        return pl.DataFrame({"symbol": ["AAPL"], "ex_date": [D("2024-01-03")], "action_type": ["dividend"],
                             "ratio": [None], "amount": [0.24], "currency": ["USD"],
                             "distribution_type": ["regular"]}, schema=CORPORATE_ACTIONS_SCHEMA)

    def fx_rates(self, start, end):
        return empty_frame(FX_RATES_SCHEMA)

    def factor_returns(self, start, end):
        return pl.DataFrame({"session_date": [D("2024-01-02")] * 2, "factor": ["market", "rf"],
                             "value": [0.01, 0.5]}, schema=FACTOR_RETURNS_SCHEMA)

    def benchmark_returns(self, start, end):
        return empty_frame(BENCHMARK_RETURNS_SCHEMA)


def test_composite_without_supplement(server, fake_time):
    provider = HttpMarketData(_bars_adapter(server, fake_time), _fred(server, fake_time), _master())
    assert isinstance(provider, MarketDataProvider)
    start, end = D("2024-01-02"), D("2024-01-05")
    assert_frame_equal(provider.symbol_master(), _master())
    assert provider.bars(start, end).height == 7
    assert provider.fx_rates(start, end).height == 4
    assert provider.factor_returns(start, end)["factor"].unique().to_list() == ["rf"]
    for frame, schema in ((provider.corporate_actions(start, end), CORPORATE_ACTIONS_SCHEMA),
                          (provider.benchmark_returns(start, end), BENCHMARK_RETURNS_SCHEMA)):
        assert frame.height == 0 and frame.schema == pl.Schema(schema)
    provider.close()


def test_composite_with_benchmark_and_supplement(server, fake_time):
    provider = HttpMarketData(_bars_adapter(server, fake_time), _fred(server, fake_time), _master(),
                              supplement=_Supplement(), benchmark_symbol="SPY", benchmark_name="S&P 500 (SPY)")
    start, end = D("2024-01-02"), D("2024-01-03")
    bench = provider.benchmark_returns(start, end)
    expected = pl.DataFrame(
        {"session_date": [D("2024-01-02"), D("2024-01-03")], "benchmark": ["S&P 500 (SPY)"] * 2,
         "level": [472.65, 468.79], "return": [472.65 / 475.31 - 1, 468.79 / 472.65 - 1]},
        schema=BENCHMARK_RETURNS_SCHEMA,
    )
    assert_frame_equal(bench, expected)
    factors = provider.factor_returns(start, end)
    assert factors.filter(pl.col("factor") == "rf")["value"].to_list() == pytest.approx(
        [1.0525 ** (1 / 252) - 1, 1.0524 ** (1 / 252) - 1])  # FRED's rf wins over the supplement's
    assert factors.filter(pl.col("factor") == "market")["value"].to_list() == [0.01]
    assert provider.corporate_actions(start, end)["amount"].to_list() == [0.24]
    provider.close()


def test_from_env_reads_urls_and_keys(server):
    env = {"WEALTH_HTTP_BARS_URL": server.url, "WEALTH_HTTP_BARS_API_KEY": AV_KEY,
           "WEALTH_HTTP_BARS_RATE_LIMIT": "1000", "WEALTH_HTTP_FX_URL": server.url,
           "WEALTH_HTTP_FX_API_KEY": FRED_KEY}
    provider = HttpMarketData.from_env(_master(), ["AAPL"], env=env)
    try:
        assert provider.bars(D("2024-01-05"), D("2024-01-05"))["close"].to_list() == [181.18]
        assert provider.fx_rates(D("2024-01-08"), D("2024-01-08"))["rate"].to_list() == [1.3366]
        assert provider.bars_adapter.client.vendor.rate == (1000.0, 1)
        assert provider.fx_adapter.client.vendor.rate == (2.0, 1)
    finally:
        provider.close()
    with pytest.raises(ProviderConfigError, match="set the environment variable WEALTH_HTTP_FX_API_KEY"):
        FredRates.from_env(env={"WEALTH_HTTP_FX_URL": server.url})
    with pytest.raises(ProviderConfigError, match="WEALTH_HTTP_BARS_RATE_LIMIT must be a number"):
        AlphaVantageDailyBars.from_env(_master(), env={**env, "WEALTH_HTTP_BARS_RATE_LIMIT": "fast"})


def test_wrong_api_key_is_a_clear_vendor_error(server, fake_time):
    client = _client(server, fake_time, api_key="wrong-key-987", name="alphavantage")
    adapter = AlphaVantageDailyBars(client, _master(), ["AAPL"])
    with pytest.raises(ProviderVendorError, match="apikey is invalid or missing") as info:
        adapter.history("AAPL")
    assert "wrong-key-987" not in str(info.value)
