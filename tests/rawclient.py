"""A deliberately low-level TCP client for tests that must misbehave on purpose.

It writes packets built with the codecs (optionally one byte at a time), never heartbeats,
and reads whatever the server sends until it closes. Once the server has closed (or the
read until then ended), it closes its own end too: a writer left open is a ResourceWarning
when the collector finds it, in whichever test runs then.
"""

from __future__ import annotations

import asyncio
import contextlib

from transport.handshake import (
    HandshakeResponse,
    decode_handshake_response,
    encode_handshake_request,
)
from transport.message import Message, MessageType, decode_message, encode_message
from transport.packet import HANDSHAKE_ACK_PACKET, Packet, PacketDecoder, PacketType, encode_packet


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = PacketDecoder()
        self.buffered: list[Packet] = []
        self.next_id = 1

    @classmethod
    async def connect(cls, host: str, port: int) -> RawClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        return cls(reader, writer)

    async def send(self, data: bytes, *, byte_by_byte: bool = False) -> None:
        if byte_by_byte:
            for i in range(len(data)):
                self.writer.write(data[i : i + 1])
                await self.writer.drain()
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def read_packet(self, timeout: float = 5) -> Packet:
        while not self.buffered:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                self.writer.close()
                raise ConnectionError("closed by the server")
            self.buffered.extend(self.decoder.feed(chunk))
        return self.buffered.pop(0)

    async def handshake(self, *, ack: bool = True, byte_by_byte: bool = False) -> HandshakeResponse:
        body = encode_handshake_request({"platform": "test", "libVersion": "raw"}, {})
        await self.send(encode_packet(PacketType.HANDSHAKE, body), byte_by_byte=byte_by_byte)
        packet = await self.read_packet()
        assert packet.type is PacketType.HANDSHAKE
        response = decode_handshake_response(packet.body)
        if ack:
            await self.send(HANDSHAKE_ACK_PACKET, byte_by_byte=byte_by_byte)
        return response

    async def send_request(self, route: str, data: bytes, *, byte_by_byte: bool = False) -> int:
        message_id = self.next_id
        self.next_id += 1
        body = encode_message(Message(MessageType.REQUEST, message_id, route, data))
        await self.send(encode_packet(PacketType.DATA, body), byte_by_byte=byte_by_byte)
        return message_id

    async def request(self, route: str, data: bytes, *, byte_by_byte: bool = False) -> Message:
        message_id = await self.send_request(route, data, byte_by_byte=byte_by_byte)
        while True:
            packet = await self.read_packet()
            if packet.type is PacketType.DATA:
                message = decode_message(packet.body)
                if message.type is MessageType.RESPONSE and message.id == message_id:
                    return message

    async def read_until_closed(self, timeout: float = 5) -> list[Packet]:
        """Every packet the server sends until it closes the connection (bounded)."""
        packets = list(self.buffered)
        self.buffered.clear()

        async def drain() -> None:
            while chunk := await self.reader.read(65536):
                packets.extend(self.decoder.feed(chunk))

        try:
            await asyncio.wait_for(drain(), timeout)
        finally:
            self.writer.close()
        return packets

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
