"""The NATS bridge actor: the one place where this server's NATS traffic goes in and out.

Reentrant, because it mostly waits on NATS: many RPCs are in flight at once. Inbound messages
(the subscription callback tells it each ``Msg``) are decoded and dispatched without waiting:
a forwarded client message goes to the handler actor with a :class:`BackendSession`, a user RPC
to the remote actor, a frontend control to the local session; the answer is published on the
message's reply subject when the actor replies. A malformed envelope is answered with an error
(when a reply is expected), logged and counted, and never stops the bridge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from actors.actor import Actor
from actors.cluster.backend_session import BackendSession
from actors.cluster.session_events import SESSION_EVENT_ROUTE
from actors.errors import BadRequest, InternalError, RouteNotFound, RpcTimeout
from actors.handler import HandleMessage
from actors.session import KickSession, PushToClient, SendFrame
from actors.tracing import end_span
from transport.envelope import (
    EnvelopeError,
    RpcRequest,
    RpcResponse,
    UserKick,
    UserPush,
    decode_envelope,
    encode_envelope,
)

if TYPE_CHECKING:
    from actors.cluster.cluster import Cluster

log = logging.getLogger(__name__)

_ACK = encode_envelope(RpcResponse())


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """Request ``subject`` and return the raw reply bytes (an encoded RpcResponse)."""

    subject: str
    payload: bytes
    timeout: float


@dataclass(frozen=True, slots=True)
class Publish:
    subject: str
    payload: bytes
    reply_to: str = ""


class NatsBridge(Actor):
    reentrant = True

    def __init__(self, nc: NatsClient, cluster: Cluster) -> None:
        self.nc = nc
        self.cluster = cluster
        self.app = cluster.app

    # -- out -------------------------------------------------------------------------------

    async def on_outbound_call(self, msg: OutboundCall) -> bytes:
        from actors.cluster.cluster import ClusterUnavailable

        try:
            response = await self.nc.request(msg.subject, msg.payload, timeout=msg.timeout)
        except nats.errors.TimeoutError:
            raise RpcTimeout() from None
        except nats.errors.NoRespondersError:
            raise RpcTimeout(f"rpc client: no server answering on {msg.subject}") from None
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.StaleConnectionError,
        ) as exc:
            raise ClusterUnavailable(f"cluster unavailable: {exc}") from exc
        return response.data

    async def on_publish(self, msg: Publish) -> None:
        try:
            await self.nc.publish(msg.subject, msg.payload, reply=msg.reply_to)
        except nats.errors.Error as exc:
            log.warning("[%s] publish to %s failed: %s", self.app.server_id, msg.subject, exc)

    def _respond(self, reply_to: str, response: RpcResponse | bytes) -> None:
        if reply_to:
            payload = response if isinstance(response, bytes) else encode_envelope(response)
            self.ref.tell(Publish(reply_to, payload))

    # -- in --------------------------------------------------------------------------------

    def on_msg(self, msg: Msg) -> None:
        from actors.cluster.cluster import error_response

        try:
            envelope = decode_envelope(msg.data)
        except EnvelopeError as exc:
            self.cluster.dropped_messages += 1
            log.warning(
                "[%s] dropped a malformed message on %s: %s", self.app.server_id, msg.subject, exc
            )
            self._respond(msg.reply, error_response(BadRequest(str(exc))))
            return
        if isinstance(envelope, RpcRequest):
            self._request(envelope, msg.reply)
        elif isinstance(envelope, UserPush):
            session = self.app.sessions.by_uid(envelope.uid)
            if session is not None:
                session.ref.tell(
                    SendFrame(self.app.encode_push_packet(envelope.route, envelope.data))
                )
                self._respond(msg.reply, _ACK)
        elif isinstance(envelope, UserKick):
            session = self.app.sessions.by_uid(envelope.uid)
            if session is not None:
                session.kick(envelope.reason)
                self._respond(msg.reply, _ACK)
        else:
            log.debug(
                "[%s] ignoring %s on %s", self.app.server_id, type(envelope).__name__, msg.subject
            )

    def _request(self, request: RpcRequest, reply_to: str) -> None:
        from actors.cluster.cluster import RPC_SERIALIZER, error_response

        app = self.app
        if request.kind == "sys" and request.route in _CONTROLS:
            self.run_task(self._control(request, reply_to))
            return
        routes = app.local_routes if request.kind == "sys" else app.remote_routes
        route = routes.get(request.route)
        if route is None:
            self._respond(reply_to, error_response(RouteNotFound(request.route)))
            return
        if request.session is None and request.kind == "sys":
            self._respond(reply_to, error_response(BadRequest("forwarded message without session")))
            return
        session = (
            BackendSession(request.session, app, self.cluster, read_only=request.kind == "user")
            if request.session is not None
            else None
        )
        bridge = self
        span = app.tracing.start_rpc_server_span(request) if app.tracing.enabled else None

        def reply(result: Any, error: BaseException | None) -> None:
            app.request_finished()
            if span is not None:
                end_span(span, error)
            if error is not None:
                bridge._respond(reply_to, error_response(error))
            else:
                bridge._respond(reply_to, RpcResponse(data=result or b""))

        app.request_started()  # a graceful stop waits for inbound RPCs too
        route.ref.request(
            HandleMessage(
                route.spec,
                request.route,
                session,  # type: ignore[arg-type]
                request.data,
                request.notify,
                RPC_SERIALIZER if request.kind == "user" else None,
                span=span,
            ),
            reply,
        )

    async def _control(self, request: RpcRequest, reply_to: str) -> None:
        """Frontend side of what a backend session asks: bind, push data, push, kick."""
        from actors.cluster.cluster import error_response

        try:
            body = msgpack.unpackb(request.data, raw=False)
            if request.route == SESSION_EVENT_ROUTE:
                await self._session_event(request, body)
                return
            if request.route in _USER_CONTROLS:
                self._user_control(request.route, body)
                if not request.notify:
                    self._respond(reply_to, _ACK)
                return
            session = self.app.sessions.get(int(body["sid"]))
            if session is None:
                raise InternalError(f"session {body['sid']} not found on {self.app.server_id}")
            if request.route == "sys.bind":
                await session.bind(str(body["uid"]))
            elif request.route == "sys.pushsession":
                session.data = dict(body["data"])
            elif request.route == "sys.push":
                session.ref.tell(PushToClient(str(body["route"]), bytes(body["data"])))
            elif request.route == "sys.kick":
                session.ref.tell(KickSession(str(body.get("reason", ""))))
        except Exception as exc:
            if not request.notify:
                self._respond(reply_to, error_response(exc))
            else:
                log.warning("[%s] %s failed: %s", self.app.server_id, request.route, exc)
            return
        if not request.notify:
            self._respond(reply_to, _ACK)

    async def _session_event(self, request: RpcRequest, body: dict[str, Any]) -> None:
        """Backend side: a session this server served bound or closed on its frontend."""
        if request.session is None:
            raise BadRequest("session event without a session")
        session = BackendSession(request.session, self.app, self.cluster, read_only=True)
        await self.app.remote_session_events.dispatch(
            str(body["event"]), session, {str(r) for r in body.get("routes", [])}
        )

    def _user_control(self, route: str, body: dict[str, Any]) -> None:
        """Frontend side of a push or kick sent to this frontend by uid (binding storage)."""
        uid = str(body["uid"])
        session = self.app.sessions.by_uid(uid)
        if session is None:
            raise InternalError(f"uid {uid} is not bound on {self.app.server_id}")
        if route == PUSH_USER_ROUTE:
            packet = self.app.encode_push_packet(str(body["route"]), bytes(body["data"]))
            session.ref.tell(SendFrame(packet))
        else:
            session.kick(str(body.get("reason", "")))


PUSH_USER_ROUTE = "sys.pushuser"
"""Push to a uid bound on the target frontend: ``{"uid", "route", "data"}``."""
KICK_USER_ROUTE = "sys.kickuser"
"""Kick a uid bound on the target frontend: ``{"uid", "reason"}``."""
_USER_CONTROLS = frozenset({PUSH_USER_ROUTE, KICK_USER_ROUTE})
_CONTROLS = frozenset(
    {"sys.bind", "sys.pushsession", "sys.push", "sys.kick", SESSION_EVENT_ROUTE, *_USER_CONTROLS}
)
