"""Calls from this server to others: forwarded client messages, user RPCs, frontend controls.

Every call goes out through the bridge actor (``actors.cluster.bridge``), so calls and
notifies keep this server's order; the answer is decoded here (``actors.cluster.codec``): the
payload, or the remote's error as a ``PitayaError``. A target that does not answer within the
timeout (or cannot be reached) gives ``PIT-408``; a call while this server's transport is down
fails at once with ``PIT-500``.

A target the transport refuses at once (:class:`~actors.cluster.rpc.ServerUnreachable`: it is
gone, and nobody received the request) is put on probation by the router
(``actors.cluster.router``). A forwarded client message (request or notify) and a user RPC
by route are then sent to another server of the type, since they provably did not run; a
call to a server by id (``rpc_to``, controls to a frontend) fails at once. Nothing else is
ever sent twice: a timeout may hide a request that ran.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message as ProtoMessage

from actors.cluster.bridge import LateAnswer, OutboundCall, OutboundNotify
from actors.cluster.codec import (
    ARGS_KEY,
    EXTRAS_KEY,
    EXTRAS_VERSION,
    INCARNATION_KEY,
    MSGPACK_ARGS,
    PIPELINED_KEY,
    RPC_SERIALIZER,
    SYS,
    USER,
    RpcRequest,
    UserPush,
    decode_json_body,
    encode_push,
    encode_request,
    has_extras,
    read_answer,
    snapshot,
    without_handshake,
)
from actors.cluster.control import (
    GO_CLOSED_SESSION,
    Control,
    HandshakeGet,
    SessionEvent,
    SessionKick,
    SessionPush,
    SessionsOpen,
    UidKick,
    UidPush,
    control_request,
)
from actors.cluster.discovery import ServerInfo
from actors.cluster.rpc import ClusterUnavailable, ServerUnreachable
from actors.cluster.session_events import MAX_SERVED_SERVERS, record_served
from actors.cluster.subjects import MAX_LOGGED_ID, server_problem
from actors.errors import BadRequest, InternalError, PitayaError, RpcTimeout, detached
from actors.logs import ServerLog, Throttle
from actors.metrics.rpc import observe_rpc
from actors.payload import Decoder, decoder_for, encode_result
from actors.propagation import current as current_propagated
from transport import goduration
from transport.protobuf import is_message_class

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.cluster.discovery import ServiceDiscovery
    from actors.cluster.router import Router
    from actors.cluster.rpc import RPCClient
    from actors.kernel import ActorRef, Reply
    from actors.metrics.reporter import Metrics
    from actors.session import Session
    from actors.tracing import Tracing

log = logging.getLogger(__name__)

StartCall = Callable[["ServerInfo", bytes, float, "Reply"], None]
"""``start_call(server, request, timeout, reply)`` of an RPC client that has one."""


class UnsendableRequest(Exception):
    """A request this server cannot encode: its own data a ``protos.Request`` cannot carry
    (say, session data a handler set that is not JSON). A server error (``PIT-500``), not the
    client's, and not a ``PitayaError``, so a failed forwarded notify is logged."""


class RpcArgumentError(BadRequest):
    """``PIT-400``: a user RPC argument the target cannot read: a server that is not ours
    (Go Pitaya) takes protobuf messages only (or bytes already encoded)."""


