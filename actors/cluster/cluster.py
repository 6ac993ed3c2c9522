"""Cluster mode: NATS RPCs between servers found in etcd (Pitaya's subjects and rules).

Subjects (as Pitaya's NATS RPC):

* ``pitaya/servers/<type>/<id>``: requests to one server (forwarded client messages, user
  RPCs, and the frontend controls ``sys.bind``/``sys.pushsession``/``sys.push``/``sys.kick``
  that backend sessions use);
* ``pitaya/<frontendType>/user/<uid>/push`` and ``.../kick``: to a bound user's frontend;
* ``pitaya/<frontendType>/bindings``: a uid was bound (for unique-session modules).

Outbound calls go through the reentrant :class:`NatsBridge` actor; inbound messages are handed
to it by the NATS subscription and dispatched to handler and remote actors without waiting.
A target that does not answer within ``rpc_timeout`` gives ``PIT-408`` (Pitaya's code);
requests while NATS is down fail at once with ``PIT-500``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import msgpack
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from actors.cluster.discovery import EtcdServiceDiscovery, ServerInfo, ServiceDiscovery
from actors.cluster.nats_bridge import NatsBridge, OutboundCall, Publish
from actors.cluster.router import Router
from actors.cluster.session_events import BIND, CLOSE, SESSION_EVENT_ROUTE
from actors.errors import ActorError, InternalError, PitayaError, RpcTimeout
from actors.metrics.rpc import observe_rpc
from transport.envelope import (
    BindNotice,
    RpcRequest,
    RpcResponse,
    SessionSnapshot,
    UserKick,
    UserPush,
    decode_envelope,
    encode_envelope,
)
from transport.errorbody import ErrorBody
from transport.etcd import EtcdUnavailable
from transport.serializers import MsgpackSerializer

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.app import App
    from actors.groups import GroupService
    from actors.kernel import ActorRef, Reply
    from actors.modules.binding_storage import UserDelivery
    from actors.session import Session

log = logging.getLogger(__name__)

RPC_SERIALIZER = MsgpackSerializer()
"""User RPC arguments and results travel as msgpack between servers."""


class ClusterStartupError(ActorError):
    """NATS or etcd cannot be reached when a cluster server starts; says which."""


class ClusterUnavailable(InternalError):
    """``PIT-500``: NATS is not connected, so the request cannot leave this server."""


def server_subject(server_type: str, server_id: str) -> str:
    return f"pitaya/servers/{server_type}/{server_id}"


def user_subject(frontend_type: str, uid: str, what: str) -> str:
    return f"pitaya/{frontend_type}/user/{uid}/{what}"


class Cluster:
    """The cluster side of one server: discovery, router, NATS bridge."""

    def __init__(self, app: App, discovery: ServiceDiscovery | None = None) -> None:
        self.app = app
        config = app.config
        self.me = ServerInfo(
            id=app.server_id,
            type=app.server_type,
            frontend=app.is_frontend,
            metadata=dict(config.metadata),
        )
        endpoints = [e.strip() for e in config.etcd_endpoints.split(",") if e.strip()]
        self.discovery: ServiceDiscovery = discovery or EtcdServiceDiscovery(
            app, self.me, endpoints
        )
        self.router = Router(self.discovery)
        self.nc: NatsClient | None = None
        self.bridge: ActorRef | None = None
        self.bindings: UserDelivery | None = None
        """Set by the binding storage module: pushes and kicks by uid go straight to the
        frontend each uid is bound on, instead of the per-uid subjects."""
        self._user_subscriptions: dict[str, list[Any]] = {}
        self.dropped_messages = 0
        """Inbound NATS messages that will never be handled: malformed envelopes the bridge
        dropped, and messages NATS dropped because this server read too slowly (slow
        consumer). Reported as Pitaya's ``rpc_server_dropped_messages`` gauge."""

    @property
    def nats_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach NATS and etcd; ClusterStartupError names the one that cannot be reached."""
        config = self.app.config
        urls = [u.strip() for u in config.nats_url.split(",") if u.strip()]
        try:
            # nats-py retries the first connection forever when reconnects are allowed:
            # bound it, so an unreachable NATS is reported instead of hanging the start-up.
            self.nc = await asyncio.wait_for(
                self._connect_nats(urls), config.cluster_connect_timeout
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise ClusterStartupError(
                f"cannot reach NATS at {config.nats_url}: {exc or type(exc).__name__}"
            ) from exc
        try:
            await self.discovery.connect()
        except EtcdUnavailable as exc:
            await self.nc.close()
            raise ClusterStartupError(
                f"cannot reach etcd at {config.etcd_endpoints}: {exc}"
            ) from exc

    async def _connect_nats(self, urls: list[str]) -> NatsClient:
        config = self.app.config
        return await nats.connect(
            servers=urls,
            name=self.app.server_id,
            connect_timeout=config.cluster_connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=self._error,
        )

    async def join(self) -> None:
        """Serve RPCs and register in discovery (the local actors are spawned by now)."""
        assert self.nc is not None, "connect() first"
        config = self.app.config
        self.bridge = self.app.system.spawn(NatsBridge, self.nc, self, name="nats-bridge")
        subject = server_subject(self.me.type, self.me.id)
        await self.nc.subscribe(subject, cb=self._inbound)
        await self.nc.flush(timeout=max(1, round(config.cluster_connect_timeout)))
        try:
            await self.discovery.start()
        except EtcdUnavailable as exc:
            await self.close()
            raise ClusterStartupError(
                f"cannot register in etcd at {config.etcd_endpoints}: {exc}"
            ) from exc
        if self.me.frontend:
            self.app.sessions.on_after_session_bind(self._bound)
            self.app.sessions.on_session_close(self._unbind_subscriptions)
        log.info(
            "[%s] joined the cluster (nats %s, etcd %s)",
            self.me.id,
            config.nats_url,
            config.etcd_endpoints,
        )

    def group_service(self) -> GroupService:
        """The etcd-backed group service (cluster default); members leave on disconnect."""
        from actors.cluster.groups import EtcdGroupService

        etcd = getattr(self.discovery, "etcd", None)
        if etcd is None:
            raise RuntimeError("cluster groups need the etcd discovery (or set_group_service)")
        groups = EtcdGroupService(self.app, etcd)
        if self.me.frontend:

            async def leave(session: Session) -> None:
                if session.uid is not None:
                    try:
                        await groups.leave_all(session.uid)
                    except EtcdUnavailable as exc:
                        log.warning(
                            "[%s] could not remove %s from groups: %s", self.me.id, session.uid, exc
                        )

            self.app.sessions.on_session_close(leave)
        return groups

    async def leave(self) -> None:
        """Deregister from discovery (revoke the lease): no new RPCs get routed here."""
        try:
            await self.discovery.stop()
        except Exception:
            log.exception("[%s] leaving discovery failed", self.me.id)

    async def close(self) -> None:
        """Drain and close NATS, release etcd (after in-flight work finished)."""
        try:
            await self.discovery.close()
        except Exception:
            log.exception("[%s] closing discovery failed", self.me.id)
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), 5)
            except Exception:
                await self.nc.close()

    async def _disconnected(self) -> None:
        log.warning("[%s] disconnected from NATS; requests fail until it is back", self.me.id)

    async def _reconnected(self) -> None:
        log.info("[%s] reconnected to NATS", self.me.id)

    async def _error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.dropped_messages += 1  # NATS dropped an inbound message: we fell behind
        log.warning("[%s] NATS error: %s", self.me.id, exc)

    # -- outbound --------------------------------------------------------------------------

    def _call(
        self,
        server: ServerInfo,
        request: RpcRequest,
        reply: Reply,
        timeout: float,
        parent: Span | None = None,
    ) -> None:
        """Send ``request`` to ``server``; ``reply(payload, error)``, the remote's errors
        decoded. Timed and traced when metrics or tracing are on (``parent``: the span the
        call belongs to)."""
        if not self.nats_connected or self.bridge is None:
            reply(None, ClusterUnavailable("cluster unavailable: not connected to NATS"))
            return
        app = self.app
        if app.metrics.enabled or app.tracing.enabled:
            reply = observe_rpc(app, server.id, server.type, request, reply, parent)
        subject = server_subject(server.type, server.id)
        self.bridge.request(
            OutboundCall(subject, encode_envelope(request), timeout), _unwrap(reply)
        )

    def forward(
        self,
        session: Session,
        route: str,
        server_type: str,
        data: bytes,
        notify: bool,
        reply: Reply,
        *,
        parent: Span | None = None,
    ) -> None:
        """Send a client message to a server of ``server_type``; ``reply(payload, error)``.

        ``parent``: the tracing span of the client message (its RPC span's parent).
        """
        try:
            server = self.router.pick(server_type, route, session)
            request = RpcRequest("sys", route, data, snapshot(session, self.me), notify)
        except Exception as exc:
            reply(None, exc)
            return
        if session.served_by is None:
            session.served_by = {}
        session.served_by.setdefault(server.id, set()).add(route)
        if notify:
            app = self.app
            if app.metrics.enabled or app.tracing.enabled:
                reply = observe_rpc(app, server.id, server.type, request, reply, parent)
            self.publish(server_subject(server.type, server.id), encode_envelope(request))
            reply(None, None)
            return
        self._call(server, request, reply, self.app.config.rpc_timeout, parent)

    def _session_event(self, session: Session, event: str) -> None:
        """Tell every backend that served ``session`` that it bound or closed."""
        if not session.served_by:
            return
        for server_id, routes in session.served_by.items():
            server = self.discovery.server(server_id)
            if server is None:
                continue
            body = msgpack.packb({"event": event, "routes": sorted(routes)}, use_bin_type=True)
            request = RpcRequest(
                "sys", SESSION_EVENT_ROUTE, body, snapshot(session, self.me), notify=True
            )
            self.publish(server_subject(server.type, server_id), encode_envelope(request))

    async def rpc(
        self,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
    ) -> Any:
        """User RPC to a server of the route's type, chosen by the router."""
        server_type = _server_type(route)
        server = self.router.pick(server_type, route, session)
        return await self.rpc_to(server.id, route, arg, session=session, timeout=timeout)

    async def rpc_to(
        self,
        server_id: str,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
    ) -> Any:
        """User RPC to one server by id; returns the remote method's result."""
        server = self.discovery.server(server_id)
        if server is None:
            raise InternalError(f"server {server_id} not found in discovery")
        from actors.payload import encode_result

        request = RpcRequest(
            "user",
            route,
            encode_result(arg, RPC_SERIALIZER),
            snapshot(session, self.me) if session is not None else None,
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def reply(result: Any, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        self._call(server, request, reply, timeout or self.app.config.rpc_timeout)
        payload = await future
        return RPC_SERIALIZER.unmarshal(payload) if payload else None

    def publish(self, subject: str, payload: bytes, reply_to: str = "") -> None:
        if self.bridge is not None and self.nats_connected:
            self.bridge.tell(Publish(subject, payload, reply_to))

    def _frontend(self, frontend_id: str, frontend_type: str | None) -> ServerInfo | None:
        """The frontend by id; a backend session knows its frontend's type, so a frontend this
        server's table has not seen yet (the watch lags) is still reachable."""
        server = self.discovery.server(frontend_id)
        if server is None and frontend_type:
            server = ServerInfo(id=frontend_id, type=frontend_type, frontend=True)
        return server

    async def frontend_call(
        self, frontend_id: str, route: str, body: dict[str, Any], frontend_type: str | None = None
    ) -> None:
        """A control request from a backend session to its frontend; raises its error."""
        server = self._frontend(frontend_id, frontend_type)
        if server is None:
            raise InternalError(f"frontend {frontend_id} not found in discovery")
        request = RpcRequest("sys", route, msgpack.packb(body, use_bin_type=True))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def reply(result: Any, error: BaseException | None) -> None:
            if not future.done():
                future.set_exception(error) if error else future.set_result(result)

        self._call(server, request, reply, self.app.config.rpc_timeout)
        await future

    def frontend_notify(
        self, frontend_id: str, route: str, body: dict[str, Any], frontend_type: str | None = None
    ) -> None:
        server = self._frontend(frontend_id, frontend_type)
        if server is None:
            log.warning("[%s] frontend %s unknown; dropping %s", self.me.id, frontend_id, route)
            return
        request = RpcRequest("sys", route, msgpack.packb(body, use_bin_type=True), notify=True)
        self.publish(server_subject(server.type, frontend_id), encode_envelope(request))

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_type: str | None
    ) -> list[str]:
        """Push to uids bound on any frontend; returns those no frontend acknowledged."""
        types = [frontend_type] if frontend_type else self._frontend_types()
        make = lambda uid: UserPush(uid, route, payload)  # noqa: E731
        if self.bindings is not None:  # uids it could not look up take the per-uid subjects
            failed, unknown = await self.bindings.push_to_users(route, payload, uids, types)
            return failed + await self._to_users(unknown, types, make, "push")
        return await self._to_users(uids, types, make, "push")

    async def kick_users(
        self, uids: list[str], reason: str, frontend_type: str | None
    ) -> list[str]:
        types = [frontend_type] if frontend_type else self._frontend_types()
        make = lambda uid: UserKick(uid, reason)  # noqa: E731
        if self.bindings is not None:
            failed, unknown = await self.bindings.kick_users(reason, uids, types)
            return failed + await self._to_users(unknown, types, make, "kick")
        return await self._to_users(uids, types, make, "kick")

    def _frontend_types(self) -> list[str]:
        return sorted(
            {
                s.type
                for t in self.discovery.server_types()
                for s in self.discovery.servers(t)
                if s.frontend
            }
        )

    async def _to_users(self, uids: list[str], types: list[str], make: Any, what: str) -> list[str]:
        if self.nc is None or not self.nats_connected:
            return list(uids)
        nc = self.nc
        timeout = self.app.config.rpc_timeout

        async def one(uid: str) -> bool:
            payload = encode_envelope(make(uid))
            for frontend_type in types:
                try:
                    await nc.request(user_subject(frontend_type, uid, what), payload, timeout)
                    return True
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    continue
                except nats.errors.Error:
                    return False
            return False

        results = await asyncio.gather(*(one(uid) for uid in uids))
        return [uid for uid, ok in zip(uids, results, strict=True) if not ok]

    # -- inbound ---------------------------------------------------------------------------

    async def _inbound(self, msg: Msg) -> None:
        if self.bridge is not None:
            self.bridge.tell(msg)

    async def _bound(self, session: Session) -> None:
        """Frontend: listen on the user subjects of a newly bound uid; announce the bind."""
        uid = session.uid
        if uid is None or self.nc is None:
            return
        subs = [
            await self.nc.subscribe(user_subject(self.me.type, uid, "push"), cb=self._inbound),
            await self.nc.subscribe(user_subject(self.me.type, uid, "kick"), cb=self._inbound),
        ]
        old = self._user_subscriptions.pop(uid, None)
        self._user_subscriptions[uid] = subs
        for sub in old or []:
            await sub.unsubscribe()
        self.publish(
            f"pitaya/{self.me.type}/bindings", encode_envelope(BindNotice(uid, self.me.id))
        )
        self._session_event(session, BIND)

    async def _unbind_subscriptions(self, session: Session) -> None:
        self._session_event(session, CLOSE)
        uid = session.uid
        if uid is None or self.app.sessions.by_uid(uid) is not None:
            return  # another session holds the uid now
        for sub in self._user_subscriptions.pop(uid, []):
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


def snapshot(session: Session, me: ServerInfo) -> SessionSnapshot:
    handshake = session.handshake
    return SessionSnapshot(
        id=session.id,
        frontend_id=getattr(session, "frontend_id", me.id),
        frontend_type=getattr(session, "frontend_type", me.type),
        uid=session.uid,
        data=session.data,
        handshake={"sys": handshake.sys, "user": handshake.user} if handshake else None,
    )


def _server_type(route: str) -> str:
    parts = route.split(".")
    if len(parts) != 3 or not all(parts):
        raise PitayaError("PIT-400", f"RPC route must be serverType.service.method, not {route!r}")
    return parts[0]


def _unwrap(reply: Reply) -> Reply:
    """Turn the bridge's RpcResponse into ``reply(payload, None)`` or a PitayaError."""

    def unwrap(result: Any, error: BaseException | None) -> None:
        if error is not None:
            reply(None, error)
            return
        try:
            response = decode_envelope(result)
        except Exception as exc:
            reply(None, InternalError(f"malformed RPC response: {exc}"))
            return
        if not isinstance(response, RpcResponse):
            reply(None, InternalError("RPC answered with a non-response envelope"))
        elif response.error is not None:
            e = response.error
            reply(None, PitayaError(e.code, e.msg, e.metadata))
        else:
            reply(response.data, None)

    return unwrap


def error_response(error: BaseException) -> RpcResponse:
    from actors.session_actor import as_pitaya_error

    pitaya = as_pitaya_error(error)
    return RpcResponse(error=ErrorBody(pitaya.code, pitaya.msg, pitaya.metadata))


__all__ = [
    "Cluster",
    "ClusterStartupError",
    "ClusterUnavailable",
    "RpcTimeout",
    "error_response",
    "server_subject",
    "snapshot",
    "user_subject",
]
