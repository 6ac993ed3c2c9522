"""``sys.docs`` (``actors.docs``): the picture of a type, of a route, and the route listing.

``describe`` is a pure function of an annotation; ``Sys.docs`` is called on a bare ``Sys``
handler whose ``app`` is a small stand-in holding only what it reads. The same answer seen
by a client is in test_session_features.py and test_protobuf_app.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional, Union

import pytest

from actors.config import Config
from actors.docs import Sys, describe, describe_route
from actors.handler import Call, Handler, handler
from actors.session import Session
from actors.system import ActorSystem
from tests.pbmessages import Counter, JoinRequest, JoinResponse
from transport.serializers import get_serializer


@dataclass
class Inner:
    score: float


@dataclass
class Outer:
    name: str
    tags: list[str]
    inner: Inner
    extra: dict[str, int] = field(default_factory=dict)


class Custom:
    pass


@pytest.mark.parametrize(
    ("annotation", "picture"),
    [
        (None, None),
        (str, "string"),
        (int, "integer"),
        (float, "number"),
        (bool, "boolean"),
        (bytes, "bytes"),
        (dict, "object"),
        (list, "array"),
        (type(None), "null"),
        (Any, "any"),
        (list[int], ["integer"]),
        (tuple[str, ...], ["string"]),
        (set[bool], ["boolean"]),
        (frozenset[float], ["number"]),
        (dict[str, bool], {"<key>": "boolean"}),
        (Union[int, str], {"oneOf": ["integer", "string"]}),  # noqa: UP007
        (int | None, {"oneOf": ["integer", "null"]}),
        (Optional[str], {"oneOf": ["string", "null"]}),  # noqa: UP045
        (list[dict[str, list[int]]], [{"<key>": ["integer"]}]),
        (Custom, "Custom"),
        ("a forward reference", "a forward reference"),
    ],
)
def test_describe_names_each_kind_of_annotation(annotation: Any, picture: Any) -> None:
    assert describe(annotation) == picture


def test_describe_a_dataclass_field_by_field_nested() -> None:
    assert describe(Outer) == {
        "name": "string",
        "tags": ["string"],
        "inner": {"score": "number"},
        "extra": {"<key>": "integer"},
    }


def test_describe_a_protobuf_message_by_its_fields() -> None:
    assert describe(JoinRequest) == {"$protobuf": "testchat.JoinRequest", "name": "string"}
    assert describe(JoinResponse) == {
        "$protobuf": "testchat.JoinResponse",
        "result": "string",
        "members": "string",
    }
    assert describe(Counter) == {
        "$protobuf": "testchat.Counter",
        "value": "int64",
        "scores": "testchat.Counter.ScoresEntry",  # a message-typed field: its full name
    }


class Room(Handler):
    service = "room"

    @handler
    def join(self, session: Session, body: Inner) -> Outer:
        raise NotImplementedError

    @handler
    def say(self, session: Session, body: dict[str, Any]) -> None:
        raise NotImplementedError

    @handler
    def leave(self, session: Session) -> bool:
        raise NotImplementedError

    @handler
    def anything(self, session: Session, body) -> list:  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_describe_route_shows_input_output_and_notify() -> None:
    specs = Room.method_specs()
    assert describe_route(specs["join"]) == {
        "input": {"score": "number"},
        "output": {
            "name": "string",
            "tags": ["string"],
            "inner": {"score": "number"},
            "extra": {"<key>": "integer"},
        },
        "notify": False,
    }
    # A notify-only route has no output; a route without a body has no input.
    assert describe_route(specs["say"]) == {
        "input": {"<key>": "any"},
        "output": None,
        "notify": True,
    }
    assert describe_route(specs["leave"]) == {"input": None, "output": "boolean", "notify": False}
    assert describe_route(specs["anything"]) == {"input": "any", "output": "array", "notify": False}


def fake_app(
    *, mode: str = "standalone", serializer: str = "json", types: set[str] | None = None
) -> SimpleNamespace:
    specs = Room.method_specs()
    routes = {
        "room.leave": SimpleNamespace(spec=specs["leave"]),
        "room.join": SimpleNamespace(spec=specs["join"]),
        "chat.room.join": SimpleNamespace(spec=specs["join"]),  # the server-type form
        "sys.docs": SimpleNamespace(spec=Sys.method_specs()["docs"]),
    }
    return SimpleNamespace(
        server_type="chat",
        config=Config(mode=mode),
        serializer=get_serializer(serializer),
        local_routes=routes,
        known_server_types=lambda: set(types or {"chat"}),
    )


def docs_of(app: SimpleNamespace) -> Any:
    sys_handler = Sys()
    sys_handler.app = app  # type: ignore[assignment]
    return sys_handler.docs(None)  # type: ignore[arg-type]


def test_docs_lists_the_short_routes_sorted_with_their_description() -> None:
    docs = docs_of(fake_app())
    assert docs["server_type"] == "chat"
    assert list(docs["handlers"]) == ["room.join", "room.leave", "sys.docs"]
    assert docs["handlers"]["room.leave"] == describe_route(Room.method_specs()["leave"])
    assert docs["handlers"]["sys.docs"] == {"input": None, "output": "any", "notify": False}
    assert "server_types" not in docs  # standalone: no other types to reach


def test_docs_in_cluster_mode_list_the_server_types_sorted() -> None:
    docs = docs_of(fake_app(mode="cluster", types={"room", "connector", "chat"}))
    assert docs["server_types"] == ["chat", "connector", "room"]


def test_docs_for_the_protobuf_serializer_are_json_bytes() -> None:
    raw = docs_of(fake_app(serializer="protobuf"))
    assert isinstance(raw, bytes)
    assert json.loads(raw) == docs_of(fake_app())


async def test_sys_is_the_sys_service_and_answers_a_call() -> None:
    assert Sys.service_name() == "sys"
    async with ActorSystem() as system:
        ref = system.spawn(Sys)
        ref._cell.actor.app = fake_app()  # type: ignore[attr-defined]
        docs = await ref.ask(Call("docs", None))
        assert set(docs["handlers"]) == {"room.join", "room.leave", "sys.docs"}
