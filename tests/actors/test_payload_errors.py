"""actors/payload.py's error bodies: what a client reads in an error response."""

from __future__ import annotations

import json
from typing import Any

from actors.errors import BadRequest, PitayaError
from actors.payload import encode_error
from transport.errors import SerializationError
from transport.serializers import JsonSerializer, MsgpackSerializer, Serializer


class RefusingSerializer(JsonSerializer):
    """A serializer that can write no error body (as protobuf, with no message type)."""

    name = "refusing"

    def marshal(self, value: Any) -> bytes:
        raise SerializationError("cannot write this")


def test_the_body_is_pitaya_code_message_and_metadata() -> None:
    error = PitayaError("PIT-418", "teapot", {"who": "me"})
    body = json.loads(encode_error(error, JsonSerializer(), JsonSerializer()))
    assert body == {"code": "PIT-418", "msg": "teapot", "metadata": {"who": "me"}}


def test_written_with_the_session_serializer_when_it_can() -> None:
    data = encode_error(BadRequest("bad"), MsgpackSerializer(), JsonSerializer())
    assert MsgpackSerializer().unmarshal(data, None)["code"] == "PIT-400"


def test_a_serializer_that_cannot_write_it_falls_back() -> None:
    refusing: Serializer = RefusingSerializer()
    body = json.loads(encode_error(BadRequest("bad"), refusing, JsonSerializer()))
    assert body["code"] == "PIT-400"


def test_metadata_no_serializer_can_write_is_left_out_but_the_error_is_answered() -> None:
    error = PitayaError("PIT-400", "bad", {"raw": b"\xff\x00"})  # type: ignore[dict-item]
    body = json.loads(encode_error(error, RefusingSerializer(), JsonSerializer()))
    assert body == {"code": "PIT-400", "msg": "bad"}


def test_a_plain_exception_is_an_internal_error() -> None:
    body = json.loads(encode_error(RuntimeError("boom"), JsonSerializer(), JsonSerializer()))
    assert body["code"] == "PIT-500"


def test_a_huge_message_is_bounded() -> None:
    error = PitayaError("PIT-400", "x" * 1_000_000)
    assert len(encode_error(error, JsonSerializer(), JsonSerializer())) < 100_000
