"""The life cycle of a server: the start-up and stop sequences, and serving until a signal.

Start: check the options; in cluster mode reach NATS/etcd first (so handlers created next see
the cluster-wide group service); spawn handler and remote actors; join the cluster (serve RPCs,
register in discovery); start modules, metrics, then the listeners. A failure at any step
undoes the steps before it and raises the error that caused it.

Stop (graceful): stop accepting; leave discovery (no new RPCs are routed here); wait for the
requests in flight (bounded by ``shutdown_timeout``); kick every session; stop modules
(``before_shutdown`` then ``shutdown``, in reverse); close the cluster; stop every actor.

:class:`Lifecycle` owns the running state (started, listening, draining, stopping, the gateway
actors, the spawned handler and remote refs). The app builds one from what was registered (a
:class:`Blueprint`) and from itself as the :class:`LifecycleHost`, and its ``start``/``stop``/
``serve_forever`` call it. Nothing here imports the app, so the life cycle sits below it in
the layers (``tests/test_layers.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from actors import pitaya_env
from actors.cluster.host import ClusterHost
from actors.config import ConfigError, check_config, misspelt_env
from actors.errors import ActorStopped, FrontendOnly, StartAborted
from actors.eventloop import CHOICES as EVENT_LOOPS
from actors.gateway import Gateway, Listen, StopAccepting
from actors.gcthreshold import YOUNG_THRESHOLD
from actors.groups import GroupService, MemoryGroupService
from actors.handler import Handler, HandlerApp, Ready, Remote
from actors.invocation import LocalRoute
from actors.logs import ServerLog, check_log_format, check_log_level
from actors.metrics.sampler import ClusterCounts, MetricsSampler, reporters_from_config
from actors.ratelimit import check_config as check_rate_limit_config
from actors.readiness import Readiness
from actors.session import KickSession
from actors.sessions.host import GatewayHost
from actors.sessions.messages import StopAdmitting
from transport.message import RouteDictionary
from transport.undo import undo_fully, undoing
from transport.waiting import set_within

if TYPE_CHECKING:
    from actors.cluster.cluster import Cluster
    from actors.cluster.discovery import ServiceDiscovery
    from actors.cluster.router import RouteFunction
    from actors.cluster.rpc import RPCClient, RPCServer
    from actors.kernel import ActorRef
    from actors.tally import Tally
    from transport.acceptor import Acceptor

log = logging.getLogger(__name__)

CANCEL_WAIT = 1.0
"""Seconds a stop gives the handlers it cancelled to end (and be answered) before the kick;
one that holds on past its cancellation is not waited for longer."""
CLOSE_WAIT = 2.0
"""Seconds a stop gives its kicked sessions at least to close (their close callbacks
included), however little of ``shutdown_timeout`` the requests in flight left."""
STOP_GRACE = CANCEL_WAIT + CLOSE_WAIT
"""Seconds a graceful stop may run past ``shutdown_timeout`` (the drain aside), besides the
modules' floor (``actors.modules.base.MODULE_STEP_WAIT`` per step): the cancelled handlers'
answers and the close callbacks' least time, when the requests in flight used the budget."""

HandlerSpec = tuple[type[Handler], tuple[Any, ...], dict[str, Any]]
RemoteSpec = tuple[type[Remote], tuple[Any, ...], dict[str, Any]]


@dataclass(slots=True)
class Blueprint:
    """What was registered before the start: the parts the life cycle spawns and opens."""

    handlers: list[HandlerSpec] = field(default_factory=list)
    remotes: list[RemoteSpec] = field(default_factory=list)
    acceptors: list[Acceptor] = field(default_factory=list)
    custom_routes: dict[str, RouteFunction] = field(default_factory=dict)
    discovery: ServiceDiscovery | None = None
    """The cluster's discovery seam, when given instead of etcd."""
    rpc: tuple[RPCClient, RPCServer] | None = None
    """The cluster's RPC seam, when given instead of ``rpc_transport``."""
    session_callbacks_used: bool = False
    """A frontend-only session callback was registered (refused on a backend at start)."""
    dictionary: RouteDictionary | None = None
    """Route codes the app was given (``App.set_dictionary``, Pitaya's ``SetDictionary``)."""


