"""What ``App.register`` and ``App.register_remote`` refuse, at once and with a message that
says what to do: mistakes that would otherwise surface when the server starts (two actors
with one name), or never (a Remote's routes served to clients)."""

from __future__ import annotations

from typing import Any

import pytest

from actors.app import App
from actors.handler import Handler, Remote, handler
from actors.session import Session


class Room(Handler):
    @handler
    def join(self, session: Session, body: Any) -> dict[str, Any]:
        return {"joined": True}


class Admin(Remote):
    @handler
    def grant_gold(self, caller: Session | None, body: int) -> dict[str, int]:
        return {"granted": body}


def test_a_remote_given_to_register_is_refused_it_would_answer_clients() -> None:
    app = App()
    with pytest.raises(TypeError) as caught:
        app.register(Admin)
    assert str(caught.value) == (
        "Admin is a Remote: register it with app.register_remote "
        "(its routes answer RPCs from other servers, never clients)"
    )
    app.register_remote(Admin)  # where it belongs


def test_only_classes_of_the_right_kind_are_taken() -> None:
    app = App()
    with pytest.raises(TypeError, match="is not a Handler subclass"):
        app.register(Room())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not a Remote subclass"):
        app.register_remote(Room)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["handler", "remote"])
def test_one_service_name_is_registered_once(kind: str) -> None:
    base: type[Handler] = Handler if kind == "handler" else Remote

    class First(base):  # type: ignore[valid-type, misc]
        service = "stats"

        @handler
        def hello(self, session: Session) -> str:
            return "first"

    class Second(base):  # type: ignore[valid-type, misc]
        service = "stats"

        @handler
        def bye(self, session: Session) -> str:
            return "second"

    app = App()
    register = app.register if kind == "handler" else app.register_remote
    register(First)
    with pytest.raises(ValueError, match=f"a {kind} for service 'stats' is already registered"):
        register(Second)


@pytest.mark.parametrize("kind", ["handler", "remote"])
def test_a_class_without_a_route_method_is_refused(kind: str) -> None:
    base: type[Handler] = Handler if kind == "handler" else Remote

    class Empty(base):  # type: ignore[valid-type, misc]
        def helper(self) -> None: ...

    app = App()
    register = app.register if kind == "handler" else app.register_remote
    with pytest.raises(ValueError, match="Empty declares no @handler method"):
        register(Empty)


async def test_a_handler_and_a_remote_may_share_a_service_name() -> None:
    class Stats(Handler):
        service = "stats"

        @handler
        def hello(self, session: Session) -> str:
            return "handler"

    class StatsRemote(Remote):
        service = "stats"

        @handler
        def hello(self, caller: Session | None) -> str:
            return "remote"

    app = App()
    app.register(Stats)
    app.register_remote(StatsRemote)
    async with app:  # their actors have different names: both start
        assert app.ready_now()


@pytest.mark.parametrize("kind", ["handler", "remote"])
def test_a_service_name_with_a_dot_is_refused_no_route_could_reach_it(kind: str) -> None:
    # Routes are [serverType.]service.method split at the dots: "room.my.room.join" reads as
    # service "my", method "room.join", and "my.room.join" as server type "my".
    base: type[Handler] = Handler if kind == "handler" else Remote

    class Dotted(base):  # type: ignore[valid-type, misc]
        service = "my.room"

        @handler
        def join(self, session: Session) -> str:
            return "joined"

    app = App()
    register = app.register if kind == "handler" else app.register_remote
    with pytest.raises(ValueError) as caught:
        register(Dotted)
    assert str(caught.value) == (
        "Dotted's service name 'my.room' has a dot: routes are [serverType.]service.method, "
        "split at the dots, so no route would reach it (name it 'my_room', say)"
    )


def test_a_route_method_name_with_a_dot_is_refused() -> None:
    class Lobby(Handler):
        @handler(name="enter.now")
        def enter(self, session: Session) -> str:
            return "entered"

    with pytest.raises(ValueError) as caught:
        App().register(Lobby)
    assert str(caught.value) == (
        "Lobby.enter serves the method name 'enter.now', which has a dot: routes are "
        "[serverType.]service.method, split at the dots, so no route would reach it"
    )
