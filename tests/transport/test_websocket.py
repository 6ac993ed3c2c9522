"""WebSocketAcceptor against real sockets, with websockets' asyncio client as the peer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from websockets.frames import Close, Frame, Opcode

from tests.reliability.support import until
from tests.transport.test_tcp import (
    HOST,
    TIMEOUT,
    Hub,
    close_writer,
    read_to_eof,
    running,
    spy_transport_writes,
    tls_contexts,
)
from transport import listener
from transport.acceptor import Acceptor, Connection, ConnectionLimits
from transport.partial import PartialBudget
from transport.websocket import HttpResponse, WebSocketAcceptor, max_fragments

UPGRADE_REQUEST = (
    b"GET /raw HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def client(port: int, path: str = "/", **kwargs: object) -> connect:
    """websockets' client with no proxy from the environment and no keepalive pings."""
    return connect(
        f"ws://{HOST}:{port}{path}",
        proxy=None,
        ping_interval=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        **kwargs,  # type: ignore[arg-type]
    )


async def recv(ws: ClientConnection) -> bytes | str:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def raw_http(port: int, request: bytes) -> bytes:
    """Send ``request`` on a plain socket and return everything until the server hangs up."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request)
    response = await read_to_eof(reader)
    await close_writer(writer)
    return response


async def test_satisfies_acceptor_protocol() -> None:
    acceptor = WebSocketAcceptor(HOST, 0)
    assert isinstance(acceptor, Acceptor)
    assert acceptor.kind == "ws"
    async with running(acceptor, Hub()) as (_, port):
        assert port > 0


async def test_binary_echo_any_path() -> None:
    hub = Hub()
    acceptor = WebSocketAcceptor(HOST, 0)
    async with running(acceptor, hub) as (_, port), client(port, "/any/deep/path?x=1") as ws:
        handler = await hub.next()
        assert isinstance(handler.conn, Connection)
        assert handler.conn.kind == "ws"
        await ws.send(b"\x01\x02\x03")
        assert await recv(ws) == b"\x01\x02\x03"
        assert handler.chunks == [b"\x01\x02\x03"]
        assert acceptor.stats.accepted == 1
        assert acceptor.stats.active == 1


async def test_each_write_is_one_frame_and_one_transport_write() -> None:
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port), client(port) as ws:
        handler = await hub.next()
        calls = spy_transport_writes(handler.conn)
        for packet in (b"a", b"bb", b"ccc"):
            handler.conn.write(packet)
        assert [await recv(ws) for _ in range(3)] == [b"a", b"bb", b"ccc"]
        assert len(calls) == 1


async def test_text_and_fragmented_messages_reach_handler_as_bytes() -> None:
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port), client(port) as ws:
        handler = await hub.next()
        await ws.send("text")
        await ws.send([b"frag", b"ments"])
        await handler.wait_bytes(len(b"textfragments"))
        assert handler.chunks == [b"text", b"fragments"]


async def test_a_message_in_1_kib_fragments_is_reassembled() -> None:
    """websocket-sharp (Unity clients) sends a message longer than 1,016 bytes in fragments
    of 1,016: a 1 MiB message is about 1,030 frames."""
    hub = Hub(echo=False)
    message = bytes(range(256)) * 4096  # 1 MiB
    fragments = [message[i : i + 1016] for i in range(0, len(message), 1016)]
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port), client(port) as ws:
        handler = await hub.next()
        await ws.send(fragments)
        assert await handler.wait_bytes(len(message)) == message
        assert handler.chunks == [message]


async def test_a_message_in_too_many_fragments_fails_the_connection_with_1008() -> None:
    """1-byte fragments cost a frame's parsing and bookkeeping each: a 1 MiB message in them
    held 45 MiB. More frames than max_fragments (2,048 for 1 MiB messages) close the
    connection before the message is complete."""
    hub = Hub(echo=False)
    limit = max_fragments(1024 * 1024)
    assert limit == 2048
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port), client(port) as ws:
        handler = await hub.next()
        with pytest.raises(ConnectionClosedError):
            await ws.send([b"x"] * (limit + 1))
            await recv(ws)
        assert ws.close_code == 1008
        assert ws.close_reason == "message in too many fragments"
        assert await handler.wait_lost() is None
        assert handler.chunks == []


async def test_ping_is_answered() -> None:
    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port), client(port) as ws:
        await hub.next()
        pong = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(pong, TIMEOUT)
        assert latency >= 0


async def test_client_close_loses_connection_once() -> None:
    hub = Hub()
    acceptor = WebSocketAcceptor(HOST, 0)
    async with running(acceptor, hub) as (_, port):
        async with client(port) as ws:
            handler = await hub.next()
        assert ws.close_code == 1000
        assert await handler.wait_lost() is None
        await asyncio.sleep(0)  # give a hypothetical second call its chance
        assert handler.lost_calls == 1
        assert handler.conn.closed
        assert acceptor.stats.active == 0


async def test_server_close_sends_pending_then_close_1000() -> None:
    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        async with client(port) as ws:
            handler = await hub.next()
            handler.conn.write(b"bye")
            handler.conn.close()
            handler.conn.write(b"ignored")
            assert await recv(ws) == b"bye"
            with pytest.raises(ConnectionClosedOK):
                await recv(ws)
            assert ws.close_code == 1000
        await handler.wait_lost()
        assert handler.lost_calls == 1


async def test_server_abort_loses_connection_once() -> None:
    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        async with client(port) as ws:
            handler = await hub.next()
            handler.conn.abort()
            with pytest.raises(ConnectionClosedError):
                await recv(ws)
        await handler.wait_lost()
        assert handler.lost_calls == 1


async def test_oversized_frame_closes_with_1009() -> None:
    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0, max_frame_size=1024), hub) as (_, port):
        async with client(port) as ws:
            handler = await hub.next()
            await ws.send(b"x" * 1024)  # at the limit: fine
            assert await recv(ws) == b"x" * 1024
            await ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosedError):
                await recv(ws)
            assert ws.close_code == 1009
        await handler.wait_lost()
        assert handler.data == b"x" * 1024


async def test_plain_get_served_by_http_handler() -> None:
    def page(path: str) -> HttpResponse | None:
        if path == "/index.html":
            return HttpResponse(200, "text/html; charset=utf-8", b"<h1>chat</h1>")
        return None

    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0, http_handler=page), hub) as (_, port):
        served = await raw_http(port, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        assert served.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/html; charset=utf-8\r\n" in served
        assert served.endswith(b"\r\n\r\n<h1>chat</h1>")
        missing = await raw_http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert missing.startswith(b"HTTP/1.1 426 ")
        async with client(port, "/index.html") as ws:  # upgrades still work on any path
            await ws.send(b"hi")
            assert await recv(ws) == b"hi"
        assert hub.calls == 1


async def test_plain_get_without_handler_is_426_and_garbage_is_400() -> None:
    hub = Hub()
    acceptor = WebSocketAcceptor(HOST, 0)
    async with running(acceptor, hub) as (_, port):
        response = await raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
        garbage = await raw_http(port, b"\x16\x03\x01 not http at all\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert hub.calls == 0
        assert acceptor.stats.accepted == 0


async def test_on_connection_raising_does_not_kill_listener() -> None:
    hub = Hub(fail_first=1)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        with pytest.raises((InvalidHandshake, OSError)):  # aborted before the 101 went out
            async with client(port):
                pass
        async with client(port) as ws:
            await ws.send(b"ok")
            assert await recv(ws) == b"ok"


async def test_stop_refuses_new_but_keeps_existing_connections() -> None:
    hub = Hub()
    acceptor = WebSocketAcceptor(HOST, 0)
    async with running(acceptor, hub) as (_, port), client(port) as ws:
        await hub.next()
        await acceptor.stop()
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)
        await ws.send(b"still")
        assert await recv(ws) == b"still"


async def test_slow_reader_is_aborted_and_others_are_unaffected() -> None:
    hub = Hub()
    acceptor = WebSocketAcceptor(HOST, 0, limits=ConnectionLimits(max_write_buffer=64 * 1024))
    async with running(acceptor, hub) as (_, port):
        _, slow_writer = await asyncio.open_connection(HOST, port)
        slow_writer.write(UPGRADE_REQUEST)  # upgrade, then never read a byte
        slow = await hub.next()

        async def flood() -> None:
            chunk = b"x" * (256 * 1024)
            while not slow.conn.closed:
                slow.conn.write(chunk)
                await asyncio.sleep(0)  # let the flush run: one frame per iteration

        flooding = asyncio.create_task(flood())
        async with client(port) as ws:
            await ws.send(b"fine")
            assert await recv(ws) == b"fine"
            await slow.wait_lost()
            await asyncio.wait_for(flooding, TIMEOUT)
            assert acceptor.stats.slow_reader_disconnects == 1
            await ws.send(b"still fine")
            assert await recv(ws) == b"still fine"
        await close_writer(slow_writer)


async def test_wss_with_tls() -> None:
    server_ctx, client_ctx = tls_contexts()
    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0, ssl=server_ctx), hub) as (_, port):
        plain_reader, plain_writer = await asyncio.open_connection(HOST, port)
        plain_writer.write(UPGRADE_REQUEST)  # ws:// against a wss:// port
        await read_to_eof(plain_reader)
        await close_writer(plain_writer)
        async with connect(
            f"wss://{HOST}:{port}/secure",
            ssl=client_ctx,
            proxy=None,
            ping_interval=None,
            open_timeout=TIMEOUT,
        ) as ws:
            await ws.send(b"secret")
            assert await recv(ws) == b"secret"
        assert hub.calls == 1


async def test_frame_then_close_in_one_chunk_is_delivered_without_error() -> None:
    """The handler's echo of a frame that arrived with the close frame must be a no-op."""
    hub = Hub()  # echoes: it writes while the state machine already saw the close
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(UPGRADE_REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 ")
        handler = await hub.next()
        data = Frame(Opcode.BINARY, b"last words").serialize(mask=True, extensions=[])
        close = Frame(Opcode.CLOSE, Close(1000, "").serialize()).serialize(mask=True, extensions=[])
        writer.write(data + close)
        assert await handler.wait_lost() is None
        assert handler.chunks == [b"last words"]
        echoed_close = Frame(Opcode.CLOSE, Close(1000, "").serialize()).serialize(
            mask=False, extensions=[]
        )
        assert await read_to_eof(reader) == echoed_close
        await close_writer(writer)


async def test_server_close_is_bounded_when_peer_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listener, "CLOSE_TIMEOUT", 0.05)
    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(UPGRADE_REQUEST)  # then never answers the close frame
        handler = await hub.next()
        handler.conn.close()
        await handler.wait_lost()
        assert handler.lost_calls == 1
        await read_to_eof(reader)
        await close_writer(writer)


