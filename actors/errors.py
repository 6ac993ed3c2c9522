"""Typed errors of the actor layer.

Two families:

* kernel errors (:class:`ActorError` and subclasses) describe what happened to a message:
  nobody answered in time, the actor is gone, nobody handles that type;
* :class:`PitayaError` and subclasses are errors that reach a *client*: they carry the
  Pitaya error code (``PIT-404`` ...) that Pitaya/pomelo clients already understand. A handler
  raises ``PitayaError("PIT-403", "not your turn")`` to answer with a custom code.
"""

from __future__ import annotations

from collections.abc import Mapping

from transport.errorbody import PIT_000, PIT_400, PIT_404, PIT_408, PIT_500, PIT_504
from transport.errors import ProtocolError


class ActorError(Exception):
    """Base class of the kernel's errors."""


class AskTimeout(ActorError, TimeoutError):
    """``ask`` got no reply within its timeout."""


class ActorStopped(ActorError):
    """The target actor stopped before (or while) handling the message."""


class AskedItself(ActorError, RuntimeError):
    """An actor asked itself during its own turn: the answer would wait for that turn to
    end, which waits for the answer (a deadlock until the ask's timeout, or for ever)."""


class UnhandledMessage(ActorError, TypeError):
    """The actor declares no receiver for this message type."""


class MailboxFull(ActorError):
    """The actor kind's mailbox limit was reached; the message was dropped and counted."""


class ActorNameTaken(ActorError, ValueError):
    """``spawn(..., name=...)`` with a name another live actor already has."""


class FrontendOnly(ActorError):
    """An operation that only a frontend server can do was attempted on a backend (session
    lifecycle callbacks, session lookups, writes to an RPC caller's read-only session)."""


class StartAborted(ActorError):
    """A stop was requested while the server was starting (SIGTERM or SIGINT in
    ``serve_forever``, ``request_stop``, ``stop``): the start-up was abandoned, the step under
    way cancelled (a connection to NATS or etcd still being tried, say) and what had started
    undone. The server is stopped; ``serve_forever`` (so ``App.run``) returns as after a
    normal stop."""


class PitayaError(Exception):
    """An error answered to a client as a Pitaya error response.

    ``code`` is the string clients switch on (``PIT-404``), ``msg`` a human text, ``metadata``
    string pairs that travel with it.

    Example::

        raise PitayaError("PIT-403", "room is full", {"room": room_id})
    """

    default_code = PIT_000

    def __init__(
        self,
        code: str | None = None,
        msg: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.msg = msg
        self.metadata: dict[str, str] = dict(metadata or {})
        super().__init__(f"{self.code}: {msg}" if msg else self.code)


class BadRequest(PitayaError):
    """``PIT-400``: the payload cannot be decoded or does not fit the handler."""

    default_code = PIT_400

    def __init__(self, msg: str = "bad request", metadata: Mapping[str, str] | None = None):
        super().__init__(PIT_400, msg, metadata)


class RouteNotFound(PitayaError):
    """``PIT-404``: no handler serves the route, or no remote (``remote=True``).

    The message names the route as Go Pitaya's handler does (``pitaya/handler: room.room.nope
    not found``: the route as it was sent, with its server type when it had one); the
    metadata carries it too (``route``). A remote says "route not found", as Go answers for
    an unknown remote (the route in the metadata only).
    """

    default_code = PIT_404

    def __init__(self, route: str, *, remote: bool = False) -> None:
        message = "route not found" if remote else f"pitaya/handler: {route} not found"
        super().__init__(PIT_404, message, {"route": route})
        self.route = route


class InternalError(PitayaError):
    """``PIT-500``: the handler failed; details stay in the server log."""

    default_code = PIT_500

    def __init__(self, msg: str = "internal server error") -> None:
        super().__init__(PIT_500, msg)


class AnswerTooLarge(InternalError):
    """``PIT-500``: a handler's answer does not fit what carries it (a packet's 24-bit
    length, 16 MiB; NATS's max payload, 1 MiB by default); the caller is told so instead of
    never hearing back."""

    def __init__(self, length: int, limit: int, what: str = "the packet limit") -> None:
        super().__init__(f"answer of {length} bytes exceeds {what} of {limit} bytes")
        self.length = length
        self.limit = limit


class RpcTimeout(PitayaError):
    """``PIT-408``: a remote server did not answer within the RPC timeout (Pitaya's code)."""

    default_code = PIT_408

    def __init__(
        self, msg: str = "rpc client: request timeout", metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(PIT_408, msg, metadata)


class ServiceUnavailable(PitayaError):
    """``PIT-504``-family timeout seen by a client: the server gave up waiting."""

    default_code = PIT_504

    def __init__(self, msg: str = "timeout") -> None:
        super().__init__(PIT_504, msg)


class TooManyRequests(PitayaError):
    """``PIT-429``: this session has too many messages waiting, or this server too many
    handler invocations running (``max_pending_requests``, ``max_concurrent_handlers``)."""

    default_code = "PIT-429"

    def __init__(self, msg: str = "too many requests in flight") -> None:
        super().__init__("PIT-429", msg)


class UserNotHere(PitayaError):
    """``PIT-404``: a push or kick by uid reached a frontend where that uid is not bound
    (its session is closing or gone). Answered at once, never left to time out."""

    default_code = PIT_404

    def __init__(self, uid: str) -> None:
        super().__init__(PIT_404, "user not bound here", {"uid": uid})
        self.uid = uid


def detached(error: PitayaError) -> PitayaError:
    """``error`` without its traceback and chained errors: for an error that is only
    answered (to a client, or to the server that called), never logged.

    Its traceback's frames would stay alive as long as the error does: a decoder's frames
    and the decoded body (20 MiB of objects for 1 MiB of ``[[],[],...]``) while the answer
    waits in a mailbox, and the frames of whoever holds the error until it is answered (a
    session's pending entry, which holds the error: a reference cycle per refused request,
    left to the garbage collector).
    """
    error.__traceback__ = None
    error.__cause__ = None
    error.__context__ = None
    return error


def as_pitaya_error(error: BaseException) -> PitayaError:
    """The Pitaya error a client (or a calling server) receives for ``error``."""
    if isinstance(error, PitayaError):
        return error
    if isinstance(error, ActorStopped | MailboxFull):
        return InternalError("handler unavailable")
    if isinstance(error, AskTimeout):
        return ServiceUnavailable(str(error))
    if isinstance(error, ProtocolError):
        return BadRequest(str(error))
    return InternalError(str(error) or type(error).__name__)
