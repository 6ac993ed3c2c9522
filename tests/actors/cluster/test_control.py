"""Control messages: one typed class per control, its route, and its Pitaya-shaped body."""

from __future__ import annotations

import json

import pytest

from actors.cluster.codec import USER, CodecError, RpcRequest, SessionSnapshot
from actors.cluster.control import (
    CONTROL_ROUTES,
    GO_CONTROL_ROUTES,
    Control,
    HandshakeGet,
    SessionBind,
    SessionData,
    SessionEvent,
    SessionKick,
    SessionPush,
    UidKick,
    UidPush,
    control_request,
    control_route,
    decode_control,
)
from actors.errors import BadRequest
from transport.protos import pitaya_pb2 as pb

CASES: list[tuple[Control, str]] = [
    (SessionBind(7, "ann"), "sys.bindsession"),
    (SessionData(7, "ann", {"level": 3}), "sys.pushsession"),
    (UidKick("ann"), "sys.kick"),
    (SessionPush(7, None, "onMsg", b"{}"), "pysys.push"),
    (SessionKick(7, "ann", "bye"), "pysys.kick"),
    (UidPush("ann", "onMsg", b"{}"), "pysys.pushuser"),
    (SessionEvent("close", frozenset({"room.room.join", "room.room.chat"})), "pysys.sessionevent"),
    (HandshakeGet(7), "pysys.handshake"),
]


@pytest.mark.parametrize(("control", "route"), CASES)
def test_each_control_is_a_user_rpc_on_its_route_and_decodes_back(
    control: Control, route: str
) -> None:
    assert control.route == route
    request = control_request(control)
    assert (request.kind, request.route) == (USER, route)
    assert decode_control(route, request) == control


def test_the_control_routes_are_exactly_the_eight_and_three_are_gos() -> None:
    assert {route for _, route in CASES} == CONTROL_ROUTES
    assert {"sys.bindsession", "sys.pushsession", "sys.kick"} == GO_CONTROL_ROUTES


def test_gos_controls_carry_gos_bodies() -> None:
    bind = pb.Session.FromString(control_request(SessionBind(7, "ann")).data)
    assert (bind.id, bind.uid, bind.data) == (7, "ann", b"")
    data = pb.Session.FromString(control_request(SessionData(7, "ann", {"level": 3})).data)
    assert (data.id, data.uid, json.loads(data.data)) == (7, "ann", {"level": 3})
    assert pb.KickMsg.FromString(control_request(UidKick("ann")).data).userId == "ann"


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
