"""Message codec: fixed vectors (ours and Pitaya's), round trips, malformed input."""

from __future__ import annotations

import contextlib
import tracemalloc
import zlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from transport.errors import InvalidRoute, MalformedMessage, ProtocolError
from transport.message import (
    Message,
    MessageType,
    RouteDictionary,
    decode_message,
    encode_message,
    inflate_message,
)
from transport.packet import PacketType, encode_packet

REQUEST, NOTIFY, RESPONSE, PUSH = (
    MessageType.REQUEST,
    MessageType.NOTIFY,
    MessageType.RESPONSE,
    MessageType.PUSH,
)
ROUTES = RouteDictionary({"room.room.join": 1, "a": 1000, "chat.room.say": 0x0102})


def test_message_type_values() -> None:
    assert [int(t) for t in MessageType] == [0, 1, 2, 3]


def test_the_brief_request_vector() -> None:
    msg = Message(REQUEST, id=1, route="room.room.join", data=b'{"name":"a"}')
    packet = encode_packet(PacketType.DATA, encode_message(msg))
    assert packet == bytes.fromhex(
        "0400001d00010e726f6f6d2e726f6f6d2e6a6f696e7b226e616d65223a2261227d"
    )
    assert decode_message(packet[4:]) == msg


@pytest.mark.parametrize(
    ("msg", "routes", "hex_body"),
    [
        # notify: flag 0x02, route length, route, data
        (Message(NOTIFY, route="chat.say", data=b"hi"), None, "0208636861742e7361796869"),
        # response: flag 0x04, id, data; no route
        (Message(RESPONSE, id=7, data=b"{}"), None, "04077b7d"),
        # push: flag 0x06, route, data
        (Message(PUSH, route="onMsg", data=b"1"), None, "06056f6e4d736731"),
        # compressed routes: flag | 0x01, u16 big-endian code
        (Message(REQUEST, id=2, route="chat.room.say", data=b"x"), ROUTES, "0102010278"),
        (Message(NOTIFY, route="a"), ROUTES, "0303e8"),
        (Message(PUSH, route="room.room.join"), ROUTES, "070001"),
        # a route not in the dictionary travels uncompressed
        (Message(PUSH, route="b"), ROUTES, "060162"),
        # error response: 0x20 | 0x04
        (Message(RESPONSE, id=3, data=b"e", error=True), None, "240365"),
        # multi-byte ids: 300 -> ac 02, 2**63 -> ten bytes
        (Message(RESPONSE, id=300), None, "04ac02"),
        # the last group is exactly 0x7f: it ends the varint (no 0x80 bit, no extra 00)
        (Message(RESPONSE, id=0x3FFF), None, "04ff7f"),
        (Message(REQUEST, id=127, route="r"), None, "007f0172"),
        (Message(REQUEST, id=128, route="r"), None, "0080010172"),
        (Message(RESPONSE, id=2**63), None, "0480808080808080808001"),
        (Message(RESPONSE, id=2**64 - 1), None, "04ffffffffffffffffff01"),
    ],
)
def test_fixed_vectors(msg: Message, routes: RouteDictionary | None, hex_body: str) -> None:
    body = bytes.fromhex(hex_body)
    assert encode_message(msg, routes=routes) == body
    assert decode_message(body, routes=routes) == msg


# Bytes produced by Pitaya's own encoder (its conn/message golden files), decoded here.
@pytest.mark.parametrize(
    ("hex_body", "routes", "expected"),
    [
        ("00000161", None, Message(REQUEST, route="a")),
        ("01000001", {"a": 1}, Message(REQUEST, route="a")),
        ("020161", None, Message(NOTIFY, route="a")),
        ("030001", {"a": 1}, Message(NOTIFY, route="a")),
        ("060161", None, Message(PUSH, route="a")),
        ("070001", {"a": 1}, Message(PUSH, route="a")),
        ("0400", None, Message(RESPONSE)),
        ("040001", None, Message(RESPONSE, data=b"\x01")),
        ("048101", None, Message(RESPONSE, id=129)),
        ("240001", None, Message(RESPONSE, data=b"\x01", error=True)),
        (
            "3400789c4aca49240601020000ffff33ff0f64",  # Go's zlib output, flag 0x20|0x10|0x04
            None,
            Message(RESPONSE, data=b"bla" * 13, error=True),
        ),
    ],
)
def test_pitaya_encoder_output_decodes(
    hex_body: str, routes: dict[str, int] | None, expected: Message
) -> None:
    dictionary = RouteDictionary(routes) if routes else None
    assert decode_message(bytes.fromhex(hex_body), routes=dictionary) == expected


