"""TcpAcceptor against real sockets on 127.0.0.1.

The helpers at the top (Recorder, Hub, tls_contexts) are reused by test_websocket.py.
Every wait is bounded by TIMEOUT and synchronises on futures/events, never on sleeps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import ssl
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from transport.acceptor import Acceptor, Connection, ConnectionLimits
from transport.listener import BURST_READ_SIZE, READ_BUFFER_SIZE
from transport.tcp import TcpAcceptor

TIMEOUT = 5.0
HOST = "127.0.0.1"


class Recorder:
    """A ConnectionHandler that records what it gets and, if asked, echoes it."""

    def __init__(self, conn: Connection, *, echo: bool) -> None:
        self.conn = conn
        self.echo = echo
        self.chunks: list[bytes] = []
        self.lost_calls = 0
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.echo:
            self.conn.write(data)
        self._changed.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost_calls += 1
        if not self.lost.done():
            self.lost.set_result(exc)

    async def wait_bytes(self, n: int) -> bytes:
        async def until() -> None:
            while len(self.data) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), TIMEOUT)
        return self.data

    async def wait_lost(self) -> BaseException | None:
        return await asyncio.wait_for(asyncio.shield(self.lost), TIMEOUT)


class Hub:
    """An ``on_connection`` that keeps every handler; the first ``fail_first`` calls raise."""

    def __init__(self, *, echo: bool = True, fail_first: int = 0) -> None:
        self.echo = echo
        self.fail_first = fail_first
        self.calls = 0
        self.all: list[Recorder] = []
        self._new: asyncio.Queue[Recorder] = asyncio.Queue()

    def __call__(self, conn: Connection) -> Recorder:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("on_connection refuses this one")
        handler = Recorder(conn, echo=self.echo)
        self.all.append(handler)
        self._new.put_nowait(handler)
        return handler

    async def next(self) -> Recorder:
        return await asyncio.wait_for(self._new.get(), TIMEOUT)

    async def abort_all(self) -> None:
        for handler in self.all:
            handler.conn.abort()
        for handler in self.all:
            await handler.wait_lost()


@contextlib.asynccontextmanager
async def running(acceptor: Any, hub: Hub) -> AsyncIterator[tuple[str, int]]:
    """Start ``acceptor`` with ``hub``; on exit stop it and abort what is left."""
    await acceptor.start(hub)
    try:
        yield acceptor.address
    finally:
        await acceptor.stop()
        await hub.abort_all()


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for 127.0.0.1 and a client trusting it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Read until EOF; a reset counts as EOF (an aborted peer may send RST)."""
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    except ConnectionResetError:
        return b""


async def test_satisfies_acceptor_protocol_and_reports_port() -> None:
    acceptor = TcpAcceptor(HOST, 0)
    assert isinstance(acceptor, Acceptor)
    assert acceptor.kind == "tcp"
    assert acceptor.address == (HOST, 0)
    async with running(acceptor, Hub()) as (host, port):
        assert host == HOST
        assert port > 0


async def test_echo_round_trip() -> None:
    hub = Hub()
    acceptor = TcpAcceptor(HOST, 0)
    async with running(acceptor, hub) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        handler = await hub.next()
        assert isinstance(handler.conn, Connection)
        assert handler.conn.kind == "tcp"
        assert handler.conn.remote_address == "{}:{}".format(*writer.get_extra_info("sockname"))
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), TIMEOUT) == b"hello"
        assert acceptor.stats.accepted == 1
        assert acceptor.stats.active == 1
        await close_writer(writer)
        await handler.wait_lost()
        assert acceptor.stats.active == 0


async def test_many_small_writes_arrive_in_order() -> None:
    hub = Hub(echo=False)
    async with running(TcpAcceptor(HOST, 0), hub) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        handler = await hub.next()
        count = 5000
        for i in range(count):  # spread over many loop iterations, many writes in each
            handler.conn.write(struct.pack(">I", i))
            if i % 97 == 0:
                await asyncio.sleep(0)
        received = await asyncio.wait_for(reader.readexactly(4 * count), TIMEOUT)
        assert list(struct.unpack(f">{count}I", received)) == list(range(count))
        # and the other direction: the handler sees the client's bytes in order
        sent = b"".join(struct.pack(">I", i) for i in range(count))
        for i in range(0, len(sent), 7):
            writer.write(sent[i : i + 7])
        assert await handler.wait_bytes(len(sent)) == sent
        await close_writer(writer)


