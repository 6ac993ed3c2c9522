"""The metrics seam: the :class:`Reporter` protocol and the :class:`Metrics` fan-out.

Pitaya's ``metrics.Reporter`` as a Python protocol. The framework reports into ``app.metrics``,
which hands every report to each registered reporter. Reporters are called on the event loop,
on the hot path (a handler's answer reports its response time), so a reporter must be
synchronous and must never block: update memory (Prometheus) or fire a UDP datagram (statsd),
never wait for a network round trip. A reporter that needs to set up I/O first (listen on a
port, resolve a host) also implements :class:`ManagedReporter`; the app starts it before it
listens and stops it after its actors stopped.

A custom reporter is three methods::

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, dict[str, str], float]] = []

        def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
            self.calls.append(("count", metric, dict(tags), value))

        def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
            self.calls.append(("gauge", metric, dict(tags), value))

        def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
            self.calls.append(("summary", metric, dict(tags), value))

    app.add_metrics_reporter(Recorder())
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from transport.undo import undo_fully

log = logging.getLogger(__name__)


@runtime_checkable
class Reporter(Protocol):
    """Receives metric reports. All methods are called on the event loop and must not block.

    ``metric`` is a name from :mod:`actors.metrics.names` or a user's own; ``tags`` are the
    per-report labels (constant labels such as ``serverType`` are the reporter's business).
    A reporter must not keep ``tags``: callers may reuse the mapping.
    """

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        """Add ``value`` to a counter."""
        ...

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        """Set a gauge to ``value``."""
        ...

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        """Observe ``value`` in a summary (or histogram)."""
        ...


@runtime_checkable
class ManagedReporter(Protocol):
    """A reporter with I/O to set up and tear down (an HTTP endpoint, a UDP socket)."""

    async def start(self) -> None:
        """Acquire resources; raising fails the app's start (e.g. the port is taken)."""
        ...

    async def stop(self) -> None:
        """Release resources. Idempotent."""
        ...


class Metrics:
    """The app's reporter: fans each report out to every registered reporter.

    Hot-path callers check :attr:`enabled` before they build tags or read the clock, so an app
    without reporters pays one attribute test per report site::

        if app.metrics.enabled:
            app.metrics.report_count("my_event", {"kind": "x"})

    A reporter that raises does not fail the request that reported: the error is logged once
    per reporter and metric, and the other reporters still get the report.
    """

    __slots__ = ("_failures", "_reporters", "_started", "enabled")

    def __init__(self) -> None:
        self._reporters: list[Reporter] = []
        self._failures: set[tuple[int, str]] = set()
        self._started: list[ManagedReporter] = []
        self.enabled = False
        """True once a reporter is registered; report sites skip all work while False."""

    @property
    def reporters(self) -> tuple[Reporter, ...]:
        return tuple(self._reporters)

    def add(self, reporter: Reporter) -> None:
        """Register ``reporter``; several may be registered and all receive every report."""
        if not isinstance(reporter, Reporter):
            raise TypeError(f"{reporter!r} does not implement the Reporter protocol")
        self._reporters.append(reporter)
        self.enabled = True

    # -- reporting ---------------------------------------------------------------------------

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        for reporter in self._reporters:
            try:
                reporter.report_count(metric, tags, value)
            except Exception as exc:
                self._failed(reporter, metric, exc)

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        for reporter in self._reporters:
            try:
                reporter.report_gauge(metric, tags, value)
            except Exception as exc:
                self._failed(reporter, metric, exc)

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        for reporter in self._reporters:
            try:
                reporter.report_summary(metric, tags, value)
            except Exception as exc:
                self._failed(reporter, metric, exc)

    def _failed(self, reporter: Reporter, metric: str, exc: Exception) -> None:
        key = (id(reporter), metric)
        if key in self._failures:
            log.debug("metrics reporter %r failed on %s: %s", reporter, metric, exc)
            return
        self._failures.add(key)
        log.warning(
            "metrics reporter %r failed on %s (further failures logged at debug level)",
            reporter,
            metric,
            exc_info=exc,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every :class:`ManagedReporter`; if one fails (or the start is cancelled),
        stop those already started and the one that failed (``stop`` is idempotent: what it
        had acquired before failing, a bound port, is released too)."""
        for reporter in self._reporters:
            if isinstance(reporter, ManagedReporter) and reporter not in self._started:
                self._started.append(reporter)
                try:
                    await reporter.start()
                except BaseException:
                    await undo_fully(self.stop())  # all of it, even if a stop comes
                    raise

    async def stop(self) -> None:
        """Stop the started reporters, last started first. Idempotent."""
        while self._started:
            reporter = self._started.pop()
            try:
                await reporter.stop()
            except Exception:
                log.exception("metrics reporter %r failed to stop", reporter)
