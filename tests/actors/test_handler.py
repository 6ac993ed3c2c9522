"""Handler actors (``actors.handler``): the ``@handler`` mark, the specs read from a method's
signature, the service name, and ``Call``, the way to run a route method with no app.

How a client's message reaches a route method is in test_invocation.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from actors.errors import RouteNotFound
from actors.handler import Call, Handler, Ready, Remote, handler
from actors.session import Session
from actors.system import ActorSystem
from actors.testing import TestSession
from transport.serializers import get_serializer

JSON = get_serializer("json")


@dataclass
class Join:
    name: str


class Room(Handler):
    service = "room"

    def __init__(self) -> None:
        self.members: list[str] = []

    @handler
    def join(self, session: Session, body: Join) -> dict[str, Any]:
        self.members.append(body.name)
        return {"members": list(self.members), "session": session.id}

    @handler(name="chat")
    async def say(self, session: Session, body: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        self.members.append(f"said {body['text']}")

    @handler
    async def count(self, session: Session | None) -> int:
        await asyncio.sleep(0)
        return len(self.members)

    @handler
    def raw(self, session: Session, body: bytes) -> bytes:
        return body[::-1]

    @handler
    def anything(self, session, body):  # type: ignore[no-untyped-def]
        return body

    @handler
    def fail(self, session: Session) -> str:
        raise ValueError("bad move")

    def helper(self, session: Session) -> str:
        """Not marked: not a route."""
        return "no"


@pytest.fixture(autouse=True)
def _fresh_specs() -> None:
    """Specs are cached per class for the life of the process: build them again in each
    test, so each test sees the spec-building code run."""
    classes = [Handler]
    while classes:
        cls = classes.pop()
        if "_method_specs" in cls.__dict__:
            delattr(cls, "_method_specs")
        classes.extend(cls.__subclasses__())


# -- @handler and the specs ------------------------------------------------------------------


def test_handler_marks_a_method_with_its_route_name() -> None:
    def f(self: Any, session: Session) -> None: ...

    assert handler(f) is f
    assert f.__pitaya_handler__ == "f"  # type: ignore[attr-defined]
    assert handler(name="other")(f) is f
    assert f.__pitaya_handler__ == "other"  # type: ignore[attr-defined]


def test_only_marked_methods_are_routes_keyed_by_route_name() -> None:
    specs = Room.method_specs()
    assert set(specs) == {"join", "chat", "count", "raw", "anything", "fail"}
    assert specs["chat"].attribute == "say" and specs["chat"].route_name == "chat"
    assert specs["join"].attribute == specs["join"].route_name == "join"


def test_the_spec_of_each_method_comes_from_its_signature() -> None:
    specs = Room.method_specs()
    join, chat, count = specs["join"], specs["chat"], specs["count"]
    assert (join.notify_only, join.takes_body, join.is_async) == (False, True, False)
    assert (join.request_type, join.response_type) == (Join, dict[str, Any])
    assert (chat.notify_only, chat.takes_body, chat.is_async) == (True, True, True)
    assert (count.notify_only, count.takes_body, count.is_async) == (False, False, True)
    assert (count.request_type, count.response_type) == (None, int)
    anything = specs["anything"]
    assert (anything.request_type, anything.response_type) == (Any, Any)
    assert anything.notify_only is False  # no annotation is not "-> None"


def test_the_spec_decodes_the_body_its_annotation_asks_for() -> None:
    specs = Room.method_specs()
    assert specs["join"].decode(b'{"name":"ann"}', JSON) == Join("ann")
    assert specs["chat"].decode(b'{"text":"hi"}', JSON) == {"text": "hi"}
    assert specs["raw"].decode(b"\x00\x01", JSON) == b"\x00\x01"
    assert specs["anything"].decode(b"[1,2]", JSON) == [1, 2]


def test_specs_are_built_once_per_class_and_subclasses_get_their_own() -> None:
    assert Room.method_specs() is Room.method_specs()

    class BigRoom(Room):
        @handler
        def shout(self, session: Session) -> str:
            return "HEY"

    assert set(BigRoom.method_specs()) == {*Room.method_specs(), "shout"}
    assert "shout" not in Room.method_specs()


def test_a_route_method_must_take_the_session_and_at_most_a_body() -> None:
    class NoSession(Handler):
        @handler
        def bad(self) -> None: ...

    class TooMany(Handler):
        @handler
        def bad(self, session: Session, body: Any, extra: Any) -> None: ...

    with pytest.raises(TypeError, match=r"NoSession.bad must accept the session"):
        NoSession.method_specs()
    with pytest.raises(TypeError, match=r"TooMany.bad takes \(session\[, body\]\), not more"):
        TooMany.method_specs()


def test_a_body_annotation_on_the_first_parameter_is_a_forgotten_session() -> None:
    class Forgot(Handler):
        @handler
        def join(self, body: dict[str, Any]) -> dict[str, Any]:
            return body

    class Swapped(Handler):
        @handler
        def join(self, body: Join, session: Session) -> None: ...

    class MaybeBody(Handler):
        @handler
        def join(self, body: Join | None) -> None: ...

    with pytest.raises(TypeError) as caught:
        Forgot.method_specs()
    assert str(caught.value) == (
        "Forgot.join: its first parameter, 'body', receives the session, but it is annotated "
        "dict[str, typing.Any]; the body comes second: def join(self, session, body)"
    )
    with pytest.raises(TypeError, match=r"Swapped.join: .* annotated Join; the body comes"):
        Swapped.method_specs()
    with pytest.raises(TypeError, match=r"MaybeBody.join: .* annotated"):
        MaybeBody.method_specs()


def test_the_session_parameter_may_be_any_session_or_left_unannotated() -> None:
    class Sessions(Handler):
        @handler
        def plain(self, session): ...  # type: ignore[no-untyped-def]

        @handler
        def typed(self, session: Session) -> None: ...

        @handler
        def test_only(self, session: TestSession) -> None: ...

        @handler
        def optional(self, caller: Session | None, body: Any) -> None: ...

        @handler
        def anything(self, session: Any) -> None: ...

    assert set(Sessions.method_specs()) == {"plain", "typed", "test_only", "optional", "anything"}


# -- the service name and the app ------------------------------------------------------------


def test_the_service_name_is_set_or_the_class_name_with_a_lower_first_letter() -> None:
    class RoomService(Handler):
        pass

    class Named(Handler):
        service = "lobby"

    assert Room.service_name() == "room"
    assert RoomService.service_name() == "roomService"
    assert Named.service_name() == "lobby"


def test_a_handler_without_an_app_says_how_to_give_it_one() -> None:
    room = Room()
    with pytest.raises(AttributeError) as caught:
        _ = room.app
    assert str(caught.value) == (
        "Room has no app: it was spawned outside an App. In a test, spawn it with "
        "actors.testing.spawn_handler(system, Room, app=...), or give the handler what it uses."
    )
    room.app = "the app"  # type: ignore[assignment]
    assert room.app == "the app"
    with pytest.raises(AttributeError, match=r"'Room' object has no attribute 'nothing'"):
        _ = room.nothing  # type: ignore[attr-defined]
    assert not hasattr(Room(), "app")


def test_a_remote_is_a_handler() -> None:
    class Counter(Remote):
        @handler
        def count(self, caller: Session | None, body: Any) -> int:
            return 1

    assert issubclass(Counter, Handler)
    assert Counter.service_name() == "counter"
    assert set(Counter.method_specs()) == {"count"}


# -- Call --------------------------------------------------------------------------------------


async def test_call_runs_a_method_with_its_python_body() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        session = TestSession(3)
        assert await room.ask(Call("join", session, Join("ann"))) == {
            "members": ["ann"],
            "session": 3,
        }
        assert await room.ask(Call("raw", session, b"abc")) == b"cba"  # bytes as they are


async def test_call_runs_async_methods_and_methods_without_a_body() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        assert await room.ask(Call("chat", TestSession(), {"text": "hi"})) is None
        assert await room.ask(Call("count", None, "ignored body")) == 1
        assert room._cell.actor.members == ["said hi"]  # type: ignore[attr-defined]


async def test_call_with_a_map_for_a_dataclass_body_says_what_the_method_takes() -> None:
    """A Call's body goes to the method as it is: a map for a method that takes a dataclass
    failed inside the method (AttributeError: 'dict' object has no attribute 'name'), as if
    the handler were wrong, where the test was."""
    async with ActorSystem() as system:
        room = system.spawn(Room)
        with pytest.raises(TypeError, match=r"Call\('join'\) takes a Join body, not a dict"):
            await room.ask(Call("join", TestSession(), {"name": "ann"}))
        assert await room.ask(Call("join", TestSession(), Join("ann"))) == {
            "members": ["ann"],
            "session": 1,
        }


async def test_call_names_the_route_not_the_attribute() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        with pytest.raises(RouteNotFound) as caught:
            await room.ask(Call("say", TestSession(), {"text": "hi"}))
        assert caught.value.metadata == {"route": "room.say"}
        with pytest.raises(RouteNotFound) as caught:
            await room.ask(Call("helper", TestSession()))
        assert caught.value.msg == "pitaya/handler: room.helper not found"


async def test_a_methods_exception_reaches_the_asker_and_the_handler_goes_on() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        with pytest.raises(ValueError, match="bad move"):
            await room.ask(Call("fail", TestSession()))
        assert await room.ask(Call("count", None)) == 0


async def test_ready_is_answered_after_started() -> None:
    class Slow(Handler):
        def __init__(self) -> None:
            self.gate = asyncio.Event()
            self.ready = False

        async def started(self) -> None:
            await self.gate.wait()
            self.ready = True

    async with ActorSystem() as system:
        ref = system.spawn(Slow)
        answer = asyncio.ensure_future(ref.ask(Ready()))
        await asyncio.sleep(0)
        assert not answer.done()
        ref._cell.actor.gate.set()  # type: ignore[attr-defined]
        assert await answer is None
        assert ref._cell.actor.ready  # type: ignore[attr-defined]


def test_two_methods_serving_one_route_name_are_refused() -> None:
    class Clash(Handler):
        service = "clash"

        @handler(name="join")
        def enter(self, session: Session) -> dict[str, str]:
            return {}

        @handler
        def join(self, session: Session) -> dict[str, str]:
            return {}

    with pytest.raises(TypeError, match=r"Clash\.enter and Clash\.join both serve the route"):
        Clash.method_specs()
