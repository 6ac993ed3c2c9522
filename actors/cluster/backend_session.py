"""The session a handler sees on a backend server: a copy of the frontend's session.

It carries the frontend session's id, uid, data and handshake. Changes to ``data`` stay local
until ``await session.push_to_front()`` sends them back; ``bind`` binds on the frontend;
``push`` and ``kick`` reach the client through its frontend. Lifecycle callbacks exist only on
frontends (Pitaya's rule): ``on_close`` here raises :class:`FrontendOnly`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.cluster.control import SessionBind, SessionData, SessionKick, SessionPush
from actors.errors import FrontendOnly
from actors.payload import encode_result
from actors.session import CloseCallback, Session, SessionAlreadyBound
from transport.handshake import HandshakeRequest

if TYPE_CHECKING:
    from actors.cluster.codec import SessionSnapshot
    from actors.cluster.control import FrontendLink
    from actors.kernel import ActorRef
    from transport.serializers import Serializer

# FrontendOnly lives in actors.errors (lower layers raise it too); users import it from here.
__all__ = ["BackendSession", "FrontendOnly"]


class BackendSession(Session):
    """See the module docstring. ``frontend``: how controls reach the frontend (the
    cluster's :class:`~actors.cluster.outbound.Outbound`); ``serializer``: the client
    serializer pushes are encoded with."""

    __slots__ = (
        "_front_data",
        "_frontend",
        "_handshake",
        "front_changed",
        "frontend_extras",
        "frontend_id",
        "frontend_type",
        "read_only",
    )

    def __init__(
        self,
        snapshot: SessionSnapshot,
        frontend: FrontendLink,
        serializer: Serializer,
        *,
        read_only: bool = False,
    ) -> None:
        # No actor and no registry here: pushes and binds go to the frontend (methods below).
        super().__init__(
            snapshot.id,
            None,  # type: ignore[arg-type]
            _frontend_binds,
            serializer,
            uid=snapshot.uid,
            data=dict(snapshot.data),
        )
        self._handshake: HandshakeRequest | dict[str, Any] | None = snapshot.handshake
        self.frontend_id = snapshot.frontend_id
        self.frontend_type = snapshot.frontend_type
        self.frontend_extras = snapshot.extras
        """The frontend is one of ours (takes our extra routes), as its request said."""
        self.read_only = read_only
        self._frontend = frontend
        self._front_data = snapshot.data
        self.front_changed = False
        """``bind`` or ``push_to_front`` changed the frontend's session (``front_state``)."""

    @property
    def handshake(self) -> HandshakeRequest | None:
        """The client's handshake, made from what the request carried on first use (most
        handlers never read it, and every forwarded message makes a session)."""
        handshake = self._handshake
        if isinstance(handshake, dict):
            handshake = self._handshake = HandshakeRequest(
                sys=dict(handshake.get("sys") or {}), user=dict(handshake.get("user") or {})
            )
        return handshake

    @handshake.setter
    def handshake(self, value: HandshakeRequest | None) -> None:
        self._handshake = value

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise FrontendOnly(f"{what} on the read-only caller session of an RPC")

    async def bind(self, uid: str) -> None:
        """Bind ``uid`` on the frontend session (its bind callbacks run there)."""
        self._writable("bind")
        if not uid:
            raise ValueError("uid must be a non-empty string")
        if self.uid is not None:
            raise SessionAlreadyBound(f"session {self.id} is already bound to uid {self.uid!r}")
        await self._frontend.frontend_call(
            self.frontend_id, SessionBind(self.id, uid), self.frontend_type, self.frontend_extras
        )
        self.uid = uid
        self.front_changed = True

    async def push_to_front(self) -> None:
        """Send this copy's ``data`` back to the frontend session (replacing it)."""
        self._writable("push_to_front")
        sent = dict(self.data)  # what the frontend has once answered, whatever comes next
        await self._frontend.frontend_call(
            self.frontend_id,
            SessionData(self.id, self.uid, sent),
            self.frontend_type,
            self.frontend_extras,
        )
        self._front_data = sent
        self.front_changed = True

    @property
    def front_state(self) -> tuple[str | None, dict[str, Any]]:
        """(uid, data) of the frontend's session as far as this copy knows: as it came, with
        what :meth:`bind` and :meth:`push_to_front` changed since (``actors.cluster.carry``).
        The uid changes only with a bind, done on the frontend first: it is this copy's."""
        return self.uid, self._front_data

    def take_front_state(self, uid: str | None, data: dict[str, Any]) -> None:
        """Start from ``uid`` and a copy of ``data`` (what an earlier message of this session,
        pipelined behind, left at the frontend) instead of what the request carried."""
        self.uid = uid
        self._front_data = data
        self.data = dict(data)

    def push(self, route: str, body: Any) -> None:
        payload = encode_result(body, self._serializer)
        self._frontend.frontend_notify(
            self.frontend_id,
            SessionPush(self.id, self.uid, route, payload),
            self.frontend_type,
            self.frontend_extras,
        )

    def kick(self, reason: str = "") -> None:
        self._writable("kick")
        self._frontend.frontend_notify(
            self.frontend_id,
            SessionKick(self.id, self.uid, reason),
            self.frontend_type,
            self.frontend_extras,
        )

    def on_close(self, callback: CloseCallback) -> None:
        raise FrontendOnly(
            "on_close is only available on frontend servers; on a backend, observe session "
            "events with app.on_remote_session_close"
        )

    @property
    def ref(self) -> ActorRef:
        raise FrontendOnly("a backend session has no session actor in this process")

    def __repr__(self) -> str:
        return f"<BackendSession id={self.id} uid={self.uid!r} frontend={self.frontend_id}>"


async def _frontend_binds(session: Session, uid: str) -> None:
    raise FrontendOnly("a backend session binds through its frontend (BackendSession.bind)")