def test_compression_only_when_shorter() -> None:
    long = Message(RESPONSE, id=1, data=b"bla" * 13, error=True)
    body = encode_message(long, compress=True)
    assert body[0] == 0x34
    assert zlib.decompress(body[2:]) == b"bla" * 13
    assert decode_message(body) == long
    short = Message(RESPONSE, id=1, data=b"xy")
    assert encode_message(short, compress=True) == encode_message(short)
    assert encode_message(Message(RESPONSE), compress=True) == b"\x04\x00"


def test_compression_is_off_by_default() -> None:
    msg = Message(RESPONSE, id=1, data=b"bla" * 13)
    assert encode_message(msg) == b"\x04\x01" + b"bla" * 13
    assert encode_message(msg, compress=False) == b"\x04\x01" + b"bla" * 13


def test_compression_is_skipped_when_it_saves_nothing() -> None:
    # Data that deflates to exactly its own length is sent as it is.
    data = next(b"a" * n for n in range(1, 64) if len(zlib.compress(b"a" * n)) == n)
    assert encode_message(Message(RESPONSE, id=1, data=data), compress=True) == b"\x04\x01" + data


def test_high_flag_bits_are_ignored_like_pitaya() -> None:
    assert decode_message(b"\xc2\x01a") == Message(NOTIFY, route="a")
    # the route-compressed bit means nothing on a response
    assert decode_message(b"\x05\x01") == Message(RESPONSE, id=1)


def test_error_flag_on_any_type_is_kept() -> None:
    msg = Message(PUSH, route="a", error=True)
    assert decode_message(encode_message(msg)) == msg


def test_id_is_not_encoded_for_notify_and_push() -> None:
    assert encode_message(Message(NOTIFY, id=5, route="a")) == b"\x02\x01a"
    assert decode_message(encode_message(Message(PUSH, id=5, route="a"))).id == 0


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        (b"", MalformedMessage, "empty message (no flag byte)"),
        (b"\x08", MalformedMessage, "unknown message type 4 in flag byte 0x08"),
        (b"\x0e\x00", MalformedMessage, "unknown message type 7 in flag byte 0x0e"),
        (b"\x00", MalformedMessage, "message id varint is truncated"),  # request without id
        (b"\x00\x80", MalformedMessage, "message id varint is truncated"),
        (
            b"\x04" + b"\xff" * 10 + b"\x01",
            MalformedMessage,
            "message id varint is longer than 10 bytes",
        ),
        (b"\x04" + b"\xff" * 9 + b"\x02", MalformedMessage, "message id does not fit in 64 bits"),
        (b"\x00\x01", MalformedMessage, "route length is missing"),  # request
        (b"\x02", MalformedMessage, "route length is missing"),  # notify
        (b"\x02\x05abc", MalformedMessage, "route of 5 bytes is truncated"),
        (b"\x03\x00", MalformedMessage, "compressed route code is truncated"),
        (b"\x03\x00\x01", InvalidRoute, "compressed route code 1 but no route dictionary"),
        (b"\x02\x02\xff\xfe", InvalidRoute, "route is not valid UTF-8"),
        (b"\x02\x00", InvalidRoute, "a notify needs a non-empty route"),
        (b"\x00\x01\x00", InvalidRoute, "a request needs a non-empty route"),
        (b"\x14\x00not zlib", MalformedMessage, "compressed data is not valid zlib: ..."),
        (
            b"\x14\x00" + zlib.compress(b"abc")[:-2],
            MalformedMessage,
            "compressed data is truncated",
        ),
        (
            b"\x14\x00" + zlib.compress(b"abc") + b"!",
            MalformedMessage,
            "trailing bytes after the compressed data",
        ),
    ],
)
def test_malformed(body: bytes, error: type[ProtocolError], reason: str) -> None:
    # The message names the broken rule: it is what a server logs when it drops a client.
    with pytest.raises(error) as info:
        decode_message(body)
    if reason.endswith("..."):  # the rest is zlib's own words
        assert str(info.value).startswith(reason.removesuffix("..."))
    else:
        assert str(info.value) == reason


def test_unknown_route_code() -> None:
    with pytest.raises(InvalidRoute, match="unknown compressed route code 2"):
        decode_message(b"\x03\x00\x02", routes=RouteDictionary({"a": 1}))


def test_route_length_limit() -> None:
    body = encode_message(Message(NOTIFY, route="r" * 40))
    assert decode_message(body, max_route_length=40).route == "r" * 40
    with pytest.raises(InvalidRoute, match="exceeds the limit of 39"):
        decode_message(body, max_route_length=39)


def test_push_with_empty_route_decodes() -> None:
    # Clients are lenient with what a server pushes; only request/notify need a route.
    assert decode_message(b"\x06\x00") == Message(PUSH)