def spy_transport_writes(conn: object) -> list[int]:
    """The sizes of the writes that reach ``conn``'s asyncio transport, as they happen.

    Private access on purpose: it counts what the coalescing hands to the transport.
    """
    transport = conn._transport  # type: ignore[attr-defined]
    calls: list[int] = []
    real_write = transport.write

    def spy(data: bytes) -> None:
        calls.append(len(data))
        real_write(data)

    transport.write = spy
    return calls


async def test_writes_in_one_iteration_are_one_transport_write() -> None:
    hub = Hub(echo=False)
    async with running(TcpAcceptor(HOST, 0), hub) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        handler = await hub.next()
        calls = spy_transport_writes(handler.conn)
        for i in range(100):
            handler.conn.write(bytes([i]) * 10)
        assert calls == []  # nothing written until the loop turns
        received = await asyncio.wait_for(reader.readexactly(1000), TIMEOUT)
        assert received == b"".join(bytes([i]) * 10 for i in range(100))
        assert calls == [1000]
        await close_writer(writer)


async def test_connection_lost_once_when_client_closes() -> None:
    hub = Hub()
    async with running(TcpAcceptor(HOST, 0), hub) as (host, port):
        _, writer = await asyncio.open_connection(host, port)
        handler = await hub.next()
        await close_writer(writer)
        assert await handler.wait_lost() is None
        await asyncio.sleep(0)  # give a hypothetical second call its chance
        assert handler.lost_calls == 1
        assert handler.conn.closed


async def test_server_close_flushes_then_closes() -> None:
    hub = Hub()
    async with running(TcpAcceptor(HOST, 0), hub) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        handler = await hub.next()
        handler.conn.write(b"bye")
        handler.conn.close()
        handler.conn.close()  # idempotent
        handler.conn.write(b"ignored")  # no-op after close
        assert handler.conn.closed
        assert await read_to_eof(reader) == b"bye"
        await handler.wait_lost()
        assert handler.lost_calls == 1
        await close_writer(writer)


async def test_server_abort_drops_pending_and_loses_once() -> None:
    hub = Hub()
    async with running(TcpAcceptor(HOST, 0), hub) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        handler = await hub.next()
        handler.conn.write(b"dropped")
        handler.conn.abort()
        handler.conn.abort()
        assert await read_to_eof(reader) == b""
        await handler.wait_lost()
        assert handler.lost_calls == 1
        await close_writer(writer)


async def test_on_connection_raising_does_not_kill_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(fail_first=1)
    acceptor = TcpAcceptor(HOST, 0)
    async with running(acceptor, hub) as (host, port):
        reader1, writer1 = await asyncio.open_connection(host, port)
        assert await read_to_eof(reader1) == b""
        assert "on_connection failed" in caplog.text
        reader2, writer2 = await asyncio.open_connection(host, port)
        writer2.write(b"still here")
        assert await asyncio.wait_for(reader2.readexactly(10), TIMEOUT) == b"still here"
        assert acceptor.stats.accepted == 1
        await close_writer(writer1)
        await close_writer(writer2)


async def test_stop_refuses_new_but_keeps_existing_connections() -> None:
    hub = Hub()
    acceptor = TcpAcceptor(HOST, 0)
    async with running(acceptor, hub) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        await hub.next()
        await acceptor.stop()
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"ping"
        assert acceptor.address == (host, port)
        await close_writer(writer)


async def test_slow_reader_is_aborted_and_others_are_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub()
    acceptor = TcpAcceptor(HOST, 0, limits=ConnectionLimits(max_write_buffer=64 * 1024))
    async with running(acceptor, hub) as (host, port):
        _, slow_writer = await asyncio.open_connection(host, port)  # never reads
        slow = await hub.next()

        async def flood() -> None:
            chunk = b"x" * (256 * 1024)
            while not slow.conn.closed:
                slow.conn.write(chunk)
                await asyncio.sleep(0)  # let the flush run: one chunk per iteration

        flooding = asyncio.create_task(flood())
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"fine")
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"fine"
        await slow.wait_lost()
        await asyncio.wait_for(flooding, TIMEOUT)
        assert acceptor.stats.slow_reader_disconnects == 1
        assert slow.conn.remote_address in caplog.text
        writer.write(b"still fine")
        assert await asyncio.wait_for(reader.readexactly(10), TIMEOUT) == b"still fine"
        await close_writer(writer)
        await close_writer(slow_writer)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_pipelining_client_is_read_once_per_loop_iteration(loop: str) -> None:
    """A client with more bytes waiting than a read takes (a flood of pipelined requests) is
    read once per loop iteration, in small reads after a full one: the other clients' bytes
    are read in between. uvloop read such a socket up to 32 times per readable event."""
    import uvloop

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        reads, flooded_before_the_other_was_served = runner.run(flood_and_ping(4 * 1024 * 1024))
    per_iteration = collections.Counter(iteration for iteration, _ in reads)
    assert max(per_iteration.values()) == 1
    sizes = [size for _, size in reads]
    after_full = [later for size, later in itertools.pairwise(sizes) if size == READ_BUFFER_SIZE]
    assert after_full and max(after_full) <= BURST_READ_SIZE
    assert flooded_before_the_other_was_served < 512 * 1024


