"""The life cycle of an app: the start-up and stop sequences, and serving until a signal.

Start: check the options; in cluster mode reach NATS/etcd first (so handlers created next see
the cluster-wide group service); spawn handler and remote actors; join the cluster (serve RPCs,
register in discovery); start modules, metrics, then the listeners. A failure at any step
undoes the steps before it and raises the error that caused it.

Stop (graceful): stop accepting; leave discovery (no new RPCs are routed here); wait for the
requests in flight (bounded by ``shutdown_timeout``); kick every session; stop modules
(``before_shutdown`` then ``shutdown``, in reverse); close the cluster; stop every actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from actors.errors import ActorStopped
from actors.gateway import Gateway, Listen, StopAccepting
from actors.groups import MemoryGroupService
from actors.handler import Handler, Ready, Remote
from actors.invocation import LocalRoute
from actors.metrics.sampler import ClusterCounts, MetricsSampler, reporters_from_config
from actors.ratelimit import check_config as check_rate_limit_config
from actors.session import KickSession
from actors.session_host import GatewayHost
from transport.message import RouteDictionary

if TYPE_CHECKING:
    from actors.app import App

log = logging.getLogger("actors.app")


async def start_app(app: App) -> None:
    """Spawn handlers, then open the listeners; returns once they listen."""
    if app._started:
        raise RuntimeError("app already started")
    app._started = True
    if app.config.mode not in ("standalone", "cluster"):
        raise ValueError(f"mode must be 'standalone' or 'cluster', not {app.config.mode!r}")
    from actors.cluster.rpc import TRANSPORTS

    if app.config.rpc_transport not in TRANSPORTS:
        raise ValueError(
            f"rpc_transport must be one of {', '.join(TRANSPORTS)}, "
            f"not {app.config.rpc_transport!r}"
        )
    check_rate_limit_config(app.config)
    if app.config.tracing_enabled and not app.tracing.enabled:
        app.tracing.enable()
    if app.config.mode == "cluster":
        await _connect_cluster(app)
    spawn_handlers(app)
    await _handlers_started(app)
    if app.cluster is not None:
        await _join_cluster(app)
    try:
        await app.modules.start()
        await start_metrics(app)
        host: GatewayHost = app  # checked here: the app is what gateways and sessions use
        for acceptor in app._acceptors:
            app._gateways.append(app.system.spawn(Gateway, acceptor, host))
        for gateway in app._gateways:
            await gateway.ask(Listen(), timeout=10)
        app._listening = True
        for reporter in app.metrics.reporters:
            if getattr(reporter, "readiness", False) is None:
                reporter.readiness = app.ready_now  # type: ignore[attr-defined]
    except BaseException:
        # A port in use (or a metrics endpoint that cannot bind) stops the start-up
        # with that error; undo what was started.
        for gateway in app._gateways:
            with contextlib.suppress(Exception):
                await gateway.ask(StopAccepting(), timeout=5)
        await app.modules.stop()
        if app.cluster is not None:
            await app.cluster.leave()
            await app.cluster.close()
        await app.system.shutdown()
        await app.metrics.stop()
        raise
    log.info(
        "[%s] started (%s), serializer %s",
        app.server_id,
        app.server_type,
        app.serializer.name,
    )


async def _connect_cluster(app: App) -> None:
    from actors.cluster.cluster import Cluster
    from actors.errors import FrontendOnly

    app.sessions.frontend = app.is_frontend
    if not app.is_frontend and app._session_callbacks_used:
        await app.system.shutdown()
        raise FrontendOnly(
            f"{app.server_type} is a backend (no listeners): session callbacks "
            "(on_session_bind/on_after_session_bind/on_session_close) need a frontend"
        )
    cluster = Cluster(app, discovery=app._discovery, rpc=app._rpc)
    for server_type, fn in app._custom_routes.items():
        cluster.router.add_route(server_type, fn)
    try:
        # The group service the discovery keeps, unless the app was given one.
        groups = cluster.group_service() if isinstance(app.groups, MemoryGroupService) else None
        await cluster.connect()
    except BaseException:
        await app.system.shutdown()
        raise
    app.cluster = cluster
    if groups is not None:
        app.groups = groups


async def _join_cluster(app: App) -> None:
    assert app.cluster is not None
    try:
        await app.cluster.join()
    except BaseException:
        app.cluster = None
        await app.system.shutdown()
        raise


async def _handlers_started(app: App) -> None:
    """Wait until every handler's and remote's ``started`` hook finished: route methods are
    invoked directly, not through the mailbox, so nothing else would hold a request back
    until then. A hook that fails stops the start-up with a clear error."""
    refs = [*app._handlers.values(), *app._remotes.values()]
    try:
        await asyncio.gather(*(ref.ask(Ready(), timeout=None) for ref in refs))
    except ActorStopped as exc:
        failed = [ref.name for ref in refs if not ref.alive]
        await app.system.shutdown()
        if app.cluster is not None:
            await app.cluster.close()
        raise RuntimeError(
            f"{', '.join(failed) or 'a handler'} failed in started() (see the log above)"
        ) from exc


async def start_metrics(app: App) -> None:
    """Add the reporters the options enable, start them, and spawn the sampler (which reads
    the app's counts through the functions it is given)."""
    for reporter in reporters_from_config(app.config):
        app.metrics.add(reporter)
    await app.metrics.start()
    if not app.metrics.enabled:
        return

    def cluster_counts() -> ClusterCounts | None:
        cluster = app.cluster
        if cluster is None:
            return None
        discovery = cluster.discovery
        servers = {kind: len(discovery.servers(kind)) for kind in discovery.server_types()}
        return ClusterCounts(servers, cluster.dropped_messages)

    app.system.spawn(
        MetricsSampler,
        app.metrics,
        app.config.metrics_period,
        lambda: app.connection_count,
        cluster_counts,
        name="metrics-sampler",
    )


def spawn_handlers(app: App) -> None:
    """Spawn every handler and remote actor and index their routes (and the dictionary)."""
    from actors.docs import Sys

    specs = list(app._handler_specs)
    if not any(cls.service_name() == Sys.service for cls, _, _ in specs):
        specs.append((Sys, (), {}))
    for cls, args, kwargs in specs:
        ref = app.system.spawn(cls, *args, name=f"handler:{cls.service_name()}", **kwargs)
        actor = ref._cell.actor
        assert isinstance(actor, Handler)
        actor.app = app
        service = cls.service_name()
        app._handlers[service] = ref
        for method, spec in cls.method_specs().items():
            route = LocalRoute(actor, spec)
            app.local_routes[f"{service}.{method}"] = route
            app.local_routes[f"{app.server_type}.{service}.{method}"] = route
    for cls, args, kwargs in app._remote_specs:
        ref = app.system.spawn(cls, *args, name=f"remote:{cls.service_name()}", **kwargs)
        app._remotes[cls.service_name()] = ref
        actor = ref._cell.actor
        assert isinstance(actor, Remote)
        actor.app = app
        for method, spec in cls.method_specs().items():
            app.remote_routes[f"{app.server_type}.{cls.service_name()}.{method}"] = LocalRoute(
                actor, spec
            )
    if app.config.route_dictionary and app.local_routes:
        app.route_dictionary = RouteDictionary.from_routes(app.local_routes)


async def stop_app(app: App) -> None:
    """Graceful stop: stop accepting, let in-flight requests finish (bounded by
    ``shutdown_timeout``), kick every session, then stop all actors. Idempotent."""
    if app._stopping or not app._started:
        return
    app._stopping = True
    log.info("[%s] stopping", app.server_id)
    for gateway in app._gateways:
        with contextlib.suppress(Exception):
            await gateway.ask(StopAccepting(), timeout=5)
    if app.cluster is not None:
        await app.cluster.leave()  # no new RPCs are routed here from now on
    try:
        await asyncio.wait_for(app.requests_in_flight.zero.wait(), app.config.shutdown_timeout)
    except TimeoutError:
        log.warning(
            "[%s] %d request(s) still in flight after %ss",
            app.server_id,
            app.requests_in_flight.count,
            app.config.shutdown_timeout,
        )
        app.invoker.cancel()
    for session in app.sessions:
        session.ref.tell(KickSession("server shutting down"))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app.connections.zero.wait(), 2.0)
    await app.modules.stop()
    if app.cluster is not None:
        await app.cluster.close()
    await app.system.shutdown()
    await app.metrics.stop()
    log.info("[%s] stopped", app.server_id)


async def serve_app(app: App) -> None:
    """Start, serve until SIGINT/SIGTERM (or :meth:`request_stop`), then stop gracefully.

    With ``drain_sessions`` on, the first signal stops accepting and waits (up to
    ``drain_timeout``) for the connected clients to leave; a second signal skips the wait.
    """
    app._stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, app.request_stop)
    await app.start()
    try:
        await app._stop_requested.wait()
        if app.config.drain_sessions:
            from actors.draining import drain_sessions

            app._draining = True
            app._stop_requested.clear()  # a second signal sets it again
            await drain_sessions(app, app._stop_requested)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await app.stop()
