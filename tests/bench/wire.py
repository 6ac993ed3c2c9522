"""Raw, fast client connections for load generation (TCP and WebSocket).

The convenience :class:`transport.client.Client` runs a reader task and a future per request;
a load generator cannot afford that at tens of thousands of requests per second. These are
bare ``asyncio.Protocol`` objects: they do the Pitaya handshake with the sans-I/O codecs, then
hand every byte of the packet stream to ``sink`` and let the caller write pre-encoded bytes.

Over WebSocket the upgrade is done by websockets' sans-I/O ``ClientProtocol``; after it, frames
are built once up front (:meth:`RawConnection.wire`) and the server's frames are parsed by the
small :class:`FrameReader` (servers never mask, and our servers send one packet per binary
frame), because websockets' generator-based parser would make the client the bottleneck. The
payloads of consecutive frames, concatenated, are the same packet stream TCP carries, so the
same ``sink`` code serves both transports.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN
from websockets.uri import parse_uri

from transport.handshake import (
    HandshakeResponse,
    decode_handshake_response,
    encode_handshake_request,
)
from transport.message import Message, MessageType, RouteDictionary, encode_message
from transport.packet import (
    HANDSHAKE_ACK_PACKET,
    HEARTBEAT_PACKET,
    PacketDecoder,
    PacketType,
    encode_packet,
)

HANDSHAKE_PACKET = encode_packet(
    PacketType.HANDSHAKE, encode_handshake_request({"platform": "bench", "libVersion": "0"}, {})
)

Sink = Callable[[bytes], None]

# The broadcast benchmark's protocol, shared by both servers and the members.
JOIN_ROUTE = "bench.join"
"""Request ``{"uid": ...}``: join the group; answers ``{"packet_size": n}``."""
FANOUT_ROUTE = "bench.fanout"
"""Request ``{"messages": n}``: broadcast ``n`` times; answers ``{"sent", "unreached"}``."""
PUSH_ROUTE = "onTick"
TICK = {"tick": "x" * 32}
"""The broadcast body, the same every time so that members can count bytes."""


class FrameReader:
    """Payloads of unmasked WebSocket frames from a byte stream (data frames only)."""

    __slots__ = ("_buffer", "closed")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.closed = False

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        end = len(buffer)
        offset = 0
        payloads: list[bytes] = []
        while end - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                start += 2
                if start > end:
                    break
                length = int.from_bytes(buffer[offset + 2 : start], "big")
            elif length == 127:
                start += 8
                if start > end:
                    break
                length = int.from_bytes(buffer[offset + 2 : start], "big")
            stop = start + length
            if stop > end:
                break
            if opcode == Opcode.BINARY or opcode == Opcode.TEXT:
                payloads.append(bytes(buffer[start:stop]))
            elif opcode == Opcode.CLOSE:
                self.closed = True
            offset = stop
        del buffer[:offset]
        return payloads


class RawConnection(asyncio.Protocol):
    """A TCP Pitaya client: handshake on connect, then the packet stream goes to ``sink``.

    ``ready`` resolves with the server's handshake response once the ack is written. From
    then on it sends a heartbeat every interval the server asked for, as real clients do:
    pinus closes a connection that stays silent for two intervals (3 s in its template),
    whatever else it sends.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[HandshakeResponse] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.sink: Sink | None = None
        self._decoder = PacketDecoder()
        self._early: list[bytes] = []
        self._beat: asyncio.TimerHandle | None = None

    @staticmethod
    def wire(packet: bytes) -> bytes:
        """The bytes that carry ``packet`` on this transport (encode once, write many)."""
        return packet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._start()

    def _start(self) -> None:
        self.write(self.wire(HANDSHAKE_PACKET))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._stream(data)

    def _stream(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink(data)
        elif self.ready.done():
            self._early.append(data)  # before the caller attached its sink
        else:
            self._handshake(data)

    def attach(self, sink: Sink) -> None:
        """Send the packet stream (from now on, and what arrived meanwhile) to ``sink``."""
        self.sink = sink
        early, self._early = self._early, []
        for data in early:
            sink(data)

    def _handshake(self, data: bytes) -> None:
        packets = self._decoder.feed(data)
        for index, packet in enumerate(packets):
            if packet.type is PacketType.HANDSHAKE:
                response = decode_handshake_response(packet.body)
                if not response.ok:
                    self.ready.set_exception(ConnectionError(f"handshake refused: {response}"))
                    return
                if self._decoder.buffered:  # a server speaks only after the ack
                    self.ready.set_exception(ConnectionError("data before the handshake ack"))
                    return
                self.write(self.wire(HANDSHAKE_ACK_PACKET))
                self.ready.set_result(response)
                if response.heartbeat > 0:
                    self._heartbeat(response.heartbeat)
                # Packets behind the response in the same chunk (none in practice) go to the
                # caller's sink like everything after them.
                rest = b"".join(encode_packet(p.type, p.body) for p in packets[index + 1 :])
                if rest:
                    self._early.append(rest)
                return

    def _heartbeat(self, interval: float) -> None:
        """Write a heartbeat now and every ``interval`` seconds until the connection ends."""
        loop = asyncio.get_running_loop()

        def beat() -> None:
            if self.transport is None or self.transport.is_closing():
                return
            self.write(self.wire(HEARTBEAT_PACKET))
            self._beat = loop.call_later(interval, beat)

        self._beat = loop.call_later(interval, beat)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._beat is not None:
            self._beat.cancel()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the handshake: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RawWebSocket(RawConnection):
    """The same over WebSocket: upgrade first, then one masked binary frame per packet."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._upgrade: ClientProtocol | None = ClientProtocol(parse_uri(f"ws://{host}:{port}/"))
        self._frames = FrameReader()

    @staticmethod
    def wire(packet: bytes) -> bytes:
        return Frame(Opcode.BINARY, packet).serialize(mask=True)

    def _start(self) -> None:
        upgrade = self._upgrade
        assert upgrade is not None
        upgrade.send_request(upgrade.connect())
        self.write(b"".join(upgrade.data_to_send()))

    def data_received(self, data: bytes) -> None:
        upgrade = self._upgrade
        if upgrade is None:
            payloads = self._frames.feed(data)
            if payloads:
                self._stream(payloads[0] if len(payloads) == 1 else b"".join(payloads))
            return
        upgrade.receive_data(data)
        for event in upgrade.events_received():
            if isinstance(event, Response) and event.status_code != 101:
                self.ready.set_exception(ConnectionError(f"upgrade refused: {event.status_code}"))
        if upgrade.state is OPEN:
            self._upgrade = None
            super()._start()


async def connect(host: str, port: int, *, websocket: bool, timeout: float = 10.0) -> RawConnection:
    """One connected, handshaken raw connection."""
    loop = asyncio.get_running_loop()
    factory: Callable[[], RawConnection] = (
        (lambda: RawWebSocket(host, port)) if websocket else RawConnection
    )
    async with asyncio.timeout(timeout):
        _, protocol = await loop.create_connection(factory, host, port)
        await protocol.ready
    return protocol


async def connect_many(
    host: str, port: int, count: int, *, websocket: bool, parallel: int = 100, timeout: float = 60
) -> list[RawConnection]:
    """``count`` handshaken connections, at most ``parallel`` handshakes at once."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> RawConnection:
        async with gate:
            return await connect(host, port, websocket=websocket)

    async with asyncio.timeout(timeout):
        return list(await asyncio.gather(*(one() for _ in range(count))))


def request_packet(message_id: int, route: str, body: Any, routes: RouteDictionary | None) -> bytes:
    """A whole DATA packet for a JSON request (routes compressed with the server's dict)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    message = Message(MessageType.REQUEST, message_id, route, data)
    return encode_packet(PacketType.DATA, encode_message(message, routes=routes))


def route_dictionary(response: HandshakeResponse) -> RouteDictionary | None:
    return RouteDictionary(response.routes) if response.routes else None


def response_id(body: bytes) -> int:
    """The id of a RESPONSE message body (base-128 varint after the flag byte)."""
    message_id = 0
    shift = 0
    for byte in body[1:11]:
        message_id |= (byte & 0x7F) << shift
        if byte < 0x80:
            return message_id
        shift += 7
    raise ValueError("truncated message id")


def is_error_response(body: bytes) -> bool:
    return bool(body[0] & 0x20)


async def close_all(connections: Sequence[RawConnection], timeout: float = 5.0) -> None:
    for conn in connections:
        conn.close()
    with_lost = [conn.lost for conn in connections]
    if with_lost:
        await asyncio.wait(with_lost, timeout=timeout)
