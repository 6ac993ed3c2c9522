"""Hostile peers for the reliability tests: byte-stream strategies and the raw runners.

The strategies build streams out of *blocks* that are each almost right (a valid handshake,
a handshake with a broken JSON body, a data packet with random flag bits, a header announcing
16 MiB, ...), so that hypothesis reaches every protocol state instead of failing on the first
byte. The runners send a stream in random chunks over a raw socket, then report how the
server ended the connection and what it wrote, without ever answering like a real client
(no heartbeats), except that a WebSocket peer answers close frames, as any TCP stack would
finish a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from dataclasses import dataclass, field
from itertools import cycle

from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN
from websockets.uri import parse_uri

from transport.errors import ProtocolError
from transport.message import Message, MessageType, decode_message, encode_message
from transport.packet import PacketDecoder, PacketType

BOUND = 5.0
"""Seconds within which the server must have closed every hostile connection."""


def packet(kind: int, body: bytes) -> bytes:
    """A packet with any type byte (even invalid ones) and a correct length."""
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


HANDSHAKE = packet(PacketType.HANDSHAKE, json.dumps({"sys": {"platform": "hostile"}}).encode())
ACK = packet(PacketType.HANDSHAKE_ACK, b"")
HEARTBEAT = packet(PacketType.HEARTBEAT, b"")
KICK = packet(PacketType.KICK, b"")


def request(route: str, data: bytes, message_id: int = 1, notify: bool = False) -> bytes:
    kind = MessageType.NOTIFY if notify else MessageType.REQUEST
    message = Message(kind, 0 if notify else message_id, route, data)
    return packet(PacketType.DATA, encode_message(message))


BOMB = packet(
    PacketType.DATA, bytes([0x10, 1, 9]) + b"echo.echo" + zlib.compress(b"\0" * 8_000_000)
)
"""A compressed request that inflates to 8 MB (over the inflate limit)."""

_bad_handshake_bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [b"{}", b"[]", b"null", b'{"sys": 1}', b'{"sys": {"heartbeat": "x"}}', b"\xff\xfe{", b"{"]
    ),
)
_routes = st.sampled_from(["echo.echo", "probe.me", "probe.hold", "nope.nope", "x" * 70, "a.b.c.d"])

BLOCKS = st.one_of(
    st.just(HANDSHAKE),
    st.just(ACK),
    st.just(HEARTBEAT),
    st.just(KICK),
    _bad_handshake_bodies.map(lambda body: packet(PacketType.HANDSHAKE, body)),
    st.builds(
        request,
        _routes,
        st.sampled_from([b"1", b'"x"', b"{not json", b"", b'{"a": [1, 2]}']),
        st.integers(0, 2**64 - 1),
        st.booleans(),
    ),
    # Random flag byte (type bits, compression, error flag) and random rest.
    st.tuples(st.integers(0, 255), st.binary(max_size=48)).map(
        lambda t: packet(PacketType.DATA, bytes([t[0]]) + t[1])
    ),
    # A header with any type and length, without its body.
    st.tuples(st.integers(0, 255), st.integers(0, 0xFFFFFF)).map(
        lambda t: bytes([t[0]]) + t[1].to_bytes(3, "big")
    ),
    st.binary(min_size=1, max_size=128),
)
"""One almost-valid piece of a client stream."""

PREFIXES = st.sampled_from([b"", HANDSHAKE, HANDSHAKE + ACK, HANDSHAKE + ACK])
"""Most streams start the protocol right, so the blocks after it reach deeper states."""

STREAMS = st.builds(
    lambda prefix, blocks: prefix + b"".join(blocks), PREFIXES, st.lists(BLOCKS, max_size=6)
)
CHUNKS = st.lists(st.integers(1, 64), min_size=1, max_size=8)
"""Chunk sizes, used in a cycle: how the stream is cut into writes."""


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    pieces: list[bytes] = []
    offset = 0
    for size in cycle(sizes):
        if offset >= len(data):
            return pieces
        pieces.append(data[offset : offset + size])
        offset += size
    return pieces


@dataclass
class Outcome:
    """How a hostile connection ended: closed by the server in time, and what it sent."""

    closed: bool = False
    packets: list[tuple[PacketType, bytes]] = field(default_factory=list)
    http_status: int | None = None


async def send_chunks(writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
    """Write each piece in its own loop iteration, so the server reads them separately."""
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0)


def check_packets(decoder: PacketDecoder, data: bytes) -> list[tuple[PacketType, bytes]]:
    """The server's output must be well-formed packets, and data packets server messages."""
    try:
        packets = decoder.feed_raw(data)
        for kind, body in packets:
            if kind is PacketType.DATA:
                assert decode_message(body).type in (MessageType.RESPONSE, MessageType.PUSH)
    except ProtocolError as exc:
        raise AssertionError(f"the server wrote malformed packets: {data!r}") from exc
    return packets


