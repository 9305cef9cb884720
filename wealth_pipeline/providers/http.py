"""A resilient HTTP client for market-data vendors: retries, deadlines, rate limit, circuit breaker.

Vendors fail in predictable ways: they throttle (429, or a 200 body saying "slow down"), they have
bad minutes (5xx, dropped connections, slow or truncated bodies, an HTML maintenance page served
with status 200) and bad hours (down). :class:`HttpClient` handles each the same way for every
adapter built on it:

- **Retries** (``tenacity``) on 429, 5xx, connection errors, dropped connections, deadline
  overruns, and on 2xx bodies that are not what the adapter expects (not JSON, truncated, HTML,
  a throttling "Note"/"Information", a payload that fails the adapter's validation), at most
  ``max_retries`` times, with exponential backoff and full jitter
  (``uniform(0, min(backoff_max, backoff_base * 2**n))`` before retry ``n + 1``). A
  ``Retry-After`` header on 429/503 (delta seconds or an HTTP-date, read against the response's
  ``Date`` header when present) replaces the backoff delay, capped by ``backoff_max``. Other 4xx
  and an explicit vendor error (e.g. unknown symbol) are the caller's problem: never retried.
- **Deadlines**: ``timeout`` is a *total* deadline per request attempt (connect, send, headers and
  every body read together), not httpx's per-read timeout: a watchdog shuts the socket down when
  it passes, so a body trickled in slowly cannot outlast it. A caller may also pass an absolute
  ``deadline`` (``time.monotonic()`` seconds) for a whole fetch: each attempt gets
  ``min(timeout, what is left)`` and no retry starts that could not finish before it.
- **One breaker and one rate limit per vendor and process** (:func:`vendor_state`): every client
  for the same base URL shares them, so step retries, several assets and several client objects in
  one run see one quota and one failure count. The rate limit is a ``pyrate-limiter`` sliding
  window (at most ``burst`` requests in any ``burst / rate`` seconds; retries included). The
  breaker is a ``pybreaker`` breaker counting *calls* (one call = one request with all its
  retries): after ``breaker_failures`` consecutive failed calls (server errors, throttling,
  transport failures, deadline overruns, malformed bodies; a 4xx answer or an explicit vendor
  error means the server is up and resets the count) the circuit opens and every call fails fast
  with :class:`CircuitOpenError` ("circuit open for <vendor>"). After ``breaker_reset_seconds``
  one trial call of a single attempt is let through: success closes the circuit, failure reopens
  it for another period.
- **Across processes**: with ``state_dir`` the breaker's state (open/closed and when it opened)
  lives in a small JSON file per vendor that every process re-reads on each call, so a circuit
  opened by one run is seen by the next run (it probes once after the reset period instead of
  hammering a vendor that is down) and by concurrent runs. The count of consecutive failures and
  the rate limit stay per process: runs in parallel against one vendor each keep their own quota
  (lower the configured rate accordingly, or give them one ``pyrate-limiter`` SQLite/Redis bucket).
- **Secrets**: the API key is added to the request only inside the transport, below httpx's own
  logging, so it never appears in httpx logs, in ``response.request.url``, in this module's log
  lines or in any exception message (it is also masked in body excerpts, should a vendor echo it).

Hand-written parts, and why: the deadline watchdog, because httpx's ``Timeout`` bounds each
connect/read/write separately and has no total (measured in the tests: three chunks 0.4 s apart pass
a 0.5 s read timeout and arrive after 0.8 s; the watchdog cuts them at 0.5 s); the file storage of
the breaker state, because pybreaker ships only in-memory and Redis storages and the embedded
deployment has no Redis.

Calls to one vendor are serialized by the breaker's lock (``pybreaker`` holds it for the whole
call): vendor quotas of a few requests per second make concurrent requests pointless here.
``sleep`` (backoff) and ``rng`` (jitter) are injectable so tests check the delays requested.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pybreaker
import pyrate_limiter
import tenacity

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))
RETRY_AFTER_STATUS = frozenset({429, 503})
BODY_EXCERPT_CHARS = 300
_MASK = "***"

# Transport failures worth retrying: the request may not have reached the server, or its answer
# was lost. Anything else (an invalid URL, too many redirects) is a programming error.
_RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


class ProviderError(RuntimeError):
    """Base class of every error raised by the HTTP providers.

    ``retryable``: another attempt may succeed. ``vendor_failure``: the error says the vendor is
    unwell (counts towards the circuit breaker); False when the server answered sensibly.
    """

    retryable = False
    vendor_failure = True


class ProviderHTTPError(ProviderError):
    """A request failed: an HTTP error status, or no answer at all (``status`` is None).

    ``url`` never contains the API key; ``body_excerpt`` is the start of the response body with
    the key masked.
    """

    def __init__(
        self,
        provider: str,
        *,
        status: int | None,
        url: str,
        body_excerpt: str = "",
        attempts: int = 1,
        reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.url = url
        self.body_excerpt = body_excerpt
        self.attempts = attempts
        self.reason = reason
        self.retry_after = retry_after
        self.retryable = status is None or status in RETRYABLE_STATUS
        self.vendor_failure = self.retryable
        super().__init__(self._message())

    def _message(self) -> str:
        what = f"HTTP {self.status}" if self.status is not None else "no response"
        message = f"{self.provider}: GET {self.url} failed with {what} after {self.attempts} attempt(s)"
        if self.reason:
            message += f": {self.reason}"
        if self.body_excerpt:
            message += f"; body: {self.body_excerpt!r}"
        return message

    def with_attempts(self, attempts: int) -> ProviderHTTPError:
        """The same error, reporting ``attempts`` attempts."""
        self.attempts = attempts
        self.args = (self._message(),)
        return self


class ProviderTransportError(ProviderHTTPError):
    """No HTTP answer: connection refused or dropped, or a timeout / deadline overrun."""


class ProviderRateLimitError(ProviderHTTPError):
    """The vendor kept throttling (429, or a throttling body such as Alpha Vantage's "Note")."""

    def __init__(self, provider: str, **kwargs: Any) -> None:
        super().__init__(provider, **kwargs)
        self.retryable = self.vendor_failure = True  # a throttling 200 too


class ProviderDeadlineError(ProviderError):
    """The fetch's deadline passed: no further request was started."""

    vendor_failure = False  # our time budget ran out; says nothing about the vendor

    def __init__(self, provider: str, what: str) -> None:
        self.provider = provider
        super().__init__(f"{provider}: fetch deadline exceeded: {what}")


class CircuitOpenError(ProviderError):
    """The circuit breaker is open: the call was refused without contacting the server."""

    def __init__(self, provider: str, base_url: str, retry_in: float, failures: int, last_error: str) -> None:
        self.provider = provider
        self.base_url = base_url
        self.retry_in = retry_in
        self.failures = failures
        self.last_error = last_error
        retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=retry_in)
        when = (
            f"next trial request allowed in {retry_in:.1f} s (at about {retry_at:%Y-%m-%dT%H:%M:%SZ})"
            if retry_in > 0
            else "a trial request is due; retry in a moment"
        )
        super().__init__(
            f"circuit open for {provider} ({base_url}) after {failures} consecutive failed call(s); "
            f"failing fast, {when}. Last error: {last_error or 'unknown (opened by another process)'}"
        )


