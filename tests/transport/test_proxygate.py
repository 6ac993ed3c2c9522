"""Acceptors with ``proxy_protocol`` on, against real sockets on 127.0.0.1: a balancer's
PROXY header first, then the client's bytes (TCP, TLS, WebSocket, WSS).

Every wait is bounded by TIMEOUT and synchronises on the sockets, never on sleeps; the one
timeout tested is a short configured ``open_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from websockets.asyncio.client import connect

from tests.reliability.support import until
from tests.transport.proxyheaders import tlv, v1, v2
from tests.transport.test_tcp import (
    HOST,
    TIMEOUT,
    Hub,
    close_writer,
    read_to_eof,
    running,
    tls_contexts,
)
from transport.acceptor import ConnectionLimits
from transport.logs import ServerLog, Throttle
from transport.proxygate import ProxyGate, ProxyPolicy, network
from transport.stats import AcceptorStats
from transport.tcp import TcpAcceptor
from transport.websocket import WebSocketAcceptor

CLIENT = ("192.0.2.7", 56324)
CLIENT6 = ("2001:db8::7", 4000)

HEADERS: dict[str, tuple[bytes, str | None]] = {
    # name: (header, the remote_address it gives; None: the socket's own peer)
    "v1 TCP4": (v1(CLIENT), "192.0.2.7:56324"),
    "v1 TCP6": (v1(CLIENT6), "[2001:db8::7]:4000"),
    "v1 UNKNOWN": (v1(None), None),
    "v2 PROXY IPv4": (v2(CLIENT), "192.0.2.7:56324"),
    "v2 PROXY IPv6": (v2(CLIENT6), "[2001:db8::7]:4000"),
    "v2 PROXY IPv4 with TLVs": (
        v2(CLIENT, tlvs=tlv(0x01, b"h2") + tlv(0xEA, b"\x01vpce-0123")),
        "192.0.2.7:56324",
    ),
    "v2 LOCAL": (v2(None), None),
    "v2 LOCAL with TLVs": (v2(None, tlvs=tlv(0x04, b"\x00" * 9)), None),
}


def peer_of(writer: asyncio.StreamWriter) -> str:
    return "{}:{}".format(*writer.get_extra_info("sockname"))


def proxied(**kwargs: Any) -> TcpAcceptor:
    return TcpAcceptor(HOST, 0, proxy_protocol=True, server_id="front-1", **kwargs)


@pytest.mark.parametrize("name", list(HEADERS))
async def test_each_header_kind_names_the_client_and_what_follows_is_passed_on(name: str) -> None:
    header, expected = HEADERS[name]
    hub = Hub()
    async with running(proxied(), hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(header + b"\x01\x00\x00\x02{}")  # the header and a handshake, one write
        handler = await hub.next()
        assert await handler.wait_bytes(6) == b"\x01\x00\x00\x02{}"
        assert handler.conn.remote_address == (expected or peer_of(writer))
        assert await asyncio.wait_for(reader.readexactly(6), TIMEOUT) == b"\x01\x00\x00\x02{}"
        await close_writer(writer)


async def test_a_header_in_one_byte_writes_is_read_whole() -> None:
    hub = Hub()
    header = v2(CLIENT, tlvs=tlv(0x20, b"x" * 30))
    async with running(proxied(), hub) as (_, port):
        _, writer = await asyncio.open_connection(HOST, port)
        for i in range(len(header)):
            writer.write(header[i : i + 1])
            await writer.drain()
        writer.write(b"ping")
        handler = await hub.next()
        assert await handler.wait_bytes(4) == b"ping"
        assert handler.conn.remote_address == "192.0.2.7:56324"
        await close_writer(writer)


async def test_without_the_option_a_header_is_data_and_the_peer_is_the_socket() -> None:
    hub = Hub()
    async with running(TcpAcceptor(HOST, 0), hub) as (_, port):
        _, writer = await asyncio.open_connection(HOST, port)
        writer.write(v1(CLIENT))
        handler = await hub.next()
        assert await handler.wait_bytes(len(v1(CLIENT))) == v1(CLIENT)
        assert handler.conn.remote_address == peer_of(writer)
        await close_writer(writer)


async def test_a_stalled_half_header_delays_nobody_and_is_closed_at_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub()
    limits = ConnectionLimits(open_timeout=0.3)
    acceptor = proxied(limits=limits)
    loop = asyncio.get_running_loop()
    async with running(acceptor, hub) as (_, port):
        stalled_reader, stalled = await asyncio.open_connection(HOST, port)
        started = loop.time()
        stalled.write(v1(CLIENT)[:20])
        await stalled.drain()
        # Another client, meanwhile, is served at once.
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(v1(("198.51.100.1", 1)) + b"ping")
        other = await hub.next()
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"ping"
        assert other.conn.remote_address == "198.51.100.1:1"
        assert acceptor.stats.opening == 1  # the stalled one, still counted
        assert acceptor.stats.proxy_refused == 0
        with caplog.at_level(logging.WARNING, logger="transport"):
            assert await read_to_eof(stalled_reader) == b""
        assert loop.time() - started >= 0.29  # the timer, not an early close (clock slack)
        assert acceptor.stats.proxy_refused == 1
        assert acceptor.stats.opening == 0
        assert hub.calls == 1  # the stalled socket never reached on_connection
        (record,) = [r for r in caplog.records if "PROXY" in r.getMessage()]
        assert record.getMessage() == (
            f"[front-1] tcp peer {peer_of(stalled)} closed: PROXY protocol: "
            "no whole header within 0.3s"
        )
        await close_writer(stalled)
        await close_writer(writer)


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x01\x00\x00\x02{}", "neither the v1 'PROXY ' prefix nor the v2 signature"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\nsecret", "v1 port is not a number"),
    ],
)
async def test_garbage_instead_of_a_header_is_closed_with_the_reason_logged_once(
    garbage: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub()
    acceptor = proxied()
    async with running(acceptor, hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        with caplog.at_level(logging.WARNING, logger="transport"):
            writer.write(garbage)
            assert await read_to_eof(reader) == b""
        assert hub.calls == 0
        assert acceptor.stats.proxy_refused == 1
        (record,) = [r for r in caplog.records if "PROXY" in r.getMessage()]
        line = record.getMessage()
        assert line.startswith(f"[front-1] tcp peer {peer_of(writer)} closed: PROXY protocol: ")
        assert reason in line
        assert getattr(record, "server_id", None) == "front-1"
        assert "secret" not in line and "1.2.3.4" not in line  # never the peer's bytes
        await close_writer(writer)


async def test_a_flood_of_bad_headers_is_one_line_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    acceptor = proxied()
    async with running(acceptor, Hub()) as (_, port):
        with caplog.at_level(logging.WARNING, logger="transport"):
            for _ in range(3):
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(b"GET / HTTP/1.1\r\n")
                assert await read_to_eof(reader) == b""
                await close_writer(writer)
        assert acceptor.stats.proxy_refused == 3
        assert len([r for r in caplog.records if "PROXY" in r.getMessage()]) == 1


async def test_only_trusted_networks_may_send_the_header(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub()
    outsider = proxied(proxy_protocol_trusted=["10.0.0.0/8", "2001:db8::/32"])
    async with running(outsider, hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        with caplog.at_level(logging.WARNING, logger="transport"):
            writer.write(v1(CLIENT) + b"ping")
            assert await read_to_eof(reader) == b""
        assert hub.calls == 0 and outsider.stats.proxy_refused == 1
        assert caplog.messages == [
            f"[front-1] tcp peer {peer_of(writer)} closed: "
            "PROXY protocol: the peer is not in the trusted networks"
        ]
        await close_writer(writer)
    trusting = proxied(proxy_protocol_trusted=["10.0.0.0/8", "127.0.0.0/8"])
    async with running(trusting, hub) as (_, port):
        _, writer = await asyncio.open_connection(HOST, port)
        writer.write(v1(CLIENT) + b"ping")
        handler = await hub.next()
        assert await handler.wait_bytes(4) == b"ping"
        assert handler.conn.remote_address == "192.0.2.7:56324"
        await close_writer(writer)


@pytest.mark.parametrize(
    ("cidr", "expected"),
    [
        ("10.1.2.3/8", "10.0.0.0/8"),  # host bits allowed, as in a balancer's own address
        (" 10.1.2.3 ", "10.1.2.3/32"),
        ("2001:db8::7/32", "2001:db8::/32"),
    ],
)
def test_a_trusted_network_is_read_as_written_with_host_bits_allowed(
    cidr: str, expected: str
) -> None:
    assert network(cidr) == ipaddress.ip_network(expected)


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("10.9.8.7", True),
        ("192.0.2.7", False),
        ("2001:db8::7", True),
        ("2001:db9::7", False),
        ("::ffff:10.9.8.7", True),  # an IPv4 balancer on a dual-stack socket
        ("::ffff:192.0.2.7", False),
        ("/run/balancer.sock", False),  # a UNIX socket is no listed balancer
        ("", False),
    ],
)
def test_the_policy_trusts_the_listed_networks_only(host: str, trusted: bool) -> None:
    policy = ProxyPolicy.from_cidrs(["10.0.0.0/8", "2001:db8::/32"])
    assert policy.trusts(host) is trusted
    assert ProxyPolicy().trusts(host) is True  # none listed: every peer


class UnixSocket(asyncio.Transport):
    """A transport whose peer is a path, as a UNIX socket's is."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.path if name == "peername" else default

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


