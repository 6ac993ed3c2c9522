"""Bounded decoding (``transport.bounded``) through the serializers and the handshake codec."""

from __future__ import annotations

import gc
import json

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.bounded import (
    LARGE_BODY,
    ContainerCounter,
    check_json_text,
    collector_paused,
    container_limit,
    finite_float,
)
from transport.errors import HandshakeError, SerializationError
from transport.handshake import decode_handshake_request
from transport.serializers import JsonSerializer, MsgpackSerializer


def test_container_limit_counts_brackets_only_when_the_body_could_exceed_it() -> None:
    container_limit(b"[" * 199, 100)  # shorter than 2 x limit: not even counted
    container_limit(b"[]" * 100, 100)  # exactly the limit
    with pytest.raises(ValueError, match="may hold 200 arrays and objects; the limit is 100"):
        container_limit(b"[" * 200, 100)  # 2 x limit: counted
    with pytest.raises(ValueError, match="may hold 101 arrays and objects; the limit is 100"):
        container_limit(b"[]" * 100 + b"{}", 100)


def test_counter_stops_msgpack_past_the_limit() -> None:
    counter = ContainerCounter(4)  # the outer list counts too
    data = msgpack.packb([[], [], {}])
    assert msgpack.unpackb(data, list_hook=counter, object_hook=counter) == [[], [], {}]
    counter = ContainerCounter(4)
    with pytest.raises(ValueError, match="more than 4 arrays and maps"):
        msgpack.unpackb(msgpack.packb([[], [], [], {}]), list_hook=counter, object_hook=counter)


@pytest.mark.parametrize("serializer", [JsonSerializer(max_containers=50), MsgpackSerializer(50)])
def test_serializers_refuse_bodies_with_too_many_containers(serializer: object) -> None:
    assert hasattr(serializer, "marshal") and hasattr(serializer, "unmarshal")
    ok = serializer.marshal({"a": [[1]] * 48})  # type: ignore[attr-defined]
    assert serializer.unmarshal(ok) == {"a": [[1]] * 48}  # type: ignore[attr-defined]
    too_many = serializer.marshal({"a": [[]] * 200})  # type: ignore[attr-defined]
    with pytest.raises(SerializationError):
        serializer.unmarshal(too_many)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        b'"\\ud800"',
        b'{"\\udfff": 1}',
        b'["a", "\\uDBFFx"]',
        b'"\\ude00\\ud83d"',
        b"NaN",
        b"[Infinity]",
    ],
)
def test_json_refuses_what_it_cannot_write_back(body: bytes) -> None:
    with pytest.raises(SerializationError):
        JsonSerializer().unmarshal(body)


@pytest.mark.parametrize("body", [b'"\\ud83d\\ude00"', b'"\\\\ud800"', b'"\\u00e9"'])
def test_json_accepts_pairs_and_escaped_backslashes(body: bytes) -> None:
    value = JsonSerializer().unmarshal(body)
    assert JsonSerializer().unmarshal(JsonSerializer().marshal(value)) == value


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_whatever_json_unmarshal_returns_marshal_can_write(value: object) -> None:
    data = json.dumps(value, ensure_ascii=True).encode()  # surrogates travel as escapes
    serializer = JsonSerializer()
    try:
        decoded = serializer.unmarshal(data)
    except SerializationError:
        return  # refused: fine
    assert serializer.unmarshal(serializer.marshal(decoded)) == decoded


def test_check_json_text_only_looks_when_an_escape_could_be_a_surrogate() -> None:
    check_json_text(b'"plain"', "\ud800")  # no escape in the bytes: not checked (cannot happen)
    check_json_text(b'"\\u00e9"', "\ud800")  # an escape, of no surrogate: not checked either
    with pytest.raises(ValueError) as info:
        check_json_text(b'"\\ud800"', "\ud800")
    assert str(info.value) == (
        "text holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which cannot be "
        "written back as UTF-8"
    )


def test_finite_float_refuses_an_infinity_naming_the_number_cut_to_40_characters() -> None:
    assert finite_float("1.5e308") == 1.5e308
    assert finite_float("-0.0") == 0.0
    with pytest.raises(ValueError) as info:
        finite_float("1e999")
    assert str(info.value) == "number 1e999 is too large for a float"
    with pytest.raises(ValueError) as info:
        finite_float("-" + "9" * 400)
    assert str(info.value) == f"number -{'9' * 39} is too large for a float"


def test_the_collector_is_paused_for_large_bodies_only_and_left_as_it_was() -> None:
    assert gc.isenabled()
    with collector_paused(LARGE_BODY - 1):
        assert gc.isenabled()
    with collector_paused(LARGE_BODY):
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused(LARGE_BODY):
        raise RuntimeError("the decode failed")
    assert gc.isenabled()
    gc.disable()  # paused by someone else: not resumed by us
    try:
        with collector_paused(LARGE_BODY):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_handshake_limits() -> None:
    with pytest.raises(HandshakeError, match="limit is 256"):
        decode_handshake_request(json.dumps({"user": {"l": [[]] * 300}}).encode())
    with pytest.raises(HandshakeError, match="not a JSON value"):
        decode_handshake_request(b'{"user": {"x": NaN}}')
    request = decode_handshake_request(json.dumps({"user": {"l": [[]] * 200}}).encode())
    assert len(request.user["l"]) == 200
