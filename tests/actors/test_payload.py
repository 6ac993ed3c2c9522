"""Payloads (``actors.payload``): a body decoded into the type a handler declares, and a
result encoded for the wire, with ``PIT-400`` naming what is wrong with a client's body.

The same errors seen by a client are in test_error_codes.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.app import App
from actors.errors import BadRequest
from actors.handler import Handler, handler
from actors.payload import _some, decoder_for, encode_result
from actors.session import Session
from actors.testing import MemoryCluster, TestClient, cluster_app
from tests.pbmessages import JoinRequest
from transport.client import RequestError
from transport.errors import SerializationError
from transport.serializers import get_serializer

JSON = get_serializer("json")
MSGPACK = get_serializer("msgpack")
PROTOBUF = get_serializer("protobuf")


class TypedPlayer(TypedDict):
    name: str


@dataclass
class Player:
    name: str
    level: int
    score: float = 0.0
    online: bool = False
    tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    anything: Any = None
    maybe: int | None = None


def decode(annotation: Any, data: bytes, serializer: Any = JSON) -> Any:
    return decoder_for(annotation)(data, serializer)


# -- decoding --------------------------------------------------------------------------------


def test_bytes_are_handed_over_untouched() -> None:
    data = b"\xff not even json"
    assert decode(bytes, data) is data


@pytest.mark.parametrize("annotation", [Any, None, int | str, TypedPlayer])
def test_unchecked_annotations_get_what_the_serializer_produced(annotation: Any) -> None:
    assert decode(annotation, b'[1,"a",null]') == [1, "a", None]


@pytest.mark.parametrize(
    ("annotation", "body", "value"),
    [
        (str, b'"ann"', "ann"),
        (int, b"3", 3),
        (float, b"3", 3),
        (float, b"2.5", 2.5),
        (bool, b"true", True),
        (int | None, b"null", None),
        (list[int], b"[1,2]", [1, 2]),
        (list[Player], b'[{"name":"a","level":1}]', [Player("a", 1)]),
        (dict[str, int], b'{"a":1}', {"a": 1}),
        (dict[str, Player], b'{"p":{"name":"a","level":1}}', {"p": Player("a", 1)}),
    ],
)
def test_simple_annotations_are_checked_and_built(annotation: Any, body: bytes, value: Any) -> None:
    assert decode(annotation, body) == value


@pytest.mark.parametrize(
    ("annotation", "body", "message"),
    [
        (str, b"5", "the body must be str"),
        (int, b'"5"', "the body must be int"),
        (int, b"true", "the body must be int"),  # bool is no int
        (int, b'{"n":5}', "the body must be int"),
        (float, b'"1.5"', "the body must be float"),
        (bool, b"1", "the body must be bool"),
        (int | None, b'"x"', "the body must be int"),
        (list[int], b'{"a":1}', "the body must be list"),
        (list[int], b'[1,"2"]', "item 1 of the body must be int"),
        (dict[str, int], b'{"a":"1"}', "entry 'a' of the body must be int"),
        (dict[str, int], b"[1]", "the body must be an object, got list"),
        (list[Player], b'[{"name":1,"level":1}]', "field 'name' of Player must be str"),
    ],
)
def test_a_body_not_of_its_annotated_type_is_a_bad_request(
    annotation: Any, body: bytes, message: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        decode(annotation, body)
    assert caught.value.code == "PIT-400"
    assert message in caught.value.msg


@pytest.mark.parametrize("annotation", [dict, dict[str, Any], dict[str, int]])
def test_a_dict_body_must_be_an_object(annotation: Any) -> None:
    assert decode(annotation, b'{"a":1}') == {"a": 1}
    with pytest.raises(BadRequest, match="the body must be an object, got list"):
        decode(annotation, b"[1]")
    with pytest.raises(BadRequest, match="the body must be an object, got NoneType"):
        decode(annotation, b"null")


@pytest.mark.parametrize("annotation", [Any, dict, Player, JoinRequest])
def test_an_undecodable_body_is_a_bad_request_naming_the_serializer(annotation: Any) -> None:
    with pytest.raises(BadRequest, match=r"^PIT-400: cannot decode the json body: ") as caught:
        decode(annotation, b"{not json")
    assert isinstance(caught.value.__cause__, SerializationError)
    assert caught.value.code == "PIT-400"


def test_a_dataclass_is_built_from_its_fields_defaults_filled_in() -> None:
    assert decode(Player, b'{"name":"ann","level":3}') == Player("ann", 3)
    body = (
        b'{"name":"bob","level":1,"score":2,"online":true,"tags":["x"],'
        b'"extra":{"k":[1]},"anything":[null],"maybe":null}'
    )
    assert decode(Player, body) == Player("bob", 1, 2, True, ["x"], {"k": [1]}, [None], None)


def test_a_dataclass_body_must_be_an_object() -> None:
    with pytest.raises(BadRequest, match="the body must be an object, got str"):
        decode(Player, b'"ann"')


def test_missing_fields_are_named_sorted() -> None:
    with pytest.raises(BadRequest, match=r"missing field\(s\) \['level', 'name'\] for Player"):
        decode(Player, b'{"score":1.5}')


def test_unknown_fields_are_named_sorted() -> None:
    with pytest.raises(BadRequest, match=r"unknown field\(s\) \['color', 'size'\] for Player"):
        decode(Player, b'{"name":"a","level":1,"size":2,"color":1}')


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b'{"name":1,"level":1}', "field 'name' of Player must be str"),
        (b'{"name":"a","level":"1"}', "field 'level' of Player must be int"),
        (b'{"name":"a","level":1.0}', "field 'level' of Player must be int"),
        (b'{"name":"a","level":true}', "field 'level' of Player must be int"),  # bool is no int
        (b'{"name":"a","level":1,"score":"1"}', "field 'score' of Player must be float"),
        (b'{"name":"a","level":1,"score":false}', "field 'score' of Player must be float"),
        (b'{"name":"a","level":1,"online":1}', "field 'online' of Player must be bool"),
        (b'{"name":"a","level":1,"tags":"x"}', "field 'tags' of Player must be list"),
        (b'{"name":"a","level":1,"extra":[]}', "field 'extra' of Player must be dict"),
    ],
)
def test_fields_of_simple_types_are_checked(body: bytes, rule: str) -> None:
    with pytest.raises(BadRequest, match=rule):
        decode(Player, body)


def test_an_int_is_a_float_and_any_is_not_checked() -> None:
    player = decode(Player, b'{"name":"a","level":1,"score":2,"anything":{},"maybe":null}')
    assert (player.score, player.anything, player.maybe) == (2, {}, None)


@dataclass
class Pos:
    x: int
    y: int


@dataclass
class Move:
    to: Pos | None = None
    path: list[Pos] = field(default_factory=list)
    marks: dict[str, Pos] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    either: int | str = 0


@dataclass
class Tree:
    name: str
    children: list[Tree] = field(default_factory=list)


def test_a_dataclass_field_is_built_from_its_map_also_in_optional_list_and_dict() -> None:
    move = decode(
        Move,
        b'{"to":{"x":1,"y":2},"path":[{"x":3,"y":4}],"marks":{"a":{"x":5,"y":6}},"steps":[7]}',
    )
    assert move == Move(Pos(1, 2), [Pos(3, 4)], {"a": Pos(5, 6)}, [7])
    assert decode(Move, b'{"to":null}') == Move()


def test_msgpack_bodies_build_nested_dataclasses_too() -> None:
    body = MSGPACK.marshal({"to": {"x": 1, "y": 2}, "path": [{"x": 3, "y": 4}]})
    assert decode(Move, body, MSGPACK) == Move(Pos(1, 2), [Pos(3, 4)])


def test_ignoring_unknown_fields_drops_them_at_every_level_and_checks_the_rest() -> None:
    """Go's encoding/json drops keys that are no field: a newer client's extra field must
    not break a server that chose the same (``unknown_body_fields="ignore"``)."""
    lenient = decoder_for(Move, ignore_unknown=True)
    body = (
        b'{"to":{"x":1,"y":2,"z":3},"path":[{"x":3,"y":4,"w":0}],'
        b'"marks":{"a":{"x":5,"y":6,"v":1}},"new":"field"}'
    )
    assert lenient(body, JSON) == Move(Pos(1, 2), [Pos(3, 4)], {"a": Pos(5, 6)})
    assert decoder_for(Player, ignore_unknown=True)(
        MSGPACK.marshal({"name": "a", "level": 1, 7: "x", "size": 2}), MSGPACK
    ) == Player("a", 1)
    with pytest.raises(BadRequest, match=r"missing field\(s\) \['y'\] for Pos"):
        lenient(b'{"to":{"x":1,"z":3}}', JSON)  # what is there is still checked
    with pytest.raises(BadRequest, match="field 'x' of Pos must be int"):
        lenient(b'{"to":{"x":"1","y":2,"z":3}}', JSON)
    with pytest.raises(BadRequest, match=r"unknown field\(s\) \['z'\] for Pos"):
        decode(Move, b'{"to":{"x":1,"y":2,"z":3}}')  # refused by default


class Moves(Handler):
    """``moves.move``: a dataclass body, answered as the handler saw it."""

    service = "moves"

    @handler
    def move(self, session: Session, body: Move) -> dict[str, Any]:
        return dataclasses.asdict(body)


NEWER_CLIENT = {"to": {"x": 1, "y": 2, "z": 3}, "speed": 9}
"""A body with fields this server's ``Move`` (and ``Pos``) do not have."""
AS_SEEN = {"to": {"x": 1, "y": 2}, "path": [], "marks": {}, "steps": [], "either": 0}


