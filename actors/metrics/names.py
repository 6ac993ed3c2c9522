"""The metrics the framework reports: their names, kinds, labels and help text, in one table.

Names are the ones reporters receive, as in Pitaya: Pitaya's own metrics keep its short names
(``response_time_ns``) and Prometheus adds the namespace and a subsystem
(``pitaya_handler_response_time_ns``); statsd adds only the prefix (``pitaya.response_time_ns``),
exactly like Pitaya's statsd reporter. Our own metrics carry their subsystem in the name
(``actor_mailbox_depth``) so a short name never means two things.

A reporter that needs labels up front (Prometheus) declares every metric of
:data:`KNOWN_METRICS`; names it does not know are user metrics, created on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "gauge", "summary"]

NAMESPACE = "pitaya"
"""Prometheus namespace of every metric (Pitaya's)."""

RESPONSE_TIME = "response_time_ns"
"""Summary: nanoseconds from a client message's arrival to its answer (route, status, type,
code)."""
PROCESS_DELAY = "handler_delay_ns"
"""Summary: nanoseconds a message waited before its handler started (route, type: one of
:data:`DELAY_LOCAL` and :data:`DELAY_REMOTE`)."""
CONNECTED_CLIENTS = "connected_clients"
"""Gauge: client connections open right now."""
EXCEEDED_RATE_LIMITING = "exceeded_rate_limiting"
"""Counter: client packets dropped because their connection was over its rate limit."""
DROPPED_MESSAGES = "dropped_messages"
"""Gauge (as in Pitaya): RPC server messages that will not be handled."""
COUNT_SERVERS = "count_servers"
"""Gauge: servers known to service discovery, by server type (type)."""
MAILBOX_DEPTH = "actor_mailbox_depth"
"""Gauge: messages queued in the mailboxes of live actors, summed by actor class (kind)."""
ACTOR_DROPPED_MESSAGES = "actor_dropped_messages"
"""Counter: messages dropped because an actor's mailbox was full, by actor class (kind)."""
DEAD_LETTERS = "actor_dead_letters"
"""Counter: messages sent to stopped actors or left in their mailbox when they stopped."""

WORKER_JOBS_TOTAL = "worker_jobs_total"
"""Gauge (as in Pitaya): jobs the worker queue has run, by status (``ok``, ``failed``), from
go-workers' counters in Redis (every server's, not only this one's)."""
WORKER_JOBS_RETRY = "worker_jobs_retry_total"
"""Gauge (as in Pitaya): jobs waiting in the retry set."""
WORKER_QUEUE_SIZE = "worker_queue_size"
"""Gauge (as in Pitaya): jobs waiting in a worker queue (queue)."""

DELAY_LOCAL = "local"
"""``type`` of :data:`PROCESS_DELAY` for a client message run by the server it reached
(Pitaya's)."""
DELAY_REMOTE = "remote"
"""``type`` of :data:`PROCESS_DELAY` for a message that came by RPC: a forwarded client message
or a user RPC (Pitaya's frontend reports its forwarding delay under this type)."""

UNKNOWN_ROUTE = "unknown"
"""Route label of messages to routes this server does not serve. Not the route itself: a
client could otherwise create one time series per made-up route."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric the framework reports: what a reporter needs to declare it."""

    name: str
    kind: MetricKind
    subsystem: str
    labels: tuple[str, ...]
    help: str
    pitaya: bool = False
    """One of Go Pitaya's metrics: Prometheus exposes it exactly as Go Pitaya does (a
    counter under its own name, without prometheus-client's ``_total``)."""


KNOWN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        RESPONSE_TIME,
        "summary",
        "handler",
        ("route", "status", "type", "code"),
        "the time to process a msg in nanoseconds",
        pitaya=True,
    ),
    MetricSpec(
        PROCESS_DELAY,
        "summary",
        "handler",
        ("route", "type"),
        "the delay to start processing a msg in nanoseconds",
        pitaya=True,
    ),
    MetricSpec(
        CONNECTED_CLIENTS,
        "gauge",
        "acceptor",
        (),
        "the number of clients connected right now",
        pitaya=True,
    ),
    MetricSpec(
        EXCEEDED_RATE_LIMITING,
        "counter",
        "acceptor",
        (),
        "the number of blocked requests by exceeded rate limiting",
        pitaya=True,
    ),
    MetricSpec(
        DROPPED_MESSAGES,
        "gauge",
        "rpc_server",
        (),
        "the number of rpc server dropped messages (messages that are not handled)",
        pitaya=True,
    ),
    MetricSpec(
        COUNT_SERVERS,
        "gauge",
        "service_discovery",
        ("type",),
        "the number of discovered servers by service discovery",
        pitaya=True,
    ),
    MetricSpec(
        WORKER_JOBS_TOTAL,
        "gauge",
        "worker",
        ("status",),
        "the total executed jobs",
        pitaya=True,
    ),
    MetricSpec(
        WORKER_JOBS_RETRY,
        "gauge",
        "worker",
        (),
        "the current number of job retries",
        pitaya=True,
    ),
    MetricSpec(
        WORKER_QUEUE_SIZE,
        "gauge",
        "worker",
        ("queue",),
        "the current queue size",
        pitaya=True,
    ),
    MetricSpec(
        MAILBOX_DEPTH,
        "gauge",
        "",
        ("kind",),
        "messages queued in the mailboxes of live actors, by actor class",
    ),
    MetricSpec(
        ACTOR_DROPPED_MESSAGES,
        "counter",
        "",
        ("kind",),
        "messages dropped because an actor mailbox was full, by actor class",
    ),
    MetricSpec(
        DEAD_LETTERS,
        "counter",
        "",
        (),
        "messages sent to stopped actors or left in their mailbox when they stopped",
    ),
)
