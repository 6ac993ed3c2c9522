"""The gateway actor (``actors.gateway``): opening its listener, admitting or refusing each
connection against ``max_connections``, spawning the session actor, stopping accepting.

Refusals are checked on a stand-in host (only the counters the gateway reads) and a listener
that opens no socket; the accepted path runs on a started app, through an in-memory acceptor
of the test's own, so the spawned session actor really serves the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from actors.app import App
from actors.config import Config
from actors.gateway import Gateway, Listen, StopAccepting, _Refused
from actors.sessions.actor import SessionActor
from actors.stats import AppStats
from actors.system import ActorSystem
from actors.testing import TestClient
from transport.acceptor import ConnectionFactory
from transport.client import Client
from transport.memory import MemoryAcceptor
from transport.tcp import TcpAcceptor


class FakeListener(TcpAcceptor):
    """A Listener that records what the gateway asks of it and opens no socket."""

    def __init__(self, port: int = 7000) -> None:
        super().__init__("127.0.0.1", port)
        self.started_with: dict[str, Any] | None = None
        self.on_connection: ConnectionFactory | None = None
        self.stops = 0

    async def start(
        self, on_connection: ConnectionFactory, *, admit: Callable[[], bool] | None = None
    ) -> None:
        self.on_connection = on_connection
        self.started_with = {"admit": admit}
        self._address = ("127.0.0.1", 7777)

    async def stop(self) -> None:
        self.stops += 1


class UserAcceptor(MemoryAcceptor):
    """Not a Listener: a user's acceptor, started without ``admit``."""

    def __init__(self) -> None:
        super().__init__()
        self.start_kwargs: dict[str, Any] | None = None

    async def start(self, on_connection: ConnectionFactory, **kwargs: Any) -> None:
        self.start_kwargs = kwargs
        await super().start(on_connection)


class FakeConnection:
    def __init__(self) -> None:
        self.aborted = 0

    @property
    def kind(self) -> str:
        return "fake"

    @property
    def remote_address(self) -> str:
        return "peer:1"

    @property
    def closed(self) -> bool:
        return bool(self.aborted)

    def write(self, packet: bytes) -> None:
        raise AssertionError("a refused connection is never written to")

    def close(self) -> None:
        raise AssertionError("a refused connection is aborted, not closed")

    def abort(self) -> None:
        self.aborted += 1


def host(*acceptors: Any, limit: int = 2, connected: int = 0) -> SimpleNamespace:
    """What the gateway reads of its app on the refusal paths."""
    return SimpleNamespace(
        server_id="gw-1",
        config=Config(max_connections=limit),
        stats=AppStats(),
        acceptors=list(acceptors),
        connection_count=connected,
    )


async def listening(system: ActorSystem, acceptor: Any, app: Any) -> tuple[Any, Gateway]:
    ref = system.spawn(Gateway, acceptor, app)
    await ref.ask(Listen())
    gateway = ref._cell.actor
    assert isinstance(gateway, Gateway)
    return ref, gateway


# -- listening ------------------------------------------------------------------------------


async def test_listen_starts_a_listener_with_admit_and_answers_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.gateway")
    listener = FakeListener()
    async with ActorSystem() as system:
        ref = system.spawn(Gateway, listener, host(listener))
        gateway = ref._cell.actor
        assert isinstance(gateway, Gateway)
        assert not gateway.accepting
        assert await ref.ask(Listen()) == ("127.0.0.1", 7777)
        assert gateway.accepting
        assert listener.started_with == {"admit": gateway._admit}
        assert listener.on_connection == gateway._on_connection
    assert [r.getMessage() for r in caplog.records if r.name == "actors.gateway"] == [
        "[gw-1] tcp listening on 127.0.0.1:7777"
    ]


async def test_a_user_acceptor_is_started_without_admit() -> None:
    acceptor = UserAcceptor()
    async with ActorSystem() as system:
        _, gateway = await listening(system, acceptor, host(acceptor))
        assert acceptor.start_kwargs == {}
        assert gateway.accepting


async def test_a_listen_error_reaches_the_asker_and_the_gateway_does_not_accept() -> None:
    class Broken(FakeListener):
        async def start(self, on_connection: ConnectionFactory, **kwargs: Any) -> None:
            raise OSError("address in use")

    async with ActorSystem() as system:
        ref = system.spawn(Gateway, Broken(), host())
        with pytest.raises(OSError, match="address in use"):
            await ref.ask(Listen())
        assert not ref._cell.actor.accepting  # type: ignore[attr-defined]


async def test_stop_accepting_stops_the_listener_once() -> None:
    listener = FakeListener()
    async with ActorSystem() as system:
        ref, gateway = await listening(system, listener, host(listener))
        await ref.ask(StopAccepting())
        await ref.ask(StopAccepting())
        assert listener.stops == 1
        assert not gateway.accepting


