"""MemoryAcceptor: the Connection contract over in-memory pipes, and a Client over them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from transport.acceptor import Acceptor, Connection, ConnectionHandler, ConnectionLimits
from transport.client import Client
from transport.connection import (
    HandshakeAcked,
    HandshakeReceived,
    MessageReceived,
    ServerConnection,
)
from transport.errors import ConnectionClosed
from transport.memory import MemoryAcceptor, MemoryChannel
from transport.message import Message, MessageType


class Recorder:
    """A ConnectionHandler that records what it gets and, if asked, echoes it."""

    def __init__(self, conn: Connection, *, echo: bool = False) -> None:
        self.conn = conn
        self.echo = echo
        self.chunks: list[bytes] = []
        self.lost: list[BaseException | None] = []

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.echo:
            self.conn.write(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


async def started(*, echo: bool = False, **options: Any) -> tuple[MemoryAcceptor, list[Recorder]]:
    acceptor = MemoryAcceptor(**options)
    handlers: list[Recorder] = []

    def accept(conn: Connection) -> ConnectionHandler:
        handlers.append(Recorder(conn, echo=echo))
        return handlers[-1]

    await acceptor.start(accept)
    return acceptor, handlers


async def next_iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_it_is_an_acceptor_with_a_unique_address() -> None:
    one, two = MemoryAcceptor(), MemoryAcceptor()
    assert isinstance(one, Acceptor)
    assert one.kind == "memory"
    assert one.address[0] == "memory" and one.address != two.address


async def test_bytes_go_both_ways_in_order() -> None:
    acceptor, handlers = await started(echo=True)
    channel = await acceptor.connect()
    [server] = handlers
    assert server.conn.kind == "memory" and server.conn.remote_address.startswith("memory:")
    await channel.send(b"one")
    await channel.send(b"two")
    assert server.chunks == [b"one", b"two"]
    assert await channel.receive() == b"onetwo"  # writes not yet read arrive together
    server.conn.write(b"three")
    assert await channel.receive() == b"three"


async def test_receive_waits_for_a_write() -> None:
    acceptor, handlers = await started()
    channel = await acceptor.connect()
    reading = asyncio.create_task(channel.receive())
    await next_iteration()
    assert not reading.done()
    handlers[0].conn.write(b"x")
    assert await asyncio.wait_for(reading, 1) == b"x"


async def test_server_close_delivers_what_was_written_then_end_of_stream() -> None:
    acceptor, handlers = await started()
    channel = await acceptor.connect()
    conn = handlers[0].conn
    conn.write(b"bye")
    conn.close()
    conn.write(b"too late")
    assert conn.closed
    assert await channel.receive() == b"bye"
    assert await channel.receive() == b""
    assert handlers[0].lost == []  # not from inside close: on a later loop iteration
    await next_iteration()
    assert handlers[0].lost == [None]
    await channel.send(b"dropped, as by a socket whose peer closed")
    assert handlers[0].chunks == []


async def test_abort_drops_what_the_client_has_not_read() -> None:
    acceptor, handlers = await started()
    channel = await acceptor.connect()
    handlers[0].conn.write(b"lost")
    handlers[0].conn.abort()
    assert await channel.receive() == b""
    await next_iteration()
    assert handlers[0].lost == [None]


async def test_client_close_reaches_the_handler_once() -> None:
    acceptor, handlers = await started()
    channel = await acceptor.connect()
    await channel.close()
    await channel.close()
    with pytest.raises(ConnectionResetError):
        await channel.send(b"x")
    assert await channel.receive() == b""
    handlers[0].conn.close()
    await next_iteration()
    assert handlers[0].lost == [None]
    assert handlers[0].conn.closed
    assert acceptor.connections == set()
    assert acceptor.stats.accepted == 1 and acceptor.stats.active == 0


async def test_stats_and_live_connections() -> None:
    acceptor, handlers = await started()
    channels = [await acceptor.connect() for _ in range(3)]
    assert acceptor.stats.accepted == 3 and acceptor.stats.active == 3
    assert acceptor.connections == {c.server_side for c in channels}
    assert len({h.conn.remote_address for h in handlers}) == 3
    await channels[0].close()
    await next_iteration()
    assert acceptor.stats.active == 2 and len(acceptor.connections) == 2


async def test_a_stopped_acceptor_refuses_new_connections_and_keeps_open_ones() -> None:
    acceptor, _ = await started(echo=True)
    channel = await acceptor.connect()
    await acceptor.stop()
    with pytest.raises(ConnectionRefusedError):
        await acceptor.connect()
    await channel.send(b"still here")
    assert await channel.receive() == b"still here"


async def test_connect_before_start_is_refused_and_start_twice_fails() -> None:
    acceptor = MemoryAcceptor()
    with pytest.raises(ConnectionRefusedError):
        await acceptor.connect()
    await acceptor.start(lambda conn: Recorder(conn))
    with pytest.raises(RuntimeError, match="already started"):
        await acceptor.start(lambda conn: Recorder(conn))


async def test_a_connection_refused_in_on_connection_reads_end_of_stream() -> None:
    acceptor = MemoryAcceptor()
    refused: list[Recorder] = []

    def refuse(conn: Connection) -> ConnectionHandler:
        conn.abort()
        refused.append(Recorder(conn))
        return refused[-1]

    await acceptor.start(refuse)
    channel = await acceptor.connect()
    assert await channel.receive() == b""
    await next_iteration()
    assert refused[0].lost == [None]
    assert acceptor.stats.active == 0


async def test_a_failing_on_connection_aborts_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    acceptor = MemoryAcceptor()

    def broken(conn: Connection) -> ConnectionHandler:
        raise RuntimeError("boom")

    await acceptor.start(broken)
    with caplog.at_level(logging.ERROR, "transport.memory"):
        channel = await acceptor.connect()
    assert await channel.receive() == b""
    assert "on_connection failed" in caplog.text


async def test_a_failing_handler_aborts_its_connection(caplog: pytest.LogCaptureFixture) -> None:
    acceptor = MemoryAcceptor()

    class Broken(Recorder):
        def data_received(self, data: bytes) -> None:
            raise ValueError("bad bytes")

    handlers: list[Recorder] = []
    await acceptor.start(lambda conn: handlers.append(Broken(conn)) or handlers[-1])
    channel = await acceptor.connect()
    with caplog.at_level(logging.ERROR, "transport.memory"):
        await channel.send(b"x")
    assert handlers[0].conn.closed
    assert await channel.receive() == b""
    await next_iteration()
    assert handlers[0].lost == [None]


async def test_a_client_that_does_not_read_is_aborted_past_the_write_limit() -> None:
    acceptor, handlers = await started(limits=ConnectionLimits(max_write_buffer=10))
    channel = await acceptor.connect()
    conn = handlers[0].conn
    conn.write(b"x" * 10)
    assert not conn.closed
    assert await channel.receive() == b"x" * 10  # read: the buffer is empty again
    conn.write(b"y" * 10)
    conn.write(b"z")
    assert conn.closed
    assert acceptor.stats.slow_reader_disconnects == 1
    assert await channel.receive() == b""


class EchoServer:
    """A Pitaya protocol server on the sans-I/O state machine: answers requests with their
    body, pushes every notify back on route ``echo``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.proto = ServerConnection()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        for event in self.proto.receive_data(data):
            if isinstance(event, HandshakeReceived):
                accept = self.proto.accept_handshake(heartbeat=30, routes=None, serializer="json")
                self.conn.write(accept)
            elif isinstance(event, MessageReceived):
                msg = event.message
                if msg.type is MessageType.REQUEST:
                    reply = Message(MessageType.RESPONSE, msg.id, data=msg.data)
                else:
                    reply = Message(MessageType.PUSH, route="echo", data=msg.data)
                self.conn.write(self.proto.encode(reply))
            elif isinstance(event, HandshakeAcked):
                pass

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True


async def test_the_client_speaks_the_protocol_over_a_memory_channel() -> None:
    acceptor = MemoryAcceptor()
    servers: list[EchoServer] = []
    await acceptor.start(lambda conn: servers.append(EchoServer(conn)) or servers[-1])
    channel = await acceptor.connect()
    assert isinstance(channel, MemoryChannel)
    async with await Client.over(channel) as client:
        assert client.handshake_response.heartbeat == 30
        assert await client.request("a.b", {"x": 1}) == {"x": 1}
        await client.notify("a.c", [1, 2])
        push = await anext(aiter(client.pushes()))
        assert (push.route, push.body) == ("echo", [1, 2])
    await next_iteration()
    assert servers[0].lost


async def test_a_client_over_a_closed_channel_fails_its_handshake() -> None:
    acceptor = MemoryAcceptor()
    await acceptor.start(lambda conn: (conn.close(), Recorder(conn))[1])
    with pytest.raises(ConnectionClosed):
        await Client.over(await acceptor.connect(), timeout=1)
