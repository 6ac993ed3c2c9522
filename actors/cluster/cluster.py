"""Cluster mode: RPCs between servers found in etcd (Pitaya's rules), over NATS or gRPC.

The pieces, one module each:

* ``discovery``: who is alive, by type (etcd, Pitaya's keys); ``router``: which one serves a
  route;
* ``rpc``: the RPCClient/RPCServer seam, implemented by ``nats_rpc`` (default, Pitaya's
  subjects) and ``grpc_rpc`` (``rpc_transport="grpc"``, no NATS); ``defaults`` builds the
  discovery and RPC from the config when the app was given none (``memory`` has in-memory
  ones for tests);
* ``bridge``: the reentrant actor every call goes out through and every inbound envelope is
  dispatched by (to handler and remote actors, or frontend controls);
* ``users``: push and kick by uid, bind notices, backends' session events;
* ``backend_session``: the session a backend handler sees; ``groups``: etcd groups.

A target that does not answer within ``rpc_timeout`` (or cannot be reached) gives
``PIT-408`` (Pitaya's code); requests while this server's transport is down fail at once with
``PIT-500``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgpack

from actors.cluster.bridge import Inbound, OutboundCall, OutboundNotify, RpcBridge
from actors.cluster.defaults import default_discovery, default_rpc
from actors.cluster.discovery import ServerInfo, ServiceDiscovery
from actors.cluster.router import Router
from actors.cluster.rpc import (
    GRPC,
    NATS,
    ClusterStartupError,
    ClusterUnavailable,
    Respond,
    RPCClient,
    RPCServer,
)
from actors.cluster.subjects import server_subject, user_subject
from actors.cluster.users import ClusterUsers
from actors.errors import InternalError, PitayaError, RpcTimeout
from actors.metrics.rpc import observe_rpc
from transport.envelope import (
    RpcRequest,
    RpcResponse,
    SessionSnapshot,
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


class Cluster:
    """The cluster side of one server: discovery, router, RPC client and server, bridge.

    ``discovery`` and ``rpc`` (a client and a server) are the seams the app was given, or
    built from the config (``actors.cluster.defaults``) when None.
    """

    def __init__(
        self,
        app: App,
        *,
        discovery: ServiceDiscovery | None = None,
        rpc: tuple[RPCClient, RPCServer] | None = None,
    ) -> None:
        self.app = app
        config = app.config
        self.me = ServerInfo(
            id=app.server_id,
            type=app.server_type,
            frontend=app.is_frontend,
            metadata=dict(config.metadata),
        )
        self.dropped_messages = 0
        """Inbound messages that will never be handled: malformed envelopes the bridge
        dropped, and messages NATS dropped because this server read too slowly (slow
        consumer). Reported as Pitaya's ``rpc_server_dropped_messages`` gauge."""
        self.discovery: ServiceDiscovery = (
            discovery if discovery is not None else default_discovery(config, app.system)
        )
        self.router = Router(self.discovery)
        if rpc is None:
            rpc = default_rpc(config, self.discovery, on_dropped=self._dropped)
            self._via = {NATS: "NATS", GRPC: "gRPC"}.get(config.rpc_transport, "RPC")
        else:
            self._via = type(rpc[0]).__name__
        self.rpc_client: RPCClient = rpc[0]
        self.rpc_server: RPCServer = rpc[1]
        self.users = ClusterUsers(self, self.rpc_client.user_subjects)
        self.bridge: ActorRef | None = None
        self.bindings: UserDelivery | None = None
        """Set by the binding storage module: pushes and kicks by uid go straight to the
        frontend each uid is bound on (the only way without per-uid subjects, as gRPC)."""

    def _dropped(self) -> None:
        self.dropped_messages += 1

    @property
    def connected(self) -> bool:
        """RPCs can go out and come in (readiness; discovery registration aside)."""
        return self.rpc_client.connected and self.rpc_server.serving

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach the RPC transport and etcd; ClusterStartupError names what cannot be
        reached (or what is missing)."""
        config = self.app.config
        if self.rpc_client.user_subjects is None:
            self._require_binding_storage()
        await self.rpc_client.connect()
        try:
            await self.discovery.connect()
        except EtcdUnavailable as exc:
            await self.rpc_client.close()
            raise ClusterStartupError(
                f"cannot reach etcd at {config.etcd_endpoints}: {exc}"
            ) from exc

    def _require_binding_storage(self) -> None:
        from actors.modules.binding_storage import BindingStorage

        if not any(isinstance(module, BindingStorage) for _, module in self.app.modules):
            what = "rpc_transport='grpc'" if self._via == "gRPC" else self._via
            raise ClusterStartupError(
                f"{what} has no per-uid subjects: reaching users by uid needs the binding "
                "storage module (as Pitaya's gRPC RPC): app.register_module(BindingStorage(app), "
                "'binding_storage') on every server"
            )

    async def join(self) -> None:
        """Serve RPCs and register in discovery (the local actors are spawned by now)."""
        config = self.app.config
        bridge = self.bridge = self.app.system.spawn(
            RpcBridge, self.rpc_client, self, name="rpc-bridge"
        )

        def dispatch(data: bytes, respond: Respond | None) -> None:
            bridge.tell(Inbound(data, respond))

        try:
            await self.rpc_server.start(self.me, dispatch)
            # Before registering: peers read how to reach this server from discovery (gRPC).
            self.me.metadata.update(self.rpc_server.metadata)
            await self.discovery.start(self.me)
        except EtcdUnavailable as exc:
            await self.close()
            raise ClusterStartupError(
                f"cannot register in etcd at {config.etcd_endpoints}: {exc}"
            ) from exc
        except BaseException:
            await self.close()
            raise
        if self.me.frontend:
            self.app.sessions.on_after_session_bind(self.users.bound)
            self.app.sessions.on_session_closing(self.users.closing)
        log.info(
            "[%s] joined the cluster (%s, %s)",
            self.me.id,
            self._via,
            type(self.discovery).__name__,
        )

    def group_service(self) -> GroupService:
        """The group service the discovery keeps (etcd groups by default), the cluster's
        default; members leave on disconnect. ClusterStartupError if it keeps none."""
        groups = self.discovery.group_service(self.app.send_push_to_users)
        if groups is None:
            raise ClusterStartupError(
                f"{type(self.discovery).__name__} keeps no groups: set a group service shared "
                "by the servers (app.set_group_service(...)) before the app starts"
            )
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
        """Stop serving RPCs and release etcd and connections (after in-flight work)."""
        try:
            await self.discovery.close()
        except Exception:
            log.exception("[%s] closing discovery failed", self.me.id)
        for what, step in (("server", self.rpc_server.stop), ("client", self.rpc_client.close)):
            try:
                await step()
            except Exception:
                log.exception("[%s] closing the RPC %s failed", self.me.id, what)

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
        if self.bridge is None or not self.rpc_client.connected:
            reply(None, ClusterUnavailable(f"cluster unavailable: not connected to {self._via}"))
            return
        app = self.app
        if app.metrics.enabled or app.tracing.enabled:
            reply = observe_rpc(app, server.id, server.type, request, reply, parent)
        self.bridge.request(OutboundCall(server, encode_envelope(request), timeout), _unwrap(reply))

    @property
    def ordered(self) -> bool:
        """Forwarded messages sent one after another reach a server in that order (NATS):
        a frontend may pipeline a session's messages (see ``RPCClient.ordered``)."""
        return self.rpc_client.ordered

    def _notify(self, server: ServerInfo, request: RpcRequest) -> None:
        if not self.rpc_client.connected:
            return
        if self.bridge is not None:
            # Through the bridge, in order with the calls sent before and after it.
            self.bridge.tell(OutboundNotify(server, encode_envelope(request)))
        else:
            self.rpc_client.notify(server, encode_envelope(request))

    def forward(
        self,
        server: ServerInfo,
        session: Session,
        route: str,
        data: bytes,
        notify: bool,
        reply: Reply,
        *,
        parent: Span | None = None,
    ) -> None:
        """Send a client message to ``server`` (the router's pick); ``reply(payload, error)``.

        ``parent``: the tracing span of the client message (its RPC span's parent).
        """
        try:
            request = RpcRequest("sys", route, data, snapshot(session, self.me), notify)
        except Exception as exc:
            reply(None, exc)
            return
        if session.served_by is None:
            session.served_by = {}
        session.served_by.setdefault(server.id, set()).add(route)
        # A notify is a request too, answered with an empty ack once handled (as Pitaya
        # does): the session's next message, maybe for another server, waits for it.
        self._call(server, request, reply, self.app.config.rpc_timeout, parent)

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
        payload = await self._ask(server, request, timeout or self.app.config.rpc_timeout)
        return RPC_SERIALIZER.unmarshal(payload) if payload else None

    async def _ask(self, server: ServerInfo, request: RpcRequest, timeout: float) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def reply(result: Any, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        self._call(server, request, reply, timeout)
        return await future

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
        await self._ask(server, request, self.app.config.rpc_timeout)

    def frontend_notify(
        self, frontend_id: str, route: str, body: dict[str, Any], frontend_type: str | None = None
    ) -> None:
        server = self._frontend(frontend_id, frontend_type)
        if server is None:
            log.warning("[%s] frontend %s unknown; dropping %s", self.me.id, frontend_id, route)
            return
        request = RpcRequest("sys", route, msgpack.packb(body, use_bin_type=True), notify=True)
        self._notify(server, request)

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_type: str | None
    ) -> list[str]:
        """Push to uids bound on any frontend; returns those no frontend acknowledged."""
        return await self.users.push_to_users(route, payload, uids, frontend_type)

    async def kick_users(
        self, uids: list[str], reason: str, frontend_type: str | None
    ) -> list[str]:
        """Kick uids bound on any frontend; returns those no frontend acknowledged."""
        return await self.users.kick_users(uids, reason, frontend_type)


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
    from actors.errors import as_pitaya_error

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
