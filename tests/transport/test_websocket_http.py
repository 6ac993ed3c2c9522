"""WebSocketAcceptor: plain HTTP on its port (pages, failures, the requests websockets
refuses), what it tells of peers that never upgrade, and the listening socket (admission,
address, port sharing, PROXY flags, backlog)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
from pathlib import Path

import pytest

from tests.reliability.support import until
from tests.transport.test_tcp import (
    HOST,
    Hub,
    close_writer,
    read_to_eof,
    running,
)
from tests.transport.test_websocket import (
    UPGRADE_REQUEST,
    client,
    loop_errors,
    peer_of,
    raw_http,
    recv,
    told,
)
from transport.acceptor import ConnectionLimits
from transport.websocket import HttpResponse, WebSocketAcceptor


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
