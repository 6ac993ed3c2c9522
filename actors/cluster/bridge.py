"""The RPC bridge actor: the one place where this server's cluster RPCs go out and come in.

It sits on top of the RPC seam (``actors.cluster.rpc``) and is the same for NATS and gRPC.
Reentrant, because it mostly waits on the network: many calls are in flight at once.

* Out: an :class:`OutboundCall` is sent with the :class:`~actors.cluster.rpc.RPCClient`; the
  answer (an encoded RpcResponse) is the reply.
* In: the :class:`~actors.cluster.rpc.RPCServer` tells it an :class:`Inbound` per envelope.
  It is decoded and dispatched without waiting: a forwarded client message goes to the
  handler actor with a :class:`BackendSession`, a user RPC to the remote actor, a frontend
  control to the local session; the answer goes back through the envelope's ``respond`` when
  the actor replies. A malformed envelope is answered with ``PIT-400`` (when an answer is
  expected), logged and counted, and never stops the bridge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from actors.actor import Actor
from actors.cluster.backend_session import BackendSession
from actors.cluster.session_events import SESSION_EVENT_ROUTE
from actors.errors import BadRequest, InternalError, RouteNotFound, UserNotHere
from actors.invocation import Sequencer
from actors.session import KickSession, PushToClient, SendFrame
from actors.tracing import end_span
from transport.envelope import (
    BindNotice,
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
    from actors.cluster.discovery import ServerInfo
    from actors.cluster.rpc import Respond, RPCClient

log = logging.getLogger(__name__)

_ACK = encode_envelope(RpcResponse())

PUSH_USER_ROUTE = "sys.pushuser"
"""Push to a uid bound on the target frontend: ``{"uid", "route", "data"}``."""
KICK_USER_ROUTE = "sys.kickuser"
"""Kick a uid bound on the target frontend: ``{"uid", "reason"}``."""
_USER_CONTROLS = frozenset({PUSH_USER_ROUTE, KICK_USER_ROUTE})
_CONTROLS = frozenset(
    {"sys.bind", "sys.pushsession", "sys.push", "sys.kick", SESSION_EVENT_ROUTE, *_USER_CONTROLS}
)


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """Send ``payload`` (an encoded RpcRequest) to ``server``; the reply is the raw answer
    (an encoded RpcResponse)."""

    server: ServerInfo
    payload: bytes
    timeout: float


@dataclass(frozen=True, slots=True)
class OutboundNotify:
    """Send ``payload`` (an encoded RpcRequest that expects no answer) to ``server``, in
    this bridge's order with the calls."""

    server: ServerInfo
    payload: bytes


@dataclass(frozen=True, slots=True)
class Inbound:
    """An envelope that arrived for this server; ``respond`` is None for a notify."""

    data: bytes
    respond: Respond | None