async def move_of(client: Any, route: str) -> Any:
    """The handler's answer to :data:`NEWER_CLIENT`, or the code and message it was refused
    with."""
    try:
        return await client.request(route, NEWER_CLIENT)
    except RequestError as exc:
        return exc.code, exc.msg


REFUSED = ("PIT-400", "unknown field(s) ['speed'] for Move")


@pytest.mark.parametrize(
    ("options", "expected"), [({}, REFUSED), ({"unknown_body_fields": "ignore"}, AS_SEEN)]
)
async def test_a_local_handler_refuses_unknown_fields_unless_its_app_ignores_them(
    options: dict[str, str], expected: Any
) -> None:
    app = App(server_type="game", **options)  # the default: refused, as before
    app.register(Moves)
    async with TestClient(app) as client:
        assert await move_of(client, "moves.move") == expected


@pytest.mark.parametrize(
    ("room", "connector", "expected"),
    [("refuse", "refuse", REFUSED), ("ignore", "refuse", AS_SEEN), ("refuse", "ignore", REFUSED)],
)
async def test_a_forwarded_body_is_decoded_as_the_backend_that_runs_it_says(
    room: str, connector: str, expected: Any
) -> None:
    network = MemoryCluster()
    backend = cluster_app(network, "room", frontend=False, unknown_body_fields=room)
    backend.register(Moves)
    async with backend:
        frontend = cluster_app(network, "connector", unknown_body_fields=connector)
        async with TestClient(frontend) as client:
            assert await move_of(client, "room.moves.move") == expected


