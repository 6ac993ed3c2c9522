"""The session host interface (``actors.sessions.host``): what a session actor and its
gateway may use of their server, and nothing more.

Two checks: the app has every member the protocols declare, and a gateway and its session
actors serve a client through a host that exposes *only* those members (any other attribute
read fails the test), which is what keeps the session layer below the app.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import pytest

from actors.app import App
from actors.gateway import Gateway, Listen
from actors.handler import Handler, handler
from actors.session import Session
from actors.sessions.host import Forwarder, GatewayHost, ServerAddress, SessionHost
from actors.testing import TestClient
from transport.client import Client
from transport.memory import MemoryAcceptor


def declared(protocol: type) -> set[str]:
    """The members a Protocol class declares, its Protocol bases' included."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls in (Protocol, object) or not getattr(cls, "_is_protocol", False):
            continue
        names.update(n for n in vars(cls) if not n.startswith("_"))
    return names


def test_the_protocols_declare_what_the_session_layer_uses() -> None:
    session_host = declared(SessionHost)
    assert {"server_id", "config", "sessions", "invoker", "serializer", "cluster"} <= session_host
    assert {"request_started", "request_finished", "connection_closed"} <= session_host
    gateway_only = declared(GatewayHost) - session_host
    assert gateway_only == {"acceptors", "connection_count", "connection_opened"}
    assert declared(Forwarder) == {"pipelines_to", "pick", "forward"}
    assert declared(ServerAddress) == {"id"}


@pytest.mark.parametrize("protocol", [SessionHost, GatewayHost])
def test_the_app_has_every_member_a_host_declares(protocol: type) -> None:
    app = App(server_type="host", server_id="h1")
    missing = {name for name in declared(protocol) if not hasattr(app, name)}
    assert missing == set()


class StrictHost:
    """The app, seen through one protocol: reading an undeclared member fails."""

    def __init__(self, app: App, protocol: type) -> None:
        self._app = app
        self._allowed = declared(protocol)
        self.undeclared: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            self.undeclared.append(name)
            raise AttributeError(f"{name!r} is not declared by the host protocol")
        return getattr(self._app, name)


class Echo(Handler):
    service = "echo"

    @handler
    async def say(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        session.push("onSay", body)
        return body

    @handler
    async def login(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(body["uid"])
        session.set("k", 1)
        return {"uid": session.uid}

    @handler
    def note(self, session: Session, body: dict[str, Any]) -> None:
        session.set("note", body)


async def test_a_session_is_served_through_the_declared_members_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    app = App(server_type="host", server_id="h1")
    app.register(Echo)
    test = TestClient(app)
    await test.start()
    host = StrictHost(app, GatewayHost)
    acceptor = MemoryAcceptor()
    try:
        gateway = app.system.spawn(Gateway, acceptor, host)
        await gateway.ask(Listen())
        client = await Client.over(await acceptor.connect(), request_timeout=5)
        assert app.connection_count == 1
        assert await client.request("echo.say", {"a": 1}) == {"a": 1}
        push = await asyncio.wait_for(anext(aiter(client.pushes())), 5)
        assert (push.route, push.body) == ("onSay", {"a": 1})
        assert await client.request("echo.login", {"uid": "ann"}) == {"uid": "ann"}
        await client.notify("echo.note", {"n": 1})
        with pytest.raises(Exception, match="PIT-404"):
            await client.request("echo.nothing", {})
        await client.close()
        await asyncio.wait_for(app.connections.zero.wait(), 5)
    finally:
        await test.stop()
    assert host.undeclared == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