async def test_stop_accepting_before_listen_stops_nothing() -> None:
    listener = FakeListener()
    async with ActorSystem() as system:
        ref = system.spawn(Gateway, listener, host(listener))
        await ref.ask(StopAccepting())
        assert listener.stops == 0


# -- admitting at accept ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connected", "opening", "admitted"),
    [
        (0, (0, 0), True),
        (2, (0, 0), True),
        (3, (0, 0), False),  # connected + opening must stay below the limit
        (1, (1, 1), False),  # sockets still opening on every listener count
        (1, (1, 0), True),
        (0, (2, 1), False),
    ],
)
async def test_admit_counts_connections_and_sockets_opening_on_every_listener(
    connected: int, opening: tuple[int, int], admitted: bool
) -> None:
    mine, other = FakeListener(), FakeListener(7001)
    mine.stats.opening, other.stats.opening = opening
    not_a_listener = MemoryAcceptor()
    not_a_listener.stats.opening = 100  # has no sockets opening: not counted
    app = host(mine, other, not_a_listener, limit=3, connected=connected)
    app.stats.refused_connections = 5
    async with ActorSystem() as system:
        _, gateway = await listening(system, mine, app)
        assert gateway._admit() is admitted
        assert app.stats.refused_connections == (5 if admitted else 6)  # counted up


async def test_admit_refuses_everything_when_not_accepting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = FakeListener()
    app = host(listener, limit=10)
    async with ActorSystem() as system:
        ref, gateway = await listening(system, listener, app)
        await ref.ask(StopAccepting())
        assert gateway._admit() is False
        assert app.stats.refused_connections == 1
    assert [r.getMessage() for r in caplog.records if r.name == "actors.gateway"] == [
        "[gw-1] refusing a tcp connection at accept (limit 10 reached, 0 still opening, "
        "or stopping)"
    ]


async def test_refusals_are_logged_at_warning_once_per_10_s_each_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server at its limit is when a flood of connections comes: each refused socket
    wrote a warning, as fast as a peer could connect."""
    caplog.set_level(logging.DEBUG, logger="actors.gateway")
    listener = FakeListener()
    app = host(listener, limit=1, connected=1)
    async with ActorSystem() as system:
        _, gateway = await listening(system, listener, app)
        for _ in range(4):
            assert gateway._admit() is False
        for _ in range(2):
            assert isinstance(gateway._on_connection(FakeConnection()), _Refused)  # type: ignore[arg-type]
        assert app.stats.refused_connections == 6  # every one counted
        refusals = [r for r in caplog.records if "refusing" in r.getMessage()]
        assert [r.levelno for r in refusals] == [logging.WARNING] + [logging.DEBUG] * 5
        gateway.refusals._last = -100.0  # 10 s later
        assert gateway._admit() is False
        last = [r for r in caplog.records if "refusing" in r.getMessage()][-1]
        assert last.levelno == logging.WARNING
        assert last.getMessage().endswith("(5 more since the last such line, not logged)")


# -- handing a connection over ---------------------------------------------------------------


@pytest.mark.parametrize(("connected", "accepting"), [(2, True), (5, True), (0, False)])
async def test_a_connection_over_the_limit_or_while_stopping_is_aborted_and_counted(
    connected: int, accepting: bool, caplog: pytest.LogCaptureFixture
) -> None:
    listener = FakeListener()
    app = host(listener, limit=2, connected=connected)
    async with ActorSystem() as system:
        ref, gateway = await listening(system, listener, app)
        if not accepting:
            await ref.ask(StopAccepting())
        connection = FakeConnection()
        app.stats.refused_connections = 2
        handler = gateway._on_connection(connection)  # type: ignore[arg-type]
        assert isinstance(handler, _Refused)
        handler.data_received(b"ignored")
        handler.connection_lost(None)
        assert connection.aborted == 1
        assert app.stats.refused_connections == 3
        assert system.actor_count == 1  # no session actor
    assert "[gw-1] refusing fake connection from peer:1 (limit 2 reached" in caplog.text


async def test_an_admitted_connection_gets_a_session_actor_that_serves_it() -> None:
    app = App(server_type="gw", server_id="gw-1", max_connections=2)
    test = TestClient(app)
    await test.start()
    acceptor = MemoryAcceptor()
    try:
        ref, _ = await listening(app.system, acceptor, app)
        channel = await acceptor.connect()
        assert app.connection_count == 1
        (child,) = ref._cell.children
        assert isinstance(child.actor, SessionActor) and child.parent is ref._cell
        client = await Client.over(channel)
        docs = await client.request("sys.docs")
        assert docs["server_type"] == "gw"
        await client.close()
        await asyncio.wait_for(app.connections.zero.wait(), 5)

        # Over the limit: the app's own client and one more fill it.
        first = await test.connect()
        second = await acceptor.connect()
        third = await acceptor.connect()
        assert app.connection_count == 2
        assert await third.receive() == b""  # aborted at once
        assert app.stats.refused_connections == 1
        await first.close()
        await second.close()
    finally:
        await test.stop()
