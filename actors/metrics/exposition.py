"""Prometheus' text format (0.0.4), written the way Go's client writes it.

The ``/metrics`` endpoint always answers in this format, as Go Pitaya's does (its promhttp
handler offers no OpenMetrics): OpenMetrics would require ``_total`` on every counter, and
Go Pitaya's ``pitaya_acceptor_exceeded_rate_limiting`` has none. prometheus-client's own
writer cannot write that name either (it names every counter ``name_total`` in its ``TYPE``
line) and adds ``_created`` series, which Go's text format does not have. So this writer:

- names a counter family after its samples: ``name`` when they are ``name`` (Go's way),
  ``name_total`` when they are ``name_total`` (prometheus-client's);
- leaves out ``_created`` samples, and families without samples (as Go's client does);
- writes every character of a metric or label name that the format refuses (prometheus-client
  takes UTF-8 names) as an underscore, as prometheus-client does: one such name would make
  Prometheus refuse the whole scrape;
- otherwise writes what prometheus-client's ``generate_latest`` writes, for any collector in
  the registry (process, platform and GC collectors, users' own).

    >>> from prometheus_client import CollectorRegistry, Counter
    >>> registry = CollectorRegistry()
    >>> Counter("kills", "kills so far", registry=registry).inc()
    >>> print(render(registry).decode(), end="")
    # HELP kills_total kills so far
    # TYPE kills_total counter
    kills_total 1.0
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

go_float: Callable[[float], str] = floatToGoString  # typed here: prometheus-client's is not
"""A value as Go writes it (``+Inf``, ``NaN``, ``1e+06``), as prometheus-client writes it."""

_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_:]|^[0-9]")
_NOT_IN_LABEL = re.compile(r"[^a-zA-Z0-9_]|^[0-9]")


@functools.lru_cache(maxsize=4096)
def metric_name(name: str) -> str:
    """``name`` as the text format can carry it: each character it refuses an underscore
    (``room.joins`` is ``room_joins``), as prometheus-client's writer escapes it."""
    return _NOT_IN_NAME.sub("_", name)


@functools.lru_cache(maxsize=4096)
def label_name(name: str) -> str:
    """A label name as the text format can carry it (see :func:`metric_name`)."""
    return _NOT_IN_LABEL.sub("_", name)


_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_APART = ("_gsum", "_gcount")
"""Samples of a gauge histogram that the text format writes as gauges of their own."""


def render(registry: Collector) -> bytes:
    """The text exposition of every family ``registry`` collects."""
    out: list[str] = []
    for metric in registry.collect():
        _write(metric, out)
    return "".join(out).encode("utf-8")


def _write(metric: Metric, out: list[str]) -> None:
    base = metric.name
    created = base + "_created"
    samples = [s for s in metric.samples if s.name != created]
    if not samples:
        return
    kind = metric.type
    name = base
    if kind == "counter":
        name = base if any(s.name == base for s in samples) else base + "_total"
    elif kind == "info":
        name = base + "_info"
    apart: dict[str, list[Sample]] = {}
    if kind == "gaugehistogram":
        for suffix in _APART:
            found = [s for s in samples if s.name == base + suffix]
            if found:
                apart[base + suffix] = found
        samples = [s for s in samples if s.name not in apart]
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    name = metric_name(name)
    out.append(f"# HELP {name} {doc}\n# TYPE {name} {_TYPES.get(kind, kind)}\n")
    out.extend(_line(s) for s in samples)
    for gauge, found in apart.items():
        gauge = metric_name(gauge)
        out.append(f"# HELP {gauge} {doc}\n# TYPE {gauge} gauge\n")
        out.extend(_line(s) for s in found)


def _line(sample: Sample) -> str:
    labels = sample.labels
    if labels:
        pairs = ",".join(f'{label_name(k)}="{_escape(v)}"' for k, v in sorted(labels.items()))
        head = f"{metric_name(sample.name)}{{{pairs}}}"
    else:
        head = metric_name(sample.name)
    if sample.timestamp is None:
        return f"{head} {go_float(sample.value)}\n"
    return f"{head} {go_float(sample.value)} {int(float(sample.timestamp) * 1000)}\n"


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value
