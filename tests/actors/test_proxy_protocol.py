"""A running App behind a PROXY-protocol balancer: whole sessions over real sockets (TCP, TLS,
WebSocket, WSS) whose ``session.remote_address`` is the client the header names, the options
and their environment variables, and the limits (rate, connections) as without a header."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from typing import Any

import pytest
from websockets.asyncio.client import connect

from actors.app import App
from actors.config import Config, ConfigError, check_config
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from tests.rawclient import RawClient
from tests.reliability.support import HOST, make_app, tls_contexts, until
from tests.transport.proxyheaders import v1, v2
from transport.client import Client, RequestError
from transport.client_channels import TcpChannel, WebSocketChannel
from transport.errors import ConnectionClosed
from transport.handshake import decode_handshake_response, encode_handshake_request
from transport.listener import Listener
from transport.packet import HANDSHAKE_ACK_PACKET, PacketType, encode_packet
from transport.stats import AcceptorStats

TIMEOUT = 5.0
CLIENT = ("192.0.2.7", 56324)


class Who(Handler):
    """``who.address``: the address the caller's session reports."""

    service = "who"

    @handler
    def address(self, session: Session) -> dict[str, str]:
        return {"address": session.remote_address}


def proxied_app(**options: Any) -> App:
    app = make_app(**options)
    app.register(Who)
    return app


def acceptor_stats(app: App) -> list[AcceptorStats]:
    return [a.stats for a in app.acceptors if isinstance(a, Listener)]


def header_socket(port: int, header: bytes) -> socket.socket:
    """A connected socket that has sent ``header``: what a balancer hands the server."""
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.sendall(header)
    sock.setblocking(False)
    return sock


async def client_behind(
    app: App,
    header: bytes,
    *,
    websocket: bool = False,
    tls: ssl.SSLContext | None = None,
) -> Client:
    """A handshaken client whose connection begins with ``header``, as a balancer's does."""
    host, port = app.address("ws" if websocket else "tcp")
    if websocket:
        sock = await asyncio.to_thread(header_socket, port, header)
        options: dict[str, Any] = {"ssl": tls, "server_hostname": HOST} if tls else {}
        ws = await connect(
            f"{'wss' if tls else 'ws'}://{host}:{port}/",
            sock=sock,
            proxy=None,
            ping_interval=None,
            open_timeout=TIMEOUT,
            **options,
        )
        return await Client.over(WebSocketChannel(ws))
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(header)
    if tls is not None:
        await writer.start_tls(tls, server_hostname=HOST)
    return await Client.over(TcpChannel(reader, writer))


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "ws"])
async def test_a_whole_session_sees_the_client_the_header_names(websocket: bool, tls: bool) -> None:
    server_ctx, client_ctx = tls_contexts()
    app = proxied_app(proxy_protocol=True)
    context = server_ctx if tls else None
    app.listen_tcp(HOST, 0, ssl=context)
    app.listen_ws(HOST, 0, ssl=context)
    async with serve(app):
        header = v2(CLIENT) if websocket else v1(CLIENT)
        client = await client_behind(
            app, header, websocket=websocket, tls=client_ctx if tls else None
        )
        assert await client.request("who.address") == {"address": "192.0.2.7:56324"}
        assert await client.request("echo.echo", {"x": 1}) == {"x": 1}
        (session,) = list(app.sessions)
        assert session.remote_address == "192.0.2.7:56324"
        await client.close()


