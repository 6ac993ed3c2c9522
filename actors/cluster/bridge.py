"""The RPC bridge actor: the one place where this server's cluster RPCs go out and come in.

It sits on top of the RPC seam (``actors.cluster.rpc``) and is the same for NATS and gRPC.
Reentrant, because it mostly waits on the network: many calls are in flight at once.

* Out: an :class:`OutboundCall` is sent with the :class:`~actors.cluster.rpc.RPCClient`; the
  answer (an encoded ``protos.Response``) is the reply.
* In: the :class:`~actors.cluster.rpc.RPCServer` tells it an :class:`Inbound` per message.
  It is decoded (``actors.cluster.codec``) and handed on without waiting: a forwarded client
  message (Sys) runs through the invocation path with a backend session, a user RPC too (on
  the remote routes), a control (``actors.cluster.control``) goes to the
  :class:`ControlHandler`, and so do pushes and kicks by uid; the answer goes back through
  the message's ``respond`` when the handler replies (a notify is answered ``ack``, as Go
  does). A malformed message is answered with ``PIT-400`` (when an answer is expected),
  logged and counted, and never stops the bridge.

A forwarded message or user RPC whose body is larger than ``actors.turns.SMALL_BODY`` is
handed to its handler (which decodes it) only within the loop's decode budget, as a client's
is on a frontend (``actors.turns``): frontends forwarding bodies costly to decode cannot keep
this server's other sessions waiting. While one waits for its share, the later messages of
its session wait behind it (the sequencer's order), and nothing else does. The large bodies
waiting are bounded (:data:`MAX_WAITING_BYTES`): past it one is dropped at once (counted, as
Pitaya drops what its full dispatch queue cannot take) and answered ``PIT-429`` in its
session's order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from actors.actor import Actor
from actors.cluster.backend_session import BackendSession
from actors.cluster.carry import SessionCarry
from actors.cluster.codec import (
    ACK,
    SYS,
    CodecError,
    RpcRequest,
    SessionSnapshot,
    decode_bind,
    decode_kick,
    decode_push,
    decode_request,
    encode_error,
    rpc_serializer,
    with_handshake,
)
from actors.cluster.control import SESSION_EVENT_ROUTE, Finished, control_route
from actors.cluster.forwarded import Forwarded, refuse, respond_to
from actors.cluster.rpc import BIND, KICK, PUSH, REQUEST
from actors.cluster.subjects import MAX_LOGGED_ID
from actors.errors import BadRequest, RouteNotFound, TooManyRequests
from actors.invocation import Sequencer
from actors.logs import ServerLog, Throttle
from actors.metrics.handler import HANDLER, REMOTE, report_handler_time
from actors.metrics.names import DELAY_REMOTE
from actors.propagation import run_with
from actors.tracing import end_span
from actors.turns import SMALL_BODY, turns_for

if TYPE_CHECKING:
    from actors.cluster.control import ControlHandler, FrontendLink
    from actors.cluster.discovery import ServerInfo
    from actors.cluster.rpc import BindListener, Respond, RPCClient
    from actors.cluster.served_sessions import ServedSession
    from actors.invocation import Invoker, LocalRoute
    from actors.tracing import Tracing
    from transport.serializers import Serializer

log = logging.getLogger(__name__)

PITAYA_CONTROLS = "sys."
"""The prefix of Go Pitaya's control routes (``sys.bindsession`` ...); ours are ``pysys.*``."""

MAX_WAITING_BYTES = 64 * 1024 * 1024
"""Bytes of large bodies waiting here to be decoded (for their session's turn or the loop's
decode budget), all sessions together: about 2.5 s of decoding at the budget's pace (the RPC
timeout is 5 s by default)."""


@dataclass(slots=True)
class OutboundCall:
    """Send ``payload`` (an encoded ``protos.Request``) to ``server``; the reply is the raw
    answer (an encoded ``protos.Response``)."""

    server: ServerInfo
    payload: bytes
    timeout: float


@dataclass(slots=True)
class OutboundNotify:
    """Send ``payload`` (an encoded ``protos.Request`` that expects no answer) to ``server``,
    in this bridge's order with the calls."""

    server: ServerInfo
    payload: bytes


@dataclass(slots=True)
class LateAnswer:
    """The answer to one of this server's calls, which arrived while messages received
    before it still waited here: ``deliver(result, error)`` runs after them (see
    ``Outbound.call``)."""

    deliver: Callable[[Any, BaseException | None], None]
    result: Any
    error: BaseException | None


@dataclass(slots=True)
class Inbound:
    """A message of ``kind`` (``actors.cluster.rpc.REQUEST`` ...) that arrived for this
    server; ``respond`` is None when the sender expects no answer."""

    kind: str
    data: bytes
    respond: Respond | None


