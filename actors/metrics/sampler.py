"""Metrics that are sampled rather than pushed, and the reporters the options enable.

Counting a connection or a mailbox append at the moment it happens would put a report on the
hottest paths of the kernel. Those values are already kept as plain integers (the app's
connection count, the mailboxes, the system's dropped and dead-letter counters), so an actor
reads them every ``metrics_period`` seconds instead: the cost is O(actors) per period, paid only
when a reporter exists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.actor import Actor
from actors.metrics.names import (
    ACTOR_DROPPED_MESSAGES,
    CONNECTED_CLIENTS,
    COUNT_SERVERS,
    DEAD_LETTERS,
    DROPPED_MESSAGES,
    MAILBOX_DEPTH,
)
from actors.metrics.reporter import Reporter

if TYPE_CHECKING:
    from actors.config import Config
    from actors.metrics.reporter import Metrics

NO_TAGS: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class ClusterCounts:
    """What a cluster node reports: servers known to discovery by type, and the inbound
    messages that will never be handled (Pitaya's ``rpc_server_dropped_messages``)."""

    servers: dict[str, int]
    dropped_messages: int


ClusterSource = Callable[[], "ClusterCounts | None"]
"""Read the cluster counts now (None: standalone, or not joined yet)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """Timer tick of the :class:`MetricsSampler`."""


class MetricsSampler(Actor):
    """Reports connected clients, mailbox depths, dropped messages and dead letters; in
    cluster mode also the servers known to discovery by type and the RPC server's dropped
    messages.

    Gauges are reported as they are; the system's running totals become counter increments
    (the difference since the previous sample). A kind (or server type) that disappeared is
    reported once more at 0 so its gauge does not stay at a stale value.
    """

    def __init__(
        self,
        metrics: Metrics,
        period: float,
        connection_count: Callable[[], int],
        cluster: ClusterSource | None = None,
    ) -> None:
        self.metrics = metrics
        self.period = period
        self.connection_count = connection_count
        self.cluster = cluster
        self.kinds: set[str] = set()
        self.dropped: Counter[str] = Counter()
        self.dead_letters = 0
        self.first = True
        self.server_types: set[str] = set()

    def started(self) -> None:
        self.sample()
        self.every(self.period, Sample())

    def on_sample(self, msg: Sample) -> None:
        self.sample()

    def sample(self) -> None:
        metrics = self.metrics
        system = self.system
        metrics.report_gauge(CONNECTED_CLIENTS, NO_TAGS, float(self.connection_count()))
        depths = system.mailbox_depths()
        for kind in self.kinds - depths.keys():
            metrics.report_gauge(MAILBOX_DEPTH, {"kind": kind}, 0.0)
        for kind, depth in depths.items():
            metrics.report_gauge(MAILBOX_DEPTH, {"kind": kind}, float(depth))
        self.kinds = set(depths)
        for kind, total in system.dropped.items():
            delta = total - self.dropped[kind]
            if delta:
                metrics.report_count(ACTOR_DROPPED_MESSAGES, {"kind": kind}, float(delta))
                self.dropped[kind] = total
        delta = system.dead_letters - self.dead_letters
        if delta or self.first:
            # Reported once at 0 too, so the series exists before the first dead letter.
            metrics.report_count(DEAD_LETTERS, NO_TAGS, float(delta))
            self.dead_letters = system.dead_letters
        self.first = False
        counts = self.cluster() if self.cluster is not None else None
        if counts is not None:
            self.sample_cluster(counts)

    def sample_cluster(self, counts: ClusterCounts) -> None:
        """Pitaya's ``service_discovery_count_servers`` and ``rpc_server_dropped_messages``."""
        metrics = self.metrics
        types = set(counts.servers)
        for server_type in self.server_types - types:
            metrics.report_gauge(COUNT_SERVERS, {"type": server_type}, 0.0)
        for server_type, count in counts.servers.items():
            metrics.report_gauge(COUNT_SERVERS, {"type": server_type}, float(count))
        self.server_types = types
        metrics.report_gauge(DROPPED_MESSAGES, NO_TAGS, float(counts.dropped_messages))


def reporters_from_config(config: Config) -> list[Reporter]:
    """The reporters the ``metrics_*`` options enable, with Pitaya's constant labels."""
    reporters: list[Reporter] = []
    if config.metrics_prometheus_enabled:
        from actors.metrics.prometheus_reporter import PrometheusReporter

        reporters.append(
            PrometheusReporter(
                host=config.metrics_prometheus_host,
                port=config.metrics_prometheus_port,
                const_labels={"game": config.game, "serverType": config.server_type},
                server_id=config.server_id,
            )
        )
    if config.metrics_statsd_enabled:
        from actors.metrics.statsd_reporter import StatsdReporter

        tags = {"serverType": config.server_type}
        if config.game:
            tags["game"] = config.game
        reporters.append(
            StatsdReporter(
                host=config.metrics_statsd_host,
                port=config.metrics_statsd_port,
                prefix=config.metrics_statsd_prefix,
                rate=config.metrics_statsd_rate,
                const_tags=tags,
            )
        )
    return reporters
