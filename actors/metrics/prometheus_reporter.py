"""Prometheus reporter: metrics in memory, ``/metrics`` served by asyncio as Go Pitaya serves it.

Why asyncio and not ``prometheus_client.start_http_server``: that server runs in a thread,
and a scrape then renders the registry while the event loop keeps mutating it. A tiny
asyncio server renders on the loop between two messages instead: no thread, no lock contention,
and it stops with the app. Rendering costs a few microseconds per series, plus 30-50 us per
summary series observed since the last scrape, to read its quantiles from its bins (see
:mod:`actors.metrics.quantiles`).

Names, types and labels are Go Pitaya's, so dashboards built for it work unchanged:

- namespace ``pitaya``, subsystem and name from :mod:`actors.metrics.names`:
  ``response_time_ns`` is ``pitaya_handler_response_time_ns``; Go's labels (``route``,
  ``status``, ``type``, ``code``; ``type`` of ``handler_delay_ns`` is ``local`` or ``remote``);
- summaries export ``{quantile="0.7"|"0.95"|"0.99"}`` over the last 10 minutes (Go's
  objectives and window), besides ``_sum`` and ``_count``;
- Pitaya's counter is exposed under its own name, ``pitaya_acceptor_exceeded_rate_limiting``
  (Go's client appends nothing); counters Pitaya does not have (ours, users') keep
  prometheus-client's ``_total``: ``pitaya_actor_dead_letters_total``;
- no ``_created`` series, and always the text format 0.0.4 (Go's promhttp offers no
  OpenMetrics, which would force ``_total`` on every counter): see
  :mod:`actors.metrics.exposition`.

Every series also carries the constant labels given here (the app passes Pitaya's ``game`` and
``serverType``). Label names are fixed per metric: known metrics are declared at
construction, user metrics on first report with the tag keys seen then. A later report with
other keys still counts (missing labels are empty, extra ones are ignored, and a warning is
logged once) rather than raising on the hot path.

Usage::

    app.add_metrics_reporter(
        PrometheusReporter(port=9090, const_labels={"game": "g", "serverType": "room"})
    )
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from actors.logs import ServerLog
from actors.metrics.exposition import CONTENT_TYPE, label_name, metric_name, render
from actors.metrics.families import Family, Series
from actors.metrics.names import KNOWN_METRICS, NAMESPACE, MetricKind, MetricSpec
from actors.metrics.quantiles import Clock
from actors.readiness import Readiness

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 16 * 1024
"""Largest request line plus headers the endpoint reads; scrapers send a few hundred bytes."""
REQUEST_TIMEOUT = 10.0
"""Seconds a scraper has to send its request before the connection is dropped."""
MAX_SCRAPE_CONNECTIONS = 64
"""Scrape connections open at once (a Prometheus server opens one at a time); past it a new
one is closed at once, unread. The process's file descriptors are the game
server's too: a peer that opened connections to this port without end would take them
from the clients."""
RESPONSE_TIMEOUT = 10.0
"""Seconds a scraper has to read the answer (once it no longer fits the socket's buffers),
and the connection to close, before it is dropped: a peer that never reads would otherwise
hold its connection and a rendered exposition for as long as it liked."""


class _Declared:
    """One declared metric: its family and its tag label names."""

    __slots__ = ("children", "family", "kind", "tag_names", "tag_set")

    def __init__(self, family: Family, tag_names: tuple[str, ...]) -> None:
        self.kind = family.kind
        self.family = family
        self.tag_names = tag_names
        self.tag_set = frozenset(tag_names)
        self.children: dict[tuple[tuple[str, str], ...], Series] = {}
        """Series by the report's tag items: skips building label values on repeat reports."""


class PrometheusReporter:
    """Keeps metrics in memory and serves them on ``/metrics`` as Go Pitaya does.

    ``registry``: your own :class:`CollectorRegistry` to share (default: a private one, so
    two apps in one process do not collide); the endpoint serves all of it. ``process_metrics``
    adds the process, platform and GC collectors to a private registry (CPU, memory, file
    descriptors, like Pitaya's Go runtime metrics). ``clock``: the summaries' clock (seconds;
    tests pass their own to age observations out of the quantiles' window).
    """

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 9090,
        const_labels: Mapping[str, str] | None = None,
        registry: CollectorRegistry | None = None,
        process_metrics: bool = True,
        server_id: str = "",
        clock: Clock = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.log = ServerLog(log, server_id)
        """Names the server in its lines (several share a launcher's stderr)."""
        labels = dict(const_labels or {})
        for spec in KNOWN_METRICS:
            clash = set(spec.labels) & set(labels)
            if clash:
                raise ValueError(f"constant label(s) {sorted(clash)} clash with {spec.name}'s")
        self._const_names = tuple(labels)
        self._const_values = tuple(map(str, labels.values()))
        self._clock = clock
        if registry is None:
            registry = CollectorRegistry()
            if process_metrics:
                ProcessCollector(registry=registry)
                PlatformCollector(registry=registry)
                GCCollector(registry=registry)
        self.registry = registry
        self._declared: dict[str, _Declared | None] = {}
        self._warned: set[tuple[str, str]] = set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        for spec in KNOWN_METRICS:
            declared = self._declared[spec.name] = self._declare(spec)
            if declared is not None and spec.kind == "counter" and not spec.labels:
                declared.family.series(self._const_values)  # at 0 until the first report

    # -- Reporter ----------------------------------------------------------------------------

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        declared = self._find(metric, "counter", tags)
        if declared is not None:
            self._series(metric, declared, tags).report(value)

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        declared = self._find(metric, "gauge", tags)
        if declared is not None:
            self._series(metric, declared, tags).report(value)

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        declared = self._find(metric, "summary", tags)
        if declared is not None:
            self._series(metric, declared, tags).report(value)

    def _find(self, metric: str, kind: MetricKind, tags: Mapping[str, str]) -> _Declared | None:
        try:
            declared = self._declared[metric]
        except KeyError:
            names = tuple(sorted(k for k in tags if k not in self._const_names))
            spec = MetricSpec(metric, kind, "", names, f"user metric {metric}")
            declared = self._declared[metric] = self._declare(spec)
        if declared is None:
            return None  # a user metric that could not be declared; already logged
        if declared.kind != kind:
            self._warn_once(metric, f"is a {declared.kind}; a {kind} report was ignored")
            return None
        return declared

    def _series(self, metric: str, declared: _Declared, tags: Mapping[str, str]) -> Series:
        """The series of ``declared`` for ``tags``."""
        key = tuple(tags.items())
        series = declared.children.get(key)
        if series is None:
            if not declared.tag_set.issuperset(tags):
                extra = sorted(set(tags) - declared.tag_set)
                self._warn_once(metric, f"has no label(s) {extra}; they were ignored")
            values = (
                *self._const_values,
                *(str(tags.get(name, "")) for name in declared.tag_names),
            )
            series = declared.children[key] = declared.family.series(values)
        return series

    def _declare(self, spec: MetricSpec) -> _Declared | None:
        # A user's statsd-style name (room.joins) is exposed as prometheus-client exposed it
        # (pitaya_room_joins), rather than refused; its tags are looked up by their own keys.
        name = "_".join(part for part in (NAMESPACE, spec.subsystem, spec.name) if part)
        try:
            family = Family(
                spec.kind,
                metric_name(name),
                spec.help,
                tuple(map(label_name, (*self._const_names, *spec.labels))),
                exact=spec.pitaya,
                clock=self._clock,
            )
            self.registry.register(family)
        except ValueError as exc:
            self._warn_once(spec.name, f"cannot be declared ({exc}); its reports are ignored")
            return None
        return _Declared(family, spec.labels)

    def _warn_once(self, metric: str, problem: str) -> None:
        if (metric, problem) not in self._warned:
            self._warned.add((metric, problem))
            log.warning("prometheus metric %s %s", metric, problem)

    # -- the /metrics endpoint ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` once started (port 0 resolves to the real port)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the prometheus endpoint is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    readiness: Callable[[], bool | Readiness] | None = None
    """Answers ``GET /ready``: 200 when it returns something true, else 503, with a one-line
    body (``ready``, ``ready (degraded: ...)``, ``not ready: ...``: ``actors.readiness``).
    The app installs its own check (``App.readiness``) unless one was set."""

    async def start(self) -> None:
        """Listen for scrapes on ``host:port``."""
        if self._server is not None:
            return
        # Held before it serves: ``start_server`` awaits once serving, and a start cancelled
        # there (a stop during the start-up) left the port bound with nothing to close it.
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST_HEAD, start_serving=False
        )
        await self._server.start_serving()
        host, port = self.address
        self.log.info("prometheus metrics on http://%s:%s/metrics", host, port)

    async def stop(self) -> None:
        """Stop listening and drop open scrape connections. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= MAX_SCRAPE_CONNECTIONS:
            # Closed unread, so a reset (an answer could be lost to it anyway): the
            # scraper reports a failed scrape, and the next one is served.
            self.log.debug(
                "prometheus endpoint: %d connections open, refusing one", len(self._writers)
            )
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            writer.write(self.respond(head))
            await asyncio.wait_for(writer.drain(), RESPONSE_TIMEOUT)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.LimitOverrunError:
            writer.write(_response(431, "text/plain", b"request header too large\n"))
        finally:
            writer.close()  # after what is still buffered is sent: within the timeout too
            try:
                await asyncio.wait_for(writer.wait_closed(), RESPONSE_TIMEOUT)
            except TimeoutError:
                writer.transport.abort()
            except ConnectionError:
                pass
            finally:
                self._writers.discard(writer)

    def respond(self, head: bytes) -> bytes:
        """The whole HTTP response to one request head (request line plus headers)."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return _response(400, "text/plain", b"bad request\n")
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return _response(405, "text/plain", b"method not allowed\n")
        path = target.split("?", 1)[0]
        if path == "/ready":
            state = self.readiness() if self.readiness is not None else False
            if not isinstance(state, Readiness):
                state = Readiness(bool(state))
            body = f"{state.line()}\n".encode()
            return _response(
                200 if state.ready else 503,
                "text/plain",
                b"" if method == "HEAD" else body,
                len(body),
            )
        if path not in ("/metrics", "/"):
            return _response(404, "text/plain", b"not found; metrics are at /metrics\n")
        body = render(self.registry)
        return _response(200, CONTENT_TYPE, b"" if method == "HEAD" else body, len(body))


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _response(status: int, content_type: str, body: bytes, length: int | None = None) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