async def test_a_peer_on_a_unix_socket_is_named_by_its_path_when_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = AcceptorStats()
    gate = ProxyGate(
        asyncio.BufferedProtocol(),
        lambda transport: True,
        lambda transport, client: pytest.fail("a refused peer is never relayed"),
        kind="tcp",
        policy=ProxyPolicy.from_cidrs(["10.0.0.0/8"]),
        ssl=None,
        timeout=TIMEOUT,
        stats=stats,
        log=ServerLog(logging.getLogger("transport.listener"), "front-1"),
        throttle=Throttle(),
        loop=asyncio.get_running_loop(),
    )
    transport = UnixSocket("/run/balancer.sock")
    with caplog.at_level(logging.WARNING, logger="transport"):
        gate.connection_made(transport)
    assert transport.aborted and stats.proxy_refused == 1
    assert caplog.messages == [
        "[front-1] tcp peer /run/balancer.sock closed: "
        "PROXY protocol: the peer is not in the trusted networks"
    ]


def test_trusted_networks_need_the_option_and_valid_cidrs() -> None:
    with pytest.raises(ValueError, match="proxy_protocol is off"):
        TcpAcceptor(HOST, 0, proxy_protocol_trusted=["10.0.0.0/8"])
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        TcpAcceptor(HOST, 0, proxy_protocol=True, proxy_protocol_trusted=["10.0.0.0/33"])


