"""The Prometheus reporter's metric families: prometheus-client collectors of our own.

prometheus-client's ``Counter``, ``Gauge`` and ``Summary`` do not fit Pitaya's metrics: its
``Summary`` has no quantiles (Go's, which Pitaya dashboards read, do), and its counters are
always exposed as ``name_total``, where Go exposes a counter under the name it was given. So
the reporter keeps its series here, and a :class:`Family` gives prometheus-client's registry
the samples to expose, the way Go's client would:

- a counter samples ``name`` when it is one of Go Pitaya's (``exact``), ``name_total``
  otherwise (prometheus-client's convention, kept for our own counters and users');
- a summary samples ``name{quantile="0.7"|"0.95"|"0.99"}`` over the last 10 minutes (see
  :mod:`actors.metrics.quantiles`), ``name_sum`` and ``name_count``;
- no family samples ``_created`` (Go's text format has none; they would only add series).

::

    family = Family("summary", "pitaya_handler_response_time_ns", "help", ("route",))
    registry.register(family)
    family.series(("room.join",)).report(81234.0)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Protocol

from prometheus_client.metrics_core import Metric

from actors.metrics.exposition import go_float
from actors.metrics.names import MetricKind
from actors.metrics.quantiles import Clock, Layout, SummarySeries

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
"""A metric name of Prometheus' text format."""
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
"""A label name of Prometheus' text format (a ``__`` prefix is Prometheus' own)."""


class Series(Protocol):
    """One series of a family: takes the reports of its label values."""

    def report(self, value: float) -> None:
        """Count (counter), set (gauge) or observe (summary) ``value``."""
        ...


class Number:
    """A gauge's series: its value is the last one reported."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def report(self, value: float) -> None:
        self.value = value


class Count(Number):
    """A counter's series: its value is the sum of the reports."""

    __slots__ = ()

    def report(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"a counter only goes up; {value} was not added")
        self.value += value


class Family:
    """One metric with its series by label values; a prometheus-client collector.

    ``kind`` and ``name`` (the full one, namespace included) as in Prometheus; ``labels``
    are the label names, constant ones first. ``exact``: a counter exposed under ``name``
    itself, as Go Pitaya's are. Raises ValueError for a name or label Prometheus refuses.
    """

    __slots__ = (
        "_layout",
        "_quantiles",
        "by_values",
        "clock",
        "exact",
        "help",
        "kind",
        "labels",
        "name",
    )

    def __init__(
        self,
        kind: MetricKind,
        name: str,
        help: str,
        labels: tuple[str, ...],
        *,
        exact: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        if kind == "counter" and not exact and name.endswith("_total"):
            name = name[: -len("_total")]  # as prometheus-client: no name_total_total
        if not NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        reserved = ("quantile",) if kind == "summary" else ()
        for label in labels:
            if not LABEL.fullmatch(label) or label.startswith("__") or label in reserved:
                raise ValueError(f"invalid label name {label!r}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"a label is named twice in {labels}")
        self.kind = kind
        self.name = name
        self.help = help
        self.labels = labels
        self.exact = exact
        self.clock = clock
        self.by_values: dict[tuple[str, ...], Series] = {}
        self._layout = Layout() if kind == "summary" else None
        self._quantiles = [go_float(q) for q in self._layout.objectives] if self._layout else []

    def series(self, values: tuple[str, ...]) -> Series:
        """The series of these label values (in :attr:`labels` order), made on first use."""
        found = self.by_values.get(values)
        if found is None:
            if len(values) != len(self.labels):
                raise ValueError(f"{self.name} takes {len(self.labels)} label values")
            layout = self._layout
            if layout is not None:
                found = SummarySeries(layout, self.clock)
            else:
                found = Count() if self.kind == "counter" else Number()
            self.by_values[values] = found
        return found

    # -- prometheus-client's Collector -------------------------------------------------------

    def describe(self) -> list[Metric]:
        """The family without samples: lets the registry refuse a name taken twice."""
        return [Metric(self.name, self.help, self.kind)]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.help, self.kind)
        name = self.name
        labels = self.labels
        if self.kind == "summary":
            count, total = f"{name}_count", f"{name}_sum"
            for values, series in list(self.by_values.items()):
                assert isinstance(series, SummarySeries)
                tags = dict(zip(labels, values, strict=True))
                for quantile, value in zip(self._quantiles, series.quantiles(), strict=True):
                    metric.add_sample(name, {**tags, "quantile": quantile}, value)
                metric.add_sample(total, tags, series.sum)
                metric.add_sample(count, tags, series.count)
            return [metric]
        sample = name if self.exact or self.kind != "counter" else f"{name}_total"
        for values, series in list(self.by_values.items()):
            assert isinstance(series, Number)
            metric.add_sample(sample, dict(zip(labels, values, strict=True)), series.value)
        return [metric]
