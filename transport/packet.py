"""Packets: the outer frame of the Pitaya/pomelo wire protocol (sans-I/O).

Every unit on the wire is ``type:u8 | length:u24 big-endian | body``. The body of a
``DATA`` packet is a message (see :mod:`transport.message`); handshake bodies are JSON (see
:mod:`transport.handshake`); heartbeat, handshake-ack and kick packets have empty bodies.

:class:`PacketDecoder` is the server's hot path: it is fed whatever the socket produced (one
byte or many packets at once) and returns the packets completed so far. It rejects a bad
header as soon as the offending byte arrives, so a hostile peer cannot make us buffer a body
we would refuse anyway.

Example::

    decoder = PacketDecoder()
    decoder.feed(encode_packet(PacketType.DATA, b"\\x00\\x01")[:3])  # -> []
    decoder.feed(b"\\x02\\x00\\x01")  # -> [Packet(PacketType.DATA, b"\\x00\\x01")]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from transport.errors import HandshakeTooLarge, InvalidPacketType, PacketTooLarge, ProtocolError

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "HANDSHAKE_ACK_PACKET",
    "HEADER_SIZE",
    "HEARTBEAT_PACKET",
    "KICK_PACKET",
    "MAX_BODY_LENGTH",
    "Packet",
    "PacketDecoder",
    "PacketType",
    "encode_packet",
]


class PacketType(IntEnum):
    """The first byte of a packet (values fixed by the protocol)."""

    HANDSHAKE = 1
    HANDSHAKE_ACK = 2
    HEARTBEAT = 3
    DATA = 4
    KICK = 5


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded packet: its type and its (possibly empty) body."""

    type: PacketType
    body: bytes = b""


HEADER_SIZE = 4
#: The largest body a 24-bit length can announce.
MAX_BODY_LENGTH = 0xFFFFFF
#: Default limit on a received body. Pitaya accepts up to 16 MiB; a game message is a few KiB,
#: so a smaller default bounds the memory one connection can pin.
DEFAULT_MAX_PACKET_SIZE = 1024 * 1024

# Indexed by the type byte; avoids an IntEnum construction (slow) per decoded packet. Index 0
# is a placeholder: the decoder rejects type 0 before looking it up.
_TYPES: tuple[PacketType, ...] = (PacketType.HANDSHAKE, *PacketType)
_FIRST_INVALID_TYPE = len(_TYPES)
_HANDSHAKE_BYTE = int(PacketType.HANDSHAKE)
# type:u8 | length:u24 is one big-endian u32; one struct call is the cheapest way to build it.
_pack_header = struct.Struct(">I").pack


def encode_packet(type: PacketType, body: bytes = b"") -> bytes:
    """Frame ``body`` as one packet of ``type``.

    Raises :class:`PacketTooLarge` if the body does not fit the 24-bit length field.
    """
    length = len(body)
    if length > MAX_BODY_LENGTH:
        raise PacketTooLarge(length, MAX_BODY_LENGTH)
    return _pack_header((type << 24) | length) + body


#: Pre-encoded empty-bodied packets, written as-is on every heartbeat, ack and kick.
HEARTBEAT_PACKET = encode_packet(PacketType.HEARTBEAT)
HANDSHAKE_ACK_PACKET = encode_packet(PacketType.HANDSHAKE_ACK)
KICK_PACKET = encode_packet(PacketType.KICK)


class PacketDecoder:
    """Incremental packet decoder: feed it bytes, get whole packets back.

    ``max_packet_size`` bounds the body length a header may announce; ``max_handshake_size``
    (a server's decoder) that of a HANDSHAKE packet, with :class:`HandshakeTooLarge`. After a
    :class:`ProtocolError` the decoder stays failed (the stream has lost its framing and
    cannot be resynchronised), and every later :meth:`feed` raises again.
    """

    __slots__ = ("_buffer", "_error", "_max_handshake_size", "_max_packet_size")

    def __init__(
        self,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        *,
        max_handshake_size: int | None = None,
    ) -> None:
        if not 0 <= max_packet_size <= MAX_BODY_LENGTH:
            raise ValueError(f"max_packet_size must be within 0..{MAX_BODY_LENGTH}")
        self._max_packet_size = max_packet_size
        self._max_handshake_size = (
            max_packet_size if max_handshake_size is None else max_handshake_size
        )
        # Holds only an incomplete packet between calls; empty most of the time, which lets
        # feed() parse straight from the caller's bytes without copying them.
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole packet."""
        return len(self._buffer)

    @property
    def unfinished(self) -> bytearray:
        """Those bytes themselves: the same object for the decoder's whole life (read it,
        never change it), so a caller checking its length after every read makes no call
        but ``len``."""
        return self._buffer

    @property
    def failed(self) -> bool:
        """True once a protocol error was raised; the decoder accepts nothing more."""
        return self._error is not None

    def feed(self, data: bytes) -> list[Packet]:
        """Add ``data`` to the stream and return every packet it completes, in order.

        Raises :class:`InvalidPacketType` or :class:`PacketTooLarge` as soon as a header
        shows the problem, even if the rest of the packet has not arrived.
        """
        return [Packet(packet_type, body) for packet_type, body in self.feed_raw(data)]

    def feed_raw(self, data: bytes) -> list[tuple[PacketType, bytes]]:
        """Like :meth:`feed`, as ``(type, body)`` tuples.

        The connection state machines use this: a tuple is about half the cost of a frozen
        dataclass instance, and this runs once per packet on the server.
        """
        if self._error is not None:
            raise ProtocolError(f"packet decoder already failed: {self._error}") from self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            source = data
        packets: list[tuple[PacketType, bytes]] = []
        try:
            offset = self._parse(source, packets)
        except ProtocolError as exc:
            self._error = exc
            buffer.clear()
            raise
        if source is buffer:
            # CPython's bytearray drops a prefix in O(1) (it moves its start pointer).
            del buffer[:offset]
        elif offset < len(data):
            buffer += memoryview(data)[offset:]
        return packets

    def _parse(self, source: bytes | bytearray, packets: list[tuple[PacketType, bytes]]) -> int:
        """Append the whole packets found in ``source``; return the offset of the remainder."""
        end = len(source)
        offset = 0
        limit = self._max_packet_size
        handshake_limit = self._max_handshake_size
        while offset < end:
            type_byte = source[offset]
            if type_byte == 0 or type_byte >= _FIRST_INVALID_TYPE:
                raise InvalidPacketType(type_byte)
            body_start = offset + HEADER_SIZE
            if body_start > end:
                break
            # Three index operations beat int.from_bytes on a slice (no temporary object).
            length = (source[offset + 1] << 16) | (source[offset + 2] << 8) | source[offset + 3]
            if length > limit:
                raise PacketTooLarge(length, limit)
            if type_byte == _HANDSHAKE_BYTE and length > handshake_limit:
                raise HandshakeTooLarge(length, handshake_limit)
            body_end = body_start + length
            if body_end > end:
                break
            body = source[body_start:body_end]  # a bytearray slice must become bytes
            packets.append((_TYPES[type_byte], body if isinstance(body, bytes) else bytes(body)))
            offset = body_end
        return offset
