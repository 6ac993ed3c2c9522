"""The metrics table (``actors.metrics.names``): Pitaya's names, kinds, subsystems and labels,
which dashboards built for Go Pitaya read. Each reporter's rendering of it is tested with the
reporter (test_prometheus_reporter.py, test_statsd_reporter.py)."""

from __future__ import annotations

import dataclasses

import pytest

from actors.metrics import names
from actors.metrics.names import (
    DELAY_LOCAL,
    DELAY_REMOTE,
    KNOWN_METRICS,
    NAMESPACE,
    UNKNOWN_ROUTE,
    MetricSpec,
)

BY_NAME = {spec.name: spec for spec in KNOWN_METRICS}


def test_the_namespace_and_the_label_of_unknown_routes() -> None:
    assert NAMESPACE == "pitaya"
    assert UNKNOWN_ROUTE == "unknown"


def test_the_process_delay_types_are_pitayas() -> None:
    # Go Pitaya's handler service reports handler_delay_ns with type "local" or "remote".
    assert (DELAY_LOCAL, DELAY_REMOTE) == ("local", "remote")


def test_go_pitayas_metrics_are_marked_to_be_exposed_as_go_exposes_them() -> None:
    pitaya = {spec.name for spec in KNOWN_METRICS if spec.pitaya}
    assert pitaya == {
        "response_time_ns",
        "handler_delay_ns",
        "connected_clients",
        "exceeded_rate_limiting",
        "dropped_messages",
        "count_servers",
        "worker_jobs_total",
        "worker_jobs_retry_total",
        "worker_queue_size",
    }
    assert all(spec.subsystem for spec in KNOWN_METRICS if spec.pitaya)


@pytest.mark.parametrize(
    ("name", "kind", "subsystem", "labels"),
    [
        # Pitaya's own: Prometheus shows them as pitaya_<subsystem>_<name>.
        ("response_time_ns", "summary", "handler", ("route", "status", "type", "code")),
        ("handler_delay_ns", "summary", "handler", ("route", "type")),
        ("connected_clients", "gauge", "acceptor", ()),
        ("exceeded_rate_limiting", "counter", "acceptor", ()),
        ("dropped_messages", "gauge", "rpc_server", ()),
        ("count_servers", "gauge", "service_discovery", ("type",)),
        # Go Pitaya reports its worker's counters as gauges, "_total" in the name included.
        ("worker_jobs_total", "gauge", "worker", ("status",)),
        ("worker_jobs_retry_total", "gauge", "worker", ()),
        ("worker_queue_size", "gauge", "worker", ("queue",)),
        # Ours: the subsystem is in the name.
        ("actor_mailbox_depth", "gauge", "", ("kind",)),
        ("actor_dropped_messages", "counter", "", ("kind",)),
        ("actor_dead_letters", "counter", "", ()),
    ],
)
def test_each_known_metric(name: str, kind: str, subsystem: str, labels: tuple[str, ...]) -> None:
    spec = BY_NAME[name]
    assert (spec.kind, spec.subsystem, spec.labels) == (kind, subsystem, labels)
    assert spec.help


def test_the_table_lists_each_name_constant_once() -> None:
    constants = {
        names.RESPONSE_TIME,
        names.PROCESS_DELAY,
        names.CONNECTED_CLIENTS,
        names.EXCEEDED_RATE_LIMITING,
        names.DROPPED_MESSAGES,
        names.COUNT_SERVERS,
        names.WORKER_JOBS_TOTAL,
        names.WORKER_JOBS_RETRY,
        names.WORKER_QUEUE_SIZE,
        names.MAILBOX_DEPTH,
        names.ACTOR_DROPPED_MESSAGES,
        names.DEAD_LETTERS,
    }
    assert [spec.name for spec in KNOWN_METRICS] == list(BY_NAME)  # no name twice
    assert set(BY_NAME) == constants


def test_pitaya_help_texts_are_kept() -> None:
    assert BY_NAME["response_time_ns"].help == "the time to process a msg in nanoseconds"
    assert BY_NAME["handler_delay_ns"].help == "the delay to start processing a msg in nanoseconds"


def test_our_metric_names_never_collide_with_a_full_pitaya_name() -> None:
    full = {
        f"{NAMESPACE}_{s.subsystem}_{s.name}" if s.subsystem else f"{NAMESPACE}_{s.name}"
        for s in KNOWN_METRICS
    }
    assert len(full) == len(KNOWN_METRICS)
    assert "pitaya_handler_response_time_ns" in full
    assert "pitaya_actor_mailbox_depth" in full


def test_a_spec_is_frozen() -> None:
    spec = KNOWN_METRICS[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, MetricSpec)
