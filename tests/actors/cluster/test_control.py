"""Control messages: one typed class per control, its route, and its Pitaya-shaped body."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from actors.cluster.codec import USER, CodecError, RpcRequest, SessionSnapshot, read_answer
from actors.cluster.control import (
    CONTROL_ROUTES,
    GO_CONTROL_ROUTES,
    Control,
    ControlHandler,
    HandshakeGet,
    SessionBind,
    SessionData,
    SessionEvent,
    SessionKick,
    SessionPush,
    SessionsOpen,
    UidKick,
    UidPush,
    control_request,
    control_route,
    decode_control,
)
from actors.cluster.session_events import RemoteSessionEvents
from actors.errors import BadRequest, InternalError
from actors.sessions.registry import SessionRegistry
from transport.protos import pitaya_pb2 as pb

CASES: list[tuple[Control, str]] = [
    (SessionBind(7, "ann"), "sys.bindsession"),
    (SessionData(7, "ann", {"level": 3}), "sys.pushsession"),
    (UidKick("ann"), "sys.kick"),
    (UidKick("ann", "cheating"), "sys.kick"),
    (SessionPush(7, None, "onMsg", b"{}"), "pysys.push"),
    (SessionKick(7, "ann", "bye"), "pysys.kick"),
    (UidPush("ann", "onMsg", b"{}"), "pysys.pushuser"),
    (SessionEvent("close", frozenset({"room.room.join", "room.room.chat"})), "pysys.sessionevent"),
    (HandshakeGet(7), "pysys.handshake"),
    (SessionsOpen((1, 7, 9)), "pysys.sessionsopen"),
]


@pytest.mark.parametrize(("control", "route"), CASES)
def test_each_control_is_a_user_rpc_on_its_route_and_decodes_back(
    control: Control, route: str
) -> None:
    assert control.route == route
    request = control_request(control)
    assert (request.kind, request.route) == (USER, route)
    assert decode_control(route, request) == control


def test_the_control_routes_are_exactly_the_nine_and_three_are_gos() -> None:
    assert {route for _, route in CASES} == CONTROL_ROUTES
    assert {"sys.bindsession", "sys.pushsession", "sys.kick"} == GO_CONTROL_ROUTES


def test_gos_controls_carry_gos_bodies() -> None:
    bind = pb.Session.FromString(control_request(SessionBind(7, "ann")).data)
    assert (bind.id, bind.uid, bind.data) == (7, "ann", b"")
    data = pb.Session.FromString(control_request(SessionData(7, "ann", {"level": 3})).data)
    assert (data.id, data.uid, json.loads(data.data)) == (7, "ann", {"level": 3})
    assert pb.KickMsg.FromString(control_request(UidKick("ann")).data).userId == "ann"
    # A reason rides in a field Go's KickMsg has not: a Go frontend reads the uid alone.
    kick = pb.KickMsg.FromString(control_request(UidKick("ann", "cheating")).data)
    assert (
        kick.userId == "ann"
        and kick.SerializeToString()
        == pb.KickMsg(userId="ann").SerializeToString() + b"\x12\x08cheating"
    )


def test_a_go_backends_controls_decode() -> None:
    """What a Go backend session sends (``sendRequestToFront``, ``Remote.Kick``)."""
    bind = RpcRequest(USER, "sys.bindsession", pb.Session(id=3, uid="u").SerializeToString())
    assert decode_control("sys.bindsession", bind) == SessionBind(3, "u")
    push = RpcRequest(
        USER, "sys.pushsession", pb.Session(id=3, uid="u", data=b'{"a":1}').SerializeToString()
    )
    assert decode_control("sys.pushsession", push) == SessionData(3, "u", {"a": 1})
    empty = RpcRequest(USER, "sys.pushsession", pb.Session(id=3).SerializeToString())
    assert decode_control("sys.pushsession", empty) == SessionData(3, None, {})
    kick = RpcRequest(USER, "sys.kick", pb.KickMsg(userId="u").SerializeToString())
    assert decode_control("sys.kick", kick) == UidKick("u")


def test_session_push_and_kick_name_their_session_in_the_request() -> None:
    request = control_request(SessionPush(7, "ann", "onMsg", b"x"), notify=True)
    assert request.notify and request.session is not None
    assert (request.session.id, request.session.uid) == (7, "ann")
    assert pb.Push.FromString(request.data) == pb.Push(route="onMsg", uid="ann", data=b"x")


def test_control_routes_are_found_as_go_finds_remotes() -> None:
    assert control_route("sys.kick") == "sys.kick"
    assert control_route("connector.sys.kick") == "sys.kick"  # Go looks up service.method
    assert control_route("room.room.join") is None
    assert control_route("sys.nope") is None


def test_malformed_controls_raise() -> None:
    with pytest.raises(BadRequest, match="needs a uid"):
        decode_control("sys.bindsession", RpcRequest(USER, "sys.bindsession", b""))
    with pytest.raises(CodecError):
        decode_control("sys.kick", RpcRequest(USER, "sys.kick", b"\xff\xff"))
    with pytest.raises(BadRequest, match="without the target session"):
        decode_control("pysys.kick", RpcRequest(USER, "pysys.kick", b"bye"))
    with pytest.raises(BadRequest, match="event name"):
        decode_control("pysys.sessionevent", RpcRequest(USER, "x", b'{"routes": 3}'))
    target = SessionSnapshot(1, "", "")
    with pytest.raises(CodecError, match="not UTF-8"):
        decode_control("pysys.kick", RpcRequest(USER, "pysys.kick", b"\xff", target))


def test_failed_controls_nobody_waits_for_are_logged_at_warning_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A push or kick sent without a reply subject, to a session gone meanwhile (a room
    pushing to a member who just left), or a peer's flood of them: a warning each."""
    caplog.set_level(logging.DEBUG, logger="actors.cluster.control")
    handler = ControlHandler(
        server_id="front-1",
        sessions=SessionRegistry(),
        session_events=RemoteSessionEvents(),
        backend_session=lambda snapshot, read_only: None,  # type: ignore[arg-type,return-value]
    )
    finished: list[BaseException | None] = []
    for sid in range(5):
        request = control_request(SessionPush(sid, None, "onMsg", b"{}"), notify=True)
        assert handler.on_request("pysys.push", request, None, finished.append) is None
    assert [type(error) for error in finished] == [InternalError] * 5  # each one told
    lines = [r for r in caplog.records if "pysys.push failed" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING] + [logging.DEBUG] * 4
    handler.unanswered_failures._last = -100.0  # 10 s later
    request = control_request(SessionKick(9, None, "bye"), notify=True)
    handler.on_request("pysys.kick", request, None)
    last = caplog.records[-1]
    assert last.levelno == logging.WARNING
    assert last.getMessage() == (
        "[front-1] pysys.kick failed: PIT-500: session 9 not found on front-1 "
        "(4 more since the last such line, not logged)"
    )