async def test_counting_admission_covers_the_header_stage() -> None:
    """The socket is admitted at accept (``max_connections``), counts as opening while its
    header is read, and as active once handed over; a refused one is not a PROXY refusal."""
    admitted: list[bool] = []
    answers = iter([True, False])

    def admit() -> bool:
        admitted.append(next(answers))
        return admitted[-1]

    hub = Hub()
    acceptor = proxied()
    await acceptor.start(hub, admit=admit)
    try:
        _, writer = await asyncio.open_connection(HOST, port := acceptor.address[1])
        writer.write(v1(CLIENT)[:10])
        await writer.drain()
        refused_reader, refused = await asyncio.open_connection(HOST, port)
        assert await read_to_eof(refused_reader) == b""
        assert admitted == [True, False]
        assert (acceptor.stats.opening, acceptor.stats.refused) == (1, 1)
        writer.write(v1(CLIENT)[10:])
        handler = await hub.next()
        assert handler.conn.remote_address == "192.0.2.7:56324"
        stats = acceptor.stats
        assert (stats.opening, stats.accepted, stats.active, stats.proxy_refused) == (0, 1, 1, 0)
        await close_writer(writer)
        await handler.wait_lost()
        assert (stats.opening, stats.active) == (0, 0)
        await close_writer(refused)
    finally:
        await acceptor.stop()
        await hub.abort_all()


# -- TLS: the header before the TLS handshake ------------------------------------------------


class MemoryTlsClient:
    """A TLS client over memory BIOs, so a test decides which bytes share a write (the
    PROXY header with the ClientHello; the Finished with the first application bytes)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)

    def step(self) -> bool:
        """Advance the handshake; True once it is done."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    async def handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes
    ) -> None:
        """Write ``first`` and the ClientHello together, then finish the handshake; the
        last flight is held back (see :meth:`send`)."""
        self.step()
        writer.write(first + self.outgoing.read())
        while True:
            data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            assert data, "the server closed during the TLS handshake"
            self.incoming.write(data)
            if self.step():
                return
            writer.write(self.outgoing.read())

    def send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """``data`` encrypted, in one write with whatever handshake bytes are pending."""
        self.tls.write(data)
        writer.write(self.outgoing.read())

    async def receive(self, reader: asyncio.StreamReader, size: int) -> bytes:
        received = b""
        while len(received) < size:
            with contextlib.suppress(ssl.SSLWantReadError):
                received += self.tls.read(65536)
                continue
            data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            assert data, "the server closed the connection"
            self.incoming.write(data)
        return received