def test_zip_bomb_is_bounded() -> None:
    bomb = b"\x14\x00" + zlib.compress(bytes(10 * 1024 * 1024), 9)
    assert len(bomb) < 20_000
    with pytest.raises(MalformedMessage, match="exceeds the limit"):
        decode_message(bomb)
    ok = b"\x14\x00" + zlib.compress(bytes(1000))
    assert decode_message(ok, max_inflated_size=1000).data == bytes(1000)
    with pytest.raises(MalformedMessage):
        decode_message(ok, max_inflated_size=999)


def test_zip_bomb_is_never_inflated_past_the_limit() -> None:
    # 64 MiB of zeros in 64 KiB: the decoder must stop at the limit, not inflate it all first.
    bomb = b"\x14\x00" + zlib.compress(bytes(64 * 1024 * 1024), 9)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedMessage, match="exceeds the limit of 1048576 bytes"):
            decode_message(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("msg_type", "route", "reason"),
    [
        (REQUEST, "", "a request needs a non-empty route"),
        (NOTIFY, "", "a notify needs a non-empty route"),
        (PUSH, "", "a push needs a non-empty route"),
        (REQUEST, "é" * 128, "route of 256 bytes exceeds the limit of 255 bytes"),
        (REQUEST, "\ud800", "route '\\ud800' cannot be encoded as UTF-8"),
    ],
)
def test_encode_rejects_bad_routes(msg_type: MessageType, route: str, reason: str) -> None:
    with pytest.raises(InvalidRoute) as info:
        encode_message(Message(msg_type, id=1, route=route))
    assert str(info.value) == reason


@pytest.mark.parametrize("msg_id", [-1, 2**64])
def test_encode_rejects_ids_outside_64_bits(msg_id: int) -> None:
    with pytest.raises(MalformedMessage) as info:
        encode_message(Message(RESPONSE, id=msg_id))
    assert str(info.value) == f"message id {msg_id} is outside 0..2**64-1"


@pytest.mark.parametrize("bad_type", [4, -1])
def test_encode_rejects_an_unknown_type(bad_type: int) -> None:
    with pytest.raises(MalformedMessage) as info:
        encode_message(Message(bad_type, route="a"))  # type: ignore[arg-type]
    assert str(info.value) == f"unknown message type {bad_type}"


def test_encode_accepts_the_longest_route() -> None:
    route = "é" * 127 + "a"  # 255 bytes
    assert decode_message(encode_message(Message(NOTIFY, route=route))).route == route


# -- route dictionary ---------------------------------------------------------------------


def test_route_dictionary_both_ways() -> None:
    routes = RouteDictionary({"a.b.c": 1, "d.e.f": 65535})
    assert routes.code("a.b.c") == 1
    assert routes.route(65535) == "d.e.f"
    assert routes.code("x") is None and routes.route(2) is None
    assert len(routes) == 2 and "a.b.c" in routes and "x" not in routes
    assert routes.as_dict() == {"a.b.c": 1, "d.e.f": 65535}
    assert sorted(routes) == ["a.b.c", "d.e.f"]
    assert routes == RouteDictionary({"d.e.f": 65535, "a.b.c": 1})
    assert not RouteDictionary()


def test_a_dictionary_extended_keeps_its_codes_and_numbers_the_others_above_them() -> None:
    given = RouteDictionary({"m.m": 5, "b.b": 2})
    extended = given.extended(["z.z", "a.a", "m.m", "a.a"])
    assert extended.as_dict() == {"m.m": 5, "b.b": 2, "a.a": 6, "z.z": 7}
    assert given.as_dict() == {"m.m": 5, "b.b": 2}  # unchanged
    with pytest.raises(ValueError, match="no code left for 'b'"):
        RouteDictionary({"top": 65535}).extended(["b"])


def test_route_dictionary_from_routes_is_sorted() -> None:
    routes = RouteDictionary.from_routes(["z.z", "a.a", "m.m", "a.a"])
    assert routes.as_dict() == {"a.a": 1, "m.m": 2, "z.z": 3}


@pytest.mark.parametrize(
    "mapping",
    [{"a": 0}, {"a": 65536}, {"a": 1, "b": 1}, {"": 1}, {"a": True}, {"a": "1"}],
)
def test_route_dictionary_rejects_bad_codes(mapping: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RouteDictionary(mapping)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mapping", "reason"),
    [
        ({"": 1}, "route dictionary key '' is not a non-empty string"),
        ({"a": 0}, "route 'a' has code 0; codes are 1..65535"),
        ({"a": True}, "route 'a' has code True; codes are 1..65535"),
        ({"a": 7, "b": 7}, "code 7 is used by both 'a' and 'b'"),
    ],
)
def test_route_dictionary_errors_name_the_entry(mapping: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError) as info:
        RouteDictionary(mapping)  # type: ignore[arg-type]
    assert str(info.value) == reason


