"""Metrics: the :class:`Reporter` seam, the app's :class:`Metrics` fan-out, and two reporters.

::

    from actors.metrics import PrometheusReporter, StatsdReporter

    app.add_metrics_reporter(PrometheusReporter(port=9090, const_labels={"serverType": "room"}))
    app.add_metrics_reporter(StatsdReporter(host="localhost", port=9125))

or just set ``metrics_prometheus_enabled`` / ``metrics_statsd_enabled`` in the config. The
reporter modules (and prometheus-client) are imported on first use, so an app without
metrics does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.metrics.reporter import ManagedReporter, Metrics, Reporter

if TYPE_CHECKING:
    from actors.metrics.prometheus_reporter import PrometheusReporter
    from actors.metrics.statsd_reporter import StatsdReporter

__all__ = ["ManagedReporter", "Metrics", "PrometheusReporter", "Reporter", "StatsdReporter"]


def __getattr__(name: str) -> Any:
    if name == "PrometheusReporter":
        from actors.metrics.prometheus_reporter import PrometheusReporter

        return PrometheusReporter
    if name == "StatsdReporter":
        from actors.metrics.statsd_reporter import StatsdReporter

        return StatsdReporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
