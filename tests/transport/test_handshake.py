"""Handshake bodies: the JSON both ends exchange."""

from __future__ import annotations

import contextlib
import json
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.errors import HandshakeError, ProtocolError
from transport.handshake import (
    HandshakeRequest,
    HandshakeResponse,
    decode_handshake_request,
    decode_handshake_response,
    encode_handshake_error,
    encode_handshake_request,
    encode_handshake_response,
)


def test_decode_pitaya_client_request() -> None:
    body = (
        b'{"sys":{"platform":"mac","libVersion":"0.3.5-release","clientBuildNumber":"20",'
        b'"clientVersion":"2.1"},"user":{"age":30}}'
    )
    request = decode_handshake_request(body)
    assert request.user == {"age": 30}
    assert request.platform == "mac"
    assert request.lib_version == "0.3.5-release"
    assert request.client_build_number == "20"
    assert request.client_version == "2.1"


def test_decode_pomelo_js_client_request() -> None:
    body = b'{"sys":{"type":"js-websocket","version":"0.0.1","rsa":{}},"user":{}}'
    request = decode_handshake_request(body)
    assert request.platform == "js-websocket"
    assert request.lib_version == "0.0.1"
    assert request.client_version == ""
    assert request.sys["rsa"] == {}


@pytest.mark.parametrize("body", [b"", b"  ", b"{}", b'{"sys":null,"user":null}', b'{"other":1}'])
def test_empty_or_missing_give_empty_dicts(body: bytes) -> None:
    assert decode_handshake_request(body) == HandshakeRequest({}, {})


def test_non_string_sys_values_read_as_empty() -> None:
    request = decode_handshake_request(b'{"sys":{"clientVersion":2}}')
    assert request.client_version == ""
    assert request.sys == {"clientVersion": 2}


def assert_reason(error: BaseException, reason: str) -> None:
    """The error says which rule was broken; a trailing "..." stands for the JSON parser's
    or zlib's own words."""
    if reason.endswith("..."):
        assert str(error).startswith(reason.removesuffix("..."))
    else:
        assert str(error) == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "handshake request is not valid JSON: ..."),
        (b"[1,2]", "handshake request is a JSON list, not an object"),
        (b'"text"', "handshake request is a JSON str, not an object"),
        (b"null", "handshake request is a JSON NoneType, not an object"),
        (b'{"sys":[]}', "handshake.sys is a JSON list, not an object"),
        (b'{"user":"x"}', "handshake.user is a JSON str, not an object"),
        (b"\xff\xfe\x00", "handshake request is not valid JSON: ..."),
        (b'{"a":' * 200 + b"1" + b"}" * 199, "handshake request is not valid JSON: ..."),
        (
            b"{" * 100_000,
            "handshake request: body may hold 100000 arrays and objects; the limit is 256",
        ),
        (
            b'{"user":{"name":"\\ud800evil"}}',
            "handshake request: text holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff),"
            " which cannot be written back as UTF-8",
        ),
        (b'{"sys":{}', "handshake request is not valid JSON: ..."),
        (b'{"sys":{"x":NaN}}', "handshake request is not valid JSON: NaN is not a JSON value"),
        (
            b'{"user":{"x":-Infinity}}',
            "handshake request is not valid JSON: -Infinity is not a JSON value",
        ),
        (
            b'{"user":{"x":-1e400}}',
            "handshake request is not valid JSON: number -1e400 is too large for a float",
        ),
    ],
)
def test_bad_requests(body: bytes, reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        decode_handshake_request(body)
    assert_reason(info.value, reason)


def test_request_round_trip() -> None:
    body = encode_handshake_request({"platform": "python", "é": "ü"}, {"token": "t"})
    assert json.loads(body) == {"sys": {"platform": "python", "é": "ü"}, "user": {"token": "t"}}
    assert "é".encode() in body  # UTF-8, not \u escapes
    request = decode_handshake_request(body)
    assert request.sys == {"platform": "python", "é": "ü"}
    assert request.user == {"token": "t"}


def test_request_omits_empty_user() -> None:
    assert encode_handshake_request({"platform": "p"}, {}) == b'{"sys":{"platform":"p"}}'


def test_request_with_unserializable_data() -> None:
    with pytest.raises(HandshakeError) as info:
        encode_handshake_request({"x": object()}, {})
    assert_reason(info.value, "handshake data is not JSON-serializable: ...")


def test_response_matches_pitaya_bytes() -> None:
    # Pitaya marshals a Go map: sorted keys, heartbeat printed as a float without fraction.
    body = encode_handshake_response(
        heartbeat=30, routes={"room.room.join": 1, "chat.say": 2}, serializer="json"
    )
    assert body == (
        b'{"code":200,"sys":{"dict":{"chat.say":2,"room.room.join":1},'
        b'"heartbeat":30,"serializer":"json"}}'
    )


def test_response_heartbeat_representation() -> None:
    def heartbeat(value: float) -> Any:
        body = encode_handshake_response(heartbeat=value, routes=None, serializer="json")
        return json.loads(body)["sys"]["heartbeat"]

    assert heartbeat(30.0) == 30 and isinstance(heartbeat(30.0), int)
    assert heartbeat(0.05) == 0.05
    assert heartbeat(0) == 0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError) as info:
            heartbeat(bad)
        assert str(info.value) == f"heartbeat must be a finite number of seconds >= 0, not {bad}"