class LifecycleHost(ClusterHost, GatewayHost, HandlerApp, Protocol):
    """What the life cycle uses of its server (``actors.app.App`` has it; mypy checks it
    there): what it hands on to the cluster node, gateways and handlers, and the parts it
    fills in on start (the cluster, its group service, the route dictionary)."""

    cluster: Cluster | None
    groups: GroupService
    route_dictionary: RouteDictionary | None

    @property
    def requests_in_flight(self) -> Tally: ...
    @property
    def connections(self) -> Tally: ...

    def readiness(self) -> Readiness: ...


class Lifecycle:
    """Starts, serves and stops one server; see the module docstring."""

    def __init__(self, host: LifecycleHost, parts: Blueprint) -> None:
        self._host = host
        self.log = ServerLog(log, host.server_id)
        self.parts = parts
        self.started = False
        self.stopping = False
        self.listening = False
        """Every listener is open."""
        self.up = False
        """The start-up finished (a failed one never sets it)."""
        self.start_failed = False
        """The start-up began and failed (what was started is undone)."""
        self.draining = False
        self.gateways: list[ActorRef] = []
        self.handlers: dict[str, ActorRef] = {}
        """Service name -> the handler actor serving it, once spawned."""
        self.remotes: dict[str, ActorRef] = {}
        self._starting: asyncio.Task[None] | None = None
        """The start-up under way (its own task, so a stop request can cancel it)."""
        self._start_aborted = False
        """A stop was requested during the start-up, which was cancelled."""
        self._stop_requested: asyncio.Event | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        """Set when :meth:`stop` has finished (what ``serve_forever`` waits for when the
        stop was started by code, not by a signal)."""
        self._holds_gc_threshold = False
        """Whether this server raised the collector's threshold (``gc_threshold``)."""

    @property
    def serving(self) -> bool:
        """Started up (every step done, listeners up), not draining or stopping (the cluster
        part of readiness is the app's)."""
        return self.up and not self.stopping and not self.draining

    def readiness(self) -> Readiness:
        """Not ready while not serving, saying which phase it is in; else ready (what the
        cluster adds is the app's)."""
        if self.serving:
            return Readiness(True)
        if self.stopping:
            return Readiness(False, "stopped" if self._stopped.is_set() else "stopping")
        if self.draining:
            return Readiness(False, "draining")
        if self.start_failed:
            return Readiness(False, "start-up failed")
        return Readiness(False, "starting" if self.started else "not started")

    def require_not_started(self, todo: str) -> None:
        """Raise RuntimeError once the app has started: ``todo`` ("add acceptors") is done
        before the start. An app that has run and stopped says so: it does not start again
        (a test sharing one app with the test before it)."""
        self._refuse_if_ran()
        if self.started:
            raise RuntimeError(f"{todo} before the app starts")

    def _refuse_if_ran(self) -> None:
        if self.started and self._stopped.is_set():
            raise RuntimeError(
                f"{self._host.server_id} has run and stopped: an App starts once; make a new "
                "one (in tests, one per test)"
            )

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn handlers, then open the listeners; returns once they listen.

        A stop requested meanwhile (:meth:`request_stop`, so SIGTERM or SIGINT in
        :meth:`serve_forever`, or :meth:`stop`) abandons the start-up at once rather than
        after it (a NATS that does not answer held a SIGTERM for ``cluster_connect_timeout``):
        the step under way is cancelled, what had started is undone by the steps' own
        failure paths, and :class:`StartAborted` is raised. The start-up runs as a task of
        its own for that: cancelling the caller's task would cancel the caller too. One that
        already failed and undoes what it started (in any layer: a module's, the cluster's)
        is not cancelled (the undo would stop half-way): its failure is raised once the undo
        is done. A caller cancelled meanwhile gets its cancellation once the undo is done
        (``transport.undo``): nothing is left registered, connected or running.
        """
        self._refuse_if_ran()
        if self.started or self._starting is not None:
            raise RuntimeError("app already started")
        starting = self._starting = asyncio.get_running_loop().create_task(self._start_up())
        try:
            await starting
        except asyncio.CancelledError:
            if not self._start_aborted:
                self.start_failed = self.started
                raise  # the caller was cancelled (its cancellation reached the start-up)
            self._start_abandoned()
            caller = asyncio.current_task()
            if caller is not None and caller.cancelling():
                raise  # the caller was cancelled too
            raise StartAborted(f"{self._host.server_id}: stopped during the start-up") from None
        except BaseException:
            self.start_failed = self.started  # options that cannot work: it never started
            if self._start_aborted:  # the stop came as it was failing: it is undone now
                self._stopped.set()
            raise
        finally:
            self._starting = None
        if self._start_aborted:  # the stop came as the last step finished: a normal stop
            await self.stop()
            raise StartAborted(f"{self._host.server_id}: stopped during the start-up")

    def _abort_start(self) -> bool:
        """Cancel the start-up under way, if there is one (True then)."""
        starting = self._starting
        if starting is None or starting.done():
            return False
        if not self._start_aborted:
            self._start_aborted = True
            # A start-up undoing what it had started (here or in a layer below: a module's,
            # the cluster's) is not cancelled: it fails once its undo is done.
            if not undoing(starting):
                starting.cancel()
        return True

    @contextlib.asynccontextmanager
    async def _undone_on_failure(
        self, *undo: Callable[[], Awaitable[object]]
    ) -> AsyncIterator[None]:
        """A start step: if it fails, or the start-up is abandoned during it, run ``undo``
        (what the start-up had done so far, taken back in that order) to its end, then raise.

        Every step that leaves something behind goes through here, so none can forget that
        its undo must not be cut short: a stop request meanwhile does not cancel the
        start-up (:meth:`_abort_start`), and a cancellation of its caller waits for the undo
        (``transport.undo``); half an undo left the server registered, its connections open,
        its modules started."""
        try:
            yield
        except BaseException:
            await undo_fully(self._in_turn(undo))
            raise

    async def _in_turn(self, steps: tuple[Callable[[], Awaitable[object]], ...]) -> None:
        """Each undo step, one after the other; one that fails is logged and the others
        still run (the start-up's own error is the one raised)."""
        for step in steps:
            try:
                await step()
            except Exception:
                name = getattr(step, "__qualname__", repr(step))
                self.log.exception("undoing the failed start-up: %s failed", name)

    def _start_abandoned(self) -> None:
        """The cancelled start-up has undone what it had started: the server is stopped."""
        self.stopping = True
        self._stopped.set()
        self.log.info("stopped during the start-up: a stop was requested, the start abandoned")

    async def _start_up(self) -> None:
        host = self._host
        config = host.config
        check_config(config)
        for variable, option in misspelt_env(os.environ):
            self.log.warning("%s names no option: did you mean %s?", variable, option)
        go_only = pitaya_env.unused(os.environ)
        if go_only:
            self.log.info(
                "Go Pitaya settings with no counterpart here, left alone: %s", ", ".join(go_only)
            )
        if config.mode not in ("standalone", "cluster"):
            raise ConfigError(f"mode must be 'standalone' or 'cluster', not {config.mode!r}")
        from actors.cluster.rpc import TRANSPORTS

        if config.rpc_transport not in TRANSPORTS:
            raise ConfigError(
                f"rpc_transport must be one of {', '.join(TRANSPORTS)}, "
                f"not {config.rpc_transport!r}"
            )
        if config.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"event_loop must be one of {', '.join(EVENT_LOOPS)}, not {config.event_loop!r}"
            )
        check_log_format(config.log_format)
        check_log_level(config.log_level)
        check_rate_limit_config(config)
        self.started = True  # not before: an app whose options cannot work did not start
        if config.tracing_enabled and not host.tracing.enabled:
            host.tracing.enable()
        if config.mode == "cluster":
            await self._connect_cluster()
        self.spawn_handlers()
        await self._handlers_started()
        if self._host.cluster is not None:
            await self._join_cluster()
        # A port in use (or a metrics endpoint that cannot bind) stops the start-up with
        # that error; what was started is undone.
        async with self._undone_on_failure(
            self._stop_accepting,
            host.modules.stop,
            self._leave_and_close_cluster,
            host.system.shutdown,
            host.metrics.stop,
        ):
            await host.modules.start()
            await self.start_metrics()
            for acceptor in self.parts.acceptors:
                self.gateways.append(host.system.spawn(Gateway, acceptor, host))
            for gateway in self.gateways:
                await gateway.ask(Listen(), timeout=10)
            self.listening = True
            for reporter in host.metrics.reporters:
                if getattr(reporter, "readiness", False) is None:
                    reporter.readiness = self._host.readiness  # type: ignore[attr-defined]
        if config.gc_threshold:
            YOUNG_THRESHOLD.hold(config.gc_threshold)
            self._holds_gc_threshold = True
        self.up = True
        self.log.info(
            "started (%s), serializer %s, %s loop",
            host.server_type,
            host.serializer.name,
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )

    async def _connect_cluster(self) -> None:
        from actors.cluster.cluster import Cluster

        host = self._host
        host.sessions.frontend = host.is_frontend
        async with self._undone_on_failure(host.system.shutdown):
            if not host.is_frontend and self.parts.session_callbacks_used:
                raise FrontendOnly(
                    f"{host.server_type} is a backend (no listeners): session callbacks "
                    "(on_session_bind/on_after_session_bind/on_session_close) need a frontend"
                )
            cluster = Cluster(host, discovery=self.parts.discovery, rpc=self.parts.rpc)
            for server_type, fn in self.parts.custom_routes.items():
                cluster.router.add_route(server_type, fn)
            # The group service the discovery keeps, unless the app was given one.
            groups = (
                cluster.group_service() if isinstance(host.groups, MemoryGroupService) else None
            )
            await cluster.connect()  # what it opened is closed again if it fails
        host.cluster = cluster
        if groups is not None:
            host.groups = groups

    async def _join_cluster(self) -> None:
        cluster = self._host.cluster
        assert cluster is not None
        # A join that fails closes the cluster itself (Cluster.join).
        async with self._undone_on_failure(self._forget_cluster, self._host.system.shutdown):
            await cluster.join()

    async def _forget_cluster(self) -> None:
        """The cluster closed (its join failed): the server has none."""
        self._host.cluster = None

    async def _close_cluster(self) -> None:
        if self._host.cluster is not None:
            await self._host.cluster.close()

    async def _leave_and_close_cluster(self) -> None:
        """Out of discovery (its lease revoked), then the cluster closed."""
        cluster = self._host.cluster
        if cluster is not None:
            await cluster.leave()
            await cluster.close()

    async def _handlers_started(self) -> None:
        """Wait until every handler's and remote's ``started`` hook finished: route methods
        are invoked directly, not through the mailbox, so nothing else would hold a request
        back until then. A hook that fails stops the start-up with a clear error."""
        refs = [*self.handlers.values(), *self.remotes.values()]
        failed: list[str] = []

        async def note_failed() -> None:  # before the undo stops them all
            failed.extend(ref.name for ref in refs if not ref.alive)

        try:
            async with self._undone_on_failure(
                note_failed, self._host.system.shutdown, self._close_cluster
            ):
                await asyncio.gather(*(ref.ask(Ready(), timeout=None) for ref in refs))
        except ActorStopped as exc:  # a hook failed (its actor stopped)
            raise RuntimeError(
                f"{', '.join(failed) or 'a handler'} failed in started() (see the log above)"
            ) from exc

    async def start_metrics(self) -> None:
        """Add the reporters the options enable, start them, and spawn the sampler (which
        reads the server's counts through the functions it is given)."""
        host = self._host
        for reporter in reporters_from_config(host.config):
            host.metrics.add(reporter)
        await host.metrics.start()
        if not host.metrics.enabled:
            return

        def cluster_counts() -> ClusterCounts | None:
            cluster = host.cluster
            if cluster is None:
                return None
            discovery = cluster.discovery
            servers = {kind: len(discovery.servers(kind)) for kind in discovery.server_types()}
            return ClusterCounts(servers, cluster.dropped_messages)

        host.system.spawn(
            MetricsSampler,
            host.metrics,
            host.config.metrics_period,
            lambda: host.connection_count,
            cluster_counts,
            name="metrics-sampler",
        )

    def spawn_handlers(self) -> None:
        """Spawn every handler and remote actor and index their routes (and the dictionary)."""
        from actors.docs import Sys

        host = self._host
        specs = list(self.parts.handlers)
        if not any(cls.service_name() == Sys.service for cls, _, _ in specs):
            specs.append((Sys, (), {}))
        for cls, args, kwargs in specs:
            service = cls.service_name()
            ref = host.system.spawn(cls, *args, name=f"handler:{service}", **kwargs)
            actor = ref._cell.actor
            assert isinstance(actor, Handler)
            actor.app = host
            self.handlers[service] = ref
            for method, spec in cls.method_specs().items():
                route = LocalRoute(actor, spec, f"{service}.{method}")
                host.local_routes[route.name] = route
                host.local_routes[f"{host.server_type}.{service}.{method}"] = route
        for cls, args, kwargs in self.parts.remotes:
            service = cls.service_name()
            ref = host.system.spawn(cls, *args, name=f"remote:{service}", **kwargs)
            self.remotes[service] = ref
            actor = ref._cell.actor
            assert isinstance(actor, Remote)
            actor.app = host
            for method, spec in cls.method_specs().items():
                name = f"{host.server_type}.{service}.{method}"
                host.remote_routes[name] = LocalRoute(actor, spec, name)
        given = self.parts.dictionary
        if host.config.route_dictionary and host.local_routes:
            host.route_dictionary = (
                RouteDictionary.from_routes(host.local_routes)
                if given is None
                else given.extended(host.local_routes)
            )
        elif given is not None:
            host.route_dictionary = given

    # -- stop ------------------------------------------------------------------------------

    async def _stop_accepting(self) -> None:
        for gateway in self.gateways:
            with contextlib.suppress(Exception):
                await gateway.ask(StopAccepting(), timeout=5)

    async def stop(self) -> None:
        """Graceful stop: stop accepting connections and client messages (new requests get
        ``PIT-500`` "server shutting down"), let the requests in flight finish (bounded by
        ``shutdown_timeout``), kick every session, then stop all actors. Idempotent."""
        if self._abort_start():  # during the start-up: abandon it (see start)
            if asyncio.current_task() is not self._starting:
                await self._stopped.wait()
            return
        if self.stopping or not self.started:
            return
        self.stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()  # serve_forever, if serving, wakes up to wait for us
        try:
            await self._stop()
        finally:
            self._stopped.set()

    async def _stop(self) -> None:
        """The steps share one budget, ``shutdown_timeout`` from the moment the server has
        stopped accepting and left discovery (what a supervisor's grace period must cover,
        with the drain): each waits until the stop's deadline, with a floor where skipping
        would lose work (:data:`STOP_GRACE`, the modules' steps). Leaving discovery has its
        own bound (etcd's timeouts): a slow etcd must not cancel the requests in flight."""
        host = self._host
        self.log.info("stopping")
        loop = asyncio.get_running_loop()
        budget = host.config.shutdown_timeout
        await self._stop_accepting()
        if host.cluster is not None:
            await host.cluster.leave()  # no new RPCs are routed here from now on
        deadline = loop.time() + budget
        for session in host.sessions:  # nor new client messages: what came in finishes
            session.ref.tell(StopAdmitting())
        in_flight = host.requests_in_flight
        if not await set_within(in_flight.zero, deadline - loop.time()):
            self.log.warning(
                "%d request(s) still in flight after %ss (shutdown_timeout): cancelled",
                in_flight.count,
                budget,
            )
            host.invoker.cancel()
            # Their answers (PIT-500 "handler cancelled") go to the sessions before the kick
            # does: a cancelled handler ends at its next await, and is answered then.
            await set_within(in_flight.zero, CANCEL_WAIT)
        if len(host.sessions):
            # One line for them all (each session's own is throttled: there may be many).
            self.log.info("kicking %d session(s): server shutting down", len(host.sessions))
        for session in host.sessions:
            session.ref.tell(KickSession("server shutting down"))
        # The close callbacks run now (a player's state saved, a room left): the actor
        # system's shutdown would cancel those still running, so they get what is left of
        # the budget, and at least CLOSE_WAIT.
        closing = max(CLOSE_WAIT, deadline - loop.time())
        closed_by = loop.time() + closing
        if not await set_within(host.connections.zero, closing):
            self.log.warning(
                "%d session(s) still closing after %.1fs: their close callbacks are cancelled",
                host.connections.count,
                closing,
            )
        await host.modules.stop(until=deadline)
        if host.cluster is not None:
            # The closes just made still reach the backends (acknowledged), within the time
            # the close callbacks had.
            await host.cluster.close(events_within=closed_by - loop.time())
        await host.system.shutdown()
        await host.metrics.stop()
        if self._holds_gc_threshold:
            self._holds_gc_threshold = False
            YOUNG_THRESHOLD.release()
        self.log.info("stopped")

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop gracefully (what SIGINT/SIGTERM do); a server
        started otherwise is stopped in a task. During the start-up: abandon it (see
        :meth:`start`)."""
        if self._abort_start():
            return
        if self._stop_requested is not None:
            self._stop_requested.set()
        elif self.started and not self.stopping:
            self._stop_task = asyncio.get_running_loop().create_task(self.stop())

    async def serve_forever(self, *, freeze: bool = False) -> None:
        """Start, serve until SIGINT/SIGTERM (or :meth:`request_stop`), then stop gracefully.

        With ``drain_sessions`` on, the first signal stops accepting and waits (up to
        ``drain_timeout``) for the connected clients to leave; a second signal skips the wait.

        ``freeze`` (the process is this server's alone: ``App.run``): once started, move
        everything allocated so far (modules, handlers, routes: it lives as long as the
        process) out of the garbage collector's sight (``gc.freeze``), so its collections,
        which requests trigger, stop walking it again and again.
        """
        self._stop_requested = stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        _on_stop_signals(loop, lambda sig: self.request_stop())
        try:
            await self.start()
        except BaseException as exc:
            _off_stop_signals(loop)
            if isinstance(exc, StartAborted):
                return  # stopped (and said so) before it served: a normal stop
            raise
        if freeze:
            gc.collect()
            gc.freeze()
        try:
            await stop_requested.wait()
            if self._host.config.drain_sessions and not self.stopping:
                from actors.draining import drain_sessions

                self.draining = True
                stop_requested.clear()  # a second signal sets it again
                await self._stop_accepting()
                if self._host.cluster is not None:
                    await self._host.cluster.leave()
                await drain_sessions(
                    self._host.connections,
                    self._host.config.drain_timeout,
                    self._host.server_id,
                    stop_requested,
                )
        finally:
            # Until the stop is done a signal must not end the process (its default action):
            # a second SIGTERM (a supervisor's, systemd's to the whole group) used to kill
            # it halfway, with requests in flight and its discovery entry left behind.
            _on_stop_signals(loop, self._already_stopping)
            try:
                await self.stop()
                if self.stopping:
                    await self._stopped.wait()  # a stop started by code is under way
            finally:
                _off_stop_signals(loop)

    def _already_stopping(self, sig: signal.Signals) -> None:
        self.log.info("%s while stopping: the stop goes on", sig.name)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _on_stop_signals(
    loop: asyncio.AbstractEventLoop, handler: Callable[[signal.Signals], None]
) -> None:
    """``handler(sig)`` for SIGINT and SIGTERM; nothing where the loop cannot take signal
    handlers (not the main thread, Windows)."""
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler, sig)


def _off_stop_signals(loop: asyncio.AbstractEventLoop) -> None:
    """The signals' default actions back."""
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(sig)
