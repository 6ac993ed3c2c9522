"""The application: one game server process (Pitaya's ``pitaya.App`` / builder).

A standalone server in a few lines::

    app = App(server_type="chat")
    app.register(Room)
    app.listen_tcp("127.0.0.1", 3250)
    app.listen_ws("127.0.0.1", 3251)
    app.run()  # until SIGINT/SIGTERM, then a graceful stop

Or inside a running loop (tests, embedding): ``async with app: ...``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from actors.cluster.jobs import RetryOptions
from actors.cluster.rpcjob import RPCJob
from actors.cluster.session_events import BIND, CLOSE, RemoteSessionCallback, RemoteSessionEvents
from actors.cluster.worker import Worker, worker_options
from actors.config import Config, ConfigError, proxy_protocol_trusted
from actors.errors import FrontendOnly
from actors.eventloop import loop_factory
from actors.groups import GroupService, MemoryGroupService
from actors.handler import Handler, Remote, check_service
from actors.invocation import Invoker, LocalRoute
from actors.kernel import ActorRef
from actors.lifecycle import Blueprint, Lifecycle
from actors.logs import ServerLog, Throttle, configure_logging
from actors.metrics.handler import ForwardedRoutes
from actors.metrics.reporter import Metrics, Reporter
from actors.modules.base import Module, Modules
from actors.payload import encode_result
from actors.pipeline import Pipeline
from actors.readiness import Readiness
from actors.session import SendFrame
from actors.sessions.registry import SessionCallback, SessionRegistry
from actors.stats import AppStats
from actors.system import ActorSystem
from actors.tally import Tally
from actors.tracing import Tracing
from transport.acceptor import Acceptor, ConnectionLimits
from transport.handshake import HandshakeRequest
from transport.jobstore import JobStore
from transport.message import Message, MessageType, RouteDictionary, encode_message
from transport.packet import PacketType, encode_packet
from transport.partial import PartialBudget
from transport.serializers import JsonSerializer, Serializer, get_serializer
from transport.tcp import TcpAcceptor
from transport.websocket import HttpHandler, WebSocketAcceptor

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from actors.cluster.cluster import Cluster
    from actors.cluster.discovery import ServerInfo, ServiceDiscovery
    from actors.cluster.host import ClusterHost
    from actors.cluster.router import RouteFunction
    from actors.cluster.rpc import RPCClient, RPCServer
    from actors.handler import HandlerApp
    from actors.lifecycle import LifecycleHost
    from actors.modules.host import ModuleHost
    from actors.session import Session

log = logging.getLogger(__name__)

HandshakeValidator = Callable[[HandshakeRequest], Any]


class App:
    """A game server: handlers, listeners, sessions, lifecycle. See the module docstring."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        discovery: ServiceDiscovery | None = None,
        rpc: tuple[RPCClient, RPCServer] | None = None,
        job_store: JobStore | None = None,
        **options: Any,
    ) -> None:
        """A :class:`Config`, or its fields as keyword ``options`` (``PITAYA_*`` environment
        variables fill in the rest).

        In cluster mode, ``discovery`` (a :class:`~actors.cluster.discovery.ServiceDiscovery`)
        and ``rpc`` (an RPC client and server, ``actors.cluster.rpc``) replace the etcd
        discovery and the ``rpc_transport`` the config would build: your own, or the
        in-memory ones of :class:`actors.testing.MemoryCluster`, which put several apps of
        one process in one cluster without NATS or etcd::

            network = MemoryCluster()
            room = App(
                server_type="room",
                mode="cluster",
                discovery=network.discovery(),
                rpc=network.rpc(),
            )

        ``job_store`` replaces the worker's Redis (``transport.jobstore``; the in-memory
        ``transport.jobstore_memory.MemoryJobStore`` in tests).
        """
        self.config = config if config is not None else Config.from_env(**options)
        if config is not None and options:
            raise TypeError("pass either a Config or keyword options, not both")
        if (discovery is not None or rpc is not None) and self.config.mode != "cluster":
            raise ValueError("discovery and rpc are the cluster's seams: add mode='cluster'")
        if not self.config.server_id:
            self.config.server_id = f"{self.config.server_type}-{uuid.uuid4().hex[:8]}"
        self.server_id = self.config.server_id
        self.server_type = self.config.server_type
        self.system = ActorSystem(self.server_id, self.config.mailbox_limits)
        self.sessions = SessionRegistry()
        self.pipeline = Pipeline()
        self.stats = AppStats()
        self.partial_budget = PartialBudget(
            self.config.max_partial_bytes, ServerLog(log, self.server_id)
        )
        """What all clients hold of unfinished packets, against ``max_partial_bytes``."""
        self.protocol_errors = Throttle()
        """Clients' protocol errors are logged at info once per 10 s (each at debug)."""
        self.forwarded_routes = ForwardedRoutes()
        """The labels of forwarded routes' response times (made-up routes: ``unknown``)."""
        self.unknown_routes = Throttle()
        """Clients' notifies to routes nobody serves: logged the same way."""
        self.kicks = Throttle()
        """Kicked sessions: logged the same way (a stop, a maintenance kick by uid or a
        network blip ends thousands of sessions at once: one line each was a flood)."""
        self.heartbeat_timeouts = Throttle()
        """Sessions ended by a heartbeat timeout: logged the same way."""
        self.unwritable = Throttle()
        """Answers and pushes no packet can carry (too large, a route too long), never
        written: at warning, the same way (a client may ask for one again and again)."""
        self.serializer: Serializer = get_serializer(self.config.serializer)
        self.fallback_serializer: Serializer = JsonSerializer()
        self.handshake_validators: list[tuple[str, HandshakeValidator]] = []
        self.local_routes: dict[str, LocalRoute] = {}
        self.route_dictionary: RouteDictionary | None = None
        self.groups: GroupService = MemoryGroupService(
            self.system, self.sessions, self.encode_push, self.server_id
        )
        self.metrics = Metrics()
        """Where the framework reports metrics; fans out to :meth:`add_metrics_reporter`'s."""
        self.tracing = Tracing(self.server_id, self.server_type)
        """Starts the framework's OpenTelemetry spans once :meth:`enable_tracing` was called."""
        self.modules = Modules(self.server_id, self.config.shutdown_timeout)
        """Registered modules in start order (see ``actors.modules.base`` for when they run)."""
        self.remote_routes: dict[str, LocalRoute] = {}
        """User-RPC routes served here (``serverType.service.method``), never by clients."""
        self.cluster: Cluster | None = None
        """Set on start in cluster mode: discovery, router, RPC transport and bridge."""
        self._parts = Blueprint(discovery=discovery, rpc=rpc)
        """What is registered before the start (handlers, remotes, listeners, seams)."""
        self.remote_session_events = RemoteSessionEvents()
        """Backends: bind/close events of sessions this server served (see on_remote_*)."""
        self.requests_in_flight = Tally()
        """Client messages and inbound RPCs being handled; a graceful stop waits for none."""
        self.connections = Tally()
        """Sessions whose teardown has not finished; draining and stopping wait for none."""
        self.invoker = Invoker(
            self.serializer,
            self.pipeline,
            self.metrics,
            self.requests_in_flight,
            self.config.max_concurrent_handlers,
            self.server_id,
            ignore_unknown_fields=self.config.unknown_body_fields == "ignore",
        )
        """Runs route methods for clients and forwarded messages (``actors.invocation``)."""
        self._lifecycle = Lifecycle(self, self._parts)
        """Starts, serves and stops this server, and owns its running state."""
        self._job_store = job_store
        self._worker: Worker | None = None

    # -- building --------------------------------------------------------------------------

    def register(self, handler_class: type[Handler], *args: Any, **kwargs: Any) -> None:
        """Serve ``handler_class(*args, **kwargs)`` as a handler actor (spawned on start)."""
        self._lifecycle.require_not_started("register handlers")
        if not (isinstance(handler_class, type) and issubclass(handler_class, Handler)):
            raise TypeError(f"{handler_class!r} is not a Handler subclass")
        if issubclass(handler_class, Remote):
            # Registered as a handler, its routes would answer clients: a Remote's never do.
            raise TypeError(
                f"{handler_class.__name__} is a Remote: register it with app.register_remote "
                "(its routes answer RPCs from other servers, never clients)"
            )
        check_service(handler_class, [cls for cls, _, _ in self._parts.handlers], "handler")
        self._parts.handlers.append((handler_class, args, kwargs))

    def register_remote(self, remote_class: type[Remote], *args: Any, **kwargs: Any) -> None:
        """Serve ``remote_class`` as a remote actor: its routes answer user RPCs only."""
        self._lifecycle.require_not_started("register remotes")
        if not (isinstance(remote_class, type) and issubclass(remote_class, Remote)):
            raise TypeError(f"{remote_class!r} is not a Remote subclass")
        check_service(remote_class, [cls for cls, _, _ in self._parts.remotes], "remote")
        self._parts.remotes.append((remote_class, args, kwargs))

    def add_route(self, server_type: str, fn: RouteFunction) -> None:
        """Cluster: choose the server of ``server_type`` with ``fn(session, route, servers)``."""
        self._parts.custom_routes[server_type] = fn
        if self.cluster is not None:
            self.cluster.router.add_route(server_type, fn)

    @property
    def is_frontend(self) -> bool:
        """Clients connect here (explicit ``frontend`` option, else: it has listeners)."""
        if self.config.frontend is not None:
            return self.config.frontend
        return bool(self._parts.acceptors)

    def remote_server_type(self, route: str) -> str | None:
        """The other server type a client route belongs to (cluster mode), else None."""
        if self.cluster is None:
            return None
        server_type, _, rest = route.partition(".")
        if server_type and server_type != self.server_type and rest.count(".") == 1:
            return server_type
        return None

    async def rpc(
        self,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
        reply: type[Any] | None = None,
    ) -> Any:
        """User RPC ``serverType.service.method`` to a server chosen by the router.

        As in Pitaya, ``arg`` is a protobuf message (or its bytes, or None) and the answer's
        bytes come back, parsed into ``reply`` when it names a protobuf message class: that
        works with every server, Go Pitaya's included. Between our servers any other ``arg``
        (a dict, a dataclass) works too and the result comes back decoded; a Go server is
        never sent one (``RpcArgumentError``, PIT-400). See ``actors.cluster.outbound``.

        ``session`` (optional) travels with the call: the remote sees it read-only.
        Raises :class:`PitayaError` (``PIT-408`` on timeout, the remote's own errors).
        """
        return await self._require_cluster().rpc(
            route, arg, session=session, timeout=timeout, reply=reply
        )

    async def rpc_to(
        self,
        server_id: str,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
        reply: type[Any] | None = None,
    ) -> Any:
        """User RPC to one server by id (arguments as :meth:`rpc`)."""
        return await self._require_cluster().rpc_to(
            server_id, route, arg, session=session, timeout=timeout, reply=reply
        )

    # -- the worker: reliable RPCs through Redis (Pitaya's pkg/worker) ------------------------

    @property
    def worker(self) -> Worker:
        """The worker (``actors.cluster.worker``), made on first use and run as the module
        ``worker``: it enqueues reliable RPCs and, after :meth:`start_worker`, runs them."""
        if self._worker is None:
            self._worker = Worker(
                worker_options(self.config),
                server_id=self.server_id,
                metrics=self.metrics,
                caller=self._require_cluster,
                store=self._job_store,
            )
            self.modules.adopt(self._worker, "worker")
        return self._worker

    async def reliable_rpc(
        self,
        route: str,
        arg: Any = None,
        *,
        metadata: dict[str, Any] | None = None,
        reply: Any = None,
        options: RetryOptions | None = None,
    ) -> str:
        """Pitaya's ``ReliableRPC`` (``ReliableRPCWithOptions`` with ``options``): the RPC
        ``serverType.service.method`` is written to Redis as a job, and a worker (of any
        server, Go Pitaya's too) runs it, trying again on failure (the ``worker_retry_*``
        options, or ``options``). Returns the job's id. ``arg`` is a protobuf message (or
        a JSON value, for our servers); ``metadata`` is for the worker's
        :class:`~actors.cluster.rpcjob.RPCJob` (its server choice). Raises
        :class:`~transport.jobstore.JobStoreUnavailable` when Redis cannot take the job.
        """
        return await self.worker.enqueue(
            route, arg, metadata=metadata, reply=reply, options=options
        )

    def start_worker(self) -> None:
        """Run reliable RPCs on this server from its start on (Pitaya's ``StartWorker``):
        ``worker_concurrency`` at a time, through this server's cluster RPCs."""
        self._lifecycle.require_not_started("start the worker")
        if self.config.mode != "cluster":
            raise ValueError("the worker runs RPCs: it needs mode='cluster'")
        self.worker.enable()

    def register_rpc_job(self, job: RPCJob) -> None:
        """Run reliable RPCs with ``job`` (Pitaya's ``RegisterRPCJob``; once): its server
        choice and its argument and reply classes (``actors.cluster.rpcjob``)."""
        self.worker.register_job(job)

    def _require_cluster(self) -> Cluster:
        if self.cluster is None:
            raise RuntimeError(
                "RPCs need cluster mode (App(mode='cluster', ...)) and a started app"
            )
        return self.cluster

    def add_acceptor(self, acceptor: Acceptor) -> Acceptor:
        """Listen with any :class:`Acceptor` (TCP, WebSocket, or your own)."""
        self._lifecycle.require_not_started("add acceptors")
        self._parts.acceptors.append(acceptor)
        return acceptor

    def listen_tcp(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl.SSLContext | None = None,
        proxy_protocol: bool | None = None,
        proxy_protocol_trusted: Sequence[str] | None = None,
    ) -> Acceptor:
        """Listen for TCP clients (TLS with ``ssl``). ``proxy_protocol`` (default: the
        ``proxy_protocol`` option): every connection begins with a load balancer's
        PROXY header, accepted from ``proxy_protocol_trusted`` (CIDRs; default: the
        ``proxy_protocol_trusted`` option) only when given."""
        proxy, trusted = self._proxy_options(proxy_protocol, proxy_protocol_trusted)
        return self.add_acceptor(
            TcpAcceptor(
                host,
                port,
                ssl=ssl,
                limits=self._limits(),
                reuse_port=self.config.reuse_port,
                server_id=self.server_id,
                proxy_protocol=proxy,
                proxy_protocol_trusted=trusted,
            )
        )

    def listen_ws(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl.SSLContext | None = None,
        http_handler: HttpHandler | None = None,
        proxy_protocol: bool | None = None,
        proxy_protocol_trusted: Sequence[str] | None = None,
    ) -> Acceptor:
        """Listen for WebSocket clients; ``http_handler`` may answer plain HTTP GETs (a page).
        ``proxy_protocol`` and ``proxy_protocol_trusted`` as in :meth:`listen_tcp` (the
        header comes before the HTTP upgrade)."""
        proxy, trusted = self._proxy_options(proxy_protocol, proxy_protocol_trusted)
        return self.add_acceptor(
            WebSocketAcceptor(
                host,
                port,
                ssl=ssl,
                limits=self._limits(),
                max_frame_size=self.config.max_packet_size + 4,
                http_handler=http_handler,
                reuse_port=self.config.reuse_port,
                partial_budget=self.partial_budget,
                server_id=self.server_id,
                proxy_protocol=proxy,
                proxy_protocol_trusted=trusted,
            )
        )

    def _proxy_options(
        self, proxy_protocol: bool | None, trusted: Sequence[str] | None
    ) -> tuple[bool, tuple[str, ...]]:
        """An acceptor's PROXY protocol switch and trusted networks: its own, else the
        config's (the config's none when it is off: they would mean nothing; its own are
        passed on, for the acceptor to refuse them)."""
        on = self.config.proxy_protocol if proxy_protocol is None else proxy_protocol
        if not on:
            return False, tuple(trusted or ())
        if trusted is None:
            return True, proxy_protocol_trusted(self.config)
        return True, tuple(trusted)

    def _limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            max_write_buffer=self.config.max_write_buffer,
            # TLS handshake and WebSocket upgrade: never longer than the whole handshake.
            open_timeout=min(self.config.upgrade_timeout, self.config.handshake_timeout),
        )

    def set_serializer(self, serializer: Serializer | str) -> None:
        """Choose the serializer announced in the handshake (default JSON)."""
        self._lifecycle.require_not_started("set the serializer")
        self.serializer = get_serializer(serializer) if isinstance(serializer, str) else serializer
        self.invoker.serializer = self.serializer

    def set_group_service(self, groups: GroupService) -> None:
        """Replace the in-memory group service (e.g. with a cluster-wide one)."""
        self.groups = groups

    def on_session_bind(self, callback: SessionCallback) -> SessionCallback:
        """Run ``callback(session)`` during every bind; raising refuses the bind."""
        self._frontend_only("on_session_bind")
        return self.sessions.on_session_bind(callback)

    def on_after_session_bind(self, callback: SessionCallback) -> SessionCallback:
        """Run ``callback(session)`` after every successful bind."""
        self._frontend_only("on_after_session_bind")
        return self.sessions.on_after_session_bind(callback)

    def on_session_close(self, callback: SessionCallback) -> SessionCallback:
        """Run ``callback(session)`` when any session's connection is gone."""
        self._frontend_only("on_session_close")
        return self.sessions.on_session_close(callback)

    def on_remote_session_bind(
        self, callback: RemoteSessionCallback, *, route: str | None = None
    ) -> RemoteSessionCallback:
        """Cluster backends: ``callback(session)`` when a session this server served binds
        a uid on its frontend (only sessions that used ``route`` here, if given)."""
        self.remote_session_events.subscribe(BIND, callback, self._event_route(route))
        return callback

    def on_remote_session_close(
        self, callback: RemoteSessionCallback, *, route: str | None = None
    ) -> RemoteSessionCallback:
        """Cluster backends: ``callback(session)`` when a session this server served
        disconnects from its frontend (only sessions that used ``route`` here, if given)."""
        self.remote_session_events.subscribe(CLOSE, callback, self._event_route(route))
        return callback

    def _event_route(self, route: str | None) -> str | None:
        """A session event's route filter, refused if no forwarded route can match it: the
        frontend records a route as the client sent it, ``<this type>.<service>.<method>``."""
        if route is None:
            return None
        parts = route.split(".")
        if len(parts) == 3 and parts[0] == self.server_type and all(parts):
            return route
        hint = f" ({self.server_type}.{route}?)" if len(parts) == 2 and all(parts) else ""
        raise ValueError(
            f"route filter {route!r} matches no route forwarded to this server: clients "
            f"send them as {self.server_type}.<service>.<method>{hint}"
        )

    def _frontend_only(self, what: str) -> None:
        """Session lifecycle callbacks exist on frontends only (Pitaya's rule)."""
        self._parts.session_callbacks_used = True
        backend = self.config.frontend is False or (
            self._lifecycle.started and self.cluster is not None and not self.is_frontend
        )
        if backend:
            raise FrontendOnly(
                f"{what} is only available on frontend servers (sessions live there); "
                "backends see sessions through the handlers they serve"
            )

    def set_dictionary(self, routes: Mapping[str, int]) -> None:
        """Announce these route codes in the handshake (Pitaya's ``SetDictionary``): give a
        frontend the same codes as its Go siblings, or codes for routes served elsewhere
        (a backend's, a push's), which then travel as 2 bytes. This server's own routes get
        codes above them, unless ``route_dictionary`` is off (then only these are
        announced). ValueError for a code outside 1..65535 or used twice."""
        self._lifecycle.require_not_started("set the route dictionary")
        self._parts.dictionary = RouteDictionary(routes)

    def add_handshake_validator(self, name: str, validator: HandshakeValidator) -> None:
        """Run ``validator(handshake)`` on every handshake, in order; raising refuses it (400).

        A validator is synchronous: it runs in the session's turn, as Pitaya's do. An
        ``async def`` one (or an object with an ``async def __call__``) is refused here with
        a ``TypeError``: called, it would only make a coroutine, never run, and every
        handshake would pass (one that returns an awaitable all the same refuses every
        handshake). Check what needs the network in a handler (a login route) instead.
        """
        if inspect.iscoroutinefunction(validator) or inspect.iscoroutinefunction(
            type(validator).__call__  # an object whose __call__ is async def
        ):
            raise TypeError(
                f"handshake validator {name!r} is a coroutine function: validators must be "
                "synchronous (it would never run, and every handshake would pass)"
            )
        self.handshake_validators.append((name, validator))

    def add_metrics_reporter(self, reporter: Reporter) -> None:
        """Report metrics to ``reporter`` too (several may be added); see ``actors.metrics``."""
        self._lifecycle.require_not_started("add metrics reporters")
        self.metrics.add(reporter)

    def enable_tracing(self, tracer_provider: TracerProvider | None = None) -> None:
        """Trace handler calls and RPCs with OpenTelemetry (see ``actors.tracing``).

        ``tracer_provider`` defaults to OpenTelemetry's global one. Needs the ``tracing``
        extra; the ``tracing_enabled`` option does the same with the global provider.
        """
        self.tracing.enable(tracer_provider)

    def register_module(self, module: Module, name: str) -> None:
        """Run ``module`` with the server: ``init``/``after_init`` on start (after the cluster
        is joined, before listeners open), ``before_shutdown``/``shutdown`` in reverse order on
        stop (after sessions are kicked). Appended to the order, like
        :meth:`register_module_after`. Names are unique; see :meth:`get_module`."""
        self._lifecycle.require_not_started("register modules")
        self.modules.register(module, name)

    def register_module_after(self, module: Module, name: str) -> None:
        """Register ``module`` after every module registered so far (Pitaya's
        ``RegisterModuleAfter``)."""
        self._lifecycle.require_not_started("register modules")
        self.modules.register(module, name)

    def register_module_before(self, module: Module, name: str) -> None:
        """Register ``module`` before every module registered so far: it starts first and
        stops last (Pitaya's ``RegisterModuleBefore``)."""
        self._lifecycle.require_not_started("register modules")
        self.modules.register(module, name, first=True)

    def get_module(self, name: str) -> Module:
        """The module registered as ``name``; KeyError if there is none."""
        return self.modules.get(name)

    # -- running ---------------------------------------------------------------------------

    @property
    def acceptors(self) -> list[Acceptor]:
        return list(self._parts.acceptors)

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        """``(kind, host, port)`` of every listener, once started."""
        return [(a.kind, *a.address) for a in self._parts.acceptors]

    def address(self, kind: str) -> tuple[str, int]:
        """The bound address of the first listener of ``kind`` (``"tcp"``/``"ws"``)."""
        for acceptor in self._parts.acceptors:
            if acceptor.kind == kind:
                return acceptor.address
        raise LookupError(f"no {kind} listener")

    async def start(self) -> None:
        """Spawn handlers, then open the listeners; returns once they listen.

        The sequence (cluster, handlers, modules, metrics, listeners) is in
        ``actors.lifecycle``. A stop requested meanwhile (:meth:`request_stop`,
        :meth:`stop`) abandons it: :class:`~actors.errors.StartAborted`.
        """
        self._register_unique_session()
        await self._lifecycle.start()

    def _register_unique_session(self) -> None:
        """The ``unique_session`` option: a frontend runs the ``UniqueSession`` module (binding
        a uid kicks its older session) unless one is registered already."""
        if not (self.config.unique_session and self.is_frontend):
            return
        from actors.modules.unique_session import UniqueSession

        if not any(isinstance(module, UniqueSession) for _, module in self.modules):
            self.register_module(UniqueSession(self), "unique_session")

    # -- reaching users ---------------------------------------------------------------------

    def encode_push(self, route: str, body: Any) -> bytes:
        """A whole DATA packet pushing ``body`` (serialized with the app's serializer)."""
        return self.encode_push_packet(route, encode_result(body, self.serializer))

    def encode_push_packet(self, route: str, payload: bytes) -> bytes:
        """A whole DATA packet carrying a push, encoded once to be written to many sessions."""
        message = Message(MessageType.PUSH, route=route, data=payload)
        body = encode_message(
            message, routes=self.route_dictionary, compress=self.config.compress_data
        )
        return encode_packet(PacketType.DATA, body)

    async def send_push_to_users(
        self, route: str, body: Any, uids: list[str], *, frontend_type: str | None = None
    ) -> list[str]:
        """Push ``body`` to users by uid; returns the uids that could not be reached.

        Local users get the bytes framed once; in cluster mode the others are reached through
        their frontend (found by the binding storage module when registered, else NATS's
        ``pitaya/<frontendType>/user/<uid>/push``; see ``actors.cluster.users``).
        """
        payload, elsewhere = self._push_here(route, body, uids)
        if elsewhere and self.cluster is not None:
            return await self.cluster.push_to_users(route, payload, elsewhere, frontend_type)
        return elsewhere

    def push_to_users(
        self, route: str, body: Any, uids: list[str], *, frontend_type: str | None = None
    ) -> None:
        """Push ``body`` to users by uid and return at once: a tell, the way for an actor
        that must not wait on the network inside its turn (a room, a match).

        Local users get the bytes now; in cluster mode the others are published to their
        frontends in call order (see ``ClusterUsers.publish_push``). Nothing is reported
        back: await :meth:`send_push_to_users`, outside any actor's turn, to learn which uids
        were not reached.
        """
        payload, elsewhere = self._push_here(route, body, uids)
        if elsewhere and self.cluster is not None:
            self.cluster.users.publish_push(route, payload, elsewhere, frontend_type)

    def _push_here(self, route: str, body: Any, uids: list[str]) -> tuple[bytes, list[str]]:
        """Encode once, hand the frame to the uids bound here; the payload and the rest."""
        payload = encode_result(body, self.serializer)
        frame = SendFrame(self.encode_push_packet(route, payload))
        elsewhere: list[str] = []
        for uid in uids:
            session = self._local_session(uid)
            if session is None:
                elsewhere.append(uid)
            else:
                session.ref.tell(frame)
        return payload, elsewhere

    def _local_session(self, uid: str) -> Session | None:
        """The session ``uid`` is bound to here, None if none. A cluster backend holds no
        sessions (its registry says so once started); any other app looks, one with no
        listeners too: a handler test's app, whose sessions are ``TestSession`` objects."""
        return self.sessions.by_uid(uid) if self.sessions.frontend else None

    async def send_kick_to_users(
        self, uids: list[str], reason: str = "", *, frontend_type: str | None = None
    ) -> list[str]:
        """Kick users by uid (on any frontend in cluster mode); returns the unreached uids."""
        elsewhere: list[str] = []
        for uid in uids:
            session = self._local_session(uid)
            if session is None:
                elsewhere.append(uid)
            else:
                session.kick(reason)
        if elsewhere and self.cluster is not None:
            return await self.cluster.kick_users(elsewhere, reason, frontend_type)
        return elsewhere

    def known_server_types(self) -> set[str]:
        """This server's type and, in cluster mode, every server type in discovery."""
        types = {self.server_type}
        if self.cluster is not None:
            types |= self.cluster.discovery.server_types()
        return types

    # -- the servers of the cluster (Pitaya's GetServer, GetServers, GetServersByType,
    # GetServerByID): read from discovery's table, which follows etcd; no network call --

    def server(self) -> ServerInfo:
        """This server as discovery publishes it (id, type, frontend, hostname, metadata)."""
        if self.cluster is not None:
            return self.cluster.me
        from actors.cluster.discovery import ServerInfo  # (etcd's client: not standalone's)

        return ServerInfo(
            id=self.server_id,
            type=self.server_type,
            frontend=self.is_frontend,
            metadata=dict(self.config.metadata),
        )

    def servers(self) -> list[ServerInfo]:
        """Every server known now, this one included, ordered by type then id. Standalone (or
        before the start): this server alone."""
        if self.cluster is None:
            return [self.server()]
        discovery = self.cluster.discovery
        known = {s.id: s for t in discovery.server_types() for s in discovery.servers(t)}
        known.setdefault(self.server_id, self.cluster.me)
        return sorted(known.values(), key=lambda s: (s.type, s.id))

    def servers_by_type(self, server_type: str) -> dict[str, ServerInfo]:
        """The servers of ``server_type`` known now, by id: empty when there are none (where
        Pitaya returns an error), e.g. to pick one for :meth:`rpc_to`."""
        return {s.id: s for s in self.servers() if s.type == server_type}

    def server_by_id(self, server_id: str) -> ServerInfo | None:
        """The server ``server_id`` if it is known now, else None (where Pitaya returns an
        error)."""
        if self.cluster is not None and server_id != self.server_id:
            return self.cluster.discovery.server(server_id)
        return self.server() if server_id == self.server_id else None

    def handler_ref(self, service: str) -> ActorRef:
        """The address of the handler actor serving ``service`` (to tell or ask it messages
        of your own, e.g. a :class:`~actors.handler.Call` in a test). KeyError if none."""
        handlers = self._lifecycle.handlers
        if service not in handlers:
            raise KeyError(self._no_service(service, sorted(handlers)))
        return handlers[service]

    def handler_instance(self, service: str) -> Handler:
        """The handler or remote object serving ``service``, for tests that inspect its
        state (and for a handler that shares state with a remote of the same server).
        KeyError if none."""
        served: dict[str, Handler] = {}
        for route in (*self.local_routes.values(), *self.remote_routes.values()):
            served.setdefault(route.handler.service_name(), route.handler)
        if service not in served:
            raise KeyError(self._no_service(service, sorted(served)))
        return served[service]

    def _no_service(self, service: str, served: list[str]) -> str:
        if not self._lifecycle.started:
            return (
                f"no service {service!r} yet: handlers and remotes are spawned when the app starts"
            )
        return (
            f"no handler or remote serves {service!r} here (served: {', '.join(served) or 'none'})"
        )

    def handler(self, service: str) -> ActorRef:
        """Deprecated: :meth:`handler_ref` (this name is also the ``@handler`` decorator's)."""
        warnings.warn(
            "App.handler(service) is renamed App.handler_ref(service)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.handler_ref(service)

    async def stop(self) -> None:
        """Graceful stop: stop accepting, deregister, let in-flight requests finish (bounded
        by ``shutdown_timeout``), kick every session, stop modules, then every actor.
        Idempotent. During the start-up: abandons it and returns once it is undone."""
        await self._lifecycle.stop()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop gracefully (what SIGINT/SIGTERM do); an app
        started otherwise (``async with``, ``start()``) is stopped in a task. During the
        start-up it abandons the start at once (``start`` raises
        :class:`~actors.errors.StartAborted`, ``serve_forever`` returns)."""
        self._lifecycle.request_stop()

    def ready_now(self) -> bool:
        """This server can serve: started up (listeners up, if any) and, in cluster mode,
        the RPC transport up (NATS connected, or the gRPC server listening) and this server
        registered in discovery, or registered and riding out a discovery outage. False
        while starting, draining or stopping. :meth:`readiness` says why."""
        return self.readiness().ready

    def readiness(self) -> Readiness:
        """:meth:`ready_now` with its reason: not ready while starting, draining,
        stopping, with the RPC transport down, before the first registration in discovery
        or once out of it (left, or another server took the id); ready but *degraded* while
        discovery is unreachable after the server registered (an etcd outage: every server
        sees it at once, and each still serves from the last table it knew, so a readiness
        probe must not take them all out of service). ``GET /ready`` answers with it."""
        lifecycle = self._lifecycle.readiness()
        if not lifecycle.ready or self.config.mode != "cluster":
            return lifecycle
        if self.cluster is None:
            return Readiness(False, "not in the cluster")
        return self.cluster.readiness()

    async def is_ready(self) -> bool:
        """See :meth:`ready_now` (also served as ``GET /ready`` by the Prometheus reporter)."""
        return self.ready_now()

    async def serve_forever(self) -> None:
        """Start, serve until SIGINT/SIGTERM (or :meth:`request_stop`), then stop gracefully.

        With ``drain_sessions`` on, the first signal stops accepting and waits (up to
        ``drain_timeout``) for the connected clients to leave; a second signal skips the wait.
        """
        await self._lifecycle.serve_forever()

    def run(self) -> None:
        """Blocking entry point for ``__main__``: :meth:`serve_forever` on a new event loop,
        uvloop's when installed (the ``event_loop`` option, ``actors.eventloop``).

        A SIGTERM or SIGINT during the start-up stops it at once (exit status 0, as any
        stop; see :meth:`request_stop`). A cluster server that cannot reach NATS or etcd (or
        bind its gRPC port) exits with status 1 and one line naming the service, the
        address and the cause, credentials masked (``SystemExit``; see ``actors.startup``),
        instead of a traceback; so does an option that cannot work
        (:class:`~actors.config.ConfigError`). One whose id discovery refuses (still held
        by a crashed predecessor's lease, or by a live server) exits with
        :data:`~actors.startup.EXIT_ID_HELD` (75) instead: a start to try again later.

        Logs go out in the ``log_format`` option's format (``text`` or ``json``, see
        ``actors.logs.configure_logging``): to stderr when nothing set logging up; with
        ``json``, the handlers already set up write JSON lines.
        """
        from actors.cluster.rpc import ClusterStartupError, ServerIdTaken
        from actors.startup import EXIT_ID_HELD, describe_startup_failure

        try:
            configure_logging(self.config.log_format, default_level=self.config.log_level)
            factory = loop_factory(self.config.event_loop)
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(self._lifecycle.serve_forever(freeze=True))
            if self.cluster is not None and self.cluster.lost is not None:
                # A supervisor restarts a server that failed (the launcher's on-failure).
                self._exit(f"{self.server_id} stopped: {self.cluster.lost}")
        except ClusterStartupError as exc:
            reason = describe_startup_failure(exc, self.config.cluster_connect_timeout)
            status = EXIT_ID_HELD if isinstance(exc, ServerIdTaken) else 1
            self._exit(f"{self.server_id} cannot start: {reason}", status)
        except ConfigError as exc:
            self._exit(f"{self.server_id} cannot start: {exc}")
        except OSError as exc:
            if self._lifecycle.listening:
                raise
            # A port in use, a certificate file missing: one line, not a traceback.
            self._exit(f"{self.server_id} cannot start: {exc}")

    def _exit(self, line: str, status: int = 1) -> NoReturn:
        """Exit with ``status`` and ``line``: on stderr as it is, or with ``log_format``
        ``json`` as one JSON record like every other line (a log collector sees it)."""
        if self.config.log_format == "json":
            ServerLog(log, "").critical("%s", line)
            raise SystemExit(status) from None
        if status == 1:
            raise SystemExit(line) from None  # Python prints it, and exits 1
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(status) from None

    # -- bookkeeping (called by session and gateway actors) --------------------------------

    @property
    def connection_count(self) -> int:
        """Connections accepted and not yet torn down."""
        return self.connections.count

    def request_started(self) -> None:
        self.requests_in_flight.up()

    def request_finished(self) -> None:
        self.requests_in_flight.down()

    def connection_opened(self) -> None:
        self.connections.up()

    def connection_closed(self) -> None:
        """A session finished its teardown (close callbacks included)."""
        self.connections.down()


if TYPE_CHECKING:

    def _app_is_a_module_host(app: App) -> ModuleHost:
        return app  # mypy checks here that the App has what the built-in modules use

    def _app_is_a_cluster_host(app: App) -> ClusterHost:
        return app  # ... and what a cluster node uses

    def _app_is_a_handler_app(app: App) -> HandlerApp:
        return app  # ... and what handlers use

    def _app_is_a_lifecycle_host(app: App) -> LifecycleHost:
        return app  # ... and what its life cycle uses
