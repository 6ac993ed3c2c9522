"""Control messages between cluster servers: one typed class per control, handled here.

A backend's session reaches its client through the frontend that holds it, and a server
reaches a uid through the frontend it is bound on. Controls travel as user RPCs
(``protos.Request``, ``actors.cluster.codec``) to the frontend; Pitaya's own where Pitaya has
one, so a Go frontend understands them, and extra ``pysys.*`` routes that only our servers
(discovery metadata ``pitayaActors``) are sent:

=====================  =======================  ===========================  ================
class                  route                    body                         answer
=====================  =======================  ===========================  ================
:class:`SessionBind`   ``sys.bindsession``      ``Session{id, uid}``         Response{Response}
:class:`SessionData`   ``sys.pushsession``      ``Session{id, uid, data}``   Response{Response}
:class:`UidKick`       ``sys.kick``             ``KickMsg{userId}`` (*)      Response{KickAnswer}
:class:`SessionPush`   ``pysys.push``           ``Push``; session ``{id}``   ack (notify)
:class:`SessionKick`   ``pysys.kick``           reason (text); ``{id}``      ack (notify)
:class:`UidPush`       ``pysys.pushuser``       ``Push``                     ack / PIT-404
:class:`SessionEvent`  ``pysys.sessionevent``   ``{"event", "routes"}``      ack (notify)
:class:`HandshakeGet`  ``pysys.handshake``      empty; session ``{id}``      ``{"hs": ...}``
:class:`SessionsOpen`  ``pysys.sessionsopen``   ``{"ids": [...]}``           ``{"open": [...]}``
=====================  =======================  ===========================  ================

(*) and the kick's reason in a field Go's message has not (``codec.KICK_REASON_FIELD``).
The first three are Go Pitaya's ``remote.Sys`` (answers nested as Go's user RPC path nests
them). A Go frontend has no ``pysys.*`` routes: toward it ``actors.cluster.outbound`` pushes
by uid the Go way (``protos.Push`` on the uid's subject, or gRPC ``PushToUser``) and kicks a
bound session with ``sys.kick``; an unbound session cannot be reached there (as in Go). A
session event goes the other way, to the backends of ours that served a session; its session
is the request's. :func:`control_request` and :meth:`ControlHandler.on_request` are the only
places that know these bodies (through ``actors.cluster.codec``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from actors.cluster.codec import (
    ACK,
    CONTROL_ACK,
    USER,
    RpcRequest,
    SessionSnapshot,
    UserKick,
    UserPush,
    decode_json_body,
    decode_kick,
    decode_push,
    decode_session_body,
    decode_text_body,
    encode_answer,
    encode_error,
    encode_json_body,
    encode_kick,
    encode_kick_answer,
    encode_push,
    encode_session_body,
    encode_text_body,
    with_handshake,
)
from actors.cluster.handshakes import HandshakeCache
from actors.cluster.session_events import CLOSE
from actors.errors import BadRequest, InternalError, UserNotHere
from actors.logs import ServerLog, Throttle
from actors.propagation import adopt as adopt_propagated
from actors.session import KickSession, PushToClient

if TYPE_CHECKING:
    from actors.cluster.rpc import Respond
    from actors.cluster.served_sessions import ServedSession, ServedSessions
    from actors.cluster.session_events import RemoteSessionEvents
    from actors.session import Session
    from actors.sessions.registry import SessionRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionBind:
    """Bind ``uid`` on the frontend session ``sid`` (its bind callbacks run there)."""

    route: ClassVar[str] = "sys.bindsession"
    sid: int
    uid: str


@dataclass(frozen=True, slots=True)
class SessionData:
    """Replace the data of the frontend session ``sid`` (``push_to_front``)."""

    route: ClassVar[str] = "sys.pushsession"
    sid: int
    uid: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionPush:
    """Push ``data`` (serialized) on ``push_route`` to the client of session ``sid``."""

    route: ClassVar[str] = "pysys.push"
    sid: int
    uid: str | None
    push_route: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionKick:
    """Kick the client of session ``sid``."""

    route: ClassVar[str] = "pysys.kick"
    sid: int
    uid: str | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class UidPush:
    """Push to ``uid``, bound on the target frontend (binding storage)."""

    route: ClassVar[str] = "pysys.pushuser"
    uid: str
    push_route: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UidKick:
    """Kick ``uid``, bound on the target frontend (binding storage), telling it ``reason``
    (in a field of ``KickMsg`` Go's has not: ``actors.cluster.codec.KICK_REASON_FIELD``)."""

    route: ClassVar[str] = "sys.kick"
    uid: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """To a backend: a session it served (the request's session) bound or closed;
    ``routes``: the routes it handled for that session."""

    route: ClassVar[str] = "pysys.sessionevent"
    event: str
    routes: frozenset[str]


@dataclass(frozen=True, slots=True)
class HandshakeGet:
    """To a frontend: the handshake of its session ``sid``, which a backend was not sent
    with a request and does not keep (``actors.cluster.handshakes``)."""

    route: ClassVar[str] = "pysys.handshake"
    sid: int


@dataclass(frozen=True, slots=True)
class SessionsOpen:
    """To a frontend: which of its sessions ``ids`` are still open (a backend's check of the
    sessions it remembers, ``actors.cluster.served_sessions``)."""

    route: ClassVar[str] = "pysys.sessionsopen"
    ids: tuple[int, ...]


MAX_SESSIONS_ASKED = 10_000
"""Session ids one :class:`SessionsOpen` may ask about."""

Control = (
    SessionBind
    | SessionData
    | SessionPush
    | SessionKick
    | UidPush
    | UidKick
    | SessionEvent
    | HandshakeGet
    | SessionsOpen
)

SESSION_EVENT_ROUTE = SessionEvent.route

GO_CLOSED_SESSION = "close closed session"
"""The error a Go frontend's ``sys.kick`` answers when the client closed before the session
did (Go's ``constants.ErrCloseClosedSession``, from ``session.Kick`` writing the kick packet,
then closing): the user was kicked all the same."""

GO_CONTROL_ROUTES = frozenset({SessionBind.route, SessionData.route, UidKick.route})
"""Go Pitaya's ``remote.Sys`` routes: every frontend, Go or ours, takes them."""
CONTROL_ROUTES = GO_CONTROL_ROUTES | {
    SessionPush.route,
    SessionKick.route,
    UidPush.route,
    SessionEvent.route,
    HandshakeGet.route,
    SessionsOpen.route,
}
"""The routes that are controls, not remotes."""


def control_route(route: str) -> str | None:
    """The control ``route`` names, or None: Go looks remotes up by ``service.method``, so a
    Go caller's ``connector.sys.kick`` is ``sys.kick`` too."""
    if route in CONTROL_ROUTES:
        return route
    if route.count(".") == 2:
        short = route.split(".", 1)[1]
        if short in CONTROL_ROUTES:
            return short
    return None


def _target(sid: int, uid: str | None) -> SessionSnapshot:
    """The session a ``pysys.push``/``pysys.kick`` is for, as the request's session."""
    return SessionSnapshot(id=sid, frontend_id="", frontend_type="", uid=uid, extras=False)


def control_request(control: Control, notify: bool = False) -> RpcRequest:
    """The user RPC that carries ``control`` (its route is ``control.route``)."""
    if isinstance(control, SessionBind):
        body = encode_session_body(control.sid, control.uid, None)
    elif isinstance(control, SessionData):
        body = encode_session_body(control.sid, control.uid, control.data)
    elif isinstance(control, UidKick):
        body = encode_kick(UserKick(control.uid, control.reason))
    elif isinstance(control, UidPush):
        body = encode_push(UserPush(control.uid, control.push_route, control.data))
    elif isinstance(control, SessionPush):
        push = UserPush(control.uid or "", control.push_route, control.data)
        return RpcRequest(
            USER, control.route, encode_push(push), _target(control.sid, control.uid), notify
        )
    elif isinstance(control, SessionKick):
        return RpcRequest(
            USER,
            control.route,
            encode_text_body(control.reason),
            _target(control.sid, control.uid),
            notify,
        )
    elif isinstance(control, HandshakeGet):
        return RpcRequest(USER, control.route, b"", _target(control.sid, None), notify)
    elif isinstance(control, SessionsOpen):
        body = encode_json_body({"ids": list(control.ids)})
    else:
        body = encode_json_body({"event": control.event, "routes": sorted(control.routes)})
    return RpcRequest(USER, control.route, body, notify=notify)


def decode_control(route: str, request: RpcRequest) -> Control:
    """The control a request of ``route`` (from :func:`control_route`) carries; raises a
    CodecError or BadRequest on a malformed one."""
    body = request.data
    if route == SessionBind.route:
        sid, uid, _ = decode_session_body(body)
        if not uid:
            raise BadRequest("sys.bindsession needs a uid")
        return SessionBind(sid, uid)
    if route == SessionData.route:
        sid, uid, data = decode_session_body(body)
        return SessionData(sid, uid, data if data is not None else {})
    if route == UidKick.route:
        kick = decode_kick(body)
        return UidKick(kick.uid, kick.reason)
    if route == UidPush.route:
        push = decode_push(body)
        return UidPush(push.uid, push.route, push.data)
    if route == SessionEvent.route:
        value = decode_json_body(body)
        event, routes = value.get("event"), value.get("routes", [])
        if not isinstance(event, str) or not isinstance(routes, list):
            raise BadRequest("a session event needs an event name and a list of routes")
        return SessionEvent(event, frozenset(str(r) for r in routes))
    if route == SessionsOpen.route:
        ids = decode_json_body(body).get("ids")
        if (
            not isinstance(ids, list)
            or len(ids) > MAX_SESSIONS_ASKED
            or not all(type(sid) is int for sid in ids)
        ):
            raise BadRequest(f"{route} needs a list of at most {MAX_SESSIONS_ASKED} session ids")
        return SessionsOpen(tuple(ids))
    target = request.session
    if target is None:
        raise BadRequest(f"{route} without the target session")
    if route == SessionPush.route:
        push = decode_push(body, uid_required=False)
        return SessionPush(target.id, target.uid, push.route, push.data)
    if route == HandshakeGet.route:
        return HandshakeGet(target.id)
    return SessionKick(target.id, target.uid, decode_text_body(body))


class FrontendLink(Protocol):
    """How a backend session sends its controls to its frontend
    (:class:`~actors.cluster.outbound.Outbound`). ``frontend_type`` and ``extras`` (the
    frontend is one of ours) come from the request the session arrived with."""

    async def frontend_call(
        self,
        frontend_id: str,
        control: Control,
        frontend_type: str | None = None,
        extras: bool | None = None,
    ) -> None:
        """Send ``control`` and wait for the frontend's answer; raises its error."""
        ...

    def frontend_notify(
        self,
        frontend_id: str,
        control: Control,
        frontend_type: str | None = None,
        extras: bool | None = None,
    ) -> None:
        """Send ``control`` expecting no answer, in order with this server's other calls."""
        ...

    async def fetch_handshake(
        self, frontend_id: str, session_id: int, frontend_type: str
    ) -> dict[str, Any] | None:
        """The handshake of a session of that frontend (``pysys.handshake``)."""
        ...


Finished = Callable[[BaseException | None], None]
"""Told once a control request is done: its error, or None."""

BackendSessionFactory = Callable[[SessionSnapshot, bool], "Session"]
"""Makes the session a backend sees from a snapshot (``read_only`` second)."""


class ControlHandler:
    """What this server does with the controls it receives: on a frontend, act on its
    sessions (``sessions``); on a backend, run the session-event callbacks
    (``session_events``) with a session made by ``backend_session``, and keep
    ``served_sessions`` told of the closes (``actors.cluster.served_sessions``).
    """

    def __init__(
        self,
        *,
        server_id: str,
        sessions: SessionRegistry,
        session_events: RemoteSessionEvents,
        backend_session: BackendSessionFactory,
        handshakes: HandshakeCache | None = None,
        served_sessions: ServedSessions | None = None,
    ) -> None:
        self.server_id = server_id
        self.log = ServerLog(log, server_id)
        self.sessions = sessions
        self.session_events = session_events
        self.backend_session = backend_session
        self.handshakes = handshakes if handshakes is not None else HandshakeCache()
        """Backends: the handshakes of the sessions served (``actors.cluster.handshakes``)."""
        self.served_sessions = served_sessions
        """The sessions of our frontends served here, closed here if their frontend dies."""
        self.unanswered_failures = Throttle()
        """Failed controls nobody waits for are logged at warning once per 10 s (each at
        debug): a push to a session that just closed is common, and a peer may flood."""

    def on_request(
        self,
        route: str,
        request: RpcRequest,
        respond: Respond | None,
        finished: Finished | None = None,
    ) -> Coroutine[Any, Any, None] | None:
        """A control request (``route`` from :func:`control_route`): act, then answer as
        Pitaya does (or the error; logged when nobody waits for the answer), then tell
        ``finished`` the error or None (the bridge ends the control's span there).

        Done before this returns, except a bind or a session event (they await): their
        coroutine is returned, for the caller to run as a task. So a push or kick a backend
        handler sends its session is told to the session in the order NATS delivered it,
        before the answer of that handler, which came after it."""
        try:
            control = decode_control(route, request)
            if isinstance(control, SessionBind | SessionEvent):
                return self._act_later(control, request, respond, finished)
            answer = self._act(control)
        except Exception as exc:
            self._failed(route, exc, respond, finished)
            return None
        if respond is not None:
            respond(answer)
        if finished is not None:
            finished(None)
        return None

    async def _act_later(
        self,
        control: SessionBind | SessionEvent,
        request: RpcRequest,
        respond: Respond | None,
        finished: Finished | None,
    ) -> None:
        try:
            if isinstance(control, SessionEvent):
                await self._session_event(control, request.session)
                answer = ACK
            else:
                session = self._session(control.sid)
                # What the backend's handler propagated is current for the bind callbacks
                # (as Go's get its context); this coroutine is a task of its own.
                adopt_propagated(request.propagated)
                await session.bind(control.uid)
                answer = CONTROL_ACK
        except Exception as exc:
            self._failed(control.route, exc, respond, finished)
            return
        if respond is not None:
            respond(answer)
        if finished is not None:
            finished(None)

    def _failed(
        self, route: str, exc: Exception, respond: Respond | None, finished: Finished | None
    ) -> None:
        if respond is not None:
            respond(encode_error(exc))
        else:
            self.unanswered_failures.log(
                time.monotonic(), self.log, logging.WARNING, "%s failed: %s", route, exc
            )
        if finished is not None:
            finished(exc)

    def _session(self, sid: int) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            raise InternalError(f"session {sid} not found on {self.server_id}")
        return session

    def _act(self, control: Control) -> bytes:
        """What needs no await: act now; the answer."""
        if isinstance(control, UidPush):
            self.to_uid(UserPush(control.uid, control.push_route, control.data))
            return ACK
        if isinstance(control, UidKick):
            self.to_uid(UserKick(control.uid, control.reason))
            return encode_kick_answer(True)
        assert not isinstance(control, SessionBind | SessionEvent)  # _act_later's
        if isinstance(control, SessionsOpen):
            sessions = self.sessions
            open_ids = [sid for sid in control.ids if sessions.get(sid) is not None]
            return encode_answer(encode_json_body({"open": open_ids}))
        session = self._session(control.sid)
        if isinstance(control, HandshakeGet):
            handshake = session.handshake
            value = None if handshake is None else {"sys": handshake.sys, "user": handshake.user}
            return encode_answer(encode_json_body({"hs": value}))
        if isinstance(control, SessionData):
            session.data = dict(control.data)
            return CONTROL_ACK
        if isinstance(control, SessionPush):
            session.ref.tell(PushToClient(control.push_route, control.data))
        else:
            session.ref.tell(KickSession(control.reason))
        return ACK

    def on_user_message(self, message: UserPush | UserKick, respond: Respond | None) -> None:
        """A push or kick by uid (a uid's subject over NATS, ``PushToUser``/``KickUser``
        over gRPC): act, and answer at once when asked (Go never asks over NATS)."""
        try:
            self.to_uid(message)
        except UserNotHere as exc:
            # Closing or gone: say so at once, so a caller that asked never waits for the
            # RPC timeout over an answer already known.
            if respond is not None:
                respond(encode_error(exc))
            return
        if respond is not None:
            respond(ACK)

    def to_uid(self, message: UserPush | UserKick) -> None:
        """Push to or kick the session ``message.uid`` is bound to here; UserNotHere."""
        session = self.sessions.by_uid(message.uid)
        if session is None:
            raise UserNotHere(message.uid)
        if isinstance(message, UserKick):
            session.kick(message.reason)
        else:
            # Framed by the session, as a session's push: one no packet can carry (over
            # 16 MiB: NATS takes up to 64) is dropped there with a warning; framed here, it
            # raised out of the bridge, and an acknowledged push was never answered.
            session.ref.tell(PushToClient(message.route, message.data))

    async def _session_event(self, control: SessionEvent, snapshot: SessionSnapshot | None) -> None:
        """Backend side: a session this server served bound or closed on its frontend."""
        if snapshot is None:
            raise BadRequest("session event without a session")
        served = self.served_sessions
        if served is not None:
            if control.event != CLOSE:
                served.bound(snapshot)
            elif not served.closing(snapshot.frontend_id, snapshot.id):
                return  # closed here already: its frontend was taken for gone, came back
        await self._emit(control.event, snapshot, control.routes, control.event == CLOSE)

    async def close_here(self, served: ServedSession) -> None:
        """Backend side: run the close callbacks of a session whose frontend is gone without
        sending its close (``actors.cluster.served_sessions``), as its close event would. A
        handshake taken out for it (:meth:`take_handshakes`) is its own: what is kept under
        its id is the new session's then, and stays."""
        snapshot = served.snapshot
        await self._emit(CLOSE, snapshot, served.routes, snapshot.handshake_omitted)

    async def _emit(
        self, event: str, snapshot: SessionSnapshot, routes: Iterable[str], drop: bool
    ) -> None:
        """Run ``event``'s callbacks with a read-only session of ``snapshot`` and the
        handshake kept here when it was omitted (the session may be gone); then forget the
        handshake kept (``drop``: the session's close)."""
        handshakes = self.handshakes
        if snapshot.handshake_omitted:
            kept = handshakes.get(snapshot.frontend_id, snapshot.id)
            snapshot = with_handshake(snapshot, kept)
        session = self.backend_session(snapshot, True)
        try:
            await self.session_events.emit(event, session, set(routes))
        finally:
            if drop:
                handshakes.drop(snapshot.frontend_id, snapshot.id)

    def take_handshakes(self, sessions: list[ServedSession]) -> None:
        """Before a message of a restarted frontend's new process puts its handshake where
        the old session of the same id had its own: the old sessions' closes keep theirs,
        put back in their snapshots."""
        handshakes = self.handshakes
        for served in sessions:
            snapshot = served.snapshot
            kept = handshakes.get(snapshot.frontend_id, snapshot.id)
            served.snapshot = with_handshake(snapshot, kept)
            handshakes.drop(snapshot.frontend_id, snapshot.id)