@dataclass
class Loose:
    anything: Any | None = None


def test_an_optional_field_of_any_type_is_taken_as_it_is() -> None:
    assert decode(Loose, b'{"anything":5}') == Loose(5)
    assert decode(Loose, b'{"anything":null}') == Loose(None)


def test_a_dataclass_may_contain_itself() -> None:
    tree = decode(Tree, b'{"name":"a","children":[{"name":"b","children":[{"name":"c"}]}]}')
    assert tree == Tree("a", [Tree("b", [Tree("c")])])
    with pytest.raises(BadRequest, match="field 'name' of Tree must be str"):
        decode(Tree, b'{"name":"a","children":[{"name":"b","children":[{"name":3}]}]}')


@pytest.mark.parametrize("serializer", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_a_dataclass_nested_deeper_than_the_stack_is_a_bad_request(serializer: Any) -> None:
    """400 levels is an 11 KB body the serializers take; building it took more of Python's
    stack than there is, and answered PIT-500 with a traceback logged per request."""
    body: dict[str, Any] = {"name": "leaf"}
    for _ in range(400):
        body = {"name": "n", "children": [body]}
    data = encode_result(body, serializer)
    assert len(data) < 11_000
    with pytest.raises(BadRequest, match="the body is nested too deeply for Tree"):
        decode(Tree, data, serializer)
    with pytest.raises(BadRequest, match=r"the body is nested too deeply$"):
        decode(list[Tree], encode_result([body], serializer), serializer)


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b'{"to":{"x":"1","y":2}}', "field 'x' of Pos must be int"),
        (b'{"to":[1,2]}', "field 'to' of Move must be an object, got list"),
        (b'{"to":{"x":1}}', r"missing field\(s\) \['y'\] for Pos"),
        (b'{"to":{"x":1,"y":2,"z":3}}', r"unknown field\(s\) \['z'\] for Pos"),
        (b'{"path":{"x":1,"y":2}}', "field 'path' of Move must be list"),
        (b'{"path":[{"x":1,"y":2},3]}', "item 1 of field 'path' of Move must be an object"),
        (b'{"marks":{"a":{"x":1,"y":true}}}', "field 'y' of Pos must be int"),
        (b'{"marks":[]}', "field 'marks' of Move must be dict"),
        (b'{"steps":[1,"2"]}', "item 1 of field 'steps' of Move must be int"),
        (b'{"steps":[1,true]}', "item 1 of field 'steps' of Move must be int"),
    ],
)
def test_nested_values_are_checked_and_named(body: bytes, rule: str) -> None:
    with pytest.raises(BadRequest, match=rule):
        decode(Move, body)