async def tcp_attack(host: str, port: int, stream: bytes, sizes: list[int], eof: bool) -> Outcome:
    """Send ``stream`` in chunks (then EOF, or nothing); read until the server closes."""
    outcome = Outcome()
    reader, writer = await asyncio.open_connection(host, port)
    received = bytearray()
    try:
        with contextlib.suppress(OSError):
            await send_chunks(writer, chunked(stream, sizes))
            if eof:
                writer.write_eof()

        async def drain() -> None:
            while chunk := await reader.read(65536):
                received.extend(chunk)

        with contextlib.suppress(OSError):
            await asyncio.wait_for(drain(), BOUND)
        outcome.closed = True
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    outcome.packets = check_packets(PacketDecoder(0xFFFFFF), bytes(received))
    return outcome


# -- WebSocket ------------------------------------------------------------------------------

FRAMES = st.one_of(
    BLOCKS.map(lambda b: ("binary", b)),
    STREAMS.map(lambda b: ("binary", b)),
    st.binary(max_size=32).map(lambda b: ("text", b)),
    st.binary(max_size=16).map(lambda b: ("ping", b)),
    st.binary(max_size=32).map(lambda b: ("fragment", b)),
    st.binary(min_size=1, max_size=32).map(lambda b: ("raw", b)),
    st.just(("close", b"")),
)
"""One WebSocket-level action of a hostile peer after a valid upgrade."""

WS_GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=256),
    st.binary(max_size=64).map(lambda b: b"GET / HTTP/1.1\r\nHost: x\r\n" + b),
    st.binary(max_size=64).map(lambda b: b"GET / HTTP/1.1\r\n" + b + b"\r\n\r\n"),
)
"""Bytes sent to the WebSocket port instead of an upgrade request."""


def ws_client(host: str, port: int) -> ClientProtocol:
    return ClientProtocol(parse_uri(f"ws://{host}:{port}/"), max_size=None)


def frames_bytes(protocol: ClientProtocol, actions: list[tuple[str, bytes]]) -> bytes:
    """The wire bytes of ``actions``, masked by a client protocol that believes it is OPEN."""
    out = bytearray()
    for action, data in actions:
        if protocol.state is not OPEN:
            break
        if action == "raw":
            out += data
            continue
        if action == "binary":
            protocol.send_binary(data)
        elif action == "text":
            protocol.send_text(data)
        elif action == "ping":
            protocol.send_ping(data)
        elif action == "fragment":
            protocol.send_binary(data, fin=False)
            protocol.send_continuation(data, fin=True)
        else:
            protocol.send_close()
        out += b"".join(protocol.data_to_send())
    return bytes(out)


async def ws_attack(
    host: str,
    port: int,
    *,
    garbage: bytes | None,
    actions: list[tuple[str, bytes]],
    sizes: list[int],
) -> Outcome:
    """Upgrade properly then run ``actions``, or send ``garbage`` instead of an upgrade.

    The peer answers the server's close frame (its protocol does that by itself) so that a
    clean close takes one round trip, and reads until the server closes TCP.
    """
    outcome = Outcome()
    protocol = ws_client(host, port)
    reader, writer = await asyncio.open_connection(host, port)
    packets = PacketDecoder(0xFFFFFF)
    try:
        async with asyncio.timeout(BOUND):
            if garbage is not None:
                with contextlib.suppress(OSError):
                    await send_chunks(writer, chunked(garbage, sizes))
                await _read_until_closed(reader)
                outcome.closed = True
                return outcome
            protocol.send_request(protocol.connect())
            writer.write(b"".join(protocol.data_to_send()))
            while protocol.state is not OPEN:
                data = await reader.read(65536)
                if not data:
                    raise AssertionError("the server closed during a valid upgrade")
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Response):
                        outcome.http_status = event.status_code
            with contextlib.suppress(OSError):
                await send_chunks(writer, chunked(frames_bytes(protocol, actions), sizes))
            while data := await _read(reader):
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                        outcome.packets += check_packets(packets, event.data)
                for chunk in protocol.data_to_send():
                    if chunk:
                        with contextlib.suppress(OSError):
                            writer.write(chunk)
            outcome.closed = True
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return outcome


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(65536)
    except OSError:
        return b""


async def _read_until_closed(reader: asyncio.StreamReader) -> None:
    while await _read(reader):
        pass