async def test_garbage_pipelined_after_a_request_closes_without_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Found by tests/reliability/test_hostile.py: the bytes after the request are parsed as
    # frames, fail, and the state machine ends the connection before we answer the request.
    async with running(WebSocketAcceptor(HOST, 0), Hub()) as (_, port):
        await raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        await raw_http(port, UPGRADE_REQUEST + b"not a frame")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_unfinished_upgrade_is_aborted_after_the_open_timeout() -> None:
    acceptor = WebSocketAcceptor(HOST, 0, limits=ConnectionLimits(open_timeout=0.05))
    async with running(acceptor, Hub()) as (_, port):
        assert await raw_http(port, b"GET / HTTP/1.1\r\n") == b""


async def upgraded(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain socket past the upgrade, to send frames by hand."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(UPGRADE_REQUEST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def binary_frame(size: int, *, fin: bool = True, continuation: bool = False) -> bytes:
    return frame(Opcode.CONT if continuation else Opcode.BINARY, bytes(size), fin=fin)


def frame(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    """One frame as a client sends it (masked)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def server_close_frame(code: int, reason: str = "") -> bytes:
    """The close frame the server sends (unmasked) with ``code`` and ``reason``."""
    return Frame(Opcode.CLOSE, Close(code, reason).serialize()).serialize(mask=False, extensions=[])


def fragments(count: int) -> list[bytes]:
    """A message of ``count`` bytes in ``count`` frames."""
    return [
        frame(Opcode.BINARY if i == 0 else Opcode.CONT, b"x", fin=i == count - 1)
        for i in range(count)
    ]


def peer_of(writer: asyncio.StreamWriter) -> str:
    """``host:port`` of our end of the socket, as the server names its peer."""
    return "{}:{}".format(*writer.get_extra_info("sockname"))


def told(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines about what peers did (each at info or debug: see the throttle test)."""
    return [r.getMessage() for r in caplog.records if "ws peer" in r.getMessage()]


@contextlib.contextmanager
def loop_errors() -> Iterator[list[dict[str, object]]]:
    """What reaches the running loop's exception handler (a protocol callback that raised)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


async def test_unfinished_frames_and_messages_count_in_the_server_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer's partial frame (websockets' read buffer, past the frame's 8-byte header) and
    the fragments of its unfinished message both count; past the budget the largest holder
    is aborted (the line says which peer), the others kept."""
    budget = PartialBudget(120_000)
    hub = Hub(echo=False)
    acceptor = WebSocketAcceptor(HOST, 0, partial_budget=budget)
    async with running(acceptor, hub) as (_, port):
        hoarder_reader, hoarder = await upgraded(port)
        hoarder_handler = await hub.next()
        hoarder.write(binary_frame(60_000)[: 8 + 55_000])
        _, fragmenter = await upgraded(port)
        fragmenter_handler = await hub.next()
        fragmenter.write(binary_frame(30_000, fin=False))  # a whole first fragment
        middle = binary_frame(20_000, fin=False, continuation=True)
        fragmenter.write(middle[: 8 + 5_000])
        await until(lambda: budget.held == 55_000 + 30_000 + 5_000)
        fragmenter.write(middle[8 + 5_000 :])
        await until(lambda: budget.held == 55_000 + 50_000)
        _, third = await upgraded(port)
        third.write(binary_frame(30_000)[: 8 + 20_000])  # 125,000: the hoarder goes
        assert await read_to_eof(hoarder_reader) == b""
        assert await hoarder_handler.wait_lost() is None
        await until(lambda: budget.held == 70_000)
        assert budget.dropped == 1
        [dropping] = [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]
        assert f"dropping ws peer {peer_of(hoarder)}, which held 55000" in dropping
        fragmenter.write(binary_frame(10, continuation=True))  # the message ends
        assert len(await fragmenter_handler.wait_bytes(50_010)) == 50_010
        await until(lambda: budget.held == 20_000)
        for writer in (hoarder, fragmenter, third):
            await close_writer(writer)
        await until(lambda: budget.held == 0)


async def test_what_peers_do_wrong_is_logged_at_info_once_per_10_s_each_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any peer may send a bad request, a plain GET or an upgrade it never finishes, as
    often as it connects: that made an info line per connection."""
    caplog.set_level(logging.DEBUG, logger="transport.websocket")
    acceptor = WebSocketAcceptor(HOST, 0)
    async with running(acceptor, Hub()) as (_, port):
        for _ in range(3):
            response = await raw_http(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 426 ")
        for _ in range(2):
            garbage = await raw_http(port, b"\x16\x03\x01 not http at all\r\n\r\n")
            assert garbage.startswith(b"HTTP/1.1 400 ")
        told = [r for r in caplog.records if "ws peer" in r.getMessage()]
        assert [r.levelno for r in told] == [logging.INFO] + [logging.DEBUG] * 4
        acceptor._peer_faults._last = -100.0  # 10 s later
        await raw_http(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        last = [r for r in caplog.records if "ws peer" in r.getMessage()][-1]
        assert last.levelno == logging.INFO
        assert last.getMessage().endswith(
            "/x' answered 426 (4 more since the last such line, not logged)"
        )