async def test_the_start_says_which_listeners_read_the_header(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.gateway")
    app = proxied_app(server_id="front-1")
    app.listen_tcp(HOST, 0, proxy_protocol=True)
    app.listen_ws(HOST, 0)
    async with serve(app):
        lines = sorted(r.getMessage() for r in caplog.records if "listening" in r.getMessage())
        tcp_port, ws_port = app.address("tcp")[1], app.address("ws")[1]
        assert lines == [
            f"[front-1] tcp listening on {HOST}:{tcp_port} "
            "(PROXY protocol: clients' addresses from the balancer's header)",
            f"[front-1] ws listening on {HOST}:{ws_port}",
        ]


async def test_the_header_and_the_handshake_in_one_write() -> None:
    app = proxied_app(proxy_protocol=True)
    async with serve(app):
        raw = await RawClient.connect(*app.address("tcp"))
        body = encode_handshake_request({"platform": "test", "libVersion": "raw"}, {})
        await raw.send(v2(CLIENT) + encode_packet(PacketType.HANDSHAKE, body))
        packet = await raw.read_packet()
        assert packet.type is PacketType.HANDSHAKE
        assert decode_handshake_response(packet.body).ok
        await raw.send(HANDSHAKE_ACK_PACKET)
        reply = await raw.request("who.address", b"{}")
        assert json.loads(reply.data) == {"address": "192.0.2.7:56324"}
        raw.writer.close()


async def test_a_health_check_header_keeps_the_balancer_address() -> None:
    app = proxied_app(proxy_protocol=True)
    async with serve(app):
        client = await client_behind(app, v2(None))
        address = (await client.request("who.address"))["address"]
        assert address.startswith("127.0.0.1:")
        await client.close()


async def test_with_the_option_a_client_without_a_header_is_closed() -> None:
    app = proxied_app(proxy_protocol=True)
    async with serve(app) as server:
        with pytest.raises((ConnectionClosed, OSError)):
            await server.connect()
        assert len(app.sessions) == 0
        assert sum(stats.proxy_refused for stats in acceptor_stats(app)) == 1


async def test_per_acceptor_choice_overrides_the_option() -> None:
    app = proxied_app(proxy_protocol=True)
    app.listen_tcp(HOST, 0, proxy_protocol=False)
    async with serve(app) as server:
        client = await server.connect()  # no header, and served
        assert (await client.request("who.address"))["address"].startswith("127.0.0.1:")


def test_trusted_networks_given_to_an_acceptor_without_the_header_are_an_error() -> None:
    """An acceptor's own ``proxy_protocol_trusted`` with the header off says the caller
    believes the header is read: the acceptor refuses it, as ``Listener`` does, instead of
    silently reading none (the option's networks, for every acceptor, may stay unused)."""
    app = App()
    with pytest.raises(ValueError, match="proxy_protocol is off"):
        app.listen_tcp(HOST, 0, proxy_protocol_trusted=["10.0.0.0/8"])
    with pytest.raises(ValueError, match="proxy_protocol is off"):
        app.listen_ws(HOST, 0, proxy_protocol=False, proxy_protocol_trusted=["10.0.0.0/8"])
    app.listen_tcp(HOST, 0, proxy_protocol_trusted=[])  # no networks: nothing to ignore
    configured = App(proxy_protocol_trusted="10.0.0.0/8")
    assert not configured.listen_tcp(HOST, 0).proxy_protocol  # type: ignore[attr-defined]


def test_pitayas_environment_variable_turns_it_on() -> None:
    config = Config.from_env(
        {
            "PITAYA_ACCEPTOR_PROXYPROTOCOL": "true",
            "PITAYA_PROXY_PROTOCOL_TRUSTED": "10.0.0.0/8, 127.0.0.1",
        }
    )
    assert config.proxy_protocol is True
    app = App(config)
    acceptor = app.listen_tcp(HOST, 0)
    assert getattr(acceptor, "_proxy").trusts("127.0.0.1")  # noqa: B009
    assert not getattr(acceptor, "_proxy").trusts("192.168.1.1")  # noqa: B009
    assert Config.from_env({}).proxy_protocol is False


async def test_trusted_networks_from_the_option_close_other_peers() -> None:
    app = proxied_app(proxy_protocol=True, proxy_protocol_trusted="10.0.0.0/8")
    async with serve(app):
        with pytest.raises((ConnectionClosed, OSError)):
            await client_behind(app, v1(CLIENT))
        assert len(app.sessions) == 0


def test_a_bad_trusted_network_is_a_config_error() -> None:
    config = Config(proxy_protocol_trusted="10.0.0.0/8,10.0.0.300/8")
    with pytest.raises(ConfigError, match=r"'10\.0\.0\.300/8' is not a network"):
        check_config(config)
    app = App(proxy_protocol=True, proxy_protocol_trusted="nope")
    with pytest.raises(ConfigError, match="'nope' is not a network"):
        app.listen_tcp(HOST, 0)


async def test_the_rate_limit_counts_as_without_a_header() -> None:
    app = proxied_app(
        proxy_protocol=True,
        rate_limit_enabled=True,
        rate_limit_packets=2,
        rate_limit_interval=60.0,
        rate_limit_action="error",
    )
    async with serve(app):
        client = await client_behind(app, v1(CLIENT))
        assert await client.request("echo.echo", 1) == 1
        assert await client.request("echo.echo", 2) == 2
        with pytest.raises(RequestError) as info:
            await client.request("echo.echo", 3)
        assert info.value.code == "PIT-429"
        assert app.stats.rate_limited == 1
        await client.close()


async def test_a_socket_waiting_for_its_header_holds_a_place_until_its_timeout() -> None:
    """``max_connections`` counts a socket from its accept: one whose header never comes
    holds its place until ``upgrade_timeout`` closes it, then the place is free again."""
    app = proxied_app(proxy_protocol=True, max_connections=1, upgrade_timeout=0.5)
    async with serve(app):
        _, port = app.address("tcp")
        stalled_reader, stalled = await asyncio.open_connection(HOST, port)
        stalled.write(v1(CLIENT)[:12])
        await stalled.drain()
        with pytest.raises((ConnectionClosed, OSError)):
            await client_behind(app, v1(CLIENT))
        assert app.stats.refused_connections == 1
        assert await asyncio.wait_for(stalled_reader.read(), TIMEOUT) == b""  # the timeout
        await until(lambda: sum(stats.opening for stats in acceptor_stats(app)) == 0)
        client = await client_behind(app, v1(CLIENT))
        assert await client.request("who.address") == {"address": "192.0.2.7:56324"}
        assert app.connection_count == 1
        stalled.close()
        await client.close()
