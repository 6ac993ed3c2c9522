"""Server configuration: every option with its default, overridable from the environment.

Environment variables win over code: ``PITAYA_`` + the field name in upper case, e.g.
``PITAYA_HEARTBEAT_INTERVAL=10`` (Pitaya's convention: the key with dots as underscores).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors import pitaya_env
from transport import proxygate
from transport.credentials import mask_url

ENV_PREFIX = "PITAYA_"

UNKNOWN_BODY_FIELDS = ("refuse", "ignore")
"""The values of ``unknown_body_fields``."""


class ConfigError(ValueError):
    """An option that cannot work, found when the app starts (or its environment variable is
    read): ``App.run`` prints it as one line and exits with status 1, no traceback."""


@dataclass(slots=True)
class Config:
    """Options of one server. Defaults match Pitaya's where Pitaya has the option."""

    server_type: str = "game"
    """The type routes may be prefixed with (``<serverType>.<service>.<method>``)."""
    server_id: str = ""
    """Unique id; generated when empty."""
    heartbeat_interval: float = 30.0
    """Seconds between server heartbeats; a client that sends no whole packet for twice this
    is disconnected, checked on the next heartbeat with a slack of 1 s (half the interval if
    shorter) as Go Pitaya's whole-second check gives (the bytes of an unfinished packet do not
    count, as in Pitaya)."""
    handshake_timeout: float = 10.0
    """Seconds a new connection has to complete the handshake."""
    upgrade_timeout: float = 5.0
    """Seconds from its accept a new socket has for its TLS handshake and WebSocket upgrade,
    before the Pitaya handshake (``handshake_timeout``, which also bounds this when it is
    shorter); with ``proxy_protocol``, for the PROXY header too: one budget for all these
    stages together, not one each. Sockets still opening count toward
    ``max_connections``, so this bounds how long slowloris sockets can hold places there;
    real upgrades take milliseconds."""
    proxy_protocol: bool = False
    """Every client connection begins with a PROXY protocol header (HAProxy's v1 or v2) from
    a load balancer (AWS NLB, HAProxy, Envoy) naming the real client, which sessions then
    report as ``remote_address``; a connection without a valid header within
    ``upgrade_timeout`` is closed. TCP and WebSocket acceptors alike, with or without TLS
    (the header comes before the TLS handshake). Go Pitaya's
    ``pitaya.acceptor.proxyprotocol`` (its variable ``PITAYA_ACCEPTOR_PROXYPROTOCOL`` sets
    this too, ``actors.pitaya_env``); ``listen_tcp`` and ``listen_ws`` take
    ``proxy_protocol=`` per acceptor. Turn it on only behind such a balancer: anyone who can
    reach the port directly can claim any address (see ``proxy_protocol_trusted``)."""
    proxy_protocol_trusted: str = ""
    """Networks the PROXY header is accepted from, comma-separated CIDRs
    (``"10.0.0.0/8,fd00::/8"``): the balancers' subnets. Connections from elsewhere are
    closed at accept. Empty: any peer (then firewall the port to the balancers)."""
    serializer: str = "json"
    """Serializer announced in the handshake: ``json``, ``msgpack`` or a registered one."""
    route_dictionary: bool = True
    """Announce a route dictionary in the handshake so clients can send 2-byte route codes."""
    compress_data: bool = False
    """Deflate message payloads sent to clients (flag 0x10) when it makes them smaller. Off,
    unlike Go Pitaya's default: pomelo clients do not inflate, and fail to parse such a body."""
    max_packet_size: int = 1024 * 1024
    """Largest packet body accepted from a client, bytes; larger closes the connection."""
    max_route_length: int = 255
    """Longest route accepted in a client message, bytes."""
    max_handshake_size: int = 8 * 1024
    """Largest handshake body accepted from a client, bytes; larger is answered with code 400
    and the connection closed, as soon as the packet header announces it. A session keeps its
    handshake for its whole life: at ``max_connections`` sessions this bounds that memory
    (100,000 x 8 KiB = 800 MiB at most). Real clients send a few hundred bytes."""
    max_session_buffer: int = 2 * 1024 * 1024
    """Bytes of message bodies one connection may hold at once: the messages waiting for
    their turn (as received, still compressed) plus the body of the message its handler is
    working on (inflated). A message that would go past it is refused like one past
    ``max_pending_requests`` (a request gets ``PIT-429``, a notify is dropped). Compressed
    messages (flag 0x10) are inflated only when their turn comes, one at a time, each within
    1 MiB, so a connection holds at most about this much whatever it sends. The default has
    room for a largest packet waiting behind a largest inflated body."""
    max_connections: int = 100_000
    """Connections accepted at once per server; more are refused at accept."""
    max_partial_bytes: int = 256 * 1024 * 1024
    """Bytes of unfinished packets all of a server's clients may hold at once (what a client
    sent of a packet, WebSocket frame or fragmented message whose end has not come yet; each
    is within ``max_packet_size``). Past it the connections holding the most are dropped
    until the total is back within it, with a warning (at most one per 10 s). Clients that
    finish their packets hold next to nothing; at least twice ``max_packet_size`` + 4."""
    reuse_port: bool = False
    """Listen with ``SO_REUSEPORT``: frontends of one type on one machine share their client
    ports, one process per core, and the kernel spreads connections across them (set for
    every server of an entry by the launcher's ``reuse_port = true``)."""
    max_pending_requests: int = 64
    """Messages of one session waiting for their turn; past it requests get ``PIT-429``."""
    max_concurrent_handlers: int = 10_000
    """Handler invocations that may be running at once on this server (client messages and
    inbound RPCs whose method is still awaiting something); past it new requests get
    ``PIT-429`` and notifies are dropped and counted. Pitaya's ``dispatch`` concurrency is
    25 goroutines; an asyncio task costs far less, hence the higher default. Bounds the memory
    that slow handlers (a database, an RPC) can hold under load."""
    gc_threshold: int = 10_000
    """While this server runs, the garbage collector's young-generation threshold is at least
    this (Python's default is 700; ``gc.set_threshold``'s first value). Fewer collections
    per request, and the objects of handlers that are awaiting no longer get promoted to the
    older generations, whose full collections walk every session; see ``actors.gcthreshold``
    for the measurements. Process-wide, put back when the last server stops; 0 leaves the
    process's setting alone."""
    max_write_buffer: int = 4 * 1024 * 1024
    """Bytes queued for a client that does not read before it is disconnected."""
    mailbox_limits: dict[str, int] = field(default_factory=dict)
    """Mailbox limit per actor kind, by class name (``{"Room": 10_000}``), applied at spawn.
    It overrides the class's own ``max_mailbox`` (``SessionActor``: 4096; others unbounded);
    0 removes a limit. A message to a full mailbox is dropped and counted (``system.dropped``,
    metric ``actor_dropped_messages``); a session actor also disconnects its client then.
    Environment: ``PITAYA_MAILBOX_LIMITS="Room=10000,SessionActor=8192"``."""
    rate_limit_enabled: bool = False
    """Limit the data messages each connection may send (a token bucket per connection,
    Pitaya's rate-limiting acceptor wrapper; off by default as in Pitaya). Heartbeats and the
    handshake never count."""
    rate_limit_packets: int = 20
    """Messages a connection may send per ``rate_limit_interval`` (also the burst size)."""
    rate_limit_interval: float = 1.0
    """Seconds in which ``rate_limit_packets`` messages are allowed."""
    rate_limit_action: str = "drop"
    """Over the limit: ``drop`` the message (Pitaya's behaviour) or ``error``: answer a
    request with ``PIT-429`` (a notify is dropped either way). Always counted
    (``app.stats.rate_limited``, metric ``exceeded_rate_limiting``)."""
    unknown_body_fields: str = "refuse"
    """What a handler's (or remote's) dataclass body does with keys of the client's map that
    are no field of it, its own or a nested dataclass's: ``refuse`` them (``PIT-400``
    naming them) or ``ignore`` them (dropped), as Go Pitaya does (``encoding/json`` drops
    unknown fields), so a newer client sending a field an older server does not know yet
    keeps working. Decided where the body is decoded: for a forwarded message, by the
    backend that runs its handler."""
    unique_session: bool = False
    """One session per uid on a frontend: binding a uid kicks its older session, here or on
    another frontend of the type (the ``UniqueSession`` module, registered at start unless
    one is already; register it yourself for ``on_conflict="refuse"``). Go Pitaya's
    ``pitaya.session.unique`` (``PITAYA_SESSION_UNIQUE``), which is on by default on Go's
    cluster frontends; off by default here, where it always was a module of your choice."""
    drain_sessions: bool = False
    """On SIGTERM/SIGINT, stop accepting and wait for clients to leave before stopping
    (off by default, as in Pitaya); a second signal skips the wait."""
    drain_timeout: float = 60.0
    """Longest wait for clients to leave when draining, seconds."""
    shutdown_timeout: float = 10.0
    """Seconds the steps of a graceful stop share once the server has stopped accepting and
    left discovery (the drain aside): the requests in flight, then the closed sessions'
    close callbacks, then the modules' shutdown. Past it, close callbacks still get 2 s and
    each module step 0.5 s; closing NATS and etcd comes after (``actors.lifecycle``)."""
    game: str = ""
    """Name of the game; the ``game`` constant label of Prometheus metrics (Pitaya's
    ``pitaya.game``)."""
    metrics_period: float = 1.0
    """Seconds between samples of the sampled metrics (connected clients, mailbox depths,
    dropped messages, dead letters); only sampled when a metrics reporter is registered."""
    metrics_prometheus_enabled: bool = False
    """Serve Prometheus metrics over HTTP on ``/metrics`` (Pitaya's
    ``pitaya.metrics.prometheus.enabled``)."""
    metrics_prometheus_host: str = "0.0.0.0"
    """Interface the Prometheus endpoint listens on (all of them, like Pitaya)."""
    metrics_prometheus_port: int = 9090
    """Port of the Prometheus endpoint (0 picks a free one)."""
    metrics_statsd_enabled: bool = False
    """Send metrics to a statsd server over UDP (Pitaya's ``pitaya.metrics.statsd.enabled``)."""
    metrics_statsd_host: str = "localhost"
    """statsd server host (resolved once at start)."""
    metrics_statsd_port: int = 9125
    """statsd server port (9125: the Prometheus statsd_exporter's, Pitaya's default)."""
    metrics_statsd_prefix: str = "pitaya."
    """Prepended verbatim to every statsd metric name."""
    metrics_statsd_rate: float = 1.0
    """statsd sample rate: the fraction of reports sent (1.0: all)."""
    tracing_enabled: bool = False
    """Trace handler calls and RPCs with OpenTelemetry's global tracer provider (needs the
    ``tracing`` extra); ``App.enable_tracing(provider)`` does the same in code."""
    event_loop: str = "auto"
    """The event loop ``App.run`` serves on: ``auto`` (uvloop when installed, else asyncio's),
    ``asyncio`` or ``uvloop`` (an error when it is not installed). See ``actors.eventloop``."""
    log_format: str = "text"
    """How ``App.run`` writes logs: ``text`` (``time LEVEL logger [server-id] message``) or
    ``json`` (one object per line with ``server_id``, ``session_id``..., for log collectors).
    See ``actors.logs``."""
    log_level: str = "info"
    """The level ``App.run`` gives the root logger when nothing set logging up before it (no
    handler, Python's default level: warnings only, so a server would say nothing of starting
    and listening): ``debug``, ``info``, ``warning``, ``error`` or ``critical``. A program
    that set logging up, or chose a level, keeps its own."""
    mode: str = "standalone"
    """``standalone`` (no NATS, no etcd) or ``cluster`` (needs etcd, and NATS unless
    ``rpc_transport`` is ``grpc``)."""
    frontend: bool | None = None
    """Whether clients connect to this server; None: true when it has listeners."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Published in service discovery (e.g. region, version); routers may read it. Strings
    only, keys and values: Go Pitaya reads it as ``map[string]string`` (checked at start)."""
    rpc_transport: str = "nats"
    """How cluster servers send each other RPCs: ``nats`` (Pitaya's default) or ``grpc``
    (each server listens on ``grpc_host:grpc_port``; needs the binding storage module and no
    NATS). See ``actors.cluster.rpc``."""
    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server(s) for cluster RPCs, comma-separated (``rpc_transport="nats"``). Credentials
    may be in the URL (``nats://user:password@host:4222``, ``nats://token@host:4222``), as in
    Go Pitaya, or in the ``nats_*`` options below; they are never logged."""
    nats_user: str = ""
    """NATS user (with ``nats_password``; the server's ``authorization { users }``)."""
    nats_password: str = field(default="", repr=False)
    """Password of ``nats_user``."""
    nats_token: str = field(default="", repr=False)
    """NATS token (the server's ``authorization { token }``)."""
    nats_nkey_seed: str = ""
    """Path of a file holding an NKey seed (``SU...``): this server signs the NATS server's
    challenge with it (the server lists the matching public key ``U...``)."""
    nats_creds: str = ""
    """Path of a NATS ``.creds`` file (a user JWT and its NKey seed, decentralised auth)."""
    nats_tls_ca: str = ""
    """PEM file of the CA that signed the NATS server's certificate; setting it (or a client
    certificate) turns TLS on (``tls://`` URLs do too)."""
    nats_tls_cert: str = ""
    """PEM client certificate presented to NATS (the server's ``tls { verify: true }``)."""
    nats_tls_key: str = ""
    """PEM private key of ``nats_tls_cert``."""
    grpc_host: str = "127.0.0.1"
    """Interface the gRPC RPC server listens on (``rpc_transport="grpc"``). It is also the
    host advertised to the other servers (discovery metadata ``grpcHost``, Pitaya's key),
    unless ``metadata`` sets ``grpcHost``; ``0.0.0.0`` advertises this machine's hostname."""
    grpc_port: int = 0
    """Port of the gRPC RPC server; 0 picks a free one. Advertised as ``grpcPort``."""
    region: str = ""
    """This server's region (Go Pitaya's ``pitaya.cluster.info.region``). Over gRPC a peer
    that advertises ``grpc-external-host``/``grpc-external-port`` (Go's
    ``AddGRPCInfoToMetadata``) is dialed there when its ``region`` differs from this one, or
    when it names none, as Go's client does. To be reached that way too, put ``region`` and
    the external keys in ``metadata``."""
    grpc_tls_ca: str = ""
    """PEM file of the CA of the cluster's gRPC certificates. With ``grpc_tls_cert`` and
    ``grpc_tls_key`` it turns on mutual TLS: the gRPC server presents its certificate and
    accepts only clients with a certificate signed by this CA; the client checks the peer's
    certificate against it and presents its own. Every server of the cluster needs all
    three (``rpc_transport="grpc"``)."""
    grpc_tls_cert: str = ""
    """PEM certificate of this server (used as server and as client certificate)."""
    grpc_tls_key: str = ""
    """PEM private key of ``grpc_tls_cert``."""
    grpc_tls_server_name: str = ""
    """Name the peers' certificates are checked against, when not the advertised
    ``grpcHost`` (e.g. one certificate for ``pitaya-cluster`` shared by every server)."""
    etcd_endpoints: str = "127.0.0.1:2379"
    """etcd endpoints ``host:port`` for service discovery, comma-separated."""
    etcd_prefix: str = "pitaya/"
    """Prefix of the keys in etcd: servers ``<prefix>servers/<type>/<id>`` (Go Pitaya's
    ``pitaya.cluster.sd.etcd.prefix``), and the groups' and binding storage's unless their
    own prefixes say otherwise. Servers see each other only with the same prefix; one etcd
    can host several clusters with different prefixes."""
    groups_etcd_prefix: str = ""
    """Prefix of the etcd groups' keys, ``<prefix>groups/<name>`` (Go Pitaya's
    ``pitaya.groups.etcd.prefix``); empty: ``etcd_prefix``. Go Pitaya's three prefixes are
    set apart, each ``pitaya/`` by default: a server given Go's discovery variable
    (``PITAYA_CLUSTER_SD_ETCD_PREFIX``) takes Go's layout, this one ``pitaya/`` unless
    ``PITAYA_GROUPS_ETCD_PREFIX`` (or this option) says otherwise."""
    binding_storage_etcd_prefix: str = ""
    """Prefix of the binding storage's keys, ``<prefix>bindings/<frontendType>/<uid>`` (Go
    Pitaya's ``pitaya.modules.bindingstorage.etcd.prefix``); empty: ``etcd_prefix``. As
    ``groups_etcd_prefix``: ``pitaya/`` beside Go's discovery variable, as in Go, unless
    ``PITAYA_MODULES_BINDINGSTORAGE_ETCD_PREFIX`` says otherwise."""
    etcd_user: str = ""
    """etcd user (etcd's ``auth enable``; Go Pitaya's ``pitaya.cluster.sd.etcd.user``)."""
    etcd_password: str = field(default="", repr=False)
    """Password of ``etcd_user`` (Go Pitaya's ``pitaya.cluster.sd.etcd.pass``)."""
    etcd_tls_ca: str = ""
    """PEM file of the CA that signed etcd's certificate; setting it turns TLS on."""
    etcd_tls_cert: str = ""
    """PEM client certificate presented to etcd (its ``--client-cert-auth``); needs the CA."""
    etcd_tls_key: str = ""
    """PEM private key of ``etcd_tls_cert``."""
    etcd_tls_server_name: str = ""
    """Name etcd's certificate is checked against, when not the endpoints' host (needed with
    several endpoints, e.g. ``etcd.internal``)."""
    nats_outage_log_interval: float = 30.0
    """While NATS is unreachable: seconds between the summaries logged (how long, how many
    reconnection attempts failed, the last cause). Credentials or a certificate NATS refuses
    are an error line at once."""
    etcd_outage_log_interval: float = 30.0
    """While etcd is unreachable: seconds between the summaries logged (how long, how many
    operations failed). The outage's start is a warning and its end an info line, once per
    process, whatever fails meanwhile (group operations, binding lookups, the lease)."""
    rpc_timeout: float = 5.0
    """Seconds an RPC (forwarded request or user RPC) may take before ``PIT-408``."""
    etcd_lease_ttl: int = 60
    """TTL of this server's discovery lease; it is refreshed every TTL/3."""
    server_sync_interval: float = 120.0
    """Seconds between full re-reads of the server table (repairs missed watch events)."""
    cluster_connect_timeout: float = 5.0
    """Seconds to reach NATS (with the NATS transport) and etcd at start-up before failing
    with a clear error."""
    worker_redis_url: str = "localhost:6379"
    """Redis of the worker's job queue (``app.reliable_rpc``, ``app.start_worker``): Pitaya's
    ``host:port`` form or a ``redis://`` URL (``pitaya.worker.redis.url``)."""
    worker_redis_password: str = field(default="", repr=False)
    """Redis password (never logged nor shown in ``repr``)."""
    worker_redis_pool: int = 10
    """Most connections to Redis at once (``pitaya.worker.redis.pool``)."""
    worker_namespace: str = ""
    """Prefix of the worker's Redis keys (``<ns>:queue:rpc``...); empty: none, as in Pitaya."""
    worker_concurrency: int = 1
    """Jobs this server runs at once (Pitaya's default is 1: one slow job holds the queue)."""
    worker_retry_enabled: bool = True
    """Failed jobs are tried again (``pitaya.worker.retry.enabled``)."""
    worker_retry_max: int = 2
    """go-workers' ``retry_max``: a job runs until its recorded retry count reaches it (with
    2, four runs at most: go-workers records the first two failures both as retry 0)."""
    worker_retry_exponential: int = 5
    """Delay before retry *n*: ``min(n ** exponential + min_delay + rand * (n + 1),
    max_delay)`` seconds, ``rand`` in ``[0, max_random)`` (go-workers' rule)."""
    worker_retry_min_delay: int = 10
    """See ``worker_retry_exponential``, seconds."""
    worker_retry_max_delay: int = 10
    """See ``worker_retry_exponential``, seconds."""
    worker_retry_max_random: int = 0
    """See ``worker_retry_exponential``, seconds."""
    worker_poll_interval: float = 15.0
    """Seconds between moves of due retries back into the queue (go-workers' 15)."""
    worker_process_id: str = ""
    """Names this process's in-progress list in Redis, whose jobs the next start with the
    same id runs again; empty: the host name (go-workers'). Give each worker process of a
    host its own."""
    worker_stop_timeout: float = 5.0
    """On stop, seconds the jobs under way may take; the others stay in progress."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form options for modules and user code."""

    def __post_init__(self) -> None:
        # An option in seconds given as a Go duration ("10s", "1m30s"), as its PITAYA_
        # variable may be: read the same way. Anything else is left to check_config.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in SECONDS or not isinstance(value, str):
                continue
            with contextlib.suppress(ValueError):  # a fraction for whole seconds: refused later
                seconds = _go_duration(value, type(f.default))
                if seconds is not None:
                    setattr(self, f.name, seconds)

    def __repr__(self) -> str:
        """Every option but the secrets: passwords and tokens left out, credentials in
        ``nats_url`` and ``worker_redis_url`` masked (a config may end up in a log line)."""
        shown = []
        for f in dataclasses.fields(self):
            if f.repr:
                value = getattr(self, f.name)
                if f.name == "nats_url":
                    value = ",".join(mask_url(url.strip()) for url in str(value).split(","))
                elif f.name == "worker_redis_url":
                    value = mask_url(str(value))
                shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then ``overrides``, then ``PITAYA_*`` variables (which win)."""
        config = cls(**overrides)
        config.apply_env(os.environ if environ is None else environ)
        return config

    def apply_env(self, environ: Mapping[str, str]) -> None:
        """Set the options ``environ`` names: ``PITAYA_<OPTION>``, and Go Pitaya's variables
        for the options it shares (``actors.pitaya_env``: ``PITAYA_CLUSTER_SD_ETCD_ENDPOINTS``
        sets ``etcd_endpoints``...). Durations may be written as Go's (``5s``, ``500ms``), and
        ``PITAYA_METRICS_STATSD_HOST`` as Go's ``host:port``. A ``PITAYA_<OPTION>`` and a Go
        variable setting one option differently is a ConfigError: one of them is wrong."""
        fields = [
            f for f in dataclasses.fields(self) if f.name not in ("extra", "metadata", "frontend")
        ]
        own = frozenset(ENV_PREFIX + f.name.upper() for f in fields)
        try:
            theirs = pitaya_env.read(environ, own)
        except pitaya_env.GoValueError as exc:
            raise ConfigError(str(exc)) from None
        for f in fields:
            variable = ENV_PREFIX + f.name.upper()
            kind = type(getattr(self, f.name))
            raw = environ.get(variable)
            value = None if raw is None else _parse(f.name, raw, kind)
            go = theirs.get(f.name)
            if go is not None:
                go_value = _parse(f.name, go[1], kind, go[0])
                if raw is not None and value != go_value:
                    raise ConfigError(
                        f"{variable}={raw!r} and Go Pitaya's {go[0]}={environ[go[0]]!r} set "
                        f"{f.name} differently: keep one of them"
                    )
                value = go_value
            if value is not None:
                setattr(self, f.name, value)
        if "etcd_prefix" in theirs:
            # Go's variable, Go's layout: its groups and binding storage keep prefixes of
            # their own, "pitaya/" unless their variables (read above) set them.
            for name in ("groups_etcd_prefix", "binding_storage_etcd_prefix"):
                if not getattr(self, name):
                    setattr(self, name, GO_DEFAULT_ETCD_PREFIX)
        self._split_statsd_host(environ)

    def _split_statsd_host(self, environ: Mapping[str, str]) -> None:
        # Go Pitaya's pitaya.metrics.statsd.host is host:port, and its variable has our name.
        variable = ENV_PREFIX + "METRICS_STATSD_HOST"
        split = pitaya_env.host_and_port(environ.get(variable, ""))
        if split is None:
            return
        port_variable = ENV_PREFIX + "METRICS_STATSD_PORT"
        if port_variable in environ and self.metrics_statsd_port != split[1]:
            raise ConfigError(
                f"{variable}={environ[variable]!r} and {port_variable}="
                f"{environ[port_variable]!r} name different ports: keep one of them"
            )
        self.metrics_statsd_host, self.metrics_statsd_port = split


GO_DEFAULT_ETCD_PREFIX = "pitaya/"
"""Go Pitaya's default for each of its etcd prefixes (discovery, groups, binding storage)."""


def groups_prefix(config: Config) -> str:
    """Where the etcd groups' keys live: ``groups_etcd_prefix``, else ``etcd_prefix``."""
    return config.groups_etcd_prefix or config.etcd_prefix


def bindings_prefix(config: Config) -> str:
    """Where the binding storage's keys live: ``binding_storage_etcd_prefix``, else
    ``etcd_prefix``."""
    return config.binding_storage_etcd_prefix or config.etcd_prefix


def option_default(name: str) -> Any:
    """The default of option ``name``: where another class holds the same setting (the
    worker's ``WorkerOptions`` and ``RetryOptions``), its default is read from here, so the
    two cannot drift apart. AttributeError for a name that is no option."""
    f = Config.__dataclass_fields__.get(name)
    if f is None or f.default is dataclasses.MISSING:
        raise AttributeError(f"Config has no option {name!r} with a plain default")
    return f.default


def env_option(environ: Mapping[str, str], name: str) -> Any:
    """Option ``name`` as a server started with ``environ`` reads it: its ``PITAYA_*``
    variable (or Go Pitaya's) parsed as :meth:`Config.apply_env` parses it, else the
    default. ConfigError when a variable is not valid (that server refuses to start). What
    the launcher reads of its servers' environments (``actors.launch.config``)."""
    return getattr(Config.from_env(environ), name)


def misspelt_env(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``PITAYA_*`` variables that name no option but nearly name one: (the variable, the
    option's variable). A typo would otherwise leave the default silently; variables far
    from every option (Go Pitaya's own, say, in a shared environment) are left alone."""
    known = [f.name.upper() for f in dataclasses.fields(Config)]
    found = []
    for variable in sorted(environ):
        name = variable.removeprefix(ENV_PREFIX)
        if name == variable or name in known or variable in pitaya_env.KNOWN_VARIABLES:
            continue
        close = [option for option in known if _edits(name, option) <= _typo_edits(option)]
        if close:
            found.append((variable, ENV_PREFIX + min(close, key=lambda o: _edits(name, o))))
    return found


def _typo_edits(option: str) -> int:
    """Letters added, dropped or changed that still make a typo of ``option``'s name: two,
    one for a short name (``MODE`` is two letters away from ``NAME``)."""
    return 1 if len(option) < 8 else 2


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (``a`` and ``b`` are short: option names)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


_AT_LEAST_ZERO = frozenset(
    {
        "heartbeat_interval",
        "drain_timeout",
        "shutdown_timeout",
        "gc_threshold",
        "grpc_port",
        "metrics_prometheus_port",
        "worker_retry_max",
        "worker_retry_exponential",
        "worker_retry_min_delay",
        "worker_retry_max_delay",
        "worker_retry_max_random",
        "worker_stop_timeout",
    }
)
"""Numeric options for which 0 means something (no heartbeat, no wait, a free port...)."""

_PORTS = frozenset({"grpc_port", "metrics_prometheus_port", "metrics_statsd_port"})


def check_config(config: Config) -> None:
    """Raise :class:`ConfigError` naming the first option that cannot work: a number of the
    wrong type, not finite, or out of its range (sizes, limits, timeouts and intervals are
    positive; the options of :data:`_AT_LEAST_ZERO` may be 0; ports are at most 65535;
    a server type is not empty and has no dot, since routes split at the dots;
    ``metrics_statsd_rate`` is a fraction; ``max_partial_bytes`` holds a largest packet
    twice). Run when the app starts, before anything uses them: a bad value otherwise
    surfaces later, for example as every handshake failing."""
    if not config.server_type:
        raise ConfigError(
            "server_type must not be empty: routes name a server type ([serverType.]...)"
        )
    if "." in config.server_type:
        raise ConfigError(
            f"server_type {config.server_type!r} has a dot: routes are "
            "[serverType.]service.method, split at the dots, so no route would reach its "
            f"servers (name it {config.server_type.replace('.', '_')!r}, say)"
        )
    _check_metadata(config.metadata)
    for f in dataclasses.fields(config):
        default = f.default
        if type(default) not in (int, float):
            continue
        name = f.name
        value = getattr(config, name)
        whole = type(default) is int
        at_least_zero = name in _AT_LEAST_ZERO
        wanted = (
            f"{'a whole number' if whole else 'a number'} {'>= 0' if at_least_zero else '> 0'}"
            f"{' and <= 65535 (a port)' if name in _PORTS else ''}"
        )
        if (
            isinstance(value, bool)
            or not isinstance(value, int if whole else (int, float))
            or not math.isfinite(value)
            or value < 0
            or (value == 0 and not at_least_zero)
            or (name in _PORTS and value > 65535)
        ):
            raise ConfigError(f"{name} must be {wanted}, not {value!r}")
    if config.max_partial_bytes < 2 * (config.max_packet_size + 4):
        raise ConfigError(
            f"max_partial_bytes ({config.max_partial_bytes}) must be at least twice "
            f"max_packet_size + 4 ({2 * (config.max_packet_size + 4)}): one client's largest "
            "packet must fit, twice over (its WebSocket frame, then the packet)"
        )
    proxy_protocol_trusted(config)
    if config.unknown_body_fields not in UNKNOWN_BODY_FIELDS:
        raise ConfigError(
            f"unknown_body_fields must be one of {', '.join(UNKNOWN_BODY_FIELDS)}, "
            f"not {config.unknown_body_fields!r}"
        )
    if config.metrics_statsd_rate > 1:
        raise ConfigError(
            f"metrics_statsd_rate is the fraction of reports sent (0 < rate <= 1), "
            f"not {config.metrics_statsd_rate!r}"
        )


def _check_metadata(metadata: object) -> None:
    """Discovery metadata is Go Pitaya's ``map[string]string``: a Go server reads a server's
    etcd entry into it, and one value of another type (a number, a bool) fails the whole
    entry, so every Go server skips this one (a warning in its own log) while our servers,
    which read any value as text, route to it. Refused at the start, naming the key."""
    if not isinstance(metadata, dict):
        raise ConfigError(f"metadata must be a dict of strings, not {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                f"metadata {key!r}: {value!r} is not a string: keys and values are strings, "
                "as Go Pitaya reads them (a Go server would skip this server)"
            )


def proxy_protocol_trusted(config: Config) -> tuple[str, ...]:
    """``proxy_protocol_trusted`` as a tuple of CIDRs; ConfigError naming the first
    that is not one (checked when an acceptor is made from it, and at start)."""
    cidrs = tuple(c.strip() for c in config.proxy_protocol_trusted.split(",") if c.strip())
    for cidr in cidrs:
        try:
            proxygate.network(cidr)
        except ValueError:
            raise ConfigError(
                f"proxy_protocol_trusted: {cidr!r} is not a network in CIDR notation "
                "(e.g. 10.0.0.0/8)"
            ) from None
    return cidrs


TRUE_WORDS = frozenset({"1", "true", "yes", "on", "t"})
"""How a ``PITAYA_*`` variable says yes to a switch (any case, spaces around). ``t`` and
``f`` are Go's (strconv.ParseBool): some of these variables are Go Pitaya's too
(``PITAYA_METRICS_PROMETHEUS_ENABLED`` ...), written in its syntax (``actors.pitaya_env``)."""

FALSE_WORDS = frozenset({"0", "false", "no", "off", "f"})


SECONDS = frozenset(
    {
        "heartbeat_interval",
        "handshake_timeout",
        "upgrade_timeout",
        "rate_limit_interval",
        "drain_timeout",
        "shutdown_timeout",
        "metrics_period",
        "nats_outage_log_interval",
        "etcd_outage_log_interval",
        "rpc_timeout",
        "etcd_lease_ttl",
        "server_sync_interval",
        "cluster_connect_timeout",
    }
)
"""Options in seconds: their variables take a number or a Go duration (``1m30s``)."""


def _go_duration(raw: str, kind: type) -> Any:
    """``raw`` read as a Go duration, in seconds of ``kind`` (``int`` or ``float``); None when
    it is none; ValueError for a fraction of a second where ``kind`` is ``int``."""
    seconds = pitaya_env.duration_seconds(raw)
    if seconds is None:
        return None
    if kind is int and seconds != int(seconds):
        raise ValueError(raw)
    return kind(seconds)


def _parse(name: str, raw: str, kind: type, variable: str = "") -> Any:
    variable = variable or ENV_PREFIX + name.upper()
    try:
        if name in SECONDS and (seconds := _go_duration(raw, kind)) is not None:
            return seconds
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered not in TRUE_WORDS | FALSE_WORDS:
                raise ValueError(raw)
            return lowered in TRUE_WORDS
        if kind is dict:  # mailbox_limits: "Kind=N,Kind=N"
            pairs = (item.partition("=") for item in raw.split(",") if item.strip())
            return {key.strip(): int(value) for key, _, value in pairs}
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(
            f"environment variable {variable}={raw!r} is not a valid {kind.__name__}"
            f"{' (seconds, or a Go duration: 5s, 500ms)' if name in SECONDS else ''}"
        ) from exc
