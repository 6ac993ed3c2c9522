"""The session actor: one per client connection.

It owns the connection and its sans-I/O protocol state (handshake, heartbeat), hands client
messages to the invocation path (``actors.invocation``) or forwards them to another server,
and writes responses and pushes back. It is the sequencer of its client: the next message is
handed over only once the previous one finished, so one user's messages are handled in the
order they were sent (a complaint about Pitaya we fix by design), while other sessions' run
concurrently and pushes keep flowing in between. A synchronous handler finishes inside the
hand-over, so a pipelining client's small messages to one are all handled in one turn.

What one client may cost is bounded here too: its waiting messages and the body being
handled hold at most ``max_session_buffer`` bytes (compressed bodies wait compressed and are
inflated when their turn comes, see :meth:`SessionActor._ready`), and a large or compressed
body is handed over only within the loop's decode budget (``actors.turns``), so a client
sending bodies costly to decode cannot keep the others waiting.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from actors.actor import Actor
from actors.errors import (
    AnswerTooLarge,
    InternalError,
    PitayaError,
    RouteNotFound,
    TooManyRequests,
    as_pitaya_error,
)
from actors.invocation import LocalRoute
from actors.logs import ServerLog
from actors.metrics.handler import report_handler_time
from actors.metrics.names import UNKNOWN_ROUTE
from actors.payload import encode_error
from actors.ratelimit import exceeded, new_bucket
from actors.session import KickSession, PushToClient, SendFrame, Session
from actors.sessions.messages import (
    BytesReceived,
    ConnectionLost,
    DecodeTurn,
    HandlerDone,
    HandshakeDeadline,
    HeartbeatTick,
    StopAdmitting,
)
from actors.tracing import end_span
from actors.turns import COMPRESSED_ESTIMATE, SMALL_BODY, turns_for
from transport.acceptor import Connection
from transport.connection import (
    MAX_KICK_REASON,
    HandshakeAcked,
    HandshakeReceived,
    HeartbeatReceived,
    MessageReceived,
    ServerConnection,
    ServerState,
)
from transport.errors import HandshakeError, PacketTooLarge, ProtocolError
from transport.message import Message, MessageType

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.sessions.host import SessionHost

log = logging.getLogger(__name__)


MAX_PIPELINED = 64
"""Forwarded messages of one client in flight at once to the same server and service."""


def heartbeat_slack(interval: float) -> float:
    """Seconds a client may be silent past 2 heartbeat intervals before it is dropped.

    A pomelo client (pomelo-jsclient-websocket and its ports) sends its heartbeat one
    interval after it receives ours and ignores ours while its own is pending, so it often
    sends one for two of ours: 2 intervals apart, give or take the loop's and the network's
    milliseconds, which a rule of exactly 2 intervals dropped at random. Go Pitaya compares
    whole seconds (``time.Unix()``), so it keeps such a client up to 1 s longer; we always
    do, or half an interval when that is shorter (still clear of the next tick).
    """
    return min(1.0, interval / 2)


class SessionActor(Actor):
    """Serves one connection; see the module docstring."""

    max_mailbox = 4096
    """A session's mailbox only fills when its client floods us or the loop is far behind;
    then the client is disconnected (see :meth:`overflowed`), never silently shortchanged.
    ``Config.mailbox_limits["SessionActor"]`` overrides it."""

    def __init__(self, connection: Connection, app: SessionHost) -> None:
        config = app.config
        self.app = app
        self.conn = connection
        self.proto = ServerConnection(
            max_packet_size=config.max_packet_size,
            max_route_length=config.max_route_length,
            max_handshake_size=config.max_handshake_size,
            inflate=False,  # only when its turn comes: see _ready
        )
        self.partial = app.partial_budget.hold(
            connection.abort, f"{connection.kind} peer {connection.remote_address}"
        )
        """What this client holds of the server's budget for unfinished packets."""
        self.unfinished = self.proto.unfinished
        """The bytes of this client's unfinished packet (read after every read)."""
        self.pending: deque[tuple[Message, int]] = deque()
        """Messages waiting for their turn, with their arrival time (0 when metrics are off),
        compressed ones still compressed."""
        self.queued_bytes = 0
        """Bytes of the bodies in ``pending``."""
        self.open_bytes = 0
        """Bytes of the (inflated) body of the local message still being handled."""
        self.turn_waiting = False
        """Waiting for the loop's decode budget (``actors.turns``) to grant a share."""
        self.turn_granted = False
        """A share was granted and not used yet."""
        self.in_flight: deque[HandlerDone] = deque()
        """Messages handed over and not answered yet, oldest first."""
        self.open = 0
        """Messages handed over whose handler is still running: while any, this client's
        next message waits (per-session order), except a forward that may pipeline."""
        self.open_target: tuple[str, str] | None = None
        """Where the open messages went when they were all forwarded: (server id, service);
        None when one runs here."""
        self.cleaned_up = False
        self.admitting = True
        """False once the server stops (:class:`StopAdmitting`): new messages are refused."""
        self.last_seen = 0.0
        self.rate_limiter = new_bucket(config)
        """This connection's token bucket (see ``actors.ratelimit``); None when off."""
        self.session: Session
        self.log: ServerLog
        """This server's and session's logger (set with the session, in ``started``)."""

    def started(self) -> None:
        app = self.app
        self.session = Session(
            app.sessions.next_id(),
            self.ref,
            app.sessions.bind,
            app.serializer,
            self.conn.remote_address,
        )
        app.sessions.add(self.session)
        self.log = ServerLog(log, app.server_id, self.session.id)
        self.clock = self.system.loop.time
        """The loop's clock (``last_seen`` is read from it on every read)."""
        self.last_seen = self.clock()
        self.handshake_timer = self.after(app.config.handshake_timeout, HandshakeDeadline())
        self.log.debug(
            "session %s connected from %s (%s)",
            self.session.id,
            self.conn.remote_address,
            self.conn.kind,
        )

    # -- bytes in --------------------------------------------------------------------------

    def on_bytes_received(self, msg: BytesReceived) -> None:
        now = self.clock()
        try:
            events = self.proto.receive_data(msg.data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            if isinstance(exc, HandshakeError):
                # Pitaya answers a malformed handshake with code 400 before closing.
                with contextlib.suppress(ProtocolError):
                    self.conn.write(self.proto.reject_handshake(400, str(exc)))
            self.proto.close()
            self.conn.close()
            return
        held = len(self.unfinished)
        if held != self.partial.bytes:
            self.partial.set(held)  # over the server's budget, this may drop the largest
            if self.conn.closed:
                return
        if events:
            # A whole packet keeps the client alive (Pitaya's rule), not any byte: a client
            # trickling the rest of a packet, a byte a minute, would hold its connection
            # and the packet's buffer for ever.
            self.last_seen = now
        for event in events:
            if type(event) is MessageReceived:
                self._accept(event.message)
            elif type(event) is HandshakeReceived:
                self._handshake(event)
            elif type(event) is HandshakeAcked:
                self.handshake_timer.cancel()
                self.every(self.app.config.heartbeat_interval, HeartbeatTick())
            elif type(event) is HeartbeatReceived:
                pass  # last_seen is already updated

    def _handshake(self, event: HandshakeReceived) -> None:
        app = self.app
        self.session.handshake = event.request
        for name, validator in app.handshake_validators:
            try:
                if inspect.isawaitable(outcome := validator(event.request)):
                    # Never awaited here: what it checks would not be checked (fail closed).
                    if inspect.iscoroutine(outcome):
                        outcome.close()
                    raise TypeError(f"handshake validator {name} is not synchronous")
            except Exception as exc:
                self._peer_fault(
                    "session %s: handshake validator %s refused: %s",
                    self.session.id,
                    name,
                    exc,
                )
                self.conn.write(self.proto.reject_handshake(400, str(exc) or name))
                self.conn.close()
                return
        self.conn.write(
            self.proto.accept_handshake(
                heartbeat=app.config.heartbeat_interval,
                routes=app.route_dictionary,
                serializer=app.serializer.name,
            )
        )

    # -- dispatch, one message of this client at a time -------------------------------------

    def _accept(self, message: Message) -> None:
        if message.type is not MessageType.REQUEST and message.type is not MessageType.NOTIFY:
            self._peer_fault(
                "session %s sent a %s message; closing",
                self.session.id,
                message.type.name,
            )
            self.conn.close()
            return
        if not self.admitting:
            if message.type is MessageType.REQUEST:
                self._respond_error(message, InternalError("server shutting down"))
            else:
                self.app.stats.dropped_notifies += 1
            return
        # last_seen is the arrival time of the bytes that carried this message.
        if self.rate_limiter is not None and not self.rate_limiter.take(self.last_seen):
            app = self.app
            error = exceeded(app.config, app.stats, app.metrics, message)
            if error is not None:
                self._respond_error(message, error)
            return
        received_ns = time.monotonic_ns() if self.app.metrics.enabled else 0
        if not self.pending and self._try_dispatch(message, received_ns):
            return
        config = self.app.config
        size = len(message.data)
        if (
            len(self.pending) < config.max_pending_requests
            and self.queued_bytes + self.open_bytes + size <= config.max_session_buffer
        ):
            self.pending.append((message, received_ns))
            self.queued_bytes += size
            # Received: a graceful stop waits for it as for one running (see _dispatch_pending).
            self.app.request_started()
        elif self.conn.closed:
            pass  # refused while being handed over (a body that is not zlib)
        elif message.type is MessageType.REQUEST:
            refused = TooManyRequests(
                "too many requests in flight"
                if len(self.pending) >= config.max_pending_requests
                else "too much data waiting for this session"
            )
            self._respond_error(message, refused)
            if received_ns:
                # Not yet routed: only a route served here may name a time series.
                route = message.route if message.route in self.app.local_routes else UNKNOWN_ROUTE
                self._report_response(route, received_ns, refused)
        else:
            self.app.stats.dropped_notifies += 1

    def _try_dispatch(self, message: Message, received_ns: int) -> bool:
        """Hand ``message`` over now if this client's order allows it; False: it must wait.

        A message goes when nothing of this client is still running; a forwarded one also
        when everything running was forwarded to the same server and service, a server of
        ours over an ordered transport (NATS; the backend's per-session sequencer keeps the
        order, and hands each message the session as the previous one left it: see
        ``actors.cluster.carry``), up to ``MAX_PIPELINED``. A
        synchronous handler finishes inside :meth:`_invoke`, so a pipelining client's
        messages to one are all handled in one turn.
        """
        app = self.app
        route = app.local_routes.get(message.route)
        if route is not None:
            if self.open:
                return False
            data = self._ready(message)
            if data is None:
                return self.conn.closed
            self._invoke(route, message, data, received_ns)
            return True
        server_type = app.remote_server_type(message.route)
        if server_type is None:
            if self.open:
                return False
            self._not_found(message, received_ns)
            return True
        return self._forward(message, server_type, received_ns)

    def _ready(self, message: Message) -> bytes | None:
        """The body of ``message`` (inflated) if it may be handed over now, else None.

        A large or compressed body first gets a share of the loop's decode budget
        (``actors.turns``); without one, None: the message waits, and :class:`DecodeTurn`
        comes on a later turn. A compressed body that is not valid zlib, or inflates past the
        limit, closes the connection (as any malformed packet does); None then too.
        """
        data = message.data
        if not message.compressed and len(data) <= SMALL_BODY:
            return data
        if self.turn_granted:
            self.turn_granted = False
        elif self.turn_waiting:
            return None
        else:
            estimate = COMPRESSED_ESTIMATE if message.compressed else len(data)
            if not turns_for(self.system.loop).take(estimate, self._wake):
                self.turn_waiting = True
                return None
        if not message.compressed:
            return data
        try:
            data = self.proto.inflate(message).data
        except ProtocolError as exc:
            self._protocol_error(exc)
            self.conn.close()
            return None
        turns_for(self.system.loop).charge(len(data) - COMPRESSED_ESTIMATE)
        return data

    def _protocol_error(self, exc: ProtocolError) -> None:
        self._peer_fault(
            "session %s: protocol error from %s: %s", self.session.id, self.conn.remote_address, exc
        )

    def _peer_fault(self, message: str, *args: object) -> None:
        """A line about what a client did wrong (garbage, a refused handshake, none at all):
        any peer can, as often as it connects, so one line per 10 s at info (with how many
        were not), each one at debug."""
        self.app.protocol_errors.log(self.clock(), self.log, logging.INFO, message, *args)

    def _wake(self) -> None:
        """Called by the decode budget on a later turn: the share is granted."""
        if not self.cleaned_up:
            self.ref.tell(DecodeTurn())

    def on_decode_turn(self, msg: DecodeTurn) -> None:
        self.turn_waiting = False
        self.turn_granted = True
        self._dispatch_pending()

    def _invoke(self, route: LocalRoute, message: Message, data: bytes, received_ns: int) -> None:
        app = self.app
        span = self._start_span(message) if app.tracing.enabled else None
        entry = HandlerDone(self.ref, message, received_ns, span, forwarded=False)
        # A synchronous handler answers before invoke returns. Its answer is written here,
        # in this turn, when that keeps the order of what this client receives: no earlier
        # answer still to write, and nothing (a push by the handler) queued meanwhile.
        # Otherwise the entry goes through the mailbox, behind those.
        mailbox = self._cell.mailbox
        queued = len(mailbox)
        entry.inline = inline = not self.in_flight
        self.in_flight.append(entry)
        message.data = b""  # the entry needs no body; a running handler must not pin two
        started = time.perf_counter() if len(data) > SMALL_BODY else 0.0
        app.invoker.invoke(
            route,
            message.route,
            self.session,
            data,
            message.type is MessageType.NOTIFY,
            entry,
            received_ns=received_ns,
            span=span,
            # One name per route, however the client spelled it (``room.join`` or
            # ``game.room.join``): a hook refusing ``room.admin`` was passed by
            # ``game.room.admin``. Series and spans keep the route as sent, as Go Pitaya's.
            hook_route=route.name,
        )
        entry.inline = False
        if started:  # a budgeted body: tell the loop's budget what its decoding cost
            turns_for(self.system.loop).spent(time.perf_counter() - started)
        if not entry.finished:
            entry.open = True
            self.open += 1
            self.open_target = None
            self.open_bytes = len(data)
        elif inline:
            if len(mailbox) == queued:
                self._answer(entry)
            else:
                self.ref.tell(entry)

    def _not_found(self, message: Message, received_ns: int) -> None:
        not_found = RouteNotFound(message.route)
        if received_ns:
            self._report_response(UNKNOWN_ROUTE, received_ns, not_found)
        if message.type is MessageType.REQUEST:
            self._respond_error(message, not_found)
        else:
            # Never answered, so a client may send one per packet: one line per 10 s at
            # info (with how many were not), each one at debug.
            self.app.unknown_routes.log(
                self.clock(),
                self.log,
                logging.INFO,
                "session %s: notify to unknown route %r",
                self.session.id,
                message.route,
            )

    def _forward(self, message: Message, server_type: str, received_ns: int) -> bool:
        """Cluster: the route belongs to another server type; send it there."""
        app = self.app
        cluster = app.cluster
        assert cluster is not None
        try:
            server = cluster.pick(server_type, message.route, self.session)
        except Exception as exc:
            if self.open:
                return False
            if message.type is MessageType.REQUEST:
                self._respond_error(message, exc)
            if received_ns:
                # No server took it, so nothing says the route exists: a client may spell
                # any number of them, and each must not open a time series of its own.
                self._report_response(UNKNOWN_ROUTE, received_ns, exc)
            return True
        target = (server.id, message.route.rpartition(".")[0])
        pipelined = self.open > 0
        if pipelined and (
            target != self.open_target
            or self.open >= MAX_PIPELINED
            or not cluster.pipelines_to(server)
        ):
            return False
        data = self._ready(message)
        if data is None:
            return self.conn.closed
        span = self._start_span(message) if app.tracing.enabled else None
        entry = HandlerDone(self.ref, message, received_ns, span, True, server.id)
        self.in_flight.append(entry)
        message.data = b""  # the entry needs no body
        app.request_started()
        cluster.forward(
            server,
            self.session,
            message.route,
            data,
            message.type is MessageType.NOTIFY,
            entry,
            parent=span,
            pipelined=pipelined,
        )
        if not entry.finished:
            entry.open = True
            self.open += 1
            self.open_target = target
        return True

    def _start_span(self, message: Message) -> Span:
        """Tracing: the SERVER span of the message being dispatched, ended once answered."""
        return self.app.tracing.start_handler_span(
            message.route, self.session.id, self.session.uid, message.type is MessageType.NOTIFY
        )

    def on_handler_done(self, entry: HandlerDone) -> None:
        """A handed-over message was answered: answer the client, then hand over what
        waited for it."""
        if self._answer(entry):
            self._dispatch_pending()

    def _answer(self, entry: HandlerDone) -> bool:
        """Write ``entry``'s answer (or error) and report it; False if the session was torn
        down meanwhile."""
        if entry.open:
            entry.open = False
            self.open -= 1
            if not entry.forwarded:
                self.open_bytes = 0
        try:
            self.in_flight.remove(entry)  # almost always the oldest
        except ValueError:
            return False  # answered after the session was torn down
        message = entry.message
        if entry.forwarded:
            self.app.request_finished()
        if entry.span is not None:
            end_span(entry.span, entry.error)
        error = entry.error
        if message.type is MessageType.REQUEST:
            if error is not None:
                self._respond_error(message, error)
            else:
                self._write_response(message.id, entry.payload or b"")
        elif error is not None and not isinstance(error, PitayaError):
            self.log.warning(
                "session %s: notify %s failed: %s",
                self.session.id,
                message.route,
                error,
            )
        if entry.received_ns:
            route = message.route
            if entry.forwarded:  # labelled by what the server it went to made of it
                route = self.app.forwarded_routes.label(route, error)
            self._report_response(route, entry.received_ns, error)
        if (
            entry.forwarded
            and error is not None
            and as_pitaya_error(error).code == RouteNotFound.default_code
        ):
            self._not_served(entry.server_id, message.route)
        return True

    def _not_served(self, server_id: str, route: str) -> None:
        """The server answered ``route`` with PIT-404: it has no such route, so it is not one
        the session's bind/close events are for (a client cannot grow that record by making
        routes up)."""
        served = self.session.served_by
        routes = served.get(server_id) if served else None
        if served is not None and routes is not None:
            routes.discard(route)
            if not routes:
                del served[server_id]

    def _dispatch_pending(self) -> None:
        """Hand over the waiting messages, in order, as far as this client's order and the
        loop's decode budget allow."""
        pending = self.pending
        while pending and not self.conn.closed:
            message, received_ns = pending[0]
            size = len(message.data)  # before the hand-over drops it
            if not self._try_dispatch(message, received_ns):
                return
            pending.popleft()
            self.queued_bytes -= size
            # After the hand-over, which counts it again if it runs on: never zero between.
            self.app.request_finished()

    def _respond_error(self, message: Message, error: BaseException) -> None:
        app = self.app
        data = encode_error(error, app.serializer, app.fallback_serializer)
        self._write_response(message.id, data, error=True)

    def _report_response(self, route: str, received_ns: int, error: BaseException | None) -> None:
        """Pitaya's response-time metric for this client's message (``route``: as sent, or
        ``UNKNOWN_ROUTE`` for one not served)."""
        report_handler_time(self.app.metrics, route, received_ns, error)

    # -- bytes out -------------------------------------------------------------------------

    def _write(self, message: Message) -> None:
        if self.proto.state is ServerState.WORKING:
            self.conn.write(self.proto.encode(message, compress=self.app.config.compress_data))

    def _write_response(self, message_id: int, data: bytes, *, error: bool = False) -> None:
        """Answer request ``message_id``: every request comes here, so without building a
        :class:`Message` unless the payload may be compressed (0.8 µs a request).

        An answer too large for a packet's 24-bit length is answered ``PIT-500`` instead:
        raising here would leave the request unanswered and every later message of this
        client waiting behind it."""
        try:
            if self.app.config.compress_data:
                self._write(Message(MessageType.RESPONSE, message_id, data=data, error=error))
            elif self.proto.state is ServerState.WORKING:
                self.conn.write(self.proto.encode_response(message_id, data, error=error))
        except PacketTooLarge as exc:
            if error:
                raise  # error bodies are cut to size (actors.payload): a bug of ours
            self._unwritable(f"the answer to request {message_id}", exc)
            refused = AnswerTooLarge(exc.length, exc.limit)
            app = self.app
            data = encode_error(refused, app.serializer, app.fallback_serializer)
            self._write_response(message_id, data, error=True)

    def _unwritable(self, what: str, exc: ProtocolError) -> None:
        self.app.unwritable.log(
            self.clock(),
            self.log,
            logging.WARNING,
            "session %s: %s was not written: %s",
            self.session.id,
            what,
            exc,
        )

    def on_push_to_client(self, msg: PushToClient) -> None:
        try:
            self._write(Message(MessageType.PUSH, route=msg.route, data=msg.payload))
        except ProtocolError as exc:  # too large, or a route no message can carry
            self._unwritable(f"push {msg.route[:64]!r}", exc)

    def on_send_frame(self, msg: SendFrame) -> None:
        if self.proto.state is ServerState.WORKING:
            self.conn.write(msg.packet)

    def on_stop_admitting(self, msg: StopAdmitting) -> None:
        self.admitting = False

    def on_kick_session(self, msg: KickSession) -> None:
        if self.conn.closed:
            return
        self.app.kicks.log(
            self.clock(),
            self.log,
            logging.INFO,
            "session %s kicked%s",
            self.session.id,
            # As the client is told it: a reason may come from a peer on NATS (sys.kick).
            f": {msg.reason[:MAX_KICK_REASON]}" if msg.reason else "",
        )
        if self.proto.state is not ServerState.CLOSED:
            self.conn.write(self.proto.kick(msg.reason))
        self.conn.close()

    # -- timers ----------------------------------------------------------------------------

    def on_heartbeat_tick(self, msg: HeartbeatTick) -> None:
        interval = self.app.config.heartbeat_interval
        if self.system.loop.time() - self.last_seen > 2 * interval + heartbeat_slack(interval):
            self.app.heartbeat_timeouts.log(
                self.clock(),
                self.log,
                logging.INFO,
                "session %s: heartbeat timeout",
                self.session.id,
            )
            self.proto.close()
            self.conn.close()
        elif self.proto.state is ServerState.WORKING:
            self.conn.write(self.proto.heartbeat())

    def on_handshake_deadline(self, msg: HandshakeDeadline) -> None:
        if self.proto.state in (ServerState.AWAITING_HANDSHAKE, ServerState.AWAITING_ACK):
            self._peer_fault(
                "session %s: no handshake within %ss",
                self.session.id,
                self.app.config.handshake_timeout,
            )
            self.proto.close()
            self.conn.close()

    # -- teardown --------------------------------------------------------------------------

    async def on_connection_lost(self, msg: ConnectionLost) -> None:
        await self._cleanup()
        self.stop()

    async def _cleanup(self) -> None:
        if self.cleaned_up:
            return
        self.cleaned_up = True
        self.proto.close()
        self.partial.set(0)
        while self.in_flight:
            entry = self.in_flight.popleft()
            if entry.forwarded:
                self.app.request_finished()  # local ones are counted by the invocation path
            if entry.span is not None:
                end_span(entry.span)  # the answer, if any, will find no session
        for _ in self.pending:
            self.app.request_finished()
        self.pending.clear()
        self.queued_bytes = 0
        self.log.debug("session %s closed", self.session.id)
        try:
            await self.app.sessions.closed(self.session)
        finally:
            self.app.connection_closed()

    def stopped(self) -> None:
        self.partial.set(0)
        if not self.conn.closed:
            self.conn.abort()

    def overflowed(self, message: object) -> bool:
        """Mailbox full: drop ``message`` and disconnect the client, whose byte stream or
        answers would otherwise have a hole. The teardown itself is always queued."""
        if type(message) is ConnectionLost:
            return True
        if not self.conn.closed:
            self.app.stats.mailbox_overflows += 1
            # Possibly before started(): no session yet, so no session logger.
            ServerLog(log, self.app.server_id).warning(
                "%s: mailbox full (%s messages); disconnecting %s",
                self.name,
                self._cell.max_mailbox,
                self.conn.remote_address,
            )
            self.conn.abort()
        return False