def test_as_dict_is_a_copy() -> None:
    routes = RouteDictionary({"a": 1})
    routes.as_dict()["b"] = 2
    assert "b" not in routes


# -- properties ---------------------------------------------------------------------------

routes_text = st.text(min_size=1, max_size=60).filter(
    lambda r: len(r.encode("utf-8", "surrogatepass")) <= 255 and not _has_surrogates(r)
)


def _has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    msg_type = draw(st.sampled_from(MessageType))
    has_id = msg_type in (REQUEST, RESPONSE)
    return Message(
        msg_type,
        id=draw(st.integers(0, 2**64 - 1)) if has_id else 0,
        route="" if msg_type is RESPONSE else draw(routes_text),
        data=draw(st.binary(max_size=200) | st.just(b"ab" * 200)),
        error=draw(st.booleans()),
    )


@given(msg=messages(), compress=st.booleans(), extra=st.lists(routes_text, max_size=5))
def test_round_trip(msg: Message, compress: bool, extra: list[str]) -> None:
    for routes in (None, RouteDictionary.from_routes([*extra, msg.route or "x"])):
        body = encode_message(msg, routes=routes, compress=compress)
        assert decode_message(body, routes=routes) == msg


@given(msg=messages())
def test_compressed_route_is_two_bytes(msg: Message) -> None:
    assume(msg.type is not RESPONSE)
    routes = RouteDictionary({msg.route: 42})
    plain = encode_message(msg)
    short = encode_message(msg, routes=routes)
    assert short[0] & 0x01
    assert len(plain) - len(short) == 1 + len(msg.route.encode()) - 2


@given(body=st.binary(max_size=80), use_routes=st.booleans())
def test_garbage_raises_only_protocol_errors(body: bytes, use_routes: bool) -> None:
    try:
        msg = decode_message(body, routes=ROUTES if use_routes else None)
    except ProtocolError:
        return
    assert isinstance(msg.type, MessageType)
    assert 0 <= msg.id < 2**64


@given(msg=messages(), flip=st.integers(0, 2**16), data=st.data())
def test_mutated_messages_raise_only_protocol_errors(
    msg: Message, flip: int, data: st.DataObject
) -> None:
    body = bytearray(encode_message(msg, routes=ROUTES, compress=True))
    index = data.draw(st.integers(0, len(body) - 1))
    body[index] ^= flip & 0xFF or 1
    cut = data.draw(st.integers(0, len(body)))
    with contextlib.suppress(ProtocolError):
        decode_message(bytes(body[:cut]), routes=ROUTES)


# -- compressed data carried as it is (decoded without inflating, inflated later) -----------


def test_decoding_without_inflating_keeps_the_data_compressed() -> None:
    packed = zlib.compress(b"bla" * 20)
    body = encode_message(Message(PUSH, route="a", data=b"bla" * 20, error=True), compress=True)
    assert decode_message(body, inflate=False) == Message(PUSH, 0, "a", packed, True, True)
    request = encode_message(Message(REQUEST, id=9, route="r", data=b"bla" * 20), compress=True)
    assert decode_message(request, inflate=False) == Message(REQUEST, 9, "r", packed, False, True)
    plain = encode_message(Message(NOTIFY, route="a", data=b"xy"))
    assert decode_message(plain, inflate=False) == Message(NOTIFY, 0, "a", b"xy")


def test_inflate_message() -> None:
    plain = Message(REQUEST, 9, "r", b"xy")
    assert inflate_message(plain) is plain
    packed = Message(PUSH, 0, "a", zlib.compress(b"bla" * 20), True, True)
    assert inflate_message(packed) == Message(PUSH, 0, "a", b"bla" * 20, True)
    assert inflate_message(packed, 60) == Message(PUSH, 0, "a", b"bla" * 20, True)
    with pytest.raises(MalformedMessage, match="exceeds the limit of 59 bytes"):
        inflate_message(packed, 59)


def test_encoding_data_that_is_already_compressed() -> None:
    packed = zlib.compress(b"bla" * 20)
    msg = Message(PUSH, route="a", data=packed, error=True, compressed=True)
    routes = RouteDictionary({"a": 1})
    # flag: push (0x06) | route code (0x01) | error (0x20) | compressed (0x10); data as it is
    assert encode_message(msg, routes=routes) == b"\x37\x00\x01" + packed
    assert encode_message(msg) == b"\x36\x01a" + packed
