"""A resilient HTTP client for market-data vendors: retries, backoff, rate limit, circuit breaker.

Vendors fail in predictable ways: they throttle (429, or a 200 body saying "slow down"), they have
bad minutes (5xx, dropped connections, timeouts) and bad hours (down). :class:`HttpClient` handles
each the same way for every adapter built on it:

- **Retries** on 429, 5xx, connection errors, dropped connections and timeouts, at most
  ``max_retries`` times, with exponential backoff and full jitter
  (``uniform(0, min(backoff_max, backoff_base * 2**n))`` before retry ``n + 1``). Other 4xx are the
  caller's mistake and are never retried. A ``Retry-After`` header on 429/503 (delta seconds or an
  HTTP-date, read against the response's ``Date`` header when present) replaces the backoff delay,
  capped by ``backoff_max``.
- **Rate limit**: a token bucket shared by every request of the client (retries included), so a
  backfill over many symbols never bursts past the vendor's quota.
- **Circuit breaker**: after ``breaker_failures`` consecutive calls that failed after all their
  retries (server errors, throttling or transport failures; a 4xx answer or a malformed body means
  the server is up and does not count) the circuit opens and calls fail fast with
  :class:`CircuitOpenError`. After ``breaker_reset_seconds`` one trial request (no retries) is let
  through: success closes the circuit, failure reopens it for another period.
- **Secrets**: the API key is added to the request only inside the transport, below httpx's own
  logging, so it never appears in httpx logs, in ``response.request.url``, in this module's log
  lines or in any exception message (it is also masked in body excerpts, should a vendor echo it).

``sleep`` and ``clock`` are injectable so tests drive backoff, rate limit and breaker timing without
waiting.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

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
    """Base class of every error raised by the HTTP providers."""


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
    ) -> None:
        self.provider = provider
        self.status = status
        self.url = url
        self.body_excerpt = body_excerpt
        self.attempts = attempts
        self.reason = reason
        what = f"HTTP {status}" if status is not None else "no response"
        message = f"{provider}: GET {url} failed with {what} after {attempts} attempt(s)"
        if reason:
            message += f": {reason}"
        if body_excerpt:
            message += f"; body: {body_excerpt!r}"
        super().__init__(message)


class ProviderTransportError(ProviderHTTPError):
    """No HTTP answer: connection refused or dropped, or a timeout."""


class ProviderRateLimitError(ProviderHTTPError):
    """The vendor kept throttling (429, or a throttling body such as Alpha Vantage's "Note")."""


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
            else "a trial request is in flight; retry in a moment"
        )
        super().__init__(
            f"{provider}: circuit open for {base_url} after {failures} consecutive failed request(s); "
            f"failing fast, {when}. Last error: {last_error}"
        )


class ProviderPayloadError(ProviderError, ValueError):
    """A response body that does not have the documented shape: names provider, subject and field."""

    def __init__(self, provider: str, subject: str, field: str, detail: str) -> None:
        self.provider = provider
        self.subject = subject
        self.field = field
        self.detail = detail
        super().__init__(f"{provider}: malformed payload for {subject}, field {field!r}: {detail}")


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