class Outbound:
    """This server's calls to the others (a :class:`~actors.cluster.control.FrontendLink`).

    ``me``: this server; ``discovery`` and ``router`` find the targets; ``client``: the RPC
    client (its ``connected`` and ``ordered``); ``rpc_timeout``: the default timeout;
    ``metrics`` and ``tracing`` time and trace the calls when on; ``via``: the transport's
    name for messages. :attr:`bridge` is set once the bridge actor runs (on join).
    """

    def __init__(
        self,
        *,
        me: ServerInfo,
        discovery: ServiceDiscovery,
        router: Router,
        client: RPCClient,
        rpc_timeout: float,
        metrics: Metrics,
        tracing: Tracing,
        via: str,
    ) -> None:
        self.me = me
        self.incarnation = me.metadata.get(INCARNATION_KEY, "")
        """This server's incarnation, sent to ours with every request (a backend tells a
        restarted frontend's sessions from the old process's by it)."""
        self.log = ServerLog(log, me.id)
        self.discovery = discovery
        self.router = router
        self.client = client
        self.rpc_timeout = rpc_timeout
        self.metrics = metrics
        self.tracing = tracing
        self.via = via
        self.bridge: ActorRef | None = None
        self._start_call: StartCall | None = getattr(client, "start_call", None)
        """A transport that puts a call on the wire at once, in call order (NATS), is called
        straight from here: no hop through the bridge, no task per call. Its notifies go
        straight too, so they keep their place among the calls. While it is down it answers
        a call at once with ``ClusterUnavailable`` itself."""
        self._past_cap_told = False
        self._dropped_controls = Throttle()
        """Controls for a frontend unknown here (a request may be forged): logged once per
        10 s."""
        self._unbound_on_go = Throttle()
        """Controls for an unbound session of a Go frontend: the same way, apart (a forged
        flood of the above must not hide this one, a game's mistake)."""
        self._failed_notifies = Throttle()
        """Notifies (and pushes) whose only answer is their failure: a server that is down
        fails each one, so a line per message would flood the log; once per 10 s."""

    @property
    def ordered(self) -> bool:
        """Forwarded messages sent one after another reach a server in that order (NATS):
        a frontend may pipeline a session's messages (see ``RPCClient.ordered``)."""
        return self.client.ordered

    def pipelines_to(self, server: ServerInfo) -> bool:
        """A session's messages may be pipelined to ``server``: the transport keeps their
        order, and the server is one of ours, which runs a session's messages in that order
        and hands each one's session changes to the next (``actors.cluster.carry``). A Go
        Pitaya server runs them concurrently."""
        return self.client.ordered and has_extras(server.metadata)

    # -- the two primitives ----------------------------------------------------------------

    def call(
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
        bridge = self.bridge
        start_call = self._start_call
        # A transport with start_call fails a call at once while down (PIT-500 too): the
        # check is left to it (it is three property reads on every forward).
        if bridge is None or (start_call is None and not self.client.connected):
            reply(None, ClusterUnavailable(f"cluster unavailable: not connected to {self.via}"))
            return
        if self.metrics.enabled or self.tracing.enabled:
            reply = observe_rpc(
                self.metrics, self.tracing, server.id, server.type, request, reply, parent
            )
        me = self.me
        try:
            payload = encode_request(
                request, me.id, me.type, timeout, has_extras(server.metadata), self.incarnation
            )
        except Exception as exc:
            reply(None, UnsendableRequest(f"cannot send {request.route} to {server.id}: {exc}"))
            return
        answer = _Unwrap(reply, server, self.router, bridge, request.route, timeout, me.id)
        if start_call is not None:
            start_call(server, payload, timeout, answer)
        else:
            bridge.request(OutboundCall(server, payload, timeout), answer)

    def notify(self, server: ServerInfo, request: RpcRequest) -> None:
        """Send ``request`` expecting no answer, in order with the calls around it. A Go
        server answers every request (and logs a failed reply to a publish), so it is sent a
        call whose answer is only logged if it is an error."""
        if not self.client.connected:
            return
        if not has_extras(server.metadata):
            self.call(server, request, self._log_failure(request.route), self.rpc_timeout)
            return
        me = self.me
        try:
            payload = encode_request(request, me.id, me.type, self.rpc_timeout)
        except Exception as exc:
            self.log.warning("cannot send %s to %s: %s", request.route, server.id, exc)
            return
        if self.bridge is not None and self._start_call is None:
            # Through the bridge, in order with the calls sent before and after it.
            self.bridge.tell(OutboundNotify(server, payload))
        else:
            self.client.notify(server, payload)

    async def ask(self, server: ServerInfo, request: RpcRequest, timeout: float) -> bytes:
        """:meth:`call` awaited: the answer's payload, or its error raised."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def reply(result: Any, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        self.call(server, request, reply, timeout)
        return await future

    # -- client messages -------------------------------------------------------------------

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
        tried: frozenset[str] = frozenset(),
        pipelined: bool = False,
    ) -> None:
        """Send a client message to ``server`` (the router's pick); ``reply(payload, error)``.

        ``parent``: the tracing span of the client message (its RPC span's parent). If
        ``server`` proves unreachable, the message goes to another server of its type
        (``tried``: the servers it already failed to reach). ``pipelined``: the previous
        message of the session to ``server`` is not answered yet (see :meth:`pipelines_to`).
        """
        me = self.me
        served_by = session.served_by
        try:
            # A server that had the session's first message had the handshake: not again
            # (a backend that lost it fetches it, see actors.cluster.handshakes).
            wire_session = snapshot(
                session, me.id, me.type, served_by is not None and server.id in served_by
            )
            metadata = {PIPELINED_KEY: True} if pipelined else {}
            request = RpcRequest(SYS, route, data, wire_session, notify, metadata)
        except Exception as exc:
            reply(None, exc)
            return
        if served_by is None:
            served_by = session.served_by = {}
        if not record_served(served_by, server.id, route) and not self._past_cap_told:
            self._past_cap_told = True
            self.log.warning(
                "session %d was served by more than %d servers: the others are not "
                "told of its bind and close (logged once)",
                session.id,
                MAX_SERVED_SERVERS,
            )
        # A notify is a request too, answered with an empty ack once handled (as Pitaya
        # does): the session's next message, maybe for another server, waits for it.
        self.call(
            server,
            request,
            self._elsewhere(server, session, route, data, notify, reply, parent, tried),
            self.rpc_timeout,
            parent,
        )

    def _elsewhere(
        self,
        server: ServerInfo,
        session: Session,
        route: str,
        data: bytes,
        notify: bool,
        reply: Reply,
        parent: Span | None,
        tried: frozenset[str],
    ) -> Reply:
        """``reply``, but a message nobody received is forwarded to another server."""

        def answered(result: Any, error: BaseException | None) -> None:
            if isinstance(error, ServerUnreachable):
                failed = tried | {server.id}
                other = self.router.reroute(server.type, route, session, failed)
                if other is not None:
                    self.forward(
                        other, session, route, data, notify, reply, parent=parent, tried=failed
                    )
                    return
            reply(result, error)

        return answered

    # -- user RPCs -------------------------------------------------------------------------

    async def rpc(
        self,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
        reply: type[Any] | None = None,
    ) -> Any:
        """User RPC to a server of the route's type, chosen by the router (see
        :meth:`rpc_to`); sent to another one of the type if that server proves unreachable
        (nobody received the call)."""
        server_type = _server_type(route)
        server: ServerInfo | None = self.router.pick(server_type, route, session)
        tried: set[str] = set()
        while True:
            assert server is not None
            try:
                return await self.rpc_to(
                    server.id, route, arg, session=session, timeout=timeout, reply=reply
                )
            except ServerUnreachable:
                tried.add(server.id)
                server = self.router.reroute(server_type, route, session, tried)
                if server is None:
                    raise

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
        """User RPC to one server by id; returns the remote method's result.

        As Pitaya: ``arg`` a protobuf message (or bytes already encoded, or None for no
        argument), and the answer's bytes are returned, or parsed into ``reply`` (a protobuf
        message class). This is the way to call any server, Go Pitaya's included.

        Between our servers only (discovery metadata ``pitayaActors``), for convenience:
        any other ``arg`` (a dict, a list, a dataclass...) travels as msgpack, and the
        remote's result comes back decoded. A server that is not ours gets no such call:
        :class:`RpcArgumentError` (``PIT-400``) is raised here instead.
        """
        server = self.discovery.server(server_id)
        if server is None:
            raise InternalError(f"server {server_id} not found in discovery")
        # The values the calling handler's request brought (or it added) go on with the
        # call, as Go Pitaya passes its propagated context on (actors.propagation).
        propagated = current_propagated()
        metadata: dict[str, Any] = dict(propagated) if propagated else {}
        if isinstance(arg, ProtoMessage):
            data = arg.SerializeToString()
        elif isinstance(arg, bytes | bytearray | memoryview):
            data = bytes(arg)
        elif has_extras(server.metadata):
            data = encode_result(arg, RPC_SERIALIZER)
            metadata[ARGS_KEY] = MSGPACK_ARGS
        elif arg is None:
            data = b""
        else:
            raise RpcArgumentError(
                f"{server_id} is not a pitaya-actors server (Go Pitaya?): its remotes take "
                f"protobuf messages, not {type(arg).__name__}; pass a protobuf message"
            )
        me = self.me
        wire_session = None
        if session is not None:
            wire_session = snapshot(session, me.id, me.type)
            if wire_session.frontend_id != me.id or server_id in (session.served_by or ()):
                # A backend's session (the callee fetches the handshake from the frontend
                # if it lacks it), or a server the frontend sent it to before.
                wire_session = without_handshake(wire_session)
        request = RpcRequest(USER, route, data, wire_session, metadata=metadata)
        payload = await self.ask(server, request, timeout or self.rpc_timeout)
        ours = metadata.get(ARGS_KEY) == MSGPACK_ARGS  # not just any key: tracing adds its own
        if reply is not None:
            if is_message_class(reply):
                return reply.FromString(payload)
            if ours and isinstance(reply, type) and dataclasses.is_dataclass(reply):
                return _decode_reply(reply, route, payload)
            raise TypeError(
                "reply must be a protobuf message class (or, between our servers, a "
                f"dataclass), not {reply!r}"
            )
        if ours:  # not just any key: tracing adds its own
            return RPC_SERIALIZER.unmarshal(payload) if payload else None
        return payload

    # -- controls to a frontend (FrontendLink) ---------------------------------------------

    def _frontend(
        self, frontend_id: str, frontend_type: str | None, extras: bool | None
    ) -> ServerInfo | None:
        """The frontend by id; a backend session knows its frontend's type (and whether it is
        ours), so a frontend this server's table has not seen yet (the watch lags) is still
        reachable."""
        server = self.discovery.server(frontend_id)
        if server is None and frontend_type:
            if server_problem(frontend_type, frontend_id) is not None:
                return None  # named by a request only, and no subject can carry it
            metadata = {EXTRAS_KEY: EXTRAS_VERSION} if extras else {}
            server = ServerInfo(
                id=frontend_id, type=frontend_type, frontend=True, metadata=metadata
            )
        return server

    async def frontend_call(
        self,
        frontend_id: str,
        control: Control,
        frontend_type: str | None = None,
        extras: bool | None = None,
    ) -> None:
        """A control request to a frontend, with the values the calling handler propagates
        (a Go frontend's bind callbacks read them, as ours do); raises its error."""
        server = self._frontend(frontend_id, frontend_type, extras)
        if server is None:
            raise InternalError(f"frontend {frontend_id[:MAX_LOGGED_ID]} not found in discovery")
        request = control_request(control)
        propagated = current_propagated()
        if propagated:
            request.metadata.update(propagated)
        if isinstance(control, UidPush):
            await self._push_to_user(server, control)
        elif isinstance(control, UidKick) and not has_extras(server.metadata):
            try:
                await self.ask(server, request, self.rpc_timeout)
            except PitayaError as exc:
                # A Go frontend writes the kick packet, then closes the session; a client
                # that closes first makes that close fail, and sys.kick answers this error
                # although the user was kicked.
                if exc.msg != GO_CLOSED_SESSION:
                    raise
        elif isinstance(control, SessionPush | SessionKick | SessionEvent) and not has_extras(
            server.metadata
        ):
            self._to_go_frontend(server, control)
        else:
            await self.ask(server, request, self.rpc_timeout)

    async def fetch_handshake(
        self, frontend_id: str, session_id: int, frontend_type: str
    ) -> dict[str, Any] | None:
        """The handshake of session ``session_id`` of the frontend ``frontend_id`` (one of
        ours), asked with ``pysys.handshake``; raises the frontend's error."""
        server = self._frontend(frontend_id, frontend_type, True)
        if server is None:
            raise InternalError(f"frontend {frontend_id[:MAX_LOGGED_ID]} not found in discovery")
        answer = await self.ask(server, control_request(HandshakeGet(session_id)), self.rpc_timeout)
        handshake = decode_json_body(answer).get("hs")
        return handshake if isinstance(handshake, dict) else None

    async def sessions_open(
        self, frontend_id: str, frontend_type: str, ids: list[int]
    ) -> list[int]:
        """Which of ``ids`` are open sessions of the frontend ``frontend_id`` (one of ours),
        asked with ``pysys.sessionsopen``; raises its error (ServerUnreachable: nobody is
        there)."""
        server = self._frontend(frontend_id, frontend_type, True)
        if server is None:
            raise InternalError(f"frontend {frontend_id[:MAX_LOGGED_ID]} cannot be asked")
        answer = await self.ask(server, control_request(SessionsOpen(tuple(ids))), self.rpc_timeout)
        open_ids = decode_json_body(answer).get("open")
        if not isinstance(open_ids, list):
            raise InternalError(f"frontend {frontend_id[:MAX_LOGGED_ID]} answered no session ids")
        return [sid for sid in open_ids if type(sid) is int]

    def frontend_notify(
        self,
        frontend_id: str,
        control: Control,
        frontend_type: str | None = None,
        extras: bool | None = None,
    ) -> None:
        """A control to a frontend expecting no answer (logged and dropped if unknown)."""
        server = self._frontend(frontend_id, frontend_type, extras)
        if server is None:
            # The id comes from a request, which any peer on NATS may forge: cut, and once
            # per 10 s (a handler pushing to its session would write a line per request).
            self._dropped_controls.log(
                time.monotonic(),
                self.log,
                logging.WARNING,
                "frontend %r unknown; dropping %s",
                frontend_id[:MAX_LOGGED_ID],
                control.route,
            )
            return
        if isinstance(control, SessionPush | SessionKick | SessionEvent) and not has_extras(
            server.metadata
        ):
            self._to_go_frontend(server, control)
            return
        self.notify(server, control_request(control, notify=True))

    async def _push_to_user(self, server: ServerInfo, control: UidPush) -> None:
        """A push by uid to the frontend holding it: gRPC's ``PushToUser`` (acknowledged by
        Go's frontends and ours); over NATS our ``pysys.pushuser`` to ours, and Go's
        publish on the uid's subject to a Go frontend (delivered, for all this server can
        know)."""
        push = encode_push(UserPush(control.uid, control.push_route, control.data))
        direct = self.client.direct
        if direct is not None:
            await direct.push_to_user(server, push, self.rpc_timeout)
        elif has_extras(server.metadata):
            await self.ask(server, control_request(control), self.rpc_timeout)
        else:
            subjects = self.client.user_subjects
            if subjects is None:
                raise InternalError(f"no way to push to {control.uid} on {server.id}")
            subjects.publish_user(server.type, control.uid, "push", push)

    def _to_go_frontend(
        self, server: ServerInfo, control: SessionPush | SessionKick | SessionEvent
    ) -> None:
        """What a frontend that is not ours can do of our controls: push to and kick a bound
        session by its uid, as Go's backends do; nothing for an unbound one (Go's
        ``ErrNoUIDBind``), nor session events."""
        if isinstance(control, SessionEvent):
            return
        uid = control.uid
        if not uid:
            self._unbound_on_go.log(
                time.monotonic(),
                self.log,
                logging.WARNING,
                "%s to session %d on %s dropped: a Go frontend reaches only bound sessions",
                control.route,
                control.sid,
                server.id[:MAX_LOGGED_ID],
            )
            return
        if isinstance(control, SessionKick):
            self.notify(server, control_request(UidKick(uid, control.reason)))
            return
        push = encode_push(UserPush(uid, control.push_route, control.data))
        direct = self.client.direct
        if direct is not None:
            task = asyncio.get_running_loop().create_task(
                direct.push_to_user(server, push, self.rpc_timeout)
            )
            task.add_done_callback(self._log_push_failure)
        elif (subjects := self.client.user_subjects) is not None:
            subjects.publish_user(server.type, uid, "push", push)

    def _log_failure(self, route: str) -> Reply:
        def logged(_result: Any, error: BaseException | None) -> None:
            if error is not None:
                self._failed("%s failed: %s", route, error)

        return logged

    def _log_push_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failed("push failed: %s", task.exception())

    def _failed(self, message: str, *args: object) -> None:
        self._failed_notifies.log(time.monotonic(), self.log, logging.WARNING, message, *args)


def _server_type(route: str) -> str:
    parts = route.split(".")
    if len(parts) != 3 or not all(parts):
        raise PitayaError("PIT-400", f"RPC route must be serverType.service.method, not {route!r}")
    return parts[0]


class _Unwrap:
    """Turns the bridge's answer into ``reply(payload, None)`` or ``reply(None,
    PitayaError)``, and tells ``router`` when ``server`` refused the call or answered while
    on probation.

    An answer that arrives while messages received before it still wait in ``bridge``'s
    mailbox waits behind them (:class:`~actors.cluster.bridge.LateAnswer`): over NATS a
    backend handler's push or kick reaches this frontend before the handler's answer, and
    is told to the session first, as a local handler's is.

    An object, not a closure: a closure that names itself (to be told later) is a reference
    cycle, which only the garbage collector frees. One per call, that cycle held the call's
    reply chain (the session's entry and message) until the next collection, and made the
    collector run (and walk the whole heap) a few times a second under load."""

    __slots__ = ("bridge", "me", "reply", "route", "router", "server", "timeout")

    def __init__(
        self,
        reply: Reply,
        server: ServerInfo,
        router: Router,
        bridge: ActorRef,
        route: str,
        timeout: float,
        me: str,
    ) -> None:
        self.reply = reply
        self.server = server
        self.router = router
        self.bridge = bridge
        self.route = route
        self.timeout = timeout
        self.me = me

    def __call__(self, result: Any, error: BaseException | None) -> None:
        bridge = self.bridge
        if bridge.mailbox_depth:
            bridge.tell(LateAnswer(self.deliver, result, error))
        else:
            self.deliver(result, error)

    def deliver(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            if isinstance(error, ServerUnreachable):
                self.router.unreachable(self.server)
            elif isinstance(error, RpcTimeout) and not error.metadata:
                # What Go Pitaya's RPC client puts in its PIT-408.
                error.metadata.update(
                    timeout=go_duration(self.timeout),
                    route=self.route,
                    server=self.me,
                    **{"peer.id": self.server.id},
                )
            self.reply(None, error)
            return
        router = self.router
        if router.probation:
            router.answered(self.server)
        try:
            data = read_answer(result)
        except PitayaError as exc:
            self.reply(None, detached(exc))  # the remote's error: where it was decoded is moot
            return
        self.reply(data, None)


_reply_decoders: dict[type, Decoder] = {}


def _decode_reply(reply: type, route: str, payload: bytes) -> Any:
    """A remote's msgpack answer built into the dataclass ``reply``, checked as a body is
    (``actors.payload``); an answer that does not fit is this server's error (PIT-500)."""
    decode = _reply_decoders.get(reply)
    if decode is None:
        decode = _reply_decoders[reply] = decoder_for(reply)
    try:
        return decode(payload, RPC_SERIALIZER)
    except BadRequest as exc:
        raise InternalError(f"the answer of {route} is no {reply.__name__}: {exc.msg}") from exc


go_duration = goduration.string
"""A PIT-408's ``timeout`` as Go Pitaya's RPC client writes it (``time.Duration.String``)."""
