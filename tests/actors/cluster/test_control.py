"""Control messages: one typed class per control, its route, and today's wire bodies."""

from __future__ import annotations

import msgpack
import pytest

from actors.cluster.control import (
    CONTROL_ROUTES,
    SessionBind,
    SessionData,
    SessionEvent,
    SessionKick,
    SessionPush,
    UidKick,
    UidPush,
    decode_control,
    encode_control,
)

CASES = [
    (SessionBind(7, "ann"), "sys.bind", {"sid": 7, "uid": "ann"}),
    (SessionData(7, {"level": 3}), "sys.pushsession", {"sid": 7, "data": {"level": 3}}),
    (SessionPush(7, "onMsg", b"{}"), "sys.push", {"sid": 7, "route": "onMsg", "data": b"{}"}),
    (SessionKick(7, "bye"), "sys.kick", {"sid": 7, "reason": "bye"}),
    (
        UidPush("ann", "onMsg", b"{}"),
        "sys.pushuser",
        {"uid": "ann", "route": "onMsg", "data": b"{}"},
    ),
    (UidKick("ann", "bye"), "sys.kickuser", {"uid": "ann", "reason": "bye"}),
    (
        SessionEvent("close", frozenset({"room.room.join", "room.room.chat"})),
        "sys.sessionevent",
        {"event": "close", "routes": ["room.room.chat", "room.room.join"]},
    ),
]


@pytest.mark.parametrize(("control", "route", "body"), CASES)
def test_each_control_keeps_its_route_and_wire_body(
    control: object, route: str, body: dict[str, object]
) -> None:
    assert control.route == route  # type: ignore[attr-defined]
    encoded = encode_control(control)  # type: ignore[arg-type]
    assert msgpack.unpackb(encoded, raw=False) == body
    assert decode_control(route, encoded) == control


def test_the_control_routes_are_exactly_the_seven() -> None:
    assert {route for _, route, _ in CASES} == CONTROL_ROUTES


def test_bodies_from_older_senders_decode_with_defaults() -> None:
    assert decode_control("sys.kick", msgpack.packb({"sid": 3})) == SessionKick(3, "")
    assert decode_control("sys.kickuser", msgpack.packb({"uid": "a"})) == UidKick("a", "")
    assert decode_control("sys.sessionevent", msgpack.packb({"event": "bind"})) == SessionEvent(
        "bind", frozenset()
    )


def test_a_malformed_body_raises() -> None:
    with pytest.raises(KeyError):
        decode_control("sys.bind", msgpack.packb({"sid": 3}))