@pytest.mark.parametrize("routes", [None, {}])
def test_response_omits_empty_dict(routes: dict[str, int] | None) -> None:
    body = encode_handshake_response(heartbeat=10, routes=routes, serializer="msgpack")
    assert body == b'{"code":200,"sys":{"heartbeat":10,"serializer":"msgpack"}}'


def test_error_bodies() -> None:
    assert encode_handshake_error() == b'{"code":400}'
    assert encode_handshake_error(403, "old client") == b'{"code":403,"msg":"old client"}'
    response = decode_handshake_response(encode_handshake_error(403, "old client"))
    assert response == HandshakeResponse(code=403, message="old client")
    assert not response.ok


def test_decode_response() -> None:
    body = encode_handshake_response(heartbeat=0.5, routes={"a.b": 3}, serializer="json")
    response = decode_handshake_response(body)
    assert response == HandshakeResponse(200, 0.5, {"a.b": 3}, "json", "")
    assert response.ok


def test_decode_pitaya_error_response() -> None:
    # What Pitaya sends when a validator fails: code 400 plus the usual sys.
    body = b'{"code":400,"sys":{"dict":{},"heartbeat":30,"serializer":"json"}}'
    assert decode_handshake_response(body) == HandshakeResponse(400, 30.0, {}, "json", "")


def test_decode_compressed_response() -> None:
    plain = encode_handshake_response(heartbeat=30, routes={"a.b": 1}, serializer="json")
    assert decode_handshake_response(zlib.compress(plain)) == decode_handshake_response(plain)


