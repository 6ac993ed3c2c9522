"""Go Pitaya's environment variables, read for the options a server here shares with Go's.

A Pitaya shop's deployments configure Go servers through the environment: Go Pitaya reads its
configuration keys with viper, each from the variable named by the key in upper case with its
dots as underscores (``pitaya.cluster.sd.etcd.endpoints``: ``PITAYA_CLUSTER_SD_ETCD_ENDPOINTS``),
in Go's syntax (durations such as ``5s``, ``500ms`` or ``1m30s``; lists comma-separated). A
Python server started in that environment, say beside Go servers in one chart, must join the
same NATS and etcd with the same timings, not the defaults: so :data:`GO_SETTINGS` maps each
such variable to the option it sets here, and :func:`read` gives their values in this
framework's syntax, for :meth:`actors.config.Config.apply_env` to parse like its own
``PITAYA_*`` variables (which win; a variable of each kind set to different values is an
error, since one of the two is then not what the deployment meant).

The keys with no counterpart here (Go's buffer sizes, dispatch concurrency, NATS reconnection
tuning ...) are :data:`GO_ONLY`: :func:`unused` names those set, so a server can say once, at
start, that it leaves them alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from transport import goduration

Convert = Callable[[str], dict[str, str]]
"""Go's value of one variable -> this framework's raw value of each option it sets."""


class GoValueError(ValueError):
    """A Go Pitaya variable whose value Go would not accept either."""


duration_seconds = goduration.seconds
"""Seconds of a Go duration, or None (``transport.goduration.seconds``)."""


def _same(option: str) -> Convert:
    return lambda raw: {option: raw}


def _seconds(option: str) -> Convert:
    def convert(raw: str) -> dict[str, str]:
        seconds = duration_seconds(raw)
        if seconds is None:
            raise GoValueError(f"{raw!r} is not a Go duration (e.g. 5s, 500ms, 1m30s)")
        return {option: repr(seconds)}

    return convert


def _whole_seconds(option: str) -> Convert:
    def convert(raw: str) -> dict[str, str]:
        seconds = duration_seconds(raw)
        if seconds is None or seconds != int(seconds):
            raise GoValueError(f"{raw!r} is not a Go duration of whole seconds (e.g. 60s)")
        return {option: str(int(seconds))}

    return convert


_GO_TRUE = frozenset({"1", "t", "true"})
_GO_FALSE = frozenset({"0", "f", "false"})


def go_bool(raw: str) -> bool:
    """Go's ``strconv.ParseBool`` (1, t, true, 0, f, false, in any case)."""
    lowered = raw.strip().lower()
    if lowered in _GO_TRUE:
        return True
    if lowered in _GO_FALSE:
        return False
    raise GoValueError(f"{raw!r} is not a Go bool (true, false, 1, 0, t, f)")


def _switch(option: str) -> Convert:
    return lambda raw: {option: "true" if go_bool(raw) else "false"}


def _rate_limit_force_disable(raw: str) -> dict[str, str]:
    # Go's rate limiter is a wrapper the code adds; forcedisable turns it off whatever the
    # code did. Off by default here too: only "true" has something to say.
    return {"rate_limit_enabled": "false"} if go_bool(raw) else {}


def _serializer(raw: str) -> dict[str, str]:
    names = {"1": "json", "2": "protobuf"}  # Go's serialize.JSON and serialize.PROTOBUF
    name = names.get(raw.strip())
    if name is None:
        raise GoValueError(f"{raw!r} is not a Go serializer type (1: json, 2: protobuf)")
    return {"serializer": name}


