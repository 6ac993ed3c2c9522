"""Control messages between cluster servers: one typed class per control, handled here.

A backend's session reaches its client through the frontend that holds it, and a server
reaches a uid through the frontend it is bound on. These controls travel as sys requests
(``actors.cluster.codec``) whose route names the control and whose body is a msgpack map:

===================  ===================  ===========================  ==================
class                route                body                         sent by
===================  ===================  ===========================  ==================
:class:`SessionBind` ``sys.bind``         ``{sid, uid}``               backend session
:class:`SessionData` ``sys.pushsession``  ``{sid, data}``              backend session
:class:`SessionPush` ``sys.push``         ``{sid, route, data}``       backend session
:class:`SessionKick` ``sys.kick``         ``{sid, reason}``            backend session
:class:`UidPush`     ``sys.pushuser``     ``{uid, route, data}``       binding storage
:class:`UidKick`     ``sys.kickuser``     ``{uid, reason}``            binding storage
:class:`SessionEvent` ``sys.sessionevent`` ``{event, routes}``         frontend
===================  ===================  ===========================  ==================

(A session event goes the other way, to the backends that served a session; its session is
the request's snapshot.) :func:`encode_control` and :func:`decode_control` are the only
places that know these bodies, and :class:`ControlHandler` is where a server acts on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgpack

from actors.cluster.codec import ACK, UserKick, UserPush, encode_error
from actors.errors import BadRequest, InternalError, UserNotHere
from actors.session import KickSession, PushToClient, SendFrame

if TYPE_CHECKING:
    from actors.cluster.codec import RpcRequest, SessionSnapshot
    from actors.cluster.rpc import Respond
    from actors.cluster.session_events import RemoteSessionEvents
    from actors.session import Session
    from actors.sessions import SessionRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionBind:
    """Bind ``uid`` on the frontend session ``sid`` (its bind callbacks run there)."""

    route: ClassVar[str] = "sys.bind"
    sid: int
    uid: str


@dataclass(frozen=True, slots=True)
class SessionData:
    """Replace the data of the frontend session ``sid`` (``push_to_front``)."""

    route: ClassVar[str] = "sys.pushsession"
    sid: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionPush:
    """Push ``data`` (serialized) on ``route`` to the client of session ``sid``."""

    route: ClassVar[str] = "sys.push"
    sid: int
    push_route: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionKick:
    """Kick the client of session ``sid``."""

    route: ClassVar[str] = "sys.kick"
    sid: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class UidPush:
    """Push to ``uid``, bound on the target frontend (binding storage)."""

    route: ClassVar[str] = "sys.pushuser"
    uid: str
    push_route: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UidKick:
    """Kick ``uid``, bound on the target frontend (binding storage)."""

    route: ClassVar[str] = "sys.kickuser"
    uid: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """To a backend: a session it served (the request's snapshot) bound or closed;
    ``routes``: the routes it handled for that session."""

    route: ClassVar[str] = "sys.sessionevent"
    event: str
    routes: frozenset[str]


Control = SessionBind | SessionData | SessionPush | SessionKick | UidPush | UidKick | SessionEvent

SESSION_EVENT_ROUTE = SessionEvent.route

_BODIES: dict[type[Any], Callable[[Any], dict[str, Any]]] = {
    SessionBind: lambda c: {"sid": c.sid, "uid": c.uid},
    SessionData: lambda c: {"sid": c.sid, "data": c.data},
    SessionPush: lambda c: {"sid": c.sid, "route": c.push_route, "data": c.data},
    SessionKick: lambda c: {"sid": c.sid, "reason": c.reason},
    UidPush: lambda c: {"uid": c.uid, "route": c.push_route, "data": c.data},
    UidKick: lambda c: {"uid": c.uid, "reason": c.reason},
    SessionEvent: lambda c: {"event": c.event, "routes": sorted(c.routes)},
}

_DECODERS: dict[str, Callable[[dict[str, Any]], Control]] = {
    SessionBind.route: lambda b: SessionBind(int(b["sid"]), str(b["uid"])),
    SessionData.route: lambda b: SessionData(int(b["sid"]), dict(b["data"])),
    SessionPush.route: lambda b: SessionPush(int(b["sid"]), str(b["route"]), bytes(b["data"])),
    SessionKick.route: lambda b: SessionKick(int(b["sid"]), str(b.get("reason", ""))),
    UidPush.route: lambda b: UidPush(str(b["uid"]), str(b["route"]), bytes(b["data"])),
    UidKick.route: lambda b: UidKick(str(b["uid"]), str(b.get("reason", ""))),
    SessionEvent.route: lambda b: SessionEvent(
        str(b["event"]), frozenset(str(r) for r in b.get("routes", []))
    ),
}

CONTROL_ROUTES = frozenset(_DECODERS)
"""The sys routes that are controls, not client routes."""


def encode_control(control: Control) -> bytes:
    """The body of ``control``'s request (its route is ``control.route``)."""
    return msgpack.packb(_BODIES[type(control)](control), use_bin_type=True)  # type: ignore[no-any-return]


def decode_control(route: str, body: bytes) -> Control:
    """The control a request of ``route`` carries; raises on a malformed body."""
    return _DECODERS[route](msgpack.unpackb(body, raw=False))


class FrontendLink(Protocol):
    """How a backend session sends its controls to its frontend
    (:class:`~actors.cluster.outbound.Outbound`)."""

    async def frontend_call(
        self, frontend_id: str, control: Control, frontend_type: str | None = None
    ) -> None:
        """Send ``control`` and wait for the frontend's answer; raises its error."""
        ...

    def frontend_notify(
        self, frontend_id: str, control: Control, frontend_type: str | None = None
    ) -> None:
        """Send ``control`` expecting no answer, in order with this server's other calls."""
        ...


BackendSessionFactory = Callable[["SessionSnapshot", bool], "Session"]
"""Makes the session a backend sees from a snapshot (``read_only`` second)."""


class ControlHandler:
    """What this server does with the controls it receives: on a frontend, act on its
    sessions (``sessions``; pushes framed by ``encode_push_packet``); on a backend, run the
    session-event callbacks (``session_events``) with a session made by ``backend_session``.
    """

    def __init__(
        self,
        *,
        server_id: str,
        sessions: SessionRegistry,
        encode_push_packet: Callable[[str, bytes], bytes],
        session_events: RemoteSessionEvents,
        backend_session: BackendSessionFactory,
    ) -> None:
        self.server_id = server_id
        self.sessions = sessions
        self.encode_push_packet = encode_push_packet
        self.session_events = session_events
        self.backend_session = backend_session

    async def on_request(self, request: RpcRequest, respond: Respond | None) -> None:
        """A control request (``request.route`` in :data:`CONTROL_ROUTES`): act, then
        answer ``ACK`` or the error (logged when nobody waits for the answer)."""
        try:
            control = decode_control(request.route, request.data)
            if isinstance(control, SessionEvent):
                await self._session_event(control, request.session)
                return
            if isinstance(control, UidPush | UidKick):
                self._to_uid(control.uid, control)
            else:
                await self._to_session(control)
        except Exception as exc:
            if respond is not None:
                respond(encode_error(exc))
            else:
                log.warning("[%s] %s failed: %s", self.server_id, request.route, exc)
            return
        if respond is not None:
            respond(ACK)

    def on_user_envelope(self, envelope: UserPush | UserKick, respond: Respond | None) -> None:
        """A push or kick that came on a uid's subject (NATS): act, and answer at once."""
        try:
            self._to_uid(envelope.uid, envelope)
        except UserNotHere as exc:
            # Closing or gone: say so at once, so a caller that asked never waits for the
            # RPC timeout over an answer already known.
            if respond is not None:
                respond(encode_error(exc))
            return
        if respond is not None:
            respond(ACK)

    def _to_uid(self, uid: str, what: UidPush | UidKick | UserPush | UserKick) -> None:
        session = self.sessions.by_uid(uid)
        if session is None:
            raise UserNotHere(uid)
        if isinstance(what, UidPush):
            session.ref.tell(SendFrame(self.encode_push_packet(what.push_route, what.data)))
        elif isinstance(what, UidKick | UserKick):
            session.kick(what.reason)
        else:  # UserPush
            session.ref.tell(SendFrame(self.encode_push_packet(what.route, what.data)))

    async def _to_session(
        self, control: SessionBind | SessionData | SessionPush | SessionKick
    ) -> None:
        session = self.sessions.get(control.sid)
        if session is None:
            raise InternalError(f"session {control.sid} not found on {self.server_id}")
        if isinstance(control, SessionBind):
            await session.bind(control.uid)
        elif isinstance(control, SessionData):
            session.data = dict(control.data)
        elif isinstance(control, SessionPush):
            session.ref.tell(PushToClient(control.push_route, control.data))
        else:
            session.ref.tell(KickSession(control.reason))

    async def _session_event(self, control: SessionEvent, snapshot: SessionSnapshot | None) -> None:
        """Backend side: a session this server served bound or closed on its frontend."""
        if snapshot is None:
            raise BadRequest("session event without a session")
        session = self.backend_session(snapshot, True)
        await self.session_events.emit(control.event, session, set(control.routes))