@pytest.mark.parametrize(
    "body",
    [b'{"ids": "1"}', b'{"ids": [1, "2"]}', b'{"ids": [true]}', b'{"ids": [1.5]}', b"{}"],
)
def test_a_malformed_question_of_open_sessions_is_refused(body: bytes) -> None:
    with pytest.raises(BadRequest, match="needs a list of at most 10000 session ids"):
        decode_control("pysys.sessionsopen", RpcRequest(USER, "pysys.sessionsopen", body))


def test_too_many_session_ids_in_one_question_are_refused() -> None:
    request = control_request(SessionsOpen(tuple(range(10_001))))
    with pytest.raises(BadRequest):
        decode_control("pysys.sessionsopen", request)
    request = control_request(SessionsOpen(tuple(range(10_000))))
    assert len(decode_control("pysys.sessionsopen", request).ids) == 10_000  # type: ignore[union-attr]


async def test_a_frontend_says_which_of_the_sessions_asked_of_are_open() -> None:
    sessions = SessionRegistry()
    open_ids = [sessions.next_id() for _ in range(3)]
    for sid in open_ids:
        sessions.add(SimpleNamespace(id=sid, uid=None))  # type: ignore[arg-type]
    handler = ControlHandler(
        server_id="front-1",
        sessions=sessions,
        session_events=RemoteSessionEvents(),
        backend_session=lambda snapshot, read_only: None,  # type: ignore[arg-type,return-value]
    )
    answers: list[bytes] = []
    asked = SessionsOpen((open_ids[0], 99, open_ids[2]))
    handler.on_request("pysys.sessionsopen", control_request(asked), answers.append)
    assert [json.loads(read_answer(a)) for a in answers] == [{"open": [open_ids[0], open_ids[2]]}]
