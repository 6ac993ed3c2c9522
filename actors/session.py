"""The session object handlers see: who the client is and what the server keeps about it.

The state belongs to the client's session actor; handlers receive this object with every
message. Reads and writes of ``data`` are plain attribute access (one event loop, and the
session actor hands a handler one message of its client at a time). What reaches the client
(``push``, ``kick``) goes through the session actor's mailbox, so it is ordered with the
responses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from actors.errors import ActorError, PitayaError
from actors.payload import encode_result
from transport.errorbody import PIT_409

if TYPE_CHECKING:
    from actors.kernel import ActorRef
    from transport.handshake import HandshakeRequest
    from transport.serializers import Serializer

T = TypeVar("T")

CloseCallback = Callable[["Session"], Awaitable[None] | None]
BindSession = Callable[["Session", str], Awaitable[None]]
"""Binds a uid to a session (the session registry's ``bind``)."""


class SessionAlreadyBound(PitayaError):
    """``PIT-409``: ``bind`` on a session that already has a uid.

    An expected condition a client can trigger (log in twice on one connection), so it is a
    :class:`~actors.errors.PitayaError`: a handler that lets it propagate answers the client
    ``{"code": "PIT-409", "msg": "session 7 is already bound to uid 'ann'"}``, not ``PIT-500``.
    The same code as the unique-session module's refused bind (``UidAlreadyBound``): both say
    "this bind conflicts with an existing binding".
    """

    default_code = PIT_409

    def __init__(self, msg: str = "session already bound") -> None:
        super().__init__(PIT_409, msg)


class SessionClosed(ActorError):
    """An operation on a session whose connection is gone."""


# Hot path: built per message; not frozen because a frozen dataclass is ~5x slower to
# construct. Treat it as immutable all the same.
@dataclass(slots=True)
class PushToClient:
    """To the session actor: send a push; ``payload`` is already serialized."""

    route: str
    payload: bytes


# Hot path: built per message; not frozen because a frozen dataclass is ~5x slower to
# construct. Treat it as immutable all the same.
@dataclass(slots=True)
class SendFrame:
    """To the session actor: write a packet encoded once for many sessions (broadcast)."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class KickSession:
    """To the session actor: send a kick packet, then close."""

    reason: str = ""


class Session:
    """One connected client, as seen by handlers.

    Example::

        @handler
        async def login(self, session: Session, body: Login) -> dict[str, str]:
            await session.bind(body.user_id)
            session.set("level", 3)
            session.push("onWelcome", {"text": "hi"})
            return {"result": "ok"}
    """

    __slots__ = (
        "_bind",
        "_close_callbacks",
        "_ref",
        "_serializer",
        "closed",
        "data",
        "handshake",
        "id",
        "remote_address",
        "served_by",
        "uid",
    )

    def __init__(
        self,
        session_id: int,
        ref: ActorRef,
        bind: BindSession,
        serializer: Serializer,
        remote_address: str = "",
        *,
        uid: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """``bind``: how a uid is bound (the session registry's ``bind``: callbacks, the uid
        index); ``serializer``: what pushes are encoded with. The session actor makes it;
        a copy of a session elsewhere (a backend's) starts with its ``uid`` and ``data``."""
        self.id = session_id
        self.uid = uid
        self.data = {} if data is None else data
        self.handshake: HandshakeRequest | None = None
        self.remote_address = remote_address
        self.closed = False
        self.served_by: dict[str, set[str]] | None = None
        """Cluster frontends: backend server id -> routes it handled for this session
        (bounded: see ``actors.cluster.session_events.record_served``)."""
        self._ref = ref
        self._bind = bind
        self._serializer = serializer
        self._close_callbacks: list[CloseCallback] = []

    # -- identity --------------------------------------------------------------------------

    async def bind(self, uid: str) -> None:
        """Attach a user id; runs the app's bind callbacks. Fails if already bound, and
        raises :class:`SessionClosed` if the connection closes before the bind completes."""
        if not uid:
            raise ValueError("uid must be a non-empty string")
        if self.uid is not None:
            raise SessionAlreadyBound(f"session {self.id} is already bound to uid {self.uid!r}")
        if self.closed:
            raise SessionClosed(f"session {self.id} is closed")
        await self._bind(self, uid)

    # -- key/value data --------------------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.data

    def remove(self, key: str) -> None:
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()

    def get_typed(self, key: str, kind: type[T], default: T) -> T:
        """The value under ``key`` if it is a ``kind``, ``default`` if absent; TypeError else."""
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(
                f"session key {key!r} holds {type(value).__name__}, not {kind.__name__}"
            )
        return value

    def get_str(self, key: str, default: str = "") -> str:
        return self.get_typed(key, str, default)

    def get_int(self, key: str, default: int = 0) -> int:
        return self.get_typed(key, int, default)

    def get_float(self, key: str, default: float = 0.0) -> float:
        if isinstance(self.data.get(key), int) and not isinstance(self.data.get(key), bool):
            return float(self.data[key])
        return self.get_typed(key, float, default)

    def get_bool(self, key: str, default: bool = False) -> bool:
        return self.get_typed(key, bool, default)

    async def push_to_front(self) -> None:
        """Send ``data`` to the client's frontend (Pitaya's ``PushToFront``). A backend's copy
        of a session sends it (``actors.cluster.backend_session``); this session is the
        frontend's own, so its data is there already and nothing is sent. One handler thus
        calls it whether it serves as a backend, standalone, or in a test."""

    # -- talking to the client -------------------------------------------------------------

    def push(self, route: str, body: Any) -> None:
        """Send a push message to this client (serialized with the app's serializer)."""
        self._ref.tell(PushToClient(route, encode_result(body, self._serializer)))

    def kick(self, reason: str = "") -> None:
        """Send a kick packet and close the connection."""
        self._ref.tell(KickSession(reason))

    def on_close(self, callback: CloseCallback) -> None:
        """Call ``callback(session)`` when the connection is gone (may be a coroutine).
        Raises :class:`SessionClosed` when it is gone already: the close callbacks ran, and
        a handler that awaited meanwhile must not carry on as if it could still clean up."""
        if self.closed:
            raise SessionClosed(f"session {self.id} is closed: its close callbacks ran")
        self._close_callbacks.append(callback)

    @property
    def ref(self) -> ActorRef:
        """The session actor (for code that sends it frames directly, such as groups)."""
        return self._ref

    def __repr__(self) -> str:
        return f"<Session id={self.id} uid={self.uid!r}>"