class RpcBridge(Actor):
    reentrant = True

    def __init__(self, client: RPCClient, cluster: Cluster) -> None:
        self.client = client
        self.cluster = cluster
        self.app = cluster.app
        self.sequencer = Sequencer()
        """Forwarded messages of one session run one after another, in arrival order."""

    # -- out -------------------------------------------------------------------------------

    def on_outbound_call(self, msg: OutboundCall) -> Coroutine[Any, Any, bytes]:
        # The client's coroutine itself, not an ``async def`` awaiting it: the kernel runs a
        # returned coroutine as the message's task, and a frame less per call counts here.
        return self.client.call(msg.server, msg.payload, msg.timeout)

    def on_outbound_notify(self, msg: OutboundNotify) -> Coroutine[Any, Any, None]:
        return self.client.send_notify(msg.server, msg.payload)

    # -- in --------------------------------------------------------------------------------

    def on_inbound(self, msg: Inbound) -> None:
        from actors.cluster.cluster import error_response

        respond = msg.respond
        try:
            envelope = decode_envelope(msg.data)
        except EnvelopeError as exc:
            self.cluster.dropped_messages += 1
            log.warning("[%s] dropped a malformed message: %s", self.app.server_id, exc)
            if respond is not None:
                respond(encode_envelope(error_response(BadRequest(str(exc)))))
            return
        if isinstance(envelope, RpcRequest):
            self._request(envelope, respond)
        elif isinstance(envelope, UserPush | UserKick):
            session = self.app.sessions.by_uid(envelope.uid)
            if session is None:
                # Closing or gone: say so at once, so a caller that asked never waits for
                # the RPC timeout over an answer already known.
                if respond is not None:
                    respond(encode_envelope(error_response(UserNotHere(envelope.uid))))
            elif isinstance(envelope, UserPush):
                session.ref.tell(
                    SendFrame(self.app.encode_push_packet(envelope.route, envelope.data))
                )
                if respond is not None:
                    respond(_ACK)
            else:
                session.kick(envelope.reason)
                if respond is not None:
                    respond(_ACK)
        elif isinstance(envelope, BindNotice):
            self.cluster.users.bind_noticed(envelope)
        else:
            log.debug("[%s] ignoring %s", self.app.server_id, type(envelope).__name__)

    def _request(self, request: RpcRequest, respond: Respond | None) -> None:
        from actors.cluster.cluster import RPC_SERIALIZER, error_response

        app = self.app
        if request.kind == "sys" and request.route in _CONTROLS:
            self.run_task(self._control(request, respond))
            return
        routes = app.local_routes if request.kind == "sys" else app.remote_routes
        route = routes.get(request.route)
        if route is None:
            _answer(respond, error_response(RouteNotFound(request.route)))
            return
        if request.session is None and request.kind == "sys":
            _answer(respond, error_response(BadRequest("forwarded message without session")))
            return
        session = (
            BackendSession(request.session, app, self.cluster, read_only=request.kind == "user")
            if request.session is not None
            else None
        )
        span = app.tracing.start_rpc_server_span(request) if app.tracing.enabled else None
        serializer = RPC_SERIALIZER if request.kind == "user" else None

        def reply(result: Any, error: BaseException | None) -> None:
            if span is not None:
                end_span(span, error)
            if respond is not None:
                if error is not None:
                    respond(encode_envelope(error_response(error)))
                else:
                    respond(encode_envelope(RpcResponse(data=result or b"")))

        def run(finish: Callable[[], None] | None = None) -> None:
            def done(result: Any, error: BaseException | None) -> None:
                reply(result, error)
                if finish is not None:
                    finish()

            app.invoker.invoke(
                route,
                request.route,
                session,
                request.data,
                request.notify,
                done,
                serializer=serializer,
                span=span,
            )

        if request.kind == "sys" and request.session is not None:
            # A frontend pipelines one session's messages here: handle them in that order.
            key = (request.session.frontend_id, request.session.id)
            self.sequencer.submit(key, run)
        else:
            run()

    async def _control(self, request: RpcRequest, respond: Respond | None) -> None:
        """Frontend side of what a backend session asks: bind, push data, push, kick."""
        from actors.cluster.cluster import error_response

        try:
            body = msgpack.unpackb(request.data, raw=False)
            if request.route == SESSION_EVENT_ROUTE:
                await self._session_event(request, body)
                return
            if request.route in _USER_CONTROLS:
                self._user_control(request.route, body)
            else:
                await self._session_control(request.route, body)
        except Exception as exc:
            if respond is not None:
                respond(encode_envelope(error_response(exc)))
            else:
                log.warning("[%s] %s failed: %s", self.app.server_id, request.route, exc)
            return
        if respond is not None:
            respond(_ACK)

    async def _session_control(self, route: str, body: dict[str, Any]) -> None:
        session = self.app.sessions.get(int(body["sid"]))
        if session is None:
            raise InternalError(f"session {body['sid']} not found on {self.app.server_id}")
        if route == "sys.bind":
            await session.bind(str(body["uid"]))
        elif route == "sys.pushsession":
            session.data = dict(body["data"])
        elif route == "sys.push":
            session.ref.tell(PushToClient(str(body["route"]), bytes(body["data"])))
        elif route == "sys.kick":
            session.ref.tell(KickSession(str(body.get("reason", ""))))

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
            raise UserNotHere(uid)
        if route == PUSH_USER_ROUTE:
            packet = self.app.encode_push_packet(str(body["route"]), bytes(body["data"]))
            session.ref.tell(SendFrame(packet))
        else:
            session.kick(str(body.get("reason", "")))


def _answer(respond: Respond | None, response: RpcResponse) -> None:
    if respond is not None:
        respond(encode_envelope(response))