def test_defaults_when_sys_is_missing() -> None:
    assert decode_handshake_response(b'{"code":200}') == HandshakeResponse(200)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "handshake response is not valid JSON: ..."),
        (b"garbage", "handshake response is not valid JSON: ..."),
        (b"[]", "handshake response is a JSON list, not an object"),
        (b'{"sys":{}}', "handshake response code None is not an integer"),
        (b'{"code":"200"}', "handshake response code '200' is not an integer"),
        (b'{"code":true}', "handshake response code True is not an integer"),
        (b'{"code":200,"sys":[]}', "handshake response.sys is a JSON list, not an object"),
        (b'{"code":200,"sys":{"heartbeat":"30"}}', "handshake heartbeat '30' is not a number >= 0"),
        (b'{"code":200,"sys":{"heartbeat":-1}}', "handshake heartbeat -1 is not a number >= 0"),
        (b'{"code":200,"sys":{"serializer":1}}', "handshake serializer 1 is not a string"),
        (
            b'{"code":200,"sys":{"dict":[]}}',
            "handshake response sys.dict is a JSON list, not an object",
        ),
        (b'{"code":200,"sys":{"dict":{"a":"1"}}}', "route 'a' has a non-integer code '1'"),
        (b'{"code":200,"sys":{"dict":{"a":0}}}', "route 'a' has code 0, outside 1..65535"),
        (b'{"code":200,"sys":{"dict":{"a":65536}}}', "route 'a' has code 65536, outside 1..65535"),
        (
            b'{"code":200,"sys":{"dict":{"a":1,"b":1}}}',
            "handshake route dictionary has duplicate codes",
        ),
        (b'{"code":200,"sys":{"dict":{"":1}}}', "route '' has code 1, outside 1..65535"),
        (zlib.compress(b"[]"), "handshake response is a JSON list, not an object"),
        (b"\x78\x9c\xff\xff", "compressed handshake response is not valid zlib: ..."),
        # a zlib header and a stream that stops: truncated
        (b"\x78\x9c\x00\x01", "compressed handshake response is truncated or too large"),
        (b"\x78\x9c\x03", "compressed handshake response is truncated or too large"),
        (zlib.compress(b"{}")[:-3], "compressed handshake response is truncated or too large"),
        (
            zlib.compress(b" " * (2 * 1024 * 1024)),  # inflates past the limit
            "compressed handshake response is truncated or too large",
        ),
        # Two bytes are too short to be zlib; "8" (0x38) has zlib's method nibble but no
        # valid header checksum with what follows: both are read as JSON.
        (b"\x78\x9c", "handshake response is not valid JSON: ..."),
        (b"888", "handshake response is a JSON int, not an object"),
    ],
)
def test_bad_responses(body: bytes, reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        decode_handshake_response(body)
    assert_reason(info.value, reason)


def test_compressed_response_of_exactly_the_limit_is_accepted() -> None:
    plain = b'{"code":200}'
    plain += b" " * (1024 * 1024 - len(plain))
    assert decode_handshake_response(zlib.compress(plain)) == HandshakeResponse(200)


def test_compressed_response_is_never_inflated_past_the_limit() -> None:
    # 64 MiB of spaces in 64 KiB: decoding stops at the 1 MiB limit, not after inflating all.
    bomb = zlib.compress(b" " * (64 * 1024 * 1024), 9)
    tracemalloc.start()
    try:
        with pytest.raises(HandshakeError, match="truncated or too large"):
            decode_handshake_response(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_response_message_key_and_non_string_message() -> None:
    # Pitaya writes "msg"; some servers write "message"; a non-string is shown as text.
    assert decode_handshake_response(b'{"code":400,"message":"old"}').message == "old"
    assert decode_handshake_response(b'{"code":400,"msg":"a","message":"b"}').message == "a"
    assert decode_handshake_response(b'{"code":400,"msg":42}').message == "42"


def test_response_route_codes_up_to_65535() -> None:
    body = b'{"code":200,"sys":{"dict":{"a":65535,"b":1}}}'
    assert decode_handshake_response(body).routes == {"a": 65535, "b": 1}


@given(st.binary(max_size=100))
def test_garbage_requests_raise_only_protocol_errors(body: bytes) -> None:
    try:
        request = decode_handshake_request(body)
    except ProtocolError:
        return
    assert isinstance(request.sys, dict) and isinstance(request.user, dict)


@given(st.binary(max_size=100))
def test_garbage_responses_raise_only_protocol_errors(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_handshake_response(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    sys=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    user=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
def test_request_round_trip_property(sys: dict[str, Any], user: dict[str, Any]) -> None:
    assert decode_handshake_request(encode_handshake_request(sys, user)) == HandshakeRequest(
        sys, user
    )


@given(
    heartbeat=st.floats(0, 3600, allow_nan=False),
    routes=st.lists(st.text(min_size=1, max_size=20), unique=True, max_size=10),
    serializer=st.sampled_from(["json", "msgpack", "protobuf"]),
)
def test_response_round_trip_property(heartbeat: float, routes: list[str], serializer: str) -> None:
    mapping = {route: code for code, route in enumerate(routes, start=1)}
    body = encode_handshake_response(heartbeat=heartbeat, routes=mapping, serializer=serializer)
    assert decode_handshake_response(body) == HandshakeResponse(
        200, heartbeat, mapping, serializer, ""
    )