async def tls_round_trip(header: bytes, expected: str | None) -> None:
    server_ctx, client_ctx = tls_contexts()
    hub = Hub()
    acceptor = proxied(ssl=server_ctx)
    async with running(acceptor, hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        client = MemoryTlsClient(client_ctx)
        await client.handshake(reader, writer, header)
        # The client's Finished and its first bytes in one write: TLS 1.3 servers get the
        # application bytes in the same read that completes the handshake.
        client.send(writer, b"ping")
        handler = await hub.next()
        assert await handler.wait_bytes(4) == b"ping"
        assert handler.conn.remote_address == (expected or peer_of(writer))
        assert await client.receive(reader, 4) == b"ping"
        assert acceptor.stats.proxy_refused == 0
        await close_writer(writer)


@pytest.mark.parametrize("name", ["v1 TCP4", "v2 PROXY IPv6", "v2 LOCAL with TLVs"])
async def test_tls_after_the_header_in_the_same_write_as_the_client_hello(name: str) -> None:
    await tls_round_trip(*HEADERS[name])


def on_loop(kind: str, main: Callable[[], Awaitable[None]]) -> None:
    factory = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())  # type: ignore[arg-type]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_tls_and_plain_on_both_event_loops(loop: str) -> None:
    async def main() -> None:
        await tls_round_trip(*HEADERS["v2 PROXY IPv4 with TLVs"])
        hub = Hub()
        async with running(proxied(), hub) as (_, port):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(v1(CLIENT) + b"ping")
            handler = await hub.next()
            assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"ping"
            assert handler.conn.remote_address == "192.0.2.7:56324"
            await close_writer(writer)

    on_loop(loop, main)


async def test_a_tls_client_without_the_header_is_refused() -> None:
    """With the option on, a TLS ClientHello first is a bad header, not a TLS client."""
    server_ctx, client_ctx = tls_contexts()
    acceptor = proxied(ssl=server_ctx)
    async with running(acceptor, Hub()) as (_, port):
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await asyncio.wait_for(
                asyncio.open_connection(HOST, port, ssl=client_ctx, server_hostname=HOST),
                TIMEOUT,
            )
        assert acceptor.stats.proxy_refused == 1


