"""The baseline: the least a Python server must do to answer the same requests.

A bare ``asyncio.Protocol`` per connection that frames with :class:`PacketDecoder`, answers
the handshake with a pre-encoded response, and echoes every DATA packet's data as a RESPONSE
with the same id, using the same sans-I/O message codec as the framework. For the broadcast
benchmark it also serves ``bench.join`` (remember the connection) and ``bench.fanout`` (write
one pre-framed push to every member, one broadcast per event-loop iteration; in burst mode,
all of them in one write per member). No actors, no
sessions, no serializer, no handler: the ratio ``framework / baseline`` is therefore the cost
of the framework itself on top of Python networking and the wire codecs. Over WebSocket it
drives websockets' sans-I/O ``ServerProtocol``, as our acceptor does.

Run: ``python -m tests.bench.baseline_server --port 0 [--ws-port 0] [--loop uvloop]``; prints
``{"tcp": port, "ws": port, "pid": pid}``, answers ``stats``, exits on ``stop``/end of stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
from typing import Any, cast

import psutil
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tests.bench.harness import HOST, add_common_args, emit, raise_fd_limit, run, serve_commands
from tests.bench.wire import FANOUT_ROUTE, JOIN_ROUTE, PUSH_ROUTE, TICK
from transport.handshake import encode_handshake_response
from transport.message import Message, MessageType, RouteDictionary, decode_message, encode_message
from transport.packet import PacketDecoder, PacketType, encode_packet

ROUTES = RouteDictionary({"echo.echo": 1, JOIN_ROUTE: 2, FANOUT_ROUTE: 3})
HANDSHAKE_RESPONSE = encode_packet(
    PacketType.HANDSHAKE,
    encode_handshake_response(heartbeat=30, routes=ROUTES.as_dict(), serializer="json"),
)
PUSH_PACKET = encode_packet(
    PacketType.DATA,
    encode_message(Message(MessageType.PUSH, route=PUSH_ROUTE, data=json.dumps(TICK).encode())),
)
_DATA = PacketType.DATA
_HANDSHAKE = PacketType.HANDSHAKE
_RESPONSE = MessageType.RESPONSE

open_connections = 0
members: set[Baseline] = set()


def response(message_id: int, data: bytes) -> bytes:
    return encode_packet(_DATA, encode_message(Message(_RESPONSE, message_id, data=data)))


class Baseline(asyncio.Protocol):
    """Echo (and the broadcast benchmark's two routes) for one connection."""

    push: bytes = PUSH_PACKET
    """What one broadcast writes to this connection (framed once for every member)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        global open_connections
        open_connections += 1
        self.transport = cast(asyncio.Transport, transport)
        self.decoder = PacketDecoder()

    def connection_lost(self, exc: Exception | None) -> None:
        global open_connections
        open_connections -= 1
        members.discard(self)

    def send(self, packets: list[bytes]) -> None:
        self.transport.write(b"".join(packets))

    def answer(self, data: bytes) -> None:
        """Send back echo responses and the handshake response for the packets in ``data``."""
        out: list[bytes] = []
        for packet in self.decoder.feed(data):
            if packet.type is _DATA:
                request = decode_message(packet.body, routes=ROUTES)
                if request.route == "echo.echo":
                    out.append(response(request.id, request.data))
                elif request.route == JOIN_ROUTE:
                    members.add(self)
                    size = json.dumps({"packet_size": len(PUSH_PACKET)}).encode()
                    out.append(response(request.id, size))
                elif request.route == FANOUT_ROUTE:
                    asked = json.loads(request.data)
                    fanout = self.fanout(request.id, asked["messages"], asked.get("burst", False))
                    asyncio.get_running_loop().create_task(fanout)
            elif packet.type is _HANDSHAKE:
                out.append(HANDSHAKE_RESPONSE)
            # handshake ack and heartbeats need no answer
        if out:
            self.send(out)

    async def fanout(self, message_id: int, messages: int, burst: bool) -> None:
        """One broadcast per loop iteration, as a server that also serves requests must;
        with ``burst``, all of them at once: one write per member."""
        if burst:
            for member in list(members):
                member.transport.write(member.push * messages)
        else:
            for _ in range(messages):
                for member in list(members):
                    member.transport.write(member.push)
                await asyncio.sleep(0)
        self.send([response(message_id, json.dumps({"sent": messages, "unreached": 0}).encode())])


class EchoTcp(Baseline):
    def data_received(self, data: bytes) -> None:
        self.answer(data)


class EchoWebSocket(Baseline):
    """One packet per binary frame, both ways."""

    push = Frame(Opcode.BINARY, PUSH_PACKET).serialize(mask=False)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ws = ServerProtocol()

    def send(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.ws.send_binary(packet)
        self.transport.write(b"".join(self.ws.data_to_send()))

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                self.answer(bytes(event.data))
            elif isinstance(event, Request):
                ws.send_response(ws.accept(event))
        out = ws.data_to_send()
        if out:
            self.transport.write(b"".join(out))
            if out[-1] == b"":  # SEND_EOF: the state machine is done with the connection
                self.transport.close()


def stats() -> dict[str, Any]:
    gc.collect()
    return {"rss": psutil.Process().memory_info().rss, "connections": open_connections}


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    tcp = await loop.create_server(EchoTcp, HOST, args.port, backlog=1024)
    ws = await loop.create_server(EchoWebSocket, HOST, args.ws_port, backlog=1024)
    emit(
        {
            "tcp": tcp.sockets[0].getsockname()[1],
            "ws": ws.sockets[0].getsockname()[1],
            "pid": os.getpid(),
        }
    )
    try:
        await serve_commands({"stats": stats}, args.max_seconds)
    finally:
        tcp.close()
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--ws-port", type=int, default=0, help="WebSocket port (0: any)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="hard lifetime")
    args = parser.parse_args()
    raise_fd_limit()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