class TokenBucket:
    """A thread-safe token bucket: ``rate`` requests per second, bursts of up to ``burst``.

    ``acquire`` reserves a token (the balance may go negative) and sleeps outside the lock until
    the reservation is due, so concurrent callers queue fairly and the sleep function may be fake.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate limit must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._sleep = sleep
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


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


class _Attempt:
    """Outcome of one HTTP attempt: a response, or a transport error."""

    __slots__ = ("error", "response")

    def __init__(self, response: httpx.Response | None = None, error: Exception | None = None) -> None:
        self.response = response
        self.error = error


SoftErrorCheck = Callable[[Any], str | None]


class HttpClient:
    """A synchronous JSON-over-HTTP client with timeouts, retries, rate limit and circuit breaker.

    The API key goes into the query parameter ``api_key_param`` (default ``apikey``), or, when
    ``api_key_header`` is set, into that header as ``api_key_header_prefix + key`` (e.g.
    ``Authorization: Token <key>``). ``name`` labels errors and logs (default: the base URL's host).
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
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: float = 1.0,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
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
        if api_key and not api_key_header and not api_key_param:
            raise ValueError("an api_key needs api_key_param or api_key_header to say where it goes")
        self.base_url = base_url.rstrip("/")
        self.name = name or (httpx.URL(self.base_url).host or self.base_url)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.breaker_failures = int(breaker_failures)
        self.breaker_reset_seconds = float(breaker_reset_seconds)
        self._secret = api_key or None
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._limiter = (
            TokenBucket(rate_limit_per_second, rate_limit_burst, sleep=sleep, clock=clock)
            if rate_limit_per_second
            else None
        )
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
        # Circuit breaker state, guarded by the lock.
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._last_error = ""

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -----------------------------------------------------------------------------
    @property
    def circuit_state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (a trial request is due or in flight)."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._probe_in_flight or self._clock() - self._opened_at >= self.breaker_reset_seconds:
                return "half-open"
            return "open"

    def get(self, path: str, params: Mapping[str, Any] | None = None, *,
            soft_error: SoftErrorCheck | None = None) -> httpx.Response:
        """GET ``path`` (relative to the base URL) with retries; returns the successful response.

        ``soft_error`` inspects a parsed JSON body of a 2xx answer and returns a reason string when
        the body is really a throttling notice (retried like a 429), else None.
        """
        response, _ = self._call(path, params, soft_error)
        return response

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *, subject: str = "",
                 soft_error: SoftErrorCheck | None = None) -> Any:
        """GET ``path`` and parse its JSON body; ``subject`` (e.g. "symbol AAPL") labels payload errors."""
        _, payload = self._call(path, params, soft_error, want_json=True, subject=subject)
        return payload

    def redact(self, text: str) -> str:
        """``text`` with the API key masked."""
        return _mask(text, self._secret)

    # -- internals ------------------------------------------------------------------------------
    def _before_call(self) -> bool:
        """Breaker gate: raises when open; returns True when this call is the half-open trial."""
        with self._lock:
            if self._opened_at is None:
                return False
            elapsed = self._clock() - self._opened_at
            if elapsed >= self.breaker_reset_seconds and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            retry_in = max(0.0, self.breaker_reset_seconds - elapsed)
            failures, last_error = self._failures, self._last_error
        raise CircuitOpenError(self.name, self.base_url, retry_in, failures, last_error)

    def _record(self, *, ok: bool, probe: bool, error: str = "") -> None:
        with self._lock:
            if probe:
                self._probe_in_flight = False
            if ok:
                if self._opened_at is not None:
                    logger.info("%s: circuit closed for %s", self.name, self.base_url)
                self._failures = 0
                self._opened_at = None
                return
            self._failures += 1
            self._last_error = error
            if probe or self._failures >= self.breaker_failures:
                self._opened_at = self._clock()
                logger.warning(
                    "%s: circuit opened for %s after %d consecutive failed request(s) for %.1f s",
                    self.name, self.base_url, self._failures, self.breaker_reset_seconds,
                )

    def _send(self, path: str, params: Mapping[str, Any] | None) -> _Attempt:
        if self._limiter is not None:
            self._limiter.acquire()
        try:
            return _Attempt(response=self._http.get(path, params=dict(params or {})))
        except _RETRYABLE_TRANSPORT_ERRORS as exc:
            return _Attempt(error=exc)

    def _backoff(self, retry_index: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2.0 ** retry_index))
        return self._rng.uniform(0.0, ceiling)

    def _excerpt(self, response: httpx.Response) -> str:
        try:
            text = response.text
        except Exception:  # undecodable body: show nothing rather than fail while failing
            text = ""
        text = " ".join(text.split())
        return self.redact(text[:BODY_EXCERPT_CHARS])

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        # Built without the key (the transport adds it) and masked again in case a caller passed it.
        return self.redact(str(self._http.build_request("GET", path, params=dict(params or {})).url))

    def _call(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        soft_error: SoftErrorCheck | None,
        *,
        want_json: bool = False,
        subject: str = "",
    ) -> tuple[httpx.Response, Any]:
        probe = self._before_call()
        try:
            return self._attempts(path, params, soft_error, probe, want_json, subject)
        finally:
            if probe:  # whatever happened, the trial is over (_record has updated the state)
                with self._lock:
                    self._probe_in_flight = False

    def _attempts(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        soft_error: SoftErrorCheck | None,
        probe: bool,
        want_json: bool,
        subject: str,
    ) -> tuple[httpx.Response, Any]:
        url = self._url(path, params)
        max_attempts = 1 if probe else self.max_retries + 1
        failure: ProviderHTTPError | None = None
        for attempt in range(1, max_attempts + 1):
            outcome = self._send(path, params)
            delay: float | None = None
            if outcome.error is not None:
                exc = outcome.error
                reason = self.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                failure = ProviderTransportError(self.name, status=None, url=url, attempts=attempt, reason=reason)
            else:
                response = outcome.response
                assert response is not None
                status = response.status_code
                if 200 <= status < 300:
                    payload: Any = None
                    throttled: str | None = None
                    if want_json or soft_error is not None:
                        payload = self._parse_json(response, url, subject, probe)
                        throttled = soft_error(payload) if soft_error is not None else None
                    if not throttled:
                        self._record(ok=True, probe=probe)
                        return response, payload
                    failure = ProviderRateLimitError(self.name, status=status, url=url, attempts=attempt,
                                                     reason=f"throttled: {self.redact(throttled)}")
                elif status in RETRYABLE_STATUS:
                    cls = ProviderRateLimitError if status == 429 else ProviderHTTPError
                    failure = cls(self.name, status=status, url=url, body_excerpt=self._excerpt(response),
                                  attempts=attempt, reason=response.reason_phrase)
                    if status in RETRY_AFTER_STATUS:
                        retry_after = parse_retry_after(response.headers.get("Retry-After"),
                                                        response.headers.get("Date"))
                        if retry_after is not None:
                            delay = min(retry_after, self.backoff_max)
                else:
                    # Any other status (4xx, unexpected 1xx/3xx): the server answered; not retried.
                    self._record(ok=True, probe=probe)
                    raise ProviderHTTPError(self.name, status=status, url=url,
                                            body_excerpt=self._excerpt(response), attempts=attempt,
                                            reason=response.reason_phrase)
            if attempt < max_attempts:
                wait = self._backoff(attempt - 1) if delay is None else delay
                logger.warning("%s: attempt %d/%d of GET %s failed (%s); retrying in %.2f s",
                               self.name, attempt, max_attempts, url, failure, wait)
                self._sleep(wait)
        assert failure is not None
        self._record(ok=False, probe=probe, error=str(failure))
        raise failure

    def _parse_json(self, response: httpx.Response, url: str, subject: str, probe: bool) -> Any:
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._record(ok=True, probe=probe)  # the server answered; not a breaker failure
            raise ProviderPayloadError(
                self.name, subject or url, "<body>",
                f"response of GET {url} is not valid JSON ({exc}); body: {self._excerpt(response)!r}",
            ) from None