async def test_a_failed_tls_handshake_after_the_header_uncounts_the_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_ctx, _ = tls_contexts()
    acceptor = proxied(ssl=server_ctx)
    hub = Hub()
    caplog.set_level(logging.DEBUG, logger="transport")
    async with running(acceptor, hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(v1(CLIENT) + b"\x16\x03\x01\x00\x05hello")  # not a ClientHello
        await read_to_eof(reader)  # a TLS alert, then the end
        await close_writer(writer)
        await until(lambda: acceptor.stats.opening == 0)
        assert hub.calls == 0 and acceptor.stats.proxy_refused == 0
    # A client's failure, as at accept without the option: a debug line naming the client
    # and its balancer, with no traceback.
    (record,) = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    prefix = (
        f"[front-1] tcp peer 192.0.2.7:56324 (relayed by {peer_of(writer)}) "
        "failed the TLS handshake: "
    )
    assert record.getMessage().startswith(prefix)
    assert re.fullmatch(r"\w+Error\(.*\)", record.getMessage().removeprefix(prefix))
    assert record.levelno == logging.DEBUG and not record.exc_info


async def test_a_tls_start_that_fails_by_a_bug_is_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a client's doing (no OSError): logged as an error with the traceback, and the
    socket is dropped and uncounted all the same."""

    async def broken_start_tls(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("start_tls is broken")

    monkeypatch.setattr(asyncio.get_running_loop(), "start_tls", broken_start_tls)
    server_ctx, _ = tls_contexts()
    acceptor = proxied(ssl=server_ctx)
    hub = Hub()
    async with running(acceptor, hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        with caplog.at_level(logging.DEBUG, logger="transport"):
            writer.write(v1(CLIENT))
            assert await read_to_eof(reader) == b""
            await until(lambda: acceptor.stats.opening == 0)
        await close_writer(writer)
        assert hub.calls == 0
    (record,) = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert record.getMessage() == (
        f"[front-1] tcp peer 192.0.2.7:56324 (relayed by {peer_of(writer)}) "
        "failed the TLS handshake: RuntimeError('start_tls is broken')"
    )
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


# -- WebSocket: the header before the HTTP upgrade -------------------------------------------


def header_socket(port: int, header: bytes) -> socket.socket:
    """A connected socket that has sent ``header``: what a balancer hands the server."""
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.sendall(header)
    sock.setblocking(False)
    return sock


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_websocket_after_the_header(tls: bool) -> None:
    server_ctx, client_ctx = tls_contexts()
    hub = Hub()
    acceptor = WebSocketAcceptor(
        HOST, 0, ssl=server_ctx if tls else None, proxy_protocol=True, server_id="front-1"
    )
    async with running(acceptor, hub) as (_, port):
        sock = await asyncio.to_thread(header_socket, port, v2(CLIENT6))
        uri = f"{'wss' if tls else 'ws'}://{HOST}:{port}/"
        options: dict[str, Any] = {"ssl": client_ctx, "server_hostname": HOST} if tls else {}
        async with connect(
            uri, sock=sock, proxy=None, ping_interval=None, open_timeout=TIMEOUT, **options
        ) as ws:
            handler = await hub.next()
            assert handler.conn.remote_address == "[2001:db8::7]:4000"
            await ws.send(b"\x01\x02")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x01\x02"


async def test_websocket_header_and_upgrade_in_one_write() -> None:
    hub = Hub()
    acceptor = WebSocketAcceptor(HOST, 0, proxy_protocol=True)
    upgrade = (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with running(acceptor, hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(v1(CLIENT) + upgrade)
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert status.startswith(b"HTTP/1.1 101 ")
        handler = await hub.next()
        assert handler.conn.remote_address == "192.0.2.7:56324"
        await close_writer(writer)


# -- One opening budget: the header, TLS and the upgrade share open_timeout ------------------

BUDGET = 1.0
"""The ``open_timeout`` of these tests: long enough that the slow stage below fits in it."""
SLOW = 0.6
"""How long the client takes over its first stage: within the budget, but too long for a
second stage to have the whole budget again."""
LATE = BUDGET + SLOW
"""When a socket would close if each stage had the budget of its own."""

UPGRADE_HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
"""An upgrade request never finished: the slowloris of the last stage."""


Stage = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""What a slow client sends once its first stage took :data:`SLOW`, and then no more."""


async def slow_then_stalled(acceptor: TcpAcceptor | WebSocketAcceptor, then: Stage) -> None:
    """A client that takes :data:`SLOW` over its first stage, then stalls in the next: the
    server closes it :data:`BUDGET` after the accept, not later, and it never reaches the
    layer above."""
    hub = Hub()
    loop = asyncio.get_running_loop()
    async with running(acceptor, hub) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        connected = loop.time()
        await asyncio.sleep(SLOW)  # the client's pace, not a synchronisation
        await then(reader, writer)
        await read_to_eof(reader)  # what came before (TLS session tickets) is not looked at
        elapsed = loop.time() - connected
        assert BUDGET - 0.05 <= elapsed < (BUDGET + LATE) / 2
        assert hub.calls == 0
        await until(lambda: acceptor.stats.opening == 0)
        await close_writer(writer)


async def test_a_slow_header_leaves_the_websocket_upgrade_only_what_is_left() -> None:
    acceptor = WebSocketAcceptor(
        HOST, 0, proxy_protocol=True, limits=ConnectionLimits(open_timeout=BUDGET)
    )

    async def header_then_half_an_upgrade(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(v1(CLIENT) + UPGRADE_HEAD)

    await slow_then_stalled(acceptor, header_then_half_an_upgrade)
    assert acceptor.stats.proxy_refused == 0  # the header was good: the upgrade was late


async def test_a_slow_header_leaves_tls_only_what_is_left() -> None:
    server_ctx, _ = tls_contexts()
    acceptor = proxied(ssl=server_ctx, limits=ConnectionLimits(open_timeout=BUDGET))

    async def header_then_no_client_hello(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(v1(CLIENT))

    await slow_then_stalled(acceptor, header_then_no_client_hello)


async def test_a_slow_tls_handshake_leaves_the_websocket_upgrade_only_what_is_left() -> None:
    """Without the PROXY protocol too: TLS at accept, then the upgrade, one budget."""
    server_ctx, client_ctx = tls_contexts()
    acceptor = WebSocketAcceptor(
        HOST, 0, ssl=server_ctx, limits=ConnectionLimits(open_timeout=BUDGET)
    )

    async def tls_then_half_an_upgrade(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        client = MemoryTlsClient(client_ctx)
        await client.handshake(r, w, b"")
        client.send(w, UPGRADE_HEAD)

    await slow_then_stalled(acceptor, tls_then_half_an_upgrade)
