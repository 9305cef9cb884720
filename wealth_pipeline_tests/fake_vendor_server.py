"""A real HTTP server on 127.0.0.1 that speaks the vendor formats the HTTP providers consume.

It serves Alpha Vantage ``TIME_SERIES_DAILY`` and FRED ``series/observations`` bodies from
in-memory data, records every request (so tests count server hits and see what was sent), and
injects faults: scripted one-shot replies (500, 429 with Retry-After, slow answers, garbage) are
served before the normal route answers, and :meth:`FakeVendorServer.inject_faults` turns a seeded
share of all requests to a path into one of the faults real vendors produce (:data:`FAULT_KINDS`).
"""

from __future__ import annotations

import email.utils
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One answer: status, body (bytes, str, or JSON-able object), headers, and a delay before it."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0  # seconds between the body's chunks (a slow-drip body)
    chunks: int = 3
    truncate: bool = False  # send half the body and close (Content-Length says more)
    reset: bool = False  # close the connection with a TCP reset instead of answering

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Hit:
    """A request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_query: str
    at: float = 0.0  # time.monotonic() when the request arrived


Handler = Callable[[Hit], Reply]


class FakeVendorServer:
    """A threaded HTTP server on a free loopback port; use as a context manager."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self._routes: dict[str, Handler] = {}
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._faults: dict[str, tuple[float, random.Random, tuple[str, ...], float]] = {}
        self.faults_served: list[str] = []

    # -- configuration ----------------------------------------------------------------------------
    def route(self, path: str, handler: Handler) -> None:
        """Answer requests for ``path`` with ``handler`` (after any scripted replies)."""
        self._routes[path] = handler

    def script(self, path: str, *replies: Reply) -> None:
        """Queue one-shot replies for ``path``, served in order before the route's handler."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def inject_faults(self, path: str, rate: float, seed: int, kinds: Iterable[str] = (),
                      slow_drip: float = 0.1) -> None:
        """Answer a seeded ``rate`` share of requests to ``path`` with a fault drawn from ``kinds``.

        ``rate`` 0 turns injection off; 1.0 is a total outage. ``slow_drip`` is the pause between
        the three chunks of a ``slow_body`` fault.
        """
        chosen = tuple(kinds) or FAULT_KINDS
        unknown = [k for k in chosen if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; expected some of {FAULT_KINDS}")
        with self._lock:
            if rate <= 0:
                self._faults.pop(path, None)
            else:
                self._faults[path] = (rate, random.Random(seed), chosen, slow_drip)

    def hit_count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for hit in self.hits if path is None or hit.path == path)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeVendorServer:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every answer.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeVendorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling -------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        hit = Hit("GET", parsed.path, query, {k.lower(): v for k, v in request.headers.items()}, parsed.query,
                  time.monotonic())
        fault: str | None = None
        with self._lock:
            self.hits.append(hit)
            queue = self._scripts.get(parsed.path)
            scripted = queue.popleft() if queue else None
            if scripted is None and parsed.path in self._faults:
                rate, rng, kinds, drip = self._faults[parsed.path]
                if rng.random() < rate:
                    fault = rng.choice(kinds)
                    self.faults_served.append(fault)
        if scripted is not None:
            reply = scripted
        elif parsed.path in self._routes:
            reply = self._routes[parsed.path](hit)
        else:
            reply = Reply(404, {"error": f"no route {parsed.path}"})
        if fault is not None:
            reply = fault_reply(fault, reply, drip)
        if reply.delay and self._stopping.wait(reply.delay):
            return
        body = reply.encoded()
        try:
            if reply.reset:
                request.close_connection = True
                request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                request.connection.close()
                return
            request.send_response_only(reply.status)
            headers = {"Content-Type": "application/json", "Date": email.utils.formatdate(usegmt=True),
                       **reply.headers}
            for name, value in headers.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            if reply.truncate:
                request.wfile.write(body[: len(body) // 2])
                request.wfile.flush()
                request.close_connection = True
                request.connection.shutdown(socket.SHUT_RDWR)
            elif reply.drip:
                size = -(-len(body) // reply.chunks)
                for index in range(0, len(body), size):
                    request.wfile.write(body[index: index + size])
                    request.wfile.flush()
                    if index + size < len(body) and self._stopping.wait(reply.drip):
                        return
            else:
                request.wfile.write(body)
        except OSError:  # the client gave up (timeout and deadline tests) or the socket was reset
            request.close_connection = True


FAULT_KINDS: tuple[str, ...] = (
    "500", "502", "503", "429", "reset", "slow_body", "truncated", "html_200", "note_200", "information_200",
)


def fault_reply(kind: str, normal: Reply, drip: float) -> Reply:
    """The fault ``kind`` in place of the ``normal`` answer."""
    if kind in ("500", "502", "503"):
        return Reply(int(kind), f"<html><body>{kind} upstream error</body></html>", {"Content-Type": "text/html"})
    if kind == "429":
        return Reply(429, {"message": "Too Many Requests"}, {"Retry-After": "0"})
    if kind == "reset":
        return Reply(reset=True)
    if kind == "slow_body":
        return Reply(normal.status, normal.body, normal.headers, drip=drip, chunks=3)
    if kind == "truncated":
        return Reply(normal.status, normal.body, normal.headers, truncate=True)
    if kind == "html_200":
        return Reply(200, "<!DOCTYPE html><html><head><title>Scheduled maintenance</title></head>"
                          "<body>We'll be back shortly.</body></html>", {"Content-Type": "text/html"})
    if kind == "note_200":
        return Reply(200, {"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is "
                                   "5 calls per minute and 500 calls per day."})
    if kind == "information_200":
        return Reply(200, {"Information": "Thank you for using Alpha Vantage! Please consider spreading out "
                                          "your free API requests more sparingly (1 request per second)."})
    raise ValueError(f"unknown fault kind {kind!r}")


# -- vendor formats -------------------------------------------------------------------------------------

def alphavantage_handler(
    series: Mapping[str, Mapping[str, tuple[Any, Any, Any, Any, Any]]],
    api_key: str,
    *,
    raw: Mapping[str, Any] | None = None,
) -> Handler:
    """Alpha Vantage ``/query``: ``series[ticker][date] = (open, high, low, close, volume)``.

    Values are rendered as Alpha Vantage does (strings, prices with 4 decimals). ``raw[ticker]``
    overrides the whole body for that ticker (malformed payload tests). A wrong key or an unknown
    ticker gets the vendor's 200 "Error Message" body.
    """

    def handle(hit: Hit) -> Reply:
        q = hit.query
        if q.get("apikey") != api_key:
            return Reply(200, {"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key."})
        if q.get("function") != "TIME_SERIES_DAILY":
            return Reply(200, {"Error Message": f"This API function ({q.get('function')}) does not exist."})
        ticker = q.get("symbol", "")
        if raw is not None and ticker in raw:
            return Reply(200, raw[ticker])
        if ticker not in series:
            return Reply(200, {"Error Message": "Invalid API call. Please retry or visit the documentation "
                                                "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."})
        days = sorted(series[ticker], reverse=True)
        if q.get("outputsize", "compact") != "full":
            days = days[:100]  # compact: the latest 100 data points
        body = {
            "Meta Data": {
                "1. Information": "Daily Prices (open, high, low, close) and Volumes",
                "2. Symbol": ticker,
                "3. Last Refreshed": days[0] if days else "",
                "4. Output Size": "Full size" if q.get("outputsize") == "full" else "Compact",
                "5. Time Zone": "US/Eastern",
            },
            "Time Series (Daily)": {
                day: {
                    "1. open": f"{o:.4f}", "2. high": f"{h:.4f}", "3. low": f"{lo:.4f}",
                    "4. close": f"{c:.4f}", "5. volume": str(v),
                }
                for day in days
                for (o, h, lo, c, v) in [series[ticker][day]]
            },
        }
        return Reply(200, body)

    return handle


def fred_handler(series: Mapping[str, Iterable[tuple[str, str]]], api_key: str) -> Handler:
    """FRED ``/fred/series/observations``: ``series[id] = [(date, value_string), ...]``.

    Honours observation_start/end, sort_order, limit and offset like FRED; a wrong key or unknown
    series gets FRED's 400 JSON error body.
    """
    data = {sid: sorted(rows) for sid, rows in series.items()}

    def handle(hit: Hit) -> Reply:
        q = hit.query
        if q.get("api_key") != api_key:
            return Reply(400, {"error_code": 400, "error_message": "Bad Request.  The value for variable api_key is not registered.  Read https://fred.stlouisfed.org/docs/api/api_key.html for more information."})
        if q.get("file_type") != "json":
            return Reply(200, "<?xml version=\"1.0\"?><observations/>", {"Content-Type": "text/xml"})
        sid = q.get("series_id", "")
        if sid not in data:
            return Reply(400, {"error_code": 400, "error_message": "Bad Request.  The series does not exist."})
        start = q.get("observation_start", "1776-07-04")
        end = q.get("observation_end", "9999-12-31")
        rows = [(d, v) for d, v in data[sid] if start <= d <= end]
        if q.get("sort_order") == "desc":
            rows.reverse()
        limit = int(q.get("limit", "100000"))
        offset = int(q.get("offset", "0"))
        page = rows[offset: offset + limit]
        body = {
            "realtime_start": "2024-06-03", "realtime_end": "2024-06-03",
            "observation_start": start, "observation_end": end,
            "units": "lin", "output_type": 1, "file_type": "json",
            "order_by": "observation_date", "sort_order": q.get("sort_order", "asc"),
            "count": len(rows), "offset": offset, "limit": limit,
            "observations": [
                {"realtime_start": "2024-06-03", "realtime_end": "2024-06-03", "date": d, "value": v}
                for d, v in page
            ],
        }
        return Reply(200, body)

    return handle
