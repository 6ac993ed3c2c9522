"""WebSocketAcceptor against real sockets, with websockets' asyncio client as the peer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from websockets.frames import Close, CloseCode, Frame, Opcode

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
    opcode = Opcode.CONT if continuation else Opcode.BINARY
    return Frame(opcode, bytes(size), fin=fin).serialize(mask=True)


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


# -- what a peer's frames and bytes do ---------------------------------------------------------


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


def test_a_message_may_come_in_64_frames_whatever_its_size_limit() -> None:
    assert max_fragments(0) == 64
    assert max_fragments(64 * 512) == 64
    assert max_fragments(64 * 512 + 511) == 64
    assert max_fragments(65 * 512) == 65
    assert max_fragments(1024 * 1024) == 2048


async def test_a_message_in_exactly_max_fragments_frames_is_delivered_one_more_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The limit counts every frame of the message, the first one too; frames the peer sent
    after the one over the limit (in the same write) are neither delivered nor told again."""
    caplog.set_level(logging.DEBUG, logger="transport.websocket")
    hub = Hub(echo=False)
    acceptor = WebSocketAcceptor(HOST, 0, max_frame_size=1024)
    async with running(acceptor, hub) as (_, port):
        _, writer = await upgraded(port)
        handler = await hub.next()
        writer.write(b"".join(fragments(64)))
        assert await handler.wait_bytes(64) == b"x" * 64
        assert handler.chunks == [b"x" * 64]
        await close_writer(writer)
        reader, writer = await upgraded(port)
        handler = await hub.next()
        writer.write(b"".join(fragments(67)) + frame(Opcode.BINARY, b"after"))
        assert await read_to_eof(reader) == server_close_frame(
            1008, "message in too many fragments"
        )
        assert await handler.wait_lost() is None
        assert handler.chunks == []
        assert told(caplog) == [f"ws peer {peer_of(writer)} sent a message in more than 64 frames"]
        await close_writer(writer)


async def test_control_frames_between_fragments_do_not_end_the_message() -> None:
    """RFC 6455 lets a ping come between the fragments of a message: it is answered, and the
    message is the fragments' bytes alone."""
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        reader, writer = await upgraded(port)
        handler = await hub.next()
        writer.write(
            frame(Opcode.BINARY, b"ab", fin=False)
            + frame(Opcode.PING, b"p")
            + frame(Opcode.PONG, b"q")
            + frame(Opcode.CONT, b"cd")
        )
        pong = Frame(Opcode.PONG, b"p").serialize(mask=False, extensions=[])
        assert await asyncio.wait_for(reader.readexactly(len(pong)), TIMEOUT) == pong
        assert await handler.wait_bytes(4) == b"abcd"
        assert handler.chunks == [b"abcd"]
        await close_writer(writer)


async def test_binary_messages_need_not_be_utf8() -> None:
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port), client(port) as ws:
        handler = await hub.next()
        await ws.send(b"\xff\xfe")
        await ws.send([b"\xc3", b"\x28"])
        assert await handler.wait_bytes(4) == b"\xff\xfe\xc3\x28"
        assert handler.chunks == [b"\xff\xfe", b"\xc3\x28"]


