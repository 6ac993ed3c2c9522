"""Serializers: JSON and msgpack behaviour, errors, registry."""

from __future__ import annotations

import contextlib
import dataclasses
import json as stdlib_json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport import serializers
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


@pytest.mark.parametrize("value", [object(), {1, 2}, math.nan, math.inf, b"bytes", {"k": object()}])
def test_json_marshal_errors(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        JsonSerializer().marshal(value)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("value", [object(), 2**64, {"k": {1, 2}}])
def test_msgpack_marshal_errors(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        MsgpackSerializer().marshal(value)
    assert info.value.__cause__ is not None


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


@pytest.mark.parametrize("data", [b"{", b"nope", b"\xff", b'{"a":1}x'])
def test_json_unmarshal_errors(data: bytes) -> None:
    with pytest.raises(SerializationError):
        JsonSerializer().unmarshal(data)


@pytest.mark.parametrize("data", [b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa2\xff\xfe"])
def test_msgpack_unmarshal_errors(data: bytes) -> None:
    with pytest.raises(SerializationError):
        MsgpackSerializer().unmarshal(data)


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