class ProviderPayloadError(ProviderError, ValueError):
    """A response body that does not have the documented shape: names provider, subject and field.

    Retried like a 5xx when raised while answering a request (a truncated or HTML body is usually
    a passing fault); ``attempts`` says how many answers were malformed.
    """

    retryable = True

    def __init__(self, provider: str, subject: str, field: str, detail: str, attempts: int = 1) -> None:
        self.provider = provider
        self.subject = subject
        self.field = field
        self.detail = detail
        self.attempts = attempts
        super().__init__(self._message())

    def _message(self) -> str:
        message = f"{self.provider}: malformed payload for {self.subject}, field {self.field!r}: {self.detail}"
        return message + (f" (after {self.attempts} attempts)" if self.attempts > 1 else "")

    def with_attempts(self, attempts: int) -> ProviderPayloadError:
        self.attempts = attempts
        self.args = (self._message(),)
        return self


def _mask(text: str, secret: str | None) -> str:
    return text.replace(secret, _MASK) if secret else text


def parse_retry_after(value: str | None, response_date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (delta seconds or an HTTP-date).

    An HTTP-date is measured from the response's ``Date`` header when given (the server's clock,
    immune to local clock skew), else from the local UTC time. None when absent or unparseable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = None
    if response_date:
        try:
            now = email.utils.parsedate_to_datetime(response_date)
        except (TypeError, ValueError, IndexError):
            now = None
        if now is not None and now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
    if now is None:
        now = dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