async def flood_and_ping(size: int) -> tuple[list[tuple[int, int]], int]:
    """Flood one connection with ``size`` bytes and send 4 on another; returns the flooded
    connection's reads as (loop iteration, bytes) and how much of the flood had been read
    when the other connection's 4 bytes were."""
    loop = asyncio.get_running_loop()
    iteration = 0
    ticking = True

    def tick() -> None:
        nonlocal iteration
        iteration += 1
        if ticking:
            loop.call_soon(tick)

    hub = Hub(echo=False)
    async with running(TcpAcceptor(HOST, 0), hub) as (host, port):
        _, flood_writer = await asyncio.open_connection(host, port)
        flooded = await hub.next()
        _, other_writer = await asyncio.open_connection(host, port)
        other = await hub.next()
        reads: list[tuple[int, int]] = []
        record = flooded.data_received

        def counted(data: bytes) -> None:
            reads.append((iteration, len(data)))
            record(data)

        flooded.data_received = counted  # type: ignore[method-assign]
        loop.call_soon(tick)
        flood_writer.write(b"x" * size)
        other_writer.write(b"ping")
        await other.wait_bytes(4)
        flooded_then = len(flooded.data)
        await flooded.wait_bytes(size)
        ticking = False
        await close_writer(flood_writer)
        await close_writer(other_writer)
    return reads, flooded_then


async def test_tls_client_works_and_plain_client_fails_handshake() -> None:
    server_ctx, client_ctx = tls_contexts()
    hub = Hub()
    acceptor = TcpAcceptor(HOST, 0, ssl=server_ctx)
    async with running(acceptor, hub) as (host, port):
        plain_reader, plain_writer = await asyncio.open_connection(host, port)
        plain_writer.write(b"GET / HTTP/1.0\r\n\r\n")
        await read_to_eof(plain_reader)  # whatever alert comes back, the server hangs up
        reader, writer = await asyncio.open_connection(
            host, port, ssl=client_ctx, server_hostname=HOST
        )
        writer.write(b"secret")
        assert await asyncio.wait_for(reader.readexactly(6), TIMEOUT) == b"secret"
        assert acceptor.stats.accepted == 1  # the plain client never reached on_connection
        assert hub.calls == 1
        await close_writer(plain_writer)
        await close_writer(writer)


async def test_reuse_port_lets_two_acceptors_share_a_port_and_both_serve() -> None:
    first = TcpAcceptor(HOST, 0, reuse_port=True)
    first_hub = Hub()
    async with running(first, first_hub) as (_, port):
        # Without SO_REUSEPORT on both, the port is taken.
        with pytest.raises(OSError):
            await TcpAcceptor(HOST, port).start(Hub())
        second = TcpAcceptor(HOST, port, reuse_port=True)
        second_hub = Hub()
        async with running(second, second_hub) as (_, second_port):
            assert second_port == port
            # The kernel spreads connections by a hash of the client's address: open
            # connections until both acceptors have one (almost always within a few).
            writers = []
            for _ in range(200):
                reader, writer = await asyncio.open_connection(HOST, port)
                writers.append(writer)
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                if first_hub.all and second_hub.all:
                    break
            assert first_hub.all and second_hub.all
            assert len(first_hub.all) + len(second_hub.all) == len(writers)
            for writer in writers:
                await close_writer(writer)


async def test_slow_readers_are_logged_at_warning_once_per_10_s_each_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer can open connections that never read, as many as it likes: one warning line
    each was a flood."""
    caplog.set_level(logging.DEBUG, logger="transport.listener")
    hub = Hub()
    acceptor = TcpAcceptor(HOST, 0, limits=ConnectionLimits(max_write_buffer=64 * 1024))
    async with running(acceptor, hub) as (host, port):
        writers = []
        for _ in range(2):
            _, writer = await asyncio.open_connection(host, port)  # never reads
            writers.append(writer)
            slow = await hub.next()
            while not slow.conn.closed:
                slow.conn.write(b"x" * (256 * 1024))
                await asyncio.sleep(0)  # let the flush run: one chunk per iteration
            await slow.wait_lost()
        assert acceptor.stats.slow_reader_disconnects == 2
        for writer in writers:
            await close_writer(writer)
    lines = [r for r in caplog.records if "does not read" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.DEBUG]
