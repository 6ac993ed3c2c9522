"""WebSocketAcceptor: what a peer's frames do (fragments and their limit, text that must be
UTF-8, control frames, the ends of a connection, protocol errors), frames written by hand on
a plain socket past the upgrade (helpers in ``test_websocket``)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest
from websockets.frames import Close, CloseCode, Frame, Opcode

from tests.transport.test_tcp import (
    HOST,
    TIMEOUT,
    Hub,
    close_writer,
    read_to_eof,
    running,
)
from tests.transport.test_websocket import (
    client,
    fragments,
    frame,
    loop_errors,
    peer_of,
    server_close_frame,
    told,
    upgraded,
)
from transport.websocket import WebSocketAcceptor, max_fragments


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