# -- per-vendor shared state ----------------------------------------------------------------------------

class _FileBreakerStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker storage whose state and opening time live in a JSON file shared by processes.

    The failure counters stay in memory (per process); the file is re-read when it changed, so a
    circuit opened elsewhere is seen on the next call.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._path = path
        self._mtime: int | None = None
        self._load()

    def _load(self) -> None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return
        if stat.st_mtime_ns == self._mtime:
            return
        try:
            data = json.loads(self._path.read_text())
            state = data["state"]
            opened = data.get("opened_at")
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring unreadable circuit breaker state file %s", self._path)
            return
        if state in (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN):
            self._state = state
            self._opened_at = dt.datetime.fromisoformat(opened) if opened else None
        self._mtime = stat.st_mtime_ns

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        data = {"state": self._state, "opened_at": self._opened_at.isoformat() if self._opened_at else None}
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".breaker-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, self._path)
        self._mtime = self._path.stat().st_mtime_ns

    @property
    def state(self) -> str:
        self._load()
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state
        self._save()

    @property
    def opened_at(self) -> dt.datetime | None:
        self._load()
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: dt.datetime) -> None:
        self._opened_at = value
        self._save()


def _excluded(exc: BaseException) -> bool:
    """Errors that say the server is up (pybreaker counts them as successes)."""
    return isinstance(exc, ProviderError) and not exc.vendor_failure


@dataclass
class VendorState:
    """What every client of one vendor (base URL) shares within a process."""

    name: str
    base_url: str
    breaker: pybreaker.CircuitBreaker
    rate: tuple[float, int] | None
    limiter: pyrate_limiter.Limiter | None
    requests: int = 0
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_request(self) -> None:
        with self.lock:
            self.requests += 1


_REGISTRY: dict[str, VendorState] = {}
_REGISTRY_LOCK = threading.Lock()


def _limiter(rate: tuple[float, int] | None) -> pyrate_limiter.Limiter | None:
    if rate is None:
        return None
    per_second, burst = rate
    window_ms = max(1, round(burst * 1000.0 / per_second))
    # buffer_ms=1: the sliding window already holds the limit; pyrate's default 50 ms margin
    # would cap any rate at about 20/s.
    return pyrate_limiter.Limiter(pyrate_limiter.InMemoryBucket([pyrate_limiter.Rate(burst, window_ms)]),
                                  buffer_ms=1)


def vendor_state(
    base_url: str,
    *,
    name: str,
    rate_limit_per_second: float | None,
    rate_limit_burst: int,
    breaker_failures: int,
    breaker_reset_seconds: float,
    state_dir: str | os.PathLike[str] | None = None,
) -> VendorState:
    """The process-wide breaker, rate limiter and request counter of vendor ``name`` at ``base_url``.

    Keyed by base URL (and name, so two APIs behind one host in a test stay apart). Created on first use; a later client with different settings updates them in place (the
    latest configuration wins, the breaker keeps its state and the counter its count).
    """
    url = base_url.rstrip("/")
    key = f"{name} {url}"
    rate = (float(rate_limit_per_second), int(rate_limit_burst)) if rate_limit_per_second else None
    with _REGISTRY_LOCK:
        state = _REGISTRY.get(key)
        if state is None:
            storage = None
            if state_dir is not None:
                storage = _FileBreakerStorage(Path(state_dir) / f"breaker-{name}-{zlib.crc32(key.encode()):08x}.json")
            breaker = pybreaker.CircuitBreaker(
                fail_max=breaker_failures, reset_timeout=breaker_reset_seconds, exclude=[_excluded],
                state_storage=storage, name=name, throw_new_error_on_trip=False,
            )
            state = VendorState(name, url, breaker, rate, _limiter(rate))
            _REGISTRY[key] = state
            return state
        state.breaker.fail_max = breaker_failures
        state.breaker.reset_timeout = breaker_reset_seconds
        if rate != state.rate:
            state.rate, state.limiter = rate, _limiter(rate)
        return state


