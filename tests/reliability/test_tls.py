"""TLS on the App's TCP and WebSocket listeners, with a certificate made by trustme in the test.

A client that fails the TLS handshake (speaks plain text, distrusts the certificate, or never
says anything) must never reach a session, and must not disturb the clients that succeeded.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import pytest

from actors.app import App
from actors.testing import TestServer, serve
from tests.rawclient import RawClient
from tests.reliability.support import HOST, make_app, tls_contexts, until
from transport.client import Client
from transport.errors import ConnectionClosed


@contextlib.asynccontextmanager
async def tls_server(**options: float) -> AsyncIterator[tuple[TestServer, ssl.SSLContext]]:
    server_ctx, client_ctx = tls_contexts()
    app: App = make_app(**options)
    app.listen_tcp(HOST, 0, ssl=server_ctx)
    app.listen_ws(HOST, 0, ssl=server_ctx)
    async with serve(app) as server:
        yield server, client_ctx


async def test_requests_over_tls(websocket: bool) -> None:
    async with tls_server() as (server, client_ctx):
        client = await server.connect(websocket=websocket, ssl=client_ctx)
        assert await client.request("echo.echo", {"secret": 1}) == {"secret": 1}
        assert server.app.connection_count == 1


async def test_clients_failing_the_tls_handshake_never_get_a_session(websocket: bool) -> None:
    async with tls_server(handshake_timeout=0.2) as (server, client_ctx):
        app = server.app
        good = await server.connect(websocket=websocket, ssl=client_ctx)
        kind = "ws" if websocket else "tcp"
        host, port = app.address(kind)

        # 1. Plain text to a TLS port: the server drops it.
        with pytest.raises((ConnectionClosed, OSError, ssl.SSLError)):
            await Client.connect(host, port, websocket=websocket, timeout=5)
        # 2. A TLS client that does not trust the certificate fails verification.
        distrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        with pytest.raises(ssl.SSLCertVerificationError):
            await Client.connect(host, port, websocket=websocket, ssl=distrusting, timeout=5)
        # 3. A client that connects and never starts TLS is cut off after the timeout.
        silent = await RawClient.connect(host, port)
        assert await silent.read_until_closed(timeout=5) == []
        await silent.close()

        assert app.connection_count == 1 and len(app.sessions) == 1
        assert await good.request("echo.echo", "unaffected") == "unaffected"
        again = await server.connect(websocket=websocket, ssl=client_ctx)
        assert await again.request("echo.echo", 2) == 2


async def test_sockets_in_their_tls_handshake_count_toward_max_connections(
    websocket: bool,
) -> None:
    async with tls_server(max_connections=2) as (server, client_ctx):
        app = server.app
        host, port = app.address("ws" if websocket else "tcp")
        silent = [await RawClient.connect(host, port) for _ in range(2)]  # never start TLS
        # Admitted at their accept, as plain sockets are: the limit counts them, so a
        # slowloris holds no more than max_connections sockets. They were admitted only
        # once their handshake was done: any number of them held open_timeout each.
        late = await RawClient.connect(host, port)
        assert await late.read_until_closed(timeout=5) == []
        await until(lambda: app.stats.refused_connections == 1)
        for client in (*silent, late):
            await client.close()
        await until(
            lambda: app.connection_count == 0 and sum(a.stats.opening for a in app.acceptors) == 0
        )
        good = await server.connect(websocket=websocket, ssl=client_ctx)  # room again
        assert await good.request("echo.echo", "served") == "served"