def test_a_mistake_in_a_dataclass_inside_a_container_says_which_item() -> None:
    with pytest.raises(BadRequest) as caught:
        decode(Move, b'{"path":[{"x":1,"y":2},{"x":1,"y":"2"}]}')
    assert caught.value.msg == "field 'y' of Pos must be int (in item 1 of field 'path' of Move)"
    with pytest.raises(BadRequest) as caught:
        decode(Move, b'{"marks":{"a":{"x":1,"y":2},"b":{"x":1}}}')
    assert caught.value.msg == (
        "missing field(s) ['y'] for Pos (in entry 'b' of field 'marks' of Move)"
    )


def test_an_optional_field_is_checked_and_a_union_of_several_types_is_not() -> None:
    with pytest.raises(BadRequest, match="field 'maybe' of Player must be int"):
        decode(Player, b'{"name":"a","level":1,"maybe":"x"}')
    assert decode(Move, b'{"either":"x"}').either == "x"
    assert decode(Move, b'{"either":[]}').either == []


@dataclass
class Stamped:
    name: str
    created: float = field(default=0.0, init=False)


def test_a_field_the_constructor_does_not_take_is_a_bad_request() -> None:
    assert decode(Stamped, b'{"name":"a"}') == Stamped("a")
    with pytest.raises(BadRequest, match="created"):
        decode(Stamped, b'{"name":"a","created":1.0}')


def test_unknown_msgpack_keys_of_any_type_are_named() -> None:
    body = MSGPACK.marshal({"name": "a", "level": 1, 7: 1, b"k": 2})
    with pytest.raises(BadRequest, match=r"unknown field\(s\) \[7, b'k'\] for Player"):
        decode(Player, body, MSGPACK)


def test_a_protobuf_body_is_decoded_into_its_message_class() -> None:
    data = JoinRequest(name="ann").SerializeToString()
    decoded = decode(JoinRequest, data, PROTOBUF)
    assert isinstance(decoded, JoinRequest) and decoded.name == "ann"
    with pytest.raises(BadRequest, match="cannot decode the protobuf body"):
        decode(JoinRequest, b"\xff\xff\xff", PROTOBUF)


# -- the names shown in an error --------------------------------------------------------------


def test_some_shows_five_names_and_counts_the_rest() -> None:
    assert _some({"b", "a"}) == "['a', 'b']"
    assert _some({f"k{i}" for i in range(8)}) == "['k0', 'k1', 'k2', 'k3', 'k4', ... (3 more)]"


def test_some_sorts_comparable_names_by_value() -> None:
    assert _some({10, 9, 100}) == "[9, 10, 100]"  # not by repr ('10' < '100' < '9')


def test_some_keeps_a_name_of_exactly_forty_characters() -> None:
    exact = "y" * 38  # its repr, quotes included, is 40 characters
    assert _some({exact}) == f"['{exact}']"