@pytest.mark.parametrize(
    "frames",
    [
        [frame(Opcode.TEXT, b"ok\xff")],
        [frame(Opcode.TEXT, b"ok", fin=False), frame(Opcode.CONT, b"\xff")],
    ],
    ids=["one frame", "fragments"],
)
async def test_a_text_message_that_is_not_utf8_fails_the_connection_with_1007(
    frames: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing of it reaches the handler, nor a binary message sent after it."""
    caplog.set_level(logging.DEBUG, logger="transport.websocket")
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        reader, writer = await upgraded(port)
        handler = await hub.next()
        writer.write(b"".join(frames) + frame(Opcode.BINARY, b"after"))
        assert await read_to_eof(reader) == server_close_frame(
            CloseCode.INVALID_DATA, "invalid UTF-8 at position 2"
        )
        assert await handler.wait_lost() is None
        assert handler.chunks == []
        assert told(caplog) == [f"ws peer {peer_of(writer)} sent a text frame that is not UTF-8"]
        await close_writer(writer)


async def test_a_character_split_between_text_fragments_is_delivered() -> None:
    hub = Hub(echo=False)
    euro = "€".encode()
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        _, writer = await upgraded(port)
        handler = await hub.next()
        writer.write(frame(Opcode.TEXT, euro[:1], fin=False) + frame(Opcode.CONT, euro[1:]))
        assert await handler.wait_bytes(3) == euro
        await close_writer(writer)


async def test_frames_the_peer_sends_after_the_server_closed_are_not_delivered() -> None:
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        reader, writer = await upgraded(port)
        handler = await hub.next()
        handler.conn.close()
        writer.write(
            frame(Opcode.BINARY, b"too late") + frame(Opcode.CLOSE, Close(1000, "").serialize())
        )
        assert await read_to_eof(reader) == server_close_frame(1000)
        assert await handler.wait_lost() is None
        assert handler.chunks == []
        await close_writer(writer)


async def test_a_peer_that_ends_its_stream_without_a_close_frame_is_lost_without_error() -> None:
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        reader, writer = await upgraded(port)
        handler = await hub.next()
        with loop_errors() as errors:
            writer.write_eof()
            assert await handler.wait_lost() is None
            assert await read_to_eof(reader) == b""  # an abnormal closure sends no close frame
        assert errors == []
        await close_writer(writer)


async def test_a_reset_by_the_peer_reaches_the_handler_as_its_error() -> None:
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        _, writer = await upgraded(port)
        handler = await hub.next()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # closed with linger 0: a reset
        assert isinstance(await handler.wait_lost(), ConnectionResetError)


async def test_a_protocol_error_is_told_with_the_peer_and_the_error_a_close_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="transport.websocket")
    hub = Hub(echo=False)
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        reader, writer = await upgraded(port)
        handler = await hub.next()
        writer.write(Frame(Opcode.BINARY, b"unmasked").serialize(mask=False, extensions=[]))
        assert await read_to_eof(reader) == server_close_frame(
            CloseCode.PROTOCOL_ERROR, "incorrect masking"
        )
        assert await handler.wait_lost() is None
        assert told(caplog) == [
            f"ws peer {peer_of(writer)} failed the connection: incorrect masking"
        ]
        await close_writer(writer)
        async with client(port):
            pass
        assert await (await hub.next()).wait_lost() is None
        assert len(told(caplog)) == 1


# -- plain HTTP on the WebSocket port ------------------------------------------------------------


async def raw_http_from(port: int, request: bytes) -> tuple[str, bytes]:
    """Like :func:`raw_http`, with the name the server gives this peer."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request)
    response = await read_to_eof(reader)
    await close_writer(writer)
    return peer_of(writer), response


def parse_response(response: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Status line, headers (names lower-cased: HTTP compares them so) and body."""
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


async def test_a_page_says_its_length_and_that_the_connection_closes() -> None:
    async with running(
        WebSocketAcceptor(HOST, 0, http_handler=lambda _: HttpResponse(200, "text/plain", b"hi!")),
        Hub(),
    ) as (_, port):
        status, headers, body = parse_response(
            await raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        assert status == b"HTTP/1.1 200 OK"
        assert headers == {
            "content-type": "text/plain",
            "content-length": "3",
            "connection": "close",
        }
        assert body == b"hi!"


async def test_a_status_without_a_standard_phrase_has_an_empty_one() -> None:
    page = HttpResponse(599, "text/plain", b"odd")
    async with running(WebSocketAcceptor(HOST, 0, http_handler=lambda _: page), Hub()) as (
        _,
        port,
    ):
        served = await raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert served.startswith(b"HTTP/1.1 599 \r\n")
        assert served.endswith(b"\r\n\r\nodd")


async def test_an_http_handler_that_raises_answers_500_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def page(path: str) -> HttpResponse | None:
        raise RuntimeError("the page broke")

    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0, http_handler=page), hub) as (_, port):
        peer, served = await raw_http_from(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = parse_response(served)
        assert status == b"HTTP/1.1 500 Internal Server Error"
        assert body == b"Internal error.\n"
        async with client(port) as ws:  # the listener goes on
            await ws.send(b"hi")
            assert await recv(ws) == b"hi"
    [failed] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failed.getMessage() == f"http handler failed for ws peer {peer} on '/boom'"
    assert failed.exc_info is not None
    assert str(failed.exc_info[1]) == "the page broke"


async def test_a_request_that_is_no_http_is_answered_400_and_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="transport.websocket")
    async with running(WebSocketAcceptor(HOST, 0, server_id="edge-1"), Hub()) as (_, port):
        peer, served = await raw_http_from(port, b"\x16\x03\x01 not http at all\r\n\r\n")
        status, _, body = parse_response(served)
        assert status == b"HTTP/1.1 400 Bad Request"
        assert body == b"Invalid HTTP request.\n"
    assert told(caplog) == [
        f"[edge-1] ws peer {peer} sent an invalid HTTP request: "
        "did not receive a valid HTTP request"
    ]


async def test_over_long_request_lines_and_headers_keep_their_own_answers() -> None:
    """websockets answers these itself (414, 431); they are no unparsable request (400)."""
    async with running(WebSocketAcceptor(HOST, 0), Hub()) as (_, port):
        long_line = await raw_http(port, b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n")
        assert long_line.startswith(b"HTTP/1.1 414 ")
        headers = b"".join(b"X-%d: y\r\n" % i for i in range(200))
        many = await raw_http(port, b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        assert many.startswith(b"HTTP/1.1 431 ")


async def test_what_a_plain_get_was_answered_is_told_with_peer_method_and_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="transport.websocket")
    async with running(WebSocketAcceptor(HOST, 0), Hub()) as (_, port):
        peer, served = await raw_http_from(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert served.startswith(b"HTTP/1.1 426 ")
        garbage_peer, _ = await raw_http_from(port, UPGRADE_REQUEST + b"not a frame")
    assert told(caplog) == [
        f"ws peer {peer}: GET '/x' answered 426",
        f"ws peer {garbage_peer} sent garbage after its HTTP request",
    ]


async def test_an_unfinished_upgrade_is_told_and_aborted_without_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="transport.websocket")
    acceptor = WebSocketAcceptor(HOST, 0, limits=ConnectionLimits(open_timeout=0.05))
    async with running(acceptor, Hub()) as (_, port):
        with loop_errors() as errors:
            peer, served = await raw_http_from(port, b"GET / HTTP/1.1\r\n")
            assert served == b""
            await until(lambda: acceptor.stats.opening == 0)
        assert errors == []
    assert told(caplog) == [
        f"ws peer {peer} did not complete the upgrade within 0.05s of its accept; aborting it"
    ]


# -- the acceptor --------------------------------------------------------------------------------


async def test_a_socket_refused_at_accept_is_closed_without_error() -> None:
    hub = Hub()
    acceptor = WebSocketAcceptor(HOST, 0)
    with loop_errors() as errors:
        await acceptor.start(hub, admit=lambda: False)
        try:
            assert await raw_http(acceptor.address[1], UPGRADE_REQUEST) == b""
            await until(lambda: acceptor.stats.refused == 1 and acceptor.stats.opening == 0)
        finally:
            await acceptor.stop()
    assert errors == []
    assert hub.calls == 0


def test_the_address_is_the_one_asked_for_until_started() -> None:
    assert WebSocketAcceptor("0.0.0.0", 3251).address == ("0.0.0.0", 3251)


def test_proxy_protocol_is_off_unless_asked_and_trusted_peers_need_it() -> None:
    assert not WebSocketAcceptor(HOST, 0).proxy_protocol
    assert WebSocketAcceptor(HOST, 0, proxy_protocol=True).proxy_protocol
    with pytest.raises(ValueError, match="proxy_protocol is off"):
        WebSocketAcceptor(HOST, 0, proxy_protocol_trusted=["10.0.0.0/8"])


async def test_a_port_is_shared_only_when_both_acceptors_ask() -> None:
    hub = Hub()
    async with running(WebSocketAcceptor(HOST, 0), hub) as (_, port):
        with pytest.raises(OSError):
            await WebSocketAcceptor(HOST, port).start(hub)
    first = WebSocketAcceptor(HOST, 0, reuse_port=True)
    async with running(first, hub) as (_, port):
        second = WebSocketAcceptor(HOST, port, reuse_port=True)
        async with running(second, hub):
            assert second.address[1] == port


def listen_backlog(acceptor: WebSocketAcceptor) -> int:
    """The backlog of the acceptor's listening socket, as Linux reports it (``tcpi_sacked``
    of a listening socket's TCP_INFO). Private access: nothing public hands out the socket."""
    listening = acceptor._server.sockets[0]  # type: ignore[union-attr]
    info = listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 28)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="a listening socket's TCP_INFO is Linux's")
async def test_the_listen_backlog_is_the_one_asked_for_1024_by_default() -> None:
    somaxconn = int(await asyncio.to_thread(Path("/proc/sys/net/core/somaxconn").read_text))
    acceptor = WebSocketAcceptor(HOST, 0, backlog=7)
    async with running(acceptor, Hub()):
        assert listen_backlog(acceptor) == 7
    acceptor = WebSocketAcceptor(HOST, 0)
    async with running(acceptor, Hub()):
        assert listen_backlog(acceptor) == min(1024, somaxconn)
