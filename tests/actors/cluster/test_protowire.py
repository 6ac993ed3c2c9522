"""The hand-written Request and Response (``actors.cluster.protowire``) against the protobuf
runtime: the same bytes for every shape of message, and an answer read by hand only when it
is exactly what the runtime would read as data alone."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import example, given
from hypothesis import strategies as st

from actors.cluster import protowire
from actors.cluster.codec import (
    SYS,
    CodecError,
    RpcRequest,
    encode_answer,
    encode_request,
    read_answer,
)
from actors.errors import PitayaError
from transport.protos import pitaya_pb2 as pb

UINT64 = (1 << 64) - 1
INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
TEXT = st.text(max_size=300)
BLOB = st.binary(max_size=300)


def by_runtime(
    user: bool,
    mid: int,
    route: str,
    data: bytes,
    notify: bool,
    session: tuple[int, str, bytes] | None,
    frontend_id: str,
    metadata: bytes,
) -> bytes:
    message = pb.Request(
        type=pb.User if user else pb.Sys,
        msg=pb.Msg(id=mid, route=route, data=data, type=pb.MsgNotify if notify else pb.MsgRequest),
    )
    if session is not None:
        wire = message.session
        wire.id, wire.uid, wire.data = session
        message.session.SetInParent()  # present even when every field is a default
    message.frontendID = frontend_id
    message.metadata = metadata
    return message.SerializeToString()  # type: ignore[no-any-return]


@given(
    user=st.booleans(),
    mid=st.integers(min_value=0, max_value=UINT64),
    route=TEXT,
    data=BLOB,
    notify=st.booleans(),
    session=st.none() | st.tuples(INT64, TEXT, BLOB),
    frontend_id=TEXT,
    metadata=BLOB,
)
@example(False, 0, "", b"", False, None, "", b"")  # every field a default
@example(False, 0, "", b"", False, (0, "", b""), "", b"")  # an empty session, still present
@example(True, UINT64, "r" * 200, b"d" * 20_000, True, (-1, "u", b"{}"), "f", b"{}")
@example(False, 1, "r", b"", False, (-(1 << 63), "", b""), "", b"")  # the int64 extremes
@example(False, 1, "r", b"", False, ((1 << 63) - 1, "", b""), "", b"")
def test_a_request_is_written_as_the_runtime_writes_it(
    user: bool,
    mid: int,
    route: str,
    data: bytes,
    notify: bool,
    session: tuple[int, str, bytes] | None,
    frontend_id: str,
    metadata: bytes,
) -> None:
    args: Any = (user, mid, route, data, notify, session, frontend_id, metadata)
    assert protowire.encode_request(*args) == by_runtime(*args)


SIZES = (*range(120, 136), *range(16_375, 16_390))
"""Lengths around one- to two-byte and two- to three-byte varints, of a field and of the
messages around it (a route of 126 bytes makes a Msg of 128)."""


@pytest.mark.parametrize(
    "value", [1, 127, 128, 129, 255, 256, 127 << 7, 16_383, 128 << 7, 1 << 63, UINT64]
)
def test_a_varint_is_the_runtimes_at_each_byte_boundary(value: int) -> None:
    assert b"\x08" + protowire.varint(value) == pb.Msg(id=value).SerializeToString()


@pytest.mark.parametrize(
    "field", ["route", "data", "uid", "session_data", "frontend_id", "metadata"]
)
def test_each_field_is_written_as_the_runtime_writes_it_across_length_boundaries(
    field: str,
) -> None:
    small: dict[str, Any] = {
        "route": "r",
        "data": b"",
        "uid": "",
        "session_data": b"",
        "frontend_id": "",
        "metadata": b"",
    }
    for size in SIZES:
        fields = dict(small)
        fields[field] = "x" * size if isinstance(small[field], str) else b"x" * size
        args: Any = (
            True,
            0,
            fields["route"],
            fields["data"],
            False,
            (1, fields["uid"], fields["session_data"]),
            fields["frontend_id"],
            fields["metadata"],
        )
        assert protowire.encode_request(*args) == by_runtime(*args), (field, size)


@pytest.mark.parametrize(
    ("mid", "session_id", "refusal"),
    [
        (-1, 0, "message id -1 is out of range for uint64"),
        (UINT64 + 1, 0, f"message id {UINT64 + 1} is out of range for uint64"),
        (0, 1 << 63, f"session id {1 << 63} is out of range for int64"),
        (0, -(1 << 63) - 1, f"session id {-(1 << 63) - 1} is out of range for int64"),
    ],
)
def test_ids_out_of_range_are_refused_as_the_runtime_refuses_them(
    mid: int, session_id: int, refusal: str
) -> None:
    with pytest.raises(ValueError, match=f"^{refusal}$"):
        protowire.encode_request(False, mid, "r", b"", False, (session_id, "", b""), "", b"")
    with pytest.raises(ValueError):
        by_runtime(False, mid, "r", b"", False, (session_id, "", b""), "", b"")


def test_a_route_that_is_not_utf8_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="cannot encode the request"):
        encode_request(RpcRequest(SYS, "room.\ud800", b""), "c-1", "connector", 5.0)


@given(data=BLOB)
def test_an_answer_is_written_as_the_runtime_writes_it(data: bytes) -> None:
    assert encode_answer(data) == pb.Response(data=data).SerializeToString()
    assert read_answer(encode_answer(data)) == data


@pytest.mark.parametrize("size", [1, 2, 126, 127, 128, 129, 255, 256, 16_383, 16_384, 1 << 21])
def test_an_answer_of_data_alone_is_written_and_read_by_hand(size: int) -> None:
    """Across the lengths of one, two, three and four bytes: written as the runtime
    writes it, and read without the runtime."""
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    answer = protowire.encode_data_answer(data)
    assert answer == pb.Response(data=data).SerializeToString()
    assert protowire.data_of_answer(answer) == data


def test_an_empty_data_field_written_out_is_read_by_hand() -> None:
    """The runtime leaves empty data out (the empty message, which has nothing to read by
    hand); a writer that writes it anyway is read as the runtime reads it."""
    assert protowire.encode_data_answer(b"") == b""
    assert protowire.data_of_answer(b"\x0a\x00") == b""
    assert protowire.data_of_answer(b"\x0b\x00") is None  # field 1, but not bytes


@given(data=BLOB, code=st.text(max_size=20))
def test_an_answer_with_an_error_is_left_to_the_runtime(data: bytes, code: str) -> None:
    failed = pb.Response(data=data, error=pb.Error(code=code or "PIT-500", msg="m"))
    assert protowire.data_of_answer(failed.SerializeToString()) is None
    with pytest.raises(PitayaError):
        read_answer(failed.SerializeToString())


@given(raw=st.binary(max_size=40) | BLOB.map(lambda data: encode_answer(data) + data[:3]))
@example(b"\x0a\x00")
@example(b"\x0a\x00\x0a\x00")
@example(b"\x0a\x81\x80\x80\x80\x80\x00x")  # a length padded to six bytes
def test_what_is_read_by_hand_is_what_the_runtime_reads(raw: bytes) -> None:
    data = protowire.data_of_answer(raw)
    if data is not None:
        response = pb.Response.FromString(raw)
        assert not response.HasField("error")
        assert response.data == data


@pytest.mark.parametrize(
    "answer",
    [b"\x0a", b"\x0a\x05abc", b"\x0a\x80", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"],
)
def test_a_truncated_answer_is_left_to_the_runtime(answer: bytes) -> None:
    assert protowire.data_of_answer(answer) is None


@pytest.mark.parametrize("padding", range(10))
def test_a_padded_length_is_read_by_hand_as_far_as_the_runtime_reads_it(padding: int) -> None:
    """A length of 1 written with needless continuation bytes: the runtime reads a length of
    up to five bytes (a 32-bit size) and refuses a longer one as corrupt; so does the hand."""
    raw = b"\x0a\x81" + b"\x80" * padding + b"\x00" + b"x"
    readable = 2 + padding <= 5
    if readable:
        assert pb.Response.FromString(raw).data == b"x"
    else:
        with pytest.raises(DecodeError):
            pb.Response.FromString(raw)
    assert protowire.data_of_answer(raw) == (b"x" if readable else None)
