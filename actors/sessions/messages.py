"""The messages a session actor receives, and the adapter that turns a connection's callbacks
into them.

Kept apart from the actor (``actors.sessions.actor``) so that the gateway, which wires a new
connection to its session, and tests can name them without the actor's logic. They are on the
hot path: one :class:`BytesReceived` per read and one :class:`HandlerDone` per message, built
with slots and no closure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.kernel import ActorRef
    from transport.message import Message


# Hot path: built per message; not frozen because a frozen dataclass is ~5x slower to
# construct. Treat it as immutable all the same.
@dataclass(slots=True)
class BytesReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class StopAdmitting:
    """The server is stopping: the messages this client sends from now on are refused
    (requests answered ``PIT-500`` "server shutting down"), so that the ones already
    received can finish and the stop need not wait for a client that keeps sending."""


class HandlerDone:
    """A client message handed to a handler (or forwarded), and then its answer.

    It is the ``done`` callback the invocation path (or the cluster) calls once with
    ``(payload, error)``: the call records the answer and tells this entry to the session
    actor, behind whatever the handler pushed meanwhile, so pushes reach the client before
    the response, as they did when the handler ran in an actor of its own. An idle session
    actor takes it at once (``tell_now``: an answer from another server arrives outside any
    actor's turn, often a hundred in one read, and a mailbox pass each cost more than the
    rest of answering). One object per message, no closure.
    """

    __slots__ = (
        "error",
        "finished",
        "forwarded",
        "inline",
        "message",
        "open",
        "payload",
        "received_ns",
        "server_id",
        "session_ref",
        "span",
    )

    def __init__(
        self,
        session_ref: ActorRef,
        message: Message,
        received_ns: int,
        span: Span | None,
        forwarded: bool,
        server_id: str = "",
    ) -> None:
        self.session_ref = session_ref
        self.message = message
        """The message without its body (dropped once handed over: it is not needed here)."""
        self.received_ns = received_ns
        """Arrival time (``time.monotonic_ns()``) for the response-time metric; 0 if off."""
        self.span = span
        """Tracing span, ended once answered (None when tracing is off)."""
        self.forwarded = forwarded
        self.server_id = server_id
        """Where a forwarded message went."""
        self.payload: bytes | None = None
        self.error: BaseException | None = None
        self.finished = False
        """The answer is known (the handler returned or failed)."""
        self.open = False
        """Still running when handed over: later messages of this client wait for it."""
        self.inline = False
        """Being handed over right now: an answer given before the hand-over returns (a
        synchronous handler) is left for the session actor to pick up in the same turn."""

    def __call__(self, payload: Any, error: BaseException | None) -> None:
        self.payload = payload
        self.error = error
        self.finished = True
        if not self.inline:
            self.session_ref.tell_now(self)


@dataclass(frozen=True, slots=True)
class HeartbeatTick:
    pass


@dataclass(frozen=True, slots=True)
class HandshakeDeadline:
    pass


@dataclass(frozen=True, slots=True)
class DecodeTurn:
    """The loop's decode budget granted this session a share (see ``actors.turns``)."""


class ConnectionEvents:
    """Adapter from the transport's callbacks to session-actor messages."""

    __slots__ = ("_ref",)

    def __init__(self, ref: Any) -> None:
        self._ref = ref

    def data_received(self, data: bytes) -> None:
        # An idle session takes its bytes right away: one event-loop pass less per read.
        self._ref.tell_now(BytesReceived(data))

    def connection_lost(self, exc: BaseException | None) -> None:
        self._ref.tell(ConnectionLost(exc))
