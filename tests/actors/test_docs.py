"""``sys.docs`` (``actors.docs``): the picture of a type, of a route, and the route listing.

``describe`` is a pure function of an annotation; ``Sys.docs`` is called on a bare ``Sys``
handler whose ``app`` is a small stand-in holding only what it reads. The same answer seen
by a client is in test_session_features.py and test_protobuf_app.py.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional, Union

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


class NotProtobuf:
    """Has a DESCRIPTOR, but not a message descriptor (no fields)."""

    DESCRIPTOR = object()


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
        (typing.List, ["any"]),  # noqa: UP006  (no element type)
        (typing.Dict, {"<key>": "any"}),  # noqa: UP006
        (Custom, "Custom"),
        (NotProtobuf, "NotProtobuf"),
        ("a forward reference", "a forward reference"),
    ],
)
def test_describe_names_each_kind_of_annotation(annotation: Any, picture: Any) -> None:
    assert describe(annotation) == picture


_ANNOTATIONS = st.recursive(
    st.sampled_from([str, int, float, bool, bytes, dict, list, Any, type(None), Inner, Outer]),
    lambda inner: st.one_of(
        inner.map(lambda t: list[t]),  # type: ignore[valid-type]
        inner.map(lambda t: dict[str, t]),  # type: ignore[valid-type]
        inner.map(lambda t: tuple[t, ...]),  # type: ignore[valid-type]
        st.tuples(inner, inner).map(lambda pair: Union[pair[0], pair[1]]),  # noqa: UP007
    ),
    max_leaves=8,
)


@given(_ANNOTATIONS)
def test_describe_is_json_for_any_nesting_and_follows_containers(annotation: Any) -> None:
    picture = describe(annotation)
    assert json.loads(json.dumps(picture)) == picture
    assert describe(list[annotation]) == [picture]  # type: ignore[valid-type]
    assert describe(dict[str, annotation]) == {"<key>": picture}  # type: ignore[valid-type]


def test_describe_a_dataclass_field_by_field_nested() -> None:
    assert describe(Outer) == {
        "name": "string",
        "tags": ["string"],
        "inner": {"score": "number"},
        "extra": {"<key>": "integer"},
    }


def _room_messages() -> tuple[Any, Any]:
    """``message Seat {int32 n = 1;} enum Color {RED = 0;}
    message Table {Seat seat = 1; Color color = 2; bytes blob = 3; repeated int32 ids = 4;
    map<string, Seat> seats = 5;}`` (package ``docs``), built without protoc."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="docs.proto", package="docs", syntax="proto3")
    seat = file.message_type.add(name="Seat")
    seat.field.add(name="n", number=1, label=f.LABEL_OPTIONAL, type=f.TYPE_INT32)
    file.enum_type.add(name="Color").value.add(name="RED", number=0)
    table = file.message_type.add(name="Table")
    table.field.add(
        name="seat", number=1, label=f.LABEL_OPTIONAL, type=f.TYPE_MESSAGE, type_name=".docs.Seat"
    )
    table.field.add(
        name="color", number=2, label=f.LABEL_OPTIONAL, type=f.TYPE_ENUM, type_name=".docs.Color"
    )
    table.field.add(name="blob", number=3, label=f.LABEL_OPTIONAL, type=f.TYPE_BYTES)
    table.field.add(name="ids", number=4, label=f.LABEL_REPEATED, type=f.TYPE_INT32)
    entry = table.nested_type.add(name="SeatsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=f.LABEL_OPTIONAL, type=f.TYPE_STRING)
    entry.field.add(
        name="value", number=2, label=f.LABEL_OPTIONAL, type=f.TYPE_MESSAGE, type_name=".docs.Seat"
    )
    table.field.add(
        name="seats",
        number=5,
        label=f.LABEL_REPEATED,
        type=f.TYPE_MESSAGE,
        type_name=".docs.Table.SeatsEntry",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("docs.Table")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("docs.Seat")),
    )


TABLE, SEAT = _room_messages()


def test_describe_a_protobuf_message_by_its_fields() -> None:
    assert describe(JoinRequest) == {"$protobuf": "testchat.JoinRequest", "name": "string"}
    assert describe(SEAT) == {"$protobuf": "docs.Seat", "n": "int32"}
    picture = describe(TABLE)
    assert picture["$protobuf"] == "docs.Table"
    # a message or enum field: its full name; a scalar: its protobuf type
    assert (picture["seat"], picture["color"], picture["blob"]) == (
        "docs.Seat",
        "docs.Color",
        "bytes",
    )
    assert describe(Counter)["value"] == "int64"


def test_describe_shows_repeated_and_map_protobuf_fields_as_arrays_and_maps() -> None:
    assert describe(JoinResponse)["members"] == ["string"]
    assert describe(TABLE)["ids"] == ["int32"]
    assert describe(Counter)["scores"] == {"<key>": "int32"}
    assert describe(TABLE)["seats"] == {"<key>": "docs.Seat"}


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