@dataclass(frozen=True, slots=True)
class CloseHere:
    """Run the close callbacks of ``sessions``, whose frontend is gone without sending their
    close events (``actors.cluster.served_sessions``), each in its session's turn."""

    sessions: list[ServedSession]


@dataclass(frozen=True, slots=True)
class DecodeGrant:
    """From the loop's decode budget: ``run`` (the invocation of a body of ``size`` bytes)
    may go now."""

    run: Callable[[], None]
    size: int


class RpcBridge(Actor):
    """See the module docstring. ``client`` sends; what comes in runs through ``invoker``
    on ``local_routes`` (forwarded client messages) or ``remote_routes`` (user RPCs), with a
    :class:`BackendSession` that reaches its frontend through ``frontend`` and pushes with
    ``serializer``, traced with ``tracing``; controls go to ``controls``,
    bind notices to ``on_bind_notice``; ``on_dropped`` counts malformed messages."""

    reentrant = True

    def __init__(
        self,
        client: RPCClient,
        *,
        server_id: str,
        invoker: Invoker,
        local_routes: dict[str, LocalRoute],
        remote_routes: dict[str, LocalRoute],
        tracing: Tracing,
        frontend: FrontendLink,
        serializer: Serializer,
        controls: ControlHandler,
        on_bind_notice: BindListener,
        on_dropped: Callable[[], None],
    ) -> None:
        self.client = client
        self.server_id = server_id
        self.log = ServerLog(log, server_id)
        self.invoker = invoker
        self.local_routes = local_routes
        self.remote_routes = remote_routes
        self.tracing = tracing
        self.frontend = frontend
        self.serializer = serializer
        self.controls = controls
        self.on_bind_notice = on_bind_notice
        self.on_dropped = on_dropped
        self.sequencer = Sequencer()
        """Forwarded messages of one session run one after another, in arrival order."""
        self._malformed = Throttle()
        """Malformed messages are counted always, logged once per 10 s (a peer may flood)."""
        self._unfetched = Throttle()
        """Handshakes a frontend could not be asked for: logged once per 10 s (a request
        forged on NATS names any frontend, and each one would write a line)."""
        self.carry = SessionCarry(self.sequencer)
        """What a session's messages pushed to its frontend, for its pipelined next ones."""
        self.waiting_bytes = 0
        """Bytes of the large bodies received and not yet handed to their handler (waiting
        for their session's turn or for the loop's decode budget)."""

    # -- out -------------------------------------------------------------------------------

    def on_outbound_call(self, msg: OutboundCall) -> Coroutine[Any, Any, bytes]:
        # The client's coroutine itself, not an ``async def`` awaiting it: the kernel runs a
        # returned coroutine as the message's task, and a frame less per call counts here.
        return self.client.call(msg.server, msg.payload, msg.timeout)

    def on_outbound_notify(self, msg: OutboundNotify) -> Coroutine[Any, Any, None]:
        return self.client.send_notify(msg.server, msg.payload)

    def on_late_answer(self, msg: LateAnswer) -> None:
        msg.deliver(msg.result, msg.error)

    # -- in --------------------------------------------------------------------------------

    def on_inbound(self, msg: Inbound) -> None:
        respond = msg.respond
        kind = msg.kind
        try:
            if kind == REQUEST:
                self._request(decode_request(msg.data), respond)
            elif kind == PUSH:
                self.controls.on_user_message(decode_push(msg.data), respond)
            elif kind == KICK:
                self.controls.on_user_message(decode_kick(msg.data), respond)
            elif kind == BIND:
                self.on_bind_notice(decode_bind(msg.data))
                if respond is not None:
                    respond(ACK)
            else:
                raise CodecError(f"unknown inbound kind {kind!r}")
        except CodecError as exc:
            self.on_dropped()
            told = self._malformed.allow(time.monotonic())
            if told is not None:
                self.log.warning("dropped a malformed message: %s%s", exc, told)
            if respond is not None:
                respond(encode_error(BadRequest(str(exc))))

    def _session_event(
        self,
        control: str,
        request: RpcRequest,
        respond: Respond | None,
        finished: Finished | None,
        finish: Callable[[], None],
    ) -> None:
        """A session event's turn in its session's lane."""
        assert request.session is not None
        key = (request.session.frontend_id, request.session.id)
        self._in_lane(key, self.controls.on_request(control, request, respond, finished), finish)

    def on_close_here(self, msg: CloseHere) -> None:
        in_flight = self.invoker.in_flight
        for served in msg.sessions:
            snapshot = served.snapshot
            in_flight.up()  # as a close event received: a graceful stop waits for it
            self.sequencer.submit(
                (snapshot.frontend_id, snapshot.id), partial(self._close_here, served)
            )

    def _close_here(self, served: ServedSession, finish: Callable[[], None]) -> None:
        snapshot = served.snapshot
        self._in_lane((snapshot.frontend_id, snapshot.id), self.controls.close_here(served), finish)

    def _in_lane(
        self,
        key: tuple[str, int],
        later: Coroutine[Any, Any, None] | None,
        finish: Callable[[], None],
    ) -> None:
        """Run ``later`` (a session event's handling, if it awaits), then ``finish`` (the
        sequencer's) lets that session's next message run (through the carry, which drops
        the session's record once its lane is empty: a close is a session's last)."""
        in_flight = self.invoker.in_flight

        def done() -> None:
            in_flight.down()
            self.carry.finish(key, None, finish)

        if later is None:
            done()
            return
        task = self.run_task(later)
        task.add_done_callback(lambda _: done())

    def _request(self, request: RpcRequest, respond: Respond | None) -> None:
        sys = request.kind == SYS
        if not sys:
            control = control_route(request.route)
            if control is not None:
                # Pitaya's own (sys.bindsession, sys.pushsession, sys.kick) are traced as Go
                # Pitaya traces every RPC it receives: a SERVER span named by the route, the
                # caller's span its parent. Ours (pysys.*: session events, handshakes) are
                # the framework's bookkeeping, not the user's requests: not traced.
                finished = (
                    partial(end_span, self.tracing.start_rpc_server_span(request))
                    if self.tracing.enabled and control.startswith(PITAYA_CONTROLS)
                    else None
                )
                snapshot = request.session
                if control == SESSION_EVENT_ROUTE and snapshot is not None:
                    # A session's bind or close, in turn with its messages: a close that
                    # came while a forwarded ``join`` still ran (or waited) would otherwise
                    # be handled first, and the join then add a member who never leaves.
                    # Counted in flight from now until handled, as a forwarded message is:
                    # a graceful stop waits for a close received before it (its callbacks
                    # save a player's state), queued or running.
                    self.invoker.in_flight.up()
                    self.sequencer.submit(
                        (snapshot.frontend_id, snapshot.id),
                        partial(self._session_event, control, request, respond, finished),
                    )
                    return
                later = self.controls.on_request(control, request, respond, finished)
                if later is not None:
                    self.run_task(later)
                return
        route = (self.local_routes if sys else self.remote_routes).get(request.route)
        if route is None:
            if respond is not None:
                respond(encode_error(RouteNotFound(request.route, remote=not sys)))
            return
        snapshot = request.session
        if snapshot is None and sys:
            if respond is not None:
                respond(encode_error(BadRequest("forwarded message without session")))
            return
        fetch = False
        if snapshot is not None and snapshot.extras:
            served = self.controls.served_sessions
            if sys and served is not None:  # a client's message: closed here if its frontend dies
                lost = served.served(snapshot, request.route, request.metadata)
                if lost:  # its frontend restarted: the old sessions' closes go first in turn
                    self.controls.take_handshakes(lost)
                    self.on_close_here(CloseHere(lost))
            # Handshakes come once per session and server (actors.cluster.handshakes).
            handshakes = self.controls.handshakes
            if snapshot.handshake is not None:
                handshakes.put(snapshot.frontend_id, snapshot.id, snapshot.handshake)
            elif snapshot.handshake_omitted:
                kept = handshakes.get(snapshot.frontend_id, snapshot.id)
                if kept is None:
                    fetch = True
                else:  # this snapshot is the bridge's own, decoded just now
                    snapshot.handshake, snapshot.handshake_omitted = kept, False
        tracing = self.tracing
        invoker = self.invoker
        size = len(request.data)
        # Counted from now until answered, not only while its handler runs: a message of a
        # session waits here behind the one running (or for the decode budget, or for its
        # handshake), and a graceful stop must wait for it too, as it was received.
        in_flight = invoker.in_flight
        in_flight.up()
        if (
            sys
            and snapshot is not None
            and not fetch
            and size <= SMALL_BODY
            and not tracing.enabled
            and not invoker.metrics.enabled
        ):
            # The common case, in fewer steps than the general one below (same order, same
            # answers): a small forwarded message whose session's handshake is here, neither
            # traced nor timed. A frontend pipelines one session's messages: in that order.
            key = (snapshot.frontend_id, snapshot.id)
            self.sequencer.submit(
                key,
                Forwarded(
                    self.invoker,
                    route,
                    BackendSession(snapshot, self.frontend, self.serializer),
                    request,
                    respond,
                    self.carry,
                    key,
                    in_flight,
                ),
            )
            return
        span = tracing.start_rpc_server_span(request) if tracing.enabled else None
        serializer = None if sys else rpc_serializer(request)
        invoke = invoker.invoke
        notify = request.notify
        # The load a backend serves is measured here, where the handler runs: the delay
        # before it starts (the invoker) and the response time, by route.
        metrics = invoker.metrics
        received_ns = time.monotonic_ns() if metrics.enabled else 0
        name = request.route  # reply keeps no reference to the request (and its body)

        def reply(result: Any, error: BaseException | None) -> None:
            if span is not None:
                end_span(span, error)
            if received_ns:
                kind = HANDLER if sys else REMOTE
                report_handler_time(metrics, name, received_ns, error, kind)
            if respond is not None:
                respond_to(respond, notify, result, error)
            in_flight.down()

        carry = self.carry
        lane = (snapshot.frontend_id, snapshot.id) if sys and snapshot is not None else None

        def run(finish: Callable[[], None] | None = None) -> None:
            session: BackendSession | None = None

            def done(result: Any, error: BaseException | None) -> None:
                reply(result, error)
                if finish is not None:  # a sequencer's job: one of a session's messages
                    assert lane is not None
                    carry.finish(lane, session, finish)

            def invoke_with(snapshot: SessionSnapshot | None) -> None:
                nonlocal session
                session = (
                    BackendSession(snapshot, self.frontend, self.serializer, read_only=not sys)
                    if snapshot is not None
                    else None
                )
                if lane is not None and session is not None:
                    carry.resume(lane, session, request)
                data = request.data
                if len(data) > SMALL_BODY:  # decoded within the loop's budget, when granted
                    self._in_turn(
                        len(data),
                        partial(
                            run_with, request.propagated, invoke, route, request.route,
                            session, data, notify, done, serializer=serializer,
                            received_ns=received_ns, span=span, delay_type=DELAY_REMOTE,
                        ),
                    )  # fmt: skip
                    return
                # What the caller propagated is current while the handler runs (and in its
                # task): the RPCs it makes pass it on, as a Go server's do.
                run_with(
                    request.propagated,
                    invoke,
                    route,
                    request.route,
                    session,
                    data,
                    notify,
                    done,
                    serializer=serializer,
                    received_ns=received_ns,
                    span=span,
                    delay_type=DELAY_REMOTE,
                )

            if fetch:
                assert snapshot is not None
                self.run_task(self._with_handshake(snapshot, invoke_with))
            else:
                invoke_with(snapshot)

        job = run
        if size > SMALL_BODY:  # it waits for its session's turn and the decode budget
            if self.waiting_bytes + size > MAX_WAITING_BYTES:
                self.on_dropped()
                # Refused in its session's order, its body dropped now.
                refused = TooManyRequests("too many large bodies waiting")
                job = partial(refuse, reply, refused, carry=carry, lane=lane)
            else:
                self.waiting_bytes += size
        if lane is not None:
            # A frontend pipelines one session's messages here: handle them in that order.
            self.sequencer.submit(lane, job)
        else:
            job()

    def _in_turn(self, size: int, run: Callable[[], None]) -> None:
        """``run`` (the invocation of a body of ``size`` bytes) once the loop's decode budget
        grants its share: now, or on a later turn (:class:`DecodeGrant`)."""
        if turns_for(self.system.loop).take(size, lambda: self.ref.tell(DecodeGrant(run, size))):
            self._timed(run, size)

    def on_decode_grant(self, msg: DecodeGrant) -> None:
        self._timed(msg.run, msg.size)

    def overflowed(self, message: object) -> bool:
        # A lost grant would hold its session's later messages for good (a mailbox limit
        # set in Config.mailbox_limits); the budget hands out a few per turn at most.
        return isinstance(message, DecodeGrant)

    def _timed(self, run: Callable[[], None], size: int) -> None:
        """``run``, and tell the budget what decoding (and a synchronous handler) cost."""
        self.waiting_bytes -= size
        started = time.perf_counter()
        run()
        turns_for(self.system.loop).spent(time.perf_counter() - started)

    async def _with_handshake(
        self, snapshot: SessionSnapshot, then: Callable[[SessionSnapshot], None]
    ) -> None:
        """``then(snapshot)`` with the session's handshake, asked from its frontend: it was
        omitted and is not kept here (evicted, restarted, or overtaken by a later call)."""
        try:
            handshake = await self.frontend.fetch_handshake(
                snapshot.frontend_id, snapshot.id, snapshot.frontend_type
            )
        except Exception as exc:  # the handler runs all the same, without it
            self._unfetched.log(
                time.monotonic(),
                self.log,
                logging.INFO,
                "handshake of session %s of %r not fetched: %s",
                snapshot.id,
                snapshot.frontend_id[:MAX_LOGGED_ID],
                str(exc)[:200],
            )
            handshake = None
        if handshake is not None:
            self.controls.handshakes.put(snapshot.frontend_id, snapshot.id, handshake)
        then(with_handshake(snapshot, handshake))
