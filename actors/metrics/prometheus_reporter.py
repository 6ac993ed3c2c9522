"""Prometheus reporter: metrics in memory (prometheus-client), ``/metrics`` served by asyncio.

Why asyncio and not ``prometheus_client.start_http_server``: that server runs in a thread,
and a scrape then renders the registry while the event loop keeps mutating it. A tiny
asyncio server renders on the loop between two messages instead: no thread, no lock contention,
and it stops with the app. Rendering costs about a microsecond per series.

Names: namespace ``pitaya``, subsystem and name from :mod:`actors.metrics.names`, so
``response_time_ns`` is exposed as ``pitaya_handler_response_time_ns`` like Pitaya's.
Every series also carries the constant labels given here (the app passes Pitaya's ``game`` and
``serverType``). prometheus-client needs label names up front: known metrics are declared at
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
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    Summary,
)
from prometheus_client.exposition import choose_encoder

from actors.logs import ServerLog
from actors.metrics.names import KNOWN_METRICS, NAMESPACE, MetricKind, MetricSpec

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 16 * 1024
"""Largest request line plus headers the endpoint reads; scrapers send a few hundred bytes."""
REQUEST_TIMEOUT = 10.0
"""Seconds a scraper has to send its request before the connection is dropped."""


class _Family:
    """One declared metric: its kind, its prometheus-client object and its tag label names."""

    __slots__ = ("children", "kind", "labelled", "metric", "tag_names", "tag_set")

    def __init__(
        self, kind: MetricKind, metric: Any, tag_names: tuple[str, ...], labelled: bool
    ) -> None:
        self.kind = kind
        self.metric = metric
        self.tag_names = tag_names
        self.tag_set = frozenset(tag_names)
        self.labelled = labelled
        self.children: dict[tuple[tuple[str, str], ...], Any] = {}
        """Series by the report's tag items: skips label validation on repeat reports."""


class PrometheusReporter:
    """Keeps metrics in a prometheus-client registry and serves them on ``/metrics``.

    ``registry``: your own :class:`CollectorRegistry` to share (default: a private one, so
    two apps in one process do not collide). ``process_metrics`` adds the process, platform
    and GC collectors to a private registry (CPU, memory, file descriptors, like Pitaya's Go
    runtime metrics).
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
        self._const_values = tuple(labels.values())
        if registry is None:
            registry = CollectorRegistry()
            if process_metrics:
                ProcessCollector(registry=registry)
                PlatformCollector(registry=registry)
                GCCollector(registry=registry)
        self.registry = registry
        self._families: dict[str, _Family | None] = {}
        self._warned: set[tuple[str, str]] = set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        for spec in KNOWN_METRICS:
            self._families[spec.name] = self._declare(spec)

    # -- Reporter ----------------------------------------------------------------------------

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        family = self._family(metric, "counter", tags)
        if family is not None:
            self._child(metric, family, tags).inc(value)

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        family = self._family(metric, "gauge", tags)
        if family is not None:
            self._child(metric, family, tags).set(value)

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        family = self._family(metric, "summary", tags)
        if family is not None:
            self._child(metric, family, tags).observe(value)

    def _family(self, metric: str, kind: MetricKind, tags: Mapping[str, str]) -> _Family | None:
        try:
            family = self._families[metric]
        except KeyError:
            names = tuple(sorted(k for k in tags if k not in self._const_names))
            spec = MetricSpec(metric, kind, "", names, f"user metric {metric}")
            family = self._families[metric] = self._declare(spec)
        if family is None:
            return None  # a user metric that could not be declared; already logged
        if family.kind != kind:
            self._warn_once(metric, f"is a {family.kind}; a {kind} report was ignored")
            return None
        return family

    def _child(self, metric: str, family: _Family, tags: Mapping[str, str]) -> Any:
        """The series of ``family`` for ``tags`` (prometheus-client's labelled child)."""
        key = tuple(tags.items())
        child = family.children.get(key)
        if child is None:
            child = family.children[key] = self._new_child(metric, family, tags)
        return child

    def _new_child(self, metric: str, family: _Family, tags: Mapping[str, str]) -> Any:
        if not family.tag_set.issuperset(tags):
            extra = sorted(set(tags) - family.tag_set)
            self._warn_once(metric, f"has no label(s) {extra}; they were ignored")
        if not family.labelled:
            return family.metric  # prometheus-client refuses .labels() without label names
        values = list(self._const_values)
        values.extend(str(tags.get(name, "")) for name in family.tag_names)
        return family.metric.labels(*values)

    def _declare(self, spec: MetricSpec) -> _Family | None:
        factory = {"counter": Counter, "gauge": Gauge, "summary": Summary}[spec.kind]
        try:
            metric = factory(
                spec.name,
                spec.help,
                (*self._const_names, *spec.labels),
                namespace=NAMESPACE,
                subsystem=spec.subsystem,
                registry=self.registry,
            )
        except ValueError as exc:
            self._warn_once(spec.name, f"cannot be declared ({exc}); its reports are ignored")
            return None
        return _Family(spec.kind, metric, spec.labels, bool(self._const_names or spec.labels))

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

    readiness: Callable[[], bool] | None = None
    """Answers ``GET /ready`` (200 or 503); the app installs its own readiness check."""

    async def start(self) -> None:
        """Listen for scrapes on ``host:port``."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST_HEAD
        )
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
        self._writers.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            writer.write(self.respond(head))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.LimitOverrunError:
            writer.write(_response(431, "text/plain", b"request header too large\n"))
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

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
            ready = self.readiness is not None and self.readiness()
            body = b"ready\n" if ready else b"not ready\n"
            return _response(
                200 if ready else 503, "text/plain", b"" if method == "HEAD" else body, len(body)
            )
        if path not in ("/metrics", "/"):
            return _response(404, "text/plain", b"not found; metrics are at /metrics\n")
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        return _response(200, content_type, b"" if method == "HEAD" else body, len(body))


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
