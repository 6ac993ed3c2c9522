"""Packet framing: fixed vectors, incremental decoding, limits, garbage."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.errors import HandshakeTooLarge, InvalidPacketType, PacketTooLarge, ProtocolError
from transport.packet import (
    DEFAULT_MAX_PACKET_SIZE,
    HANDSHAKE_ACK_PACKET,
    HEADER_SIZE,
    HEARTBEAT_PACKET,
    KICK_PACKET,
    MAX_BODY_LENGTH,
    Packet,
    PacketDecoder,
    PacketType,
    encode_packet,
)


def test_packet_type_values_are_the_protocol_bytes() -> None:
    assert [int(t) for t in PacketType] == [1, 2, 3, 4, 5]
    assert [t.name for t in PacketType] == [
        "HANDSHAKE",
        "HANDSHAKE_ACK",
        "HEARTBEAT",
        "DATA",
        "KICK",
    ]


def test_constants() -> None:
    assert HEADER_SIZE == 4
    assert MAX_BODY_LENGTH == 0xFFFFFF
    assert DEFAULT_MAX_PACKET_SIZE == 1024 * 1024


def test_empty_bodied_packets() -> None:
    assert HEARTBEAT_PACKET == b"\x03\x00\x00\x00"
    assert HANDSHAKE_ACK_PACKET == b"\x02\x00\x00\x00"
    assert KICK_PACKET == b"\x05\x00\x00\x00"


@pytest.mark.parametrize(
    ("packet_type", "body", "expected"),
    [
        (PacketType.DATA, b"\x00\x01", "0400000200 01"),
        (PacketType.HANDSHAKE, b"{}", "010000027b7d"),
        (PacketType.DATA, b"x" * 0x010203, "04010203" + "78" * 0x010203),
    ],
)
def test_encode_vectors(packet_type: PacketType, body: bytes, expected: str) -> None:
    assert encode_packet(packet_type, body) == bytes.fromhex(expected)


def test_encode_rejects_bodies_over_24_bits() -> None:
    assert len(encode_packet(PacketType.DATA, bytes(MAX_BODY_LENGTH))) == MAX_BODY_LENGTH + 4
    with pytest.raises(PacketTooLarge) as info:
        encode_packet(PacketType.DATA, bytes(MAX_BODY_LENGTH + 1))
    assert (info.value.length, info.value.limit) == (MAX_BODY_LENGTH + 1, MAX_BODY_LENGTH)


def test_feed_whole_packets() -> None:
    decoder = PacketDecoder()
    data = encode_packet(PacketType.HANDSHAKE, b"{}") + HANDSHAKE_ACK_PACKET + HEARTBEAT_PACKET
    assert decoder.feed(data) == [
        Packet(PacketType.HANDSHAKE, b"{}"),
        Packet(PacketType.HANDSHAKE_ACK),
        Packet(PacketType.HEARTBEAT),
    ]
    assert decoder.buffered == 0


def test_feed_one_byte_at_a_time() -> None:
    decoder = PacketDecoder()
    stream = encode_packet(PacketType.DATA, b"hello") + KICK_PACKET
    seen: list[Packet] = []
    for i in range(len(stream)):
        seen += decoder.feed(stream[i : i + 1])
        last_boundary = max(b for b in (0, 9, 13) if b <= i + 1)  # packet ends at 9 and 13
        assert decoder.buffered == i + 1 - last_boundary
    assert seen == [Packet(PacketType.DATA, b"hello"), Packet(PacketType.KICK)]


def test_feed_keeps_the_remainder_across_calls() -> None:
    decoder = PacketDecoder()
    first = encode_packet(PacketType.DATA, b"a" * 10)
    second = encode_packet(PacketType.DATA, b"b" * 10)
    assert decoder.feed(first + second[:6]) == [Packet(PacketType.DATA, b"a" * 10)]
    assert decoder.buffered == 6
    assert decoder.feed(second[6:]) == [Packet(PacketType.DATA, b"b" * 10)]
    assert decoder.buffered == 0


def test_feed_empty_bytes() -> None:
    assert PacketDecoder().feed(b"") == []


@pytest.mark.parametrize("bad_type", [0, 6, 7, 0x7F, 0xFF])
def test_invalid_type_is_rejected_on_its_first_byte(bad_type: int) -> None:
    decoder = PacketDecoder()
    with pytest.raises(InvalidPacketType) as info:
        decoder.feed(bytes([bad_type]))
    assert info.value.value == bad_type


def test_invalid_type_after_a_good_packet() -> None:
    decoder = PacketDecoder()
    with pytest.raises(InvalidPacketType):
        decoder.feed(HEARTBEAT_PACKET + b"\x09")


def test_too_large_is_rejected_from_the_header_alone() -> None:
    decoder = PacketDecoder(max_packet_size=100)
    assert decoder.feed(encode_packet(PacketType.DATA, bytes(100))) == [
        Packet(PacketType.DATA, bytes(100))
    ]
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(b"\x04\x00\x00\x65")  # announces 101 bytes; no body sent
    assert (info.value.length, info.value.limit) == (101, 100)


def test_decoder_stays_failed() -> None:
    decoder = PacketDecoder()
    with pytest.raises(InvalidPacketType):
        decoder.feed(b"\x00")
    assert decoder.failed
    with pytest.raises(ProtocolError):
        decoder.feed(HEARTBEAT_PACKET)
    with pytest.raises(ProtocolError):
        decoder.feed(b"")


def test_failed_decoder_says_why_and_chains_the_first_error() -> None:
    decoder = PacketDecoder()
    with pytest.raises(InvalidPacketType) as first:
        decoder.feed(b"\x09")
    with pytest.raises(ProtocolError) as again:
        decoder.feed(HEARTBEAT_PACKET)
    assert str(again.value) == f"packet decoder already failed: {first.value}"
    assert again.value.__cause__ is first.value


def test_max_packet_size_must_fit_24_bits() -> None:
    for bad in (MAX_BODY_LENGTH + 1, -1):
        with pytest.raises(ValueError) as info:
            PacketDecoder(max_packet_size=bad)
        assert str(info.value) == f"max_packet_size must be within 0..{MAX_BODY_LENGTH}"


def test_max_packet_size_bounds_are_inclusive() -> None:
    # 0: only empty-bodied packets (heartbeats, acks, kicks) are accepted.
    decoder = PacketDecoder(max_packet_size=0)
    assert decoder.feed(HEARTBEAT_PACKET + KICK_PACKET) == [
        Packet(PacketType.HEARTBEAT),
        Packet(PacketType.KICK),
    ]
    with pytest.raises(PacketTooLarge):
        decoder.feed(encode_packet(PacketType.DATA, b"x"))
    # The 24-bit maximum: a header announcing it is accepted (and waits for the body).
    decoder = PacketDecoder(max_packet_size=MAX_BODY_LENGTH)
    assert decoder.feed(b"\x04\xff\xff\xff") == []
    assert decoder.buffered == 4


def test_encode_packet_body_defaults_to_empty() -> None:
    assert encode_packet(PacketType.HEARTBEAT) == b"\x03\x00\x00\x00"
    assert encode_packet(PacketType.KICK) == KICK_PACKET


@pytest.mark.parametrize("length", [0x000100, 0x0001FF, 0x000302, 0x010203])
def test_decode_reads_every_byte_of_the_length(length: int) -> None:
    body = bytes(i % 251 for i in range(length))
    header = bytes([4, length >> 16, (length >> 8) & 0xFF, length & 0xFF])
    decoder = PacketDecoder(max_packet_size=MAX_BODY_LENGTH)
    assert decoder.feed(header + body + HEARTBEAT_PACKET) == [
        Packet(PacketType.DATA, body),
        Packet(PacketType.HEARTBEAT),
    ]
    assert decoder.buffered == 0


def test_decoded_bodies_are_bytes_not_views() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"\x04\x00\x00\x03ab")
    (packet,) = decoder.feed(b"c")
    assert type(packet.body) is bytes
    assert packet.body == b"abc"


def test_many_chunks_of_a_large_packet_are_linear() -> None:
    # A 1 MiB body arriving in 1 KiB chunks: must finish quickly (no quadratic copying).
    body = bytes(range(256)) * 4096
    stream = encode_packet(PacketType.DATA, body)
    decoder = PacketDecoder()
    out: list[Packet] = []
    for i in range(0, len(stream), 1024):
        out += decoder.feed(stream[i : i + 1024])
    assert out == [Packet(PacketType.DATA, body)]


packets_strategy = st.lists(
    st.builds(Packet, st.sampled_from(PacketType), st.binary(max_size=300)), max_size=20
)


@given(packets=packets_strategy, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_chunking_does_not_change_the_packets(packets: list[Packet], cuts: list[int]) -> None:
    stream = b"".join(encode_packet(p.type, p.body) for p in packets)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    decoder = PacketDecoder()
    out: list[Packet] = []
    for start, end in itertools.pairwise(points):
        out += decoder.feed(stream[start:end])
    assert out == packets
    assert decoder.buffered == 0


@given(chunks=st.lists(st.binary(max_size=64), max_size=10))
def test_garbage_only_raises_protocol_errors(chunks: list[bytes]) -> None:
    decoder = PacketDecoder(max_packet_size=1000)
    for chunk in chunks:
        try:
            packets = decoder.feed(chunk)
        except ProtocolError:
            return
        for packet in packets:
            assert isinstance(packet.type, PacketType)
            assert len(packet.body) <= 1000


# -- the handshake limit (checked from the header) --------------------------------------------


def test_a_handshake_is_bounded_by_its_own_limit_data_by_the_packet_limit() -> None:
    decoder = PacketDecoder(max_packet_size=1000, max_handshake_size=10)
    assert decoder.feed(encode_packet(PacketType.HANDSHAKE, bytes(10))) == [
        Packet(PacketType.HANDSHAKE, bytes(10))
    ]
    assert decoder.feed(encode_packet(PacketType.DATA, bytes(11))) == [
        Packet(PacketType.DATA, bytes(11))
    ]
    with pytest.raises(HandshakeTooLarge) as info:
        decoder.feed(b"\x01\x00\x00\x0b")  # announces 11 bytes; no body sent
    assert (info.value.length, info.value.limit) == (11, 10)
    assert str(info.value) == "handshake of 11 bytes exceeds the limit of 10 bytes"


def test_without_a_handshake_limit_the_packet_limit_applies() -> None:
    decoder = PacketDecoder(max_packet_size=100)
    assert decoder.feed(encode_packet(PacketType.HANDSHAKE, bytes(100))) == [
        Packet(PacketType.HANDSHAKE, bytes(100))
    ]
    with pytest.raises(PacketTooLarge):
        decoder.feed(b"\x01\x00\x00\x65")


def test_the_unfinished_bytes_are_one_object_for_the_decoders_life() -> None:
    """The session actor keeps it and reads its length after every read."""
    decoder = PacketDecoder()
    unfinished = decoder.unfinished
    packet = encode_packet(PacketType.DATA, b"x" * 10)
    for chunk in (packet[:3], packet[3:9], packet[9:] + packet[:5], packet[5:]):
        decoder.feed(chunk)
        assert decoder.unfinished is unfinished
        assert len(unfinished) == decoder.buffered
    assert len(unfinished) == 0
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x09\x00\x00\x00")
    assert decoder.unfinished is unfinished and len(unfinished) == 0