def reset_vendor_registry() -> None:
    """Forget every vendor's shared state (tests; a new process starts empty anyway)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


def request_counts() -> dict[str, int]:
    """Requests sent so far in this process, per vendor name (attempts, retries included)."""
    with _REGISTRY_LOCK:
        counts: dict[str, int] = {}
        for state in _REGISTRY.values():
            counts[state.name] = counts.get(state.name, 0) + state.requests
        return counts


# -- transport ------------------------------------------------------------------------------------------

class _KeyTransport(httpx.BaseTransport):
    """Adds the API key to each request just before it is sent, below httpx's logging."""

    def __init__(self, inner: httpx.BaseTransport, key: str, param: str | None, header: str | None,
                 header_prefix: str) -> None:
        self._inner = inner
        self._key = key
        self._param = param
        self._header = header
        self._header_prefix = header_prefix

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        headers = request.headers.copy()
        if self._header:
            headers[self._header] = f"{self._header_prefix}{self._key}"
        else:
            url = url.copy_merge_params({self._param: self._key})
        keyed = httpx.Request(request.method, url, headers=headers, content=request.content,
                              extensions=request.extensions)
        return self._inner.handle_request(keyed)

    def close(self) -> None:
        self._inner.close()


class _Watchdog:
    """Shuts the request's socket down when its total deadline passes (slow-drip bodies).

    The socket is learnt from httpcore's ``trace`` events (a new connection) or from the response
    (a pooled one). Once the body is read the watchdog is disarmed before the connection can go
    back to the pool.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.fired and not self._done:
                self._shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def disarm(self) -> bool:
        """Stop the timer; True when the deadline had already fired."""
        with self._lock:
            self._done = True
            self._timer.cancel()
            return self.fired

    def __exit__(self, *exc: object) -> None:
        self.disarm()


SoftErrorCheck = Callable[[Any], str | None]
Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class _Answer:
    response: httpx.Response
    content: bytes


class HttpClient:
    """A synchronous JSON-over-HTTP client with deadlines, retries, rate limit and circuit breaker.

    The API key goes into the query parameter ``api_key_param`` (default ``apikey``), or, when
    ``api_key_header`` is set, into that header as ``api_key_header_prefix + key`` (e.g.
    ``Authorization: Token <key>``). ``name`` labels errors and logs (default: the base URL's host).
    ``timeout`` is the total deadline of one request attempt (module docstring).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        api_key_param: str | None = "apikey",
        api_key_header: str | None = None,
        api_key_header_prefix: str = "",
        name: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: int = 1,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 60.0,
        state_dir: str | os.PathLike[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff_base < 0 or backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must be >= 0")
        if breaker_failures < 1:
            raise ValueError(f"breaker_failures must be >= 1, got {breaker_failures}")
        if breaker_reset_seconds < 0:
            raise ValueError(f"breaker_reset_seconds must be >= 0, got {breaker_reset_seconds}")
        if rate_limit_per_second is not None and rate_limit_per_second <= 0:
            raise ValueError(f"rate limit must be positive, got {rate_limit_per_second}")
        if rate_limit_burst < 1:
            raise ValueError(f"burst must be at least 1, got {rate_limit_burst}")
        if api_key and not api_key_header and not api_key_param:
            raise ValueError("an api_key needs api_key_param or api_key_header to say where it goes")
        self.base_url = base_url.rstrip("/")
        self.name = name or (httpx.URL(self.base_url).host or self.base_url)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.vendor = vendor_state(
            self.base_url, name=self.name, rate_limit_per_second=rate_limit_per_second,
            rate_limit_burst=rate_limit_burst, breaker_failures=breaker_failures,
            breaker_reset_seconds=breaker_reset_seconds, state_dir=state_dir,
        )
        self._secret = api_key or None
        self._sleep = sleep
        self._rng = rng or random.Random()
        inner = transport or httpx.HTTPTransport()
        if self._secret:
            inner = _KeyTransport(inner, self._secret, api_key_param, api_key_header, api_key_header_prefix)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            headers=dict(headers or {}),
            transport=inner,
            follow_redirects=False,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool (the vendor's shared breaker and limiter stay)."""
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -----------------------------------------------------------------------------
    @property
    def circuit_state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (the reset period is over: the next call is a trial)."""
        breaker = self.vendor.breaker
        state = breaker.current_state
        if state == pybreaker.STATE_OPEN and self._retry_in() <= 0:
            return pybreaker.STATE_HALF_OPEN
        return state

    def get(self, path: str, params: Mapping[str, Any] | None = None, *,
            soft_error: SoftErrorCheck | None = None, deadline: float | None = None) -> httpx.Response:
        """GET ``path`` (relative to the base URL) with retries; returns the successful response.

        ``soft_error`` inspects a parsed JSON body of a 2xx answer and returns a reason string when
        the body is really a throttling notice (retried like a 429), else None.
        """
        answer, _ = self._call(path, params, soft_error, None, False, "", deadline)
        return answer.response

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *, subject: str = "",
                 soft_error: SoftErrorCheck | None = None, parse: Parser | None = None,
                 deadline: float | None = None) -> Any:
        """GET ``path`` and return its parsed JSON body, or ``parse(body)`` when given.

        ``subject`` (e.g. "symbol AAPL") labels payload errors. ``parse`` runs inside the retry
        loop: a :class:`ProviderPayloadError` it raises is retried like a 5xx. ``deadline`` is an
        absolute ``time.monotonic()`` time for the whole call, retries included.
        """
        _, payload = self._call(path, params, soft_error, parse, True, subject, deadline)
        return payload

    def redact(self, text: str) -> str:
        """``text`` with the API key masked."""
        return _mask(text, self._secret)

    # -- internals ------------------------------------------------------------------------------
    def _retry_in(self) -> float:
        opened = self.vendor.breaker._state_storage.opened_at
        if opened is None:
            return 0.0
        elapsed = (dt.datetime.now(dt.UTC) - opened).total_seconds()
        return max(0.0, self.vendor.breaker.reset_timeout - elapsed)

    def _circuit_open(self) -> CircuitOpenError:
        return CircuitOpenError(self.name, self.base_url, self._retry_in(), self.vendor.breaker.fail_max,
                                self.vendor.last_error)

    def _call(self, path: str, params: Mapping[str, Any] | None, soft_error: SoftErrorCheck | None,
              parse: Parser | None, want_json: bool, subject: str, deadline: float | None) -> tuple[_Answer, Any]:
        try:
            return self.vendor.breaker.call(self._with_retries, path, params, soft_error, parse, want_json,
                                            subject, deadline)
        except pybreaker.CircuitBreakerError:
            raise self._circuit_open() from None
        except ProviderError as exc:
            if exc.vendor_failure:
                self.vendor.last_error = str(exc)
                if self.vendor.breaker.current_state == pybreaker.STATE_OPEN:
                    logger.warning("%s: circuit opened for %s after %d consecutive failed call(s) for %.1f s",
                                   self.name, self.base_url, self.vendor.breaker.fail_max,
                                   self.vendor.breaker.reset_timeout)
            raise

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2.0 ** (retry_state.attempt_number - 1)))
        return self._rng.uniform(0.0, ceiling)

    def _with_retries(self, path: str, params: Mapping[str, Any] | None, soft_error: SoftErrorCheck | None,
                      parse: Parser | None, want_json: bool, subject: str,
                      deadline: float | None) -> tuple[_Answer, Any]:
        url = self._url(path, params)
        trial = self.vendor.breaker.current_state == pybreaker.STATE_HALF_OPEN
        attempts = 1 if trial else self.max_retries + 1

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            return deadline is not None and time.monotonic() + (state.upcoming_sleep or 0.0) >= deadline

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            logger.warning("%s: attempt %d/%d of GET %s failed (%s); retrying in %.2f s", self.name,
                           state.attempt_number, attempts, url, exc, state.upcoming_sleep)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts) | out_of_time,
            wait=self._wait,
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        attempt_number = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    return self._once(path, params, url, soft_error, parse, want_json, subject, deadline)
        except (ProviderHTTPError, ProviderPayloadError) as exc:
            raise exc.with_attempts(attempt_number) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _once(self, path: str, params: Mapping[str, Any] | None, url: str, soft_error: SoftErrorCheck | None,
              parse: Parser | None, want_json: bool, subject: str, deadline: float | None) -> tuple[_Answer, Any]:
        budget = self.timeout
        if deadline is not None:
            budget = min(budget, deadline - time.monotonic())
            if budget <= 0:
                raise ProviderDeadlineError(self.name, f"no time left for GET {url}")
        if self.vendor.limiter is not None:
            wait = -1 if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.vendor.limiter.try_acquire(self.name, blocking=True, timeout=wait):
                raise ProviderDeadlineError(self.name, f"rate limit slot for GET {url} not free before the deadline")
            if deadline is not None:
                budget = min(self.timeout, deadline - time.monotonic())
                if budget <= 0:
                    raise ProviderDeadlineError(self.name, f"no time left for GET {url}")
        answer = self._send(path, params, url, budget)
        response = answer.response
        status = response.status_code
        if 200 <= status < 300:
            payload: Any = None
            if want_json or soft_error is not None or parse is not None:
                payload = self._parse_json(answer, url, subject)
                throttled = soft_error(payload) if soft_error is not None else None
                if throttled:
                    raise ProviderRateLimitError(self.name, status=status, url=url,
                                                 reason=f"throttled: {self.redact(throttled)}")
                if parse is not None:
                    payload = parse(payload)
            return answer, payload
        excerpt = self._excerpt(answer.content)
        retry_after = None
        if status in RETRY_AFTER_STATUS:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), response.headers.get("Date"))
        cls = ProviderRateLimitError if status == 429 else ProviderHTTPError
        raise cls(self.name, status=status, url=url, body_excerpt=excerpt, reason=response.reason_phrase,
                  retry_after=retry_after)

    def _send(self, path: str, params: Mapping[str, Any] | None, url: str, budget: float) -> _Answer:
        self.vendor.count_request()
        watchdog = _Watchdog(budget)
        request = self._http.build_request("GET", path, params=dict(params or {}), timeout=httpx.Timeout(budget),
                                           extensions={"trace": watchdog.trace})
        try:
            with watchdog:
                response = self._http.send(request, stream=True)
                try:
                    watchdog.watch(response.extensions.get("network_stream"))
                    content = response.read()
                    fired = watchdog.disarm()
                finally:
                    response.close()
        except _RETRYABLE_TRANSPORT_ERRORS as exc:
            if watchdog.fired:
                reason = f"deadline of {budget:.2f} s for the whole request exceeded (slow answer or body)"
            else:
                reason = self.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise ProviderTransportError(self.name, status=None, url=url, reason=reason) from None
        if fired:
            raise ProviderTransportError(self.name, status=None, url=url,
                                         reason=f"deadline of {budget:.2f} s for the whole request exceeded")
        return _Answer(response, content)

    def _excerpt(self, content: bytes) -> str:
        text = content.decode("utf-8", errors="replace")
        text = " ".join(text.split())
        return self.redact(text[:BODY_EXCERPT_CHARS])

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        # Built without the key (the transport adds it) and masked again in case a caller passed it.
        return self.redact(str(self._http.build_request("GET", path, params=dict(params or {})).url))

    def _parse_json(self, answer: _Answer, url: str, subject: str) -> Any:
        try:
            return json.loads(answer.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProviderPayloadError(
                self.name, subject or url, "<body>",
                f"response of GET {url} is not valid JSON ({exc}); body: {self._excerpt(answer.content)!r}",
            ) from None