def host_and_port(raw: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` for an IPv6 address) split, or None when ``raw`` names
    no port (a bare host, or an IPv6 address without brackets)."""
    text = raw.strip()
    host, colon, port = text.rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit()):
        return None
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1], int(port)
    return (host, int(port)) if ":" not in host else None


def _statsd_host(raw: str) -> dict[str, str]:
    split = host_and_port(raw)
    if split is None:
        raise GoValueError(f"{raw!r} is not host:port (e.g. localhost:9125)")
    return {"metrics_statsd_host": split[0], "metrics_statsd_port": str(split[1])}


def _endpoints(raw: str) -> dict[str, str]:
    # Go splits the variable on commas; a list written with spaces reads the same here.
    endpoints = [item for item in re.split(r"[,\s]+", raw.strip()) if item]
    if not endpoints:
        raise GoValueError("no endpoint")
    return {"etcd_endpoints": ",".join(endpoints)}


@dataclass(frozen=True, slots=True)
class GoSetting:
    """One Go Pitaya variable read here: its Go key, and how its value becomes ours."""

    key: str
    convert: Convert

    @property
    def variable(self) -> str:
        return variable(self.key)


def variable(key: str) -> str:
    """The environment variable viper reads a Go Pitaya key from."""
    return key.replace(".", "_").upper()


GO_SETTINGS: tuple[GoSetting, ...] = (
    GoSetting("pitaya.serializertype", _serializer),
    GoSetting("pitaya.acceptor.proxyprotocol", _switch("proxy_protocol")),
    GoSetting("pitaya.heartbeat.interval", _seconds("heartbeat_interval")),
    GoSetting("pitaya.handler.messages.compression", _switch("compress_data")),
    GoSetting("pitaya.conn.ratelimiting.limit", _same("rate_limit_packets")),
    GoSetting("pitaya.conn.ratelimiting.interval", _seconds("rate_limit_interval")),
    GoSetting("pitaya.conn.ratelimiting.forcedisable", _rate_limit_force_disable),
    GoSetting("pitaya.session.unique", _switch("unique_session")),
    GoSetting("pitaya.session.drain.enabled", _switch("drain_sessions")),
    GoSetting("pitaya.session.drain.timeout", _seconds("drain_timeout")),
    GoSetting("pitaya.metrics.period", _seconds("metrics_period")),
    GoSetting("pitaya.metrics.prometheus.enabled", _switch("metrics_prometheus_enabled")),
    GoSetting("pitaya.metrics.prometheus.port", _same("metrics_prometheus_port")),
    GoSetting("pitaya.metrics.statsd.enabled", _switch("metrics_statsd_enabled")),
    GoSetting("pitaya.metrics.statsd.host", _statsd_host),
    GoSetting("pitaya.metrics.statsd.prefix", _same("metrics_statsd_prefix")),
    GoSetting("pitaya.metrics.statsd.rate", _same("metrics_statsd_rate")),
    GoSetting("pitaya.cluster.rpc.client.nats.connect", _same("nats_url")),
    GoSetting("pitaya.cluster.rpc.server.nats.connect", _same("nats_url")),
    GoSetting("pitaya.cluster.rpc.client.nats.requesttimeout", _seconds("rpc_timeout")),
    GoSetting(
        "pitaya.cluster.rpc.client.nats.connectiontimeout", _seconds("cluster_connect_timeout")
    ),
    GoSetting("pitaya.cluster.rpc.server.grpc.port", _same("grpc_port")),
    GoSetting("pitaya.cluster.info.region", _same("region")),
    GoSetting("pitaya.cluster.sd.etcd.endpoints", _endpoints),
    GoSetting("pitaya.cluster.sd.etcd.prefix", _same("etcd_prefix")),
    GoSetting("pitaya.groups.etcd.prefix", _same("groups_etcd_prefix")),
    GoSetting("pitaya.modules.bindingstorage.etcd.prefix", _same("binding_storage_etcd_prefix")),
    GoSetting("pitaya.cluster.sd.etcd.heartbeat.ttl", _whole_seconds("etcd_lease_ttl")),
    GoSetting("pitaya.cluster.sd.etcd.syncservers.interval", _seconds("server_sync_interval")),
    # pitaya.worker.{concurrency, redis.url, redis.pool, retry.enabled, retry.max,
    # retry.exponential} have our options' names; these three are camel-cased in Go.
    GoSetting("pitaya.worker.retry.minDelay", _same("worker_retry_min_delay")),
    GoSetting("pitaya.worker.retry.maxDelay", _same("worker_retry_max_delay")),
    GoSetting("pitaya.worker.retry.maxRandom", _same("worker_retry_max_random")),
)
"""Go Pitaya's variables with a counterpart here (v3's configuration keys)."""

GO_ONLY: tuple[str, ...] = (
    "pitaya.buffer.agent.messages",
    "pitaya.buffer.handler.localprocess",
    "pitaya.buffer.handler.remoteprocess",
    "pitaya.cluster.rpc.client.grpc.dialtimeout",
    "pitaya.cluster.rpc.client.grpc.requesttimeout",
    "pitaya.cluster.rpc.client.grpc.lazyconnection",
    "pitaya.cluster.rpc.client.nats.maxreconnectionretries",
    "pitaya.cluster.rpc.client.nats.websocketcompression",
    "pitaya.cluster.rpc.client.nats.reconnectjitter",
    "pitaya.cluster.rpc.client.nats.reconnectjittertls",
    "pitaya.cluster.rpc.client.nats.reconnectwait",
    "pitaya.cluster.rpc.client.nats.pinginterval",
    "pitaya.cluster.rpc.client.nats.maxpingsoutstanding",
    "pitaya.cluster.rpc.server.nats.connectiontimeout",
    "pitaya.cluster.rpc.server.nats.maxreconnectionretries",
    "pitaya.cluster.rpc.server.nats.websocketcompression",
    "pitaya.cluster.rpc.server.nats.reconnectjitter",
    "pitaya.cluster.rpc.server.nats.reconnectjittertls",
    "pitaya.cluster.rpc.server.nats.reconnectwait",
    "pitaya.cluster.rpc.server.nats.pinginterval",
    "pitaya.cluster.rpc.server.nats.maxpingsoutstanding",
    "pitaya.cluster.rpc.server.nats.services",
    "pitaya.cluster.rpc.server.nats.buffer.messages",
    "pitaya.cluster.rpc.server.nats.buffer.push",
    "pitaya.cluster.sd.etcd.dialtimeout",
    "pitaya.cluster.sd.etcd.grantlease.maxretries",
    "pitaya.cluster.sd.etcd.grantlease.retryinterval",
    "pitaya.cluster.sd.etcd.grantlease.timeout",
    "pitaya.cluster.sd.etcd.heartbeat.log",
    "pitaya.cluster.sd.etcd.revoke.timeout",
    "pitaya.cluster.sd.etcd.syncservers.parallelism",
    "pitaya.cluster.sd.etcd.shutdown.delay",
    "pitaya.cluster.sd.etcd.servertypeblacklist",
    "pitaya.concurrency.handler.dispatch",
    "pitaya.defaultpipelines.structvalidation.enabled",
    "pitaya.groups.etcd.dialtimeout",
    "pitaya.groups.etcd.endpoints",
    "pitaya.groups.etcd.transactiontimeout",
    "pitaya.groups.memory.tickduration",
    "pitaya.metrics.additionalLabels",
    "pitaya.metrics.constLabels",
    "pitaya.metrics.custom",
    "pitaya.modules.bindingstorage.etcd.dialtimeout",
    "pitaya.modules.bindingstorage.etcd.endpoints",
    "pitaya.modules.bindingstorage.etcd.leasettl",
    "pitaya.session.drain.period",
)
"""Go Pitaya's keys with no counterpart here: a server leaves them alone (and says so)."""

KNOWN_VARIABLES = frozenset(s.variable for s in GO_SETTINGS) | frozenset(map(variable, GO_ONLY))
"""Every Go Pitaya variable this module knows of (none of them is a typo of ours)."""


def read(
    environ: Mapping[str, str], own: frozenset[str] = frozenset()
) -> dict[str, tuple[str, str]]:
    """The options Go Pitaya's variables in ``environ`` set: ``{option: (variable, raw)}``,
    ``raw`` in this framework's syntax. Variables in ``own`` are skipped: they are also the
    names of options here (``PITAYA_HEARTBEAT_INTERVAL`` ...), whose parser reads Go's
    syntax as well as its own. An empty variable is unset, as viper takes it. GoValueError
    (naming the variable) for a value Go would refuse, or when two variables set one option
    differently (Go's client and server NATS URLs: a server here has one NATS connection)."""
    found: dict[str, tuple[str, str]] = {}
    for setting in GO_SETTINGS:
        name = setting.variable
        raw = environ.get(name)
        if not raw or name in own:  # empty: unset, for viper as here (its AllowEmptyEnv)
            continue
        try:
            values = setting.convert(raw)
        except GoValueError as exc:
            raise GoValueError(f"environment variable {name}={raw!r}: {exc}") from None
        for option, value in values.items():
            earlier = found.get(option)
            if earlier is not None and earlier[1] != value:
                raise GoValueError(
                    f"{earlier[0]}={environ[earlier[0]]!r} and {name}={raw!r} set {option} "
                    "to different values: this server has one; set them alike"
                )
            found[option] = (name, value)
    return found


def unused(environ: Mapping[str, str]) -> list[str]:
    """Go Pitaya's variables set in ``environ`` that nothing here reads, sorted."""
    return sorted(name for name in map(variable, GO_ONLY) if name in environ)
