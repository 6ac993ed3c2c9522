"""Serializers: JSON and msgpack behaviour, errors, registry."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json as stdlib_json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport import serializers
from transport.bounded import LARGE_BODY
from transport.errors import SerializationError
from transport.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    Serializer,
    get_serializer,
    register_serializer,
)

SERIALIZERS: list[Serializer] = [JsonSerializer(), MsgpackSerializer()]


@dataclasses.dataclass
class Player:
    name: str
    level: int


def test_names() -> None:
    assert JsonSerializer().name == "json"
    assert MsgpackSerializer().name == "msgpack"


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_they_satisfy_the_protocol(serializer: Serializer) -> None:
    assert isinstance(serializer, Serializer)


def test_json_is_compact_utf8() -> None:
    json = JsonSerializer()
    assert json.marshal({"name": "é", "list": [1, 2]}) == '{"name":"é","list":[1,2]}'.encode()
    assert json.unmarshal('{"name":"é"}'.encode()) == {"name": "é"}


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_none_and_empty(serializer: Serializer) -> None:
    # None encodes to the format's null (a response body must be parseable), and an empty
    # body (a request or notify sent without data) decodes to None.
    encoded = serializer.marshal(None)
    assert encoded in (b"null", b"\xc0")
    assert serializer.unmarshal(encoded) is None
    assert serializer.unmarshal(b"") is None


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_dataclasses_are_encoded_as_maps(serializer: Serializer) -> None:
    data = serializer.marshal({"players": [Player("a", 3)]})
    assert serializer.unmarshal(data) == {"players": [{"name": "a", "level": 3}]}


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_into_is_accepted_and_ignored(serializer: Serializer) -> None:
    assert serializer.unmarshal(serializer.marshal([1]), into=list) == [1]


def test_msgpack_keeps_bytes_and_int_keys() -> None:
    msgpack = MsgpackSerializer()
    value = {1: b"\x00\x01", "s": "text"}
    assert msgpack.unmarshal(msgpack.marshal(value)) == value


@pytest.mark.parametrize(
    ("value", "kind"),
    [(object(), "object"), ({1, 2}, "set"), (math.nan, "float"), (math.inf, "float"),
     (b"bytes", "bytes"), ({"k": object()}, "dict"), (Player, "type")],
)  # fmt: skip
def test_json_marshal_errors(value: Any, kind: str) -> None:
    with pytest.raises(SerializationError) as info:
        JsonSerializer().marshal(value)
    assert str(info.value) == f"cannot encode {kind} as JSON"
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    ("value", "kind"), [(object(), "object"), (2**64, "int"), ({"k": {1, 2}}, "dict")]
)
def test_msgpack_marshal_errors(value: Any, kind: str) -> None:
    with pytest.raises(SerializationError) as info:
        MsgpackSerializer().marshal(value)
    assert str(info.value) == f"cannot encode {kind} as msgpack"
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
@pytest.mark.parametrize(("value", "kind"), [(object(), "object"), (Player, "type")])
def test_only_dataclass_instances_are_turned_into_maps(
    serializer: Serializer, value: Any, kind: str
) -> None:
    with pytest.raises(SerializationError) as info:
        serializer.marshal([value])
    assert str(info.value.__cause__) == f"{kind} is not serializable"  # a class is no instance


def test_deep_nesting_is_a_serialization_error() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    for serializer in SERIALIZERS:
        with pytest.raises(SerializationError):
            serializer.marshal(deep)
    with pytest.raises(SerializationError):
        JsonSerializer().unmarshal(b"[" * 100_000)
    with pytest.raises(SerializationError):
        MsgpackSerializer().unmarshal(b"\x91" * 100_000)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"{", "Expecting property name enclosed in double quotes: line 1 column 2"),
        (b"nope", "Expecting value: line 1 column 1"),
        (b"\xff", "'utf-8' codec can't decode byte 0xff in position 0"),
        (b'{"a":1}x', "Extra data: line 1 column 8"),
        (b"[1e999]", "number 1e999 is too large for a float"),
    ],
)
def test_json_unmarshal_errors(data: bytes, error: str) -> None:
    with pytest.raises(SerializationError) as info:
        JsonSerializer().unmarshal(data)
    assert str(info.value).startswith(f"malformed JSON data: {error}")
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("data", [b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa2\xff\xfe"])
def test_msgpack_unmarshal_errors(data: bytes) -> None:
    with pytest.raises(SerializationError) as info:
        MsgpackSerializer().unmarshal(data)
    assert str(info.value).startswith("malformed msgpack data: ")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_json_counts_brackets_from_bodies_of_twice_the_limit() -> None:
    # The count is an upper bound (brackets in strings count too), taken from the bytes
    # whenever the body is long enough to hold more containers than the limit.
    json = JsonSerializer(max_containers=3)
    assert json.unmarshal(b'"[[["') == "[[["  # 5 bytes: cannot hold 3 containers, not counted
    with pytest.raises(SerializationError, match="may hold 4 arrays and objects; the limit is 3"):
        json.unmarshal(b'"[[[["')  # 6 bytes: counted


@pytest.mark.parametrize(
    "serializer", [JsonSerializer(0), MsgpackSerializer(0)], ids=["json", "msgpack"]
)
def test_a_limit_of_zero_containers_leaves_only_scalars(serializer: Serializer) -> None:
    assert serializer.unmarshal(serializer.marshal("text")) == "text"
    for value in ([], {}):
        with pytest.raises(SerializationError):
            serializer.unmarshal(serializer.marshal(value))


@pytest.fixture
def collections() -> Iterator[Callable[[Callable[[], object]], int]]:
    """Collections the collector started while a call ran (at a low threshold, so that a
    decode building thousands of lists would start some)."""
    threshold = gc.get_threshold()
    started: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    def during(call: Callable[[], object]) -> int:
        started.clear()
        gc.callbacks.append(count)
        try:
            call()
        finally:
            gc.callbacks.remove(count)
        return len(started)

    gc.set_threshold(100, 10, 10)
    try:
        yield during
    finally:
        gc.set_threshold(*threshold)


def json_empty_lists(size: int) -> bytes:
    """A JSON array of empty arrays (thousands), padded with spaces to ``size`` bytes."""
    body = b"[" + b"[]," * (size // 3 - 2) + b"[]]"
    return body[:-1] + b" " * (size - len(body)) + b"]"


def msgpack_empty_lists(size: int) -> bytes:
    """A msgpack array (array 16: 3 bytes) of empty arrays (a byte each), ``size`` bytes."""
    return b"\xdc" + (size - 3).to_bytes(2, "big") + b"\x90" * (size - 3)


@pytest.mark.parametrize(
    ("serializer", "empty_lists"),
    [(JsonSerializer(), json_empty_lists), (MsgpackSerializer(), msgpack_empty_lists)],
    ids=["json", "msgpack"],
)
def test_bodies_from_large_body_up_are_decoded_with_the_collector_paused(
    serializer: JsonSerializer | MsgpackSerializer,
    empty_lists: Callable[[int], bytes],
    collections: Callable[[Callable[[], object]], int],
) -> None:
    assert serializer.max_containers > LARGE_BODY  # the pause is not the container limit's
    short, large = empty_lists(LARGE_BODY - 1), empty_lists(LARGE_BODY)
    assert collections(lambda: serializer.unmarshal(short)) > 10  # 20,000+ lists, 100 a collection
    assert collections(lambda: serializer.unmarshal(large)) <= 1  # the one due once it resumes
    assert gc.isenabled()


def test_msgpack_counts_maps_and_arrays_in_bodies_longer_than_the_limit() -> None:
    msgpack = MsgpackSerializer(max_containers=4)
    value = {1: {"k": b"\x00" * 8}, "s": {2: "text"}}
    assert msgpack.unmarshal(msgpack.marshal(value)) == value  # int keys, str and bytes kept
    with pytest.raises(SerializationError, match="more than 4 arrays and maps"):
        msgpack.unmarshal(msgpack.marshal({"a": {}, "b": {}, "c": {}, "d": {}}))


@given(st.binary(max_size=64))
def test_garbage_raises_only_serialization_errors(data: bytes) -> None:
    for serializer in SERIALIZERS:
        with contextlib.suppress(SerializationError):
            serializer.unmarshal(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_round_trip(value: Any) -> None:
    for serializer in SERIALIZERS:
        assert serializer.unmarshal(serializer.marshal(value)) == value


@given(json_values, st.sampled_from(["", " ", "\n\t "]))
def test_json_fast_path_agrees_with_the_json_module(value: Any, space: str) -> None:
    # marshal calls the C encoder directly and unmarshal the C scanner alone when it can:
    # the bytes and values must be the json module's.
    json = JsonSerializer()
    text = stdlib_json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.marshal(value) == text.encode()
    padded = f"{space}{text}{space}".encode()
    assert json.unmarshal(padded) == stdlib_json.loads(padded)
    with pytest.raises(SerializationError):
        json.unmarshal(padded + b"x")


def test_registry() -> None:
    assert isinstance(get_serializer("json"), JsonSerializer)
    assert isinstance(get_serializer("msgpack"), MsgpackSerializer)
    with pytest.raises(ValueError, match=r"'yaml'.*json.*msgpack"):
        get_serializer("yaml")


def test_an_unknown_name_is_told_the_registered_ones_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serializers, "_registry", {})
    register_serializer(MsgpackSerializer())
    register_serializer(JsonSerializer())
    with pytest.raises(ValueError) as info:
        get_serializer("yaml")
    assert str(info.value) == "unknown serializer 'yaml'; registered: json, msgpack"


class _Upper:
    name = "upper-test"

    def marshal(self, value: Any) -> bytes:
        return str(value).upper().encode()

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        return data.decode()


def test_register_custom_serializer(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a copy of the registry: the test runs again in the same process (mutation runs).
    monkeypatch.setattr(serializers, "_registry", dict(serializers._registry))
    custom = _Upper()
    register_serializer(custom)
    assert get_serializer("upper-test") is custom
    register_serializer(custom)  # the same object again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_serializer(_Upper())
    replacement = _Upper()
    register_serializer(replacement, replace=True)
    assert get_serializer("upper-test") is replacement
