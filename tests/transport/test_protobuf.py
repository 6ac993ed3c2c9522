"""The protobuf serializer, sans-I/O: messages, Pitaya's error body, malformed data."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.pbmessages import Counter, JoinRequest, JoinResponse
from transport.errorbody import PIT_000, PIT_404, ErrorBody
from transport.errors import SerializationError
from transport.protobuf import ErrorMessage, ProtobufSerializer, is_message_class
from transport.serializers import Serializer, get_serializer

serializer = ProtobufSerializer()

# protos.Error{code: "PIT-404", msg: "route not found", metadata: {"route": "x"}}, field by
# field: 1 (0x0a) len 7, 2 (0x12) len 15, 3 (0x1a) a map entry {1: "route", 2: "x"}.
PIT_404_BYTES = b"\x0a\x07PIT-404\x12\x0froute not found\x1a\x0a\x0a\x05route\x12\x01x"


def test_registered_and_satisfies_the_protocol() -> None:
    assert get_serializer("protobuf").name == "protobuf"
    assert isinstance(get_serializer("protobuf"), ProtobufSerializer)
    assert isinstance(serializer, Serializer)


def test_message_round_trip() -> None:
    reply = JoinResponse(result="ok", members=["a", "b"])
    data = serializer.marshal(reply)
    assert data == reply.SerializeToString()
    decoded = serializer.unmarshal(data, into=JoinResponse)
    assert isinstance(decoded, JoinResponse)
    assert decoded == reply
    assert list(decoded.members) == ["a", "b"]


@given(
    value=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    scores=st.dictionaries(st.text(), st.integers(min_value=-(2**31), max_value=2**31 - 1)),
)
def test_round_trip_property(value: int, scores: dict[str, int]) -> None:
    message = Counter(value=value, scores=scores)
    assert serializer.unmarshal(serializer.marshal(message), into=Counter) == message


def test_empty_data_is_the_default_message_or_none() -> None:
    assert serializer.unmarshal(b"", into=JoinRequest) == JoinRequest()
    assert serializer.unmarshal(b"") is None  # a request without a body
    assert serializer.marshal(None) == b""
    assert serializer.marshal(JoinRequest()) == b""


def test_error_body_is_pitaya_protos_error() -> None:
    body = {"code": PIT_404, "msg": "route not found", "metadata": {"route": "x"}}
    data = serializer.marshal(body)
    assert data == PIT_404_BYTES
    assert serializer.marshal(ErrorBody(PIT_404, "route not found", {"route": "x"})) == data
    error = ErrorMessage.FromString(data)
    assert (error.code, error.msg, dict(error.metadata)) == (
        PIT_404,
        "route not found",
        {"route": "x"},
    )


def test_error_body_decodes_to_error_body() -> None:
    assert serializer.unmarshal(PIT_404_BYTES, into=ErrorBody) == ErrorBody(
        PIT_404, "route not found", {"route": "x"}
    )
    # An Error without a code reads as PIT-000, as a JSON body without one does.
    assert serializer.unmarshal(b"", into=ErrorBody) == ErrorBody(PIT_000)
    assert serializer.marshal({"code": "PIT-500"}) == b"\x0a\x07PIT-500"


@given(
    code=st.text(min_size=1),
    msg=st.text(),
    metadata=st.dictionaries(st.text(), st.text()),
)
def test_error_body_round_trip_property(code: str, msg: str, metadata: dict[str, str]) -> None:
    body = ErrorBody(code, msg, metadata)
    assert serializer.unmarshal(serializer.marshal(body.to_value()), into=ErrorBody) == body


@pytest.mark.parametrize(
    "value",
    [
        {"name": "a"},  # a map that is not an error body
        {"code": 404},  # code must be a string
        {"code": "PIT-404", "extra": 1},
        [1, 2],
        "text",
        b"raw",
        ErrorMessage,  # a class, not an instance
    ],
)
def test_marshal_refuses_what_is_not_a_message(value: Any) -> None:
    with pytest.raises(SerializationError, match="protobuf"):
        serializer.marshal(value)


@pytest.mark.parametrize(
    "data", [b"\xff\xff\xff", b"\x0a\x05ab", b'{"name":"a"}', b"\x0a\x02\xff\xfe"]
)
def test_garbage_raises_serialization_error(data: bytes) -> None:
    with pytest.raises(
        SerializationError, match=r"malformed protobuf data for testchat\.JoinRequest"
    ):
        serializer.unmarshal(data, into=JoinRequest)
    with pytest.raises(SerializationError, match=r"protos\.Error"):
        serializer.unmarshal(data, into=ErrorBody)


def test_unmarshal_needs_a_message_class() -> None:
    data = JoinRequest(name="a").SerializeToString()
    with pytest.raises(SerializationError, match="without a message class"):
        serializer.unmarshal(data)
    with pytest.raises(SerializationError, match="not a protobuf message class"):
        serializer.unmarshal(data, into=dict)


def test_is_message_class() -> None:
    assert is_message_class(JoinRequest)
    assert is_message_class(ErrorMessage)
    assert not is_message_class(JoinRequest())
    assert not is_message_class(dict)
