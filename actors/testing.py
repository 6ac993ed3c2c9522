"""Test harness: run an app in-process on free loopback ports and talk to it with real clients.

Tests of your own handlers stay short::

    async def test_join() -> None:
        app = App(server_type="chat")
        app.register(Room)
        async with serve(app) as server:
            client = await server.connect()
            assert await client.request("room.join", {"name": "a"}) == {"result": "success"}

``serve`` adds a TCP and a WebSocket listener on 127.0.0.1 (port 0) when the app has none,
starts the app, and on exit closes every client it made and stops the app gracefully.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from actors.app import App
from transport.client import Client


class TestServer:
    """A started app plus a factory of connected clients."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: App) -> None:
        self.app = app
        self.clients: list[Client] = []

    async def connect(self, *, websocket: bool = False, **options: Any) -> Client:
        """A handshaken client over TCP (default) or WebSocket."""
        host, port = self.app.address("ws" if websocket else "tcp")
        client = await Client.connect(host, port, websocket=websocket, **options)
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()


@asynccontextmanager
async def serve(app: App, *, host: str = "127.0.0.1") -> AsyncIterator[TestServer]:
    """Start ``app`` for a test; see the module docstring."""
    if not app.acceptors:
        app.listen_tcp(host, 0)
        app.listen_ws(host, 0)
    async with app:
        server = TestServer(app)
        try:
            yield server
        finally:
            await server.close_clients()