def test_some_cuts_long_names_and_sorts_mixed_types_by_repr() -> None:
    long = "x" * 100
    assert _some({long}) == "['" + "x" * 36 + "...]"
    assert len(_some({long})) == len("[]") + 40
    assert _some({2, "a", 1}) == "['a', 1, 2]"  # by repr: a quote sorts before digits


@given(st.sets(st.text(max_size=60) | st.integers(), max_size=30))
def test_some_never_shows_more_than_five_names_of_forty_characters(names: set[Any]) -> None:
    text = _some(names)
    assert text.startswith("[") and text.endswith("]")
    shown = min(len(names), 5)
    if len(names) > 5:
        assert text.endswith(f", ... ({len(names) - 5} more)]")
    assert len(text) <= 2 + shown * (40 + 2) + len(", ... (30 more)")


class Plain:
    """A user's serializer: knows plain values only, records what it is asked."""

    name = "plain"

    def __init__(self) -> None:
        self.into: list[Any] = []
        self.marshalled: list[Any] = []

    def marshal(self, value: Any) -> bytes:
        if not isinstance(value, dict | list | str | int | float | bool | type(None)):
            raise SerializationError(f"cannot encode {type(value).__name__}")
        self.marshalled.append(value)
        return repr(value).encode()

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        self.into.append(into)
        return {"name": "a", "level": 1}


@pytest.mark.parametrize("annotation", [Any, None, Player, dict, dict[str, Any], str, list[int]])
def test_only_a_protobuf_class_is_passed_to_the_serializer_as_into(annotation: Any) -> None:
    plain = Plain()
    with contextlib.suppress(BadRequest):  # str and list[int] are then checked: not a map
        decode(annotation, b"...", plain)
    assert plain.into == [None]


def test_a_protobuf_class_is_passed_as_into() -> None:
    plain = Plain()
    decode(JoinRequest, b"...", plain)
    assert plain.into == [JoinRequest]


def test_a_dataclass_result_reaches_any_serializer_as_a_map() -> None:
    plain = Plain()
    as_map = dataclasses.asdict(Player("ann", 2))
    assert encode_result(Player("ann", 2), plain) == repr(as_map).encode()
    assert plain.marshalled == [as_map]


# -- encoding --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"\x00raw", bytearray(b"\x01"), memoryview(b"\x02\x03")])
def test_bytes_like_results_are_sent_as_they_are(value: Any) -> None:
    encoded = encode_result(value, JSON)
    assert type(encoded) is bytes and encoded == bytes(value)


def test_a_dataclass_result_becomes_a_map() -> None:
    assert JSON.unmarshal(encode_result(Player("ann", 2), JSON)) == dataclasses.asdict(
        Player("ann", 2)
    )


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], "s", 3, 1.5, True, (1, 2), None])
def test_plain_results_go_to_the_serializer(value: Any) -> None:
    assert encode_result(value, JSON) == JSON.marshal(value)


def test_a_protobuf_result_goes_to_the_serializer() -> None:
    assert (
        encode_result(JoinRequest(name="a"), PROTOBUF) == JoinRequest(name="a").SerializeToString()
    )


def test_a_result_the_serializer_cannot_encode_raises_its_error() -> None:
    with pytest.raises(SerializationError):
        encode_result({"x": object()}, JSON)
    with pytest.raises(SerializationError):
        encode_result(Player, JSON)  # a dataclass class is not an instance


_INT64 = st.integers(-(2**63), 2**63 - 1)  # msgpack's range
_PLAYERS = st.builds(
    Player,
    name=st.text(max_size=20),
    level=st.integers(-(2**31), 2**31),
    score=st.floats(allow_nan=False, allow_infinity=False),
    online=st.booleans(),
    tags=st.lists(st.text(max_size=5), max_size=3),
    extra=st.dictionaries(st.text(max_size=5), _INT64, max_size=3),
    anything=st.none() | _INT64 | st.text(max_size=5),
    maybe=st.none() | _INT64,
)


@pytest.mark.parametrize("serializer", [JSON, MSGPACK], ids=["json", "msgpack"])
@given(player=_PLAYERS)
def test_a_dataclass_encoded_then_decoded_is_the_same(serializer: Any, player: Player) -> None:
    assert decode(Player, encode_result(player, serializer), serializer) == player
