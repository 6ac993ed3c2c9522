"""Backends hear of the binds and closes of a NATS outage once NATS is back (real NATS and
etcd, in-process servers).

A frontend tells the backends that served a session of its bind and close with a notify;
during an outage that notify was dropped, so a room never heard that a player left then and
kept the member for as long as the room lived. The frontend now holds those events and sends
them, in order, when it reconnects (``actors.cluster.held_events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from actors.app import App
from actors.cluster.held_events import HeldEvents
from actors.session import Session
from actors.testing import TestServer, serve
from samples.echo.server import Echo
from tests.actors.cluster.test_carry import Account
from tests.cluster.test_concurrency import cluster_options
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.client import Client

SENT_BIND_AND_CLOSE = (
    "sent 2 session event(s) held during an outage of the transport or of their server"
)
"""What the frontend says once the bind and close it held reached the room."""


async def test_a_bind_and_a_close_during_a_nats_outage_reach_the_backend_after_it(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors.cluster.users")
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Echo)
    events: list[tuple[str, str | None]] = []
    room.on_remote_session_bind(lambda s: events.append(("bind", s.uid)))
    room.on_remote_session_close(lambda s: events.append(("close", s.uid)))
    connector = App(server_type="connector", server_id="c-1", **common)
    connector.register(Account)  # account.login binds the uid it is given, on the frontend
    async with room, serve(connector) as server:
        assert room.cluster is not None and connector.cluster is not None
        await until(lambda: connector.cluster.discovery.server("room-1") is not None)
        ann = await server.connect()
        assert await ann.request("room.echo.echo", "hi") == "hi"  # served by the room
        await asyncio.to_thread(nats_server.stop)
        await until(lambda: not connector.cluster.rpc_client.connected)
        assert await ann.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        await ann.close()
        await until(lambda: connector.connection_count == 0)
        assert len(connector.cluster.users.held_events) == 2
        assert events == []
        await asyncio.to_thread(nats_server.start)
        await until(lambda: events == [("bind", "ann"), ("close", "ann")], timeout=15)
        # Acknowledged once its callbacks ran: the answer is on its way back to the frontend.
        await until(lambda: len(connector.cluster.users.held_events) == 0)  # type: ignore[union-attr]
    assert SENT_BIND_AND_CLOSE in caplog.text


async def test_events_held_when_the_frontend_stops_are_said_to_be_lost(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Echo)
    closed: list[int] = []

    def left(session: Session) -> None:
        closed.append(session.id)

    room.on_remote_session_close(left)
    connector = App(server_type="connector", server_id="c-1", shutdown_timeout=1, **common)
    async with room:
        async with serve(connector) as server:
            assert connector.cluster is not None
            await until(lambda: connector.cluster.discovery.server("room-1") is not None)
            ann = await server.connect()
            assert await ann.request("room.echo.echo", "hi") == "hi"
            await asyncio.to_thread(nats_server.stop)
            await until(lambda: not connector.cluster.rpc_client.connected)
            await ann.close()
            await until(lambda: len(connector.cluster.users.held_events) == 1)
        await asyncio.to_thread(nats_server.start)
    assert closed == []
    assert "1 session event(s) not acknowledged by their server" in caplog.text


class Gate:
    """A TCP relay to NATS that can refuse connections: a server behind it reconnects only
    once it is opened (another process of the cluster, slower to get back after an outage)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open = True
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def cut(self) -> None:
        """Close the connections relayed now (NATS sees its client go; the client sees NATS
        go and reconnects, through the gate)."""
        for writer in self._writers:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"nats://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Gate:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return

        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
            writer.close()
            up_writer.close()
            self._writers.difference_update((writer, up_writer))

        for task in (
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@dataclass
class GatedRoom:
    """A room behind a :class:`Gate` that records its session events, a connector (with
    ``account.login``) not behind it, and a client of the connector the room served once."""

    gate: Gate
    room: App
    connector: App
    held: HeldEvents
    ann: Client
    events: list[tuple[str, str | None]]


@asynccontextmanager
async def gated_room(nats: NatsServer, etcd: EtcdServer) -> AsyncIterator[GatedRoom]:
    common = cluster_options(nats, etcd)
    async with Gate(nats.port) as gate:
        room = App(
            server_type="room",
            server_id="room-1",
            frontend=False,
            **{**common, "nats_url": gate.url},
        )
        room.register(Echo)
        events: list[tuple[str, str | None]] = []
        room.on_remote_session_bind(lambda s: events.append(("bind", s.uid)))
        room.on_remote_session_close(lambda s: events.append(("close", s.uid)))
        connector = App(server_type="connector", server_id="c-1", **common)
        connector.register(Account)
        async with room, serve(connector) as server:
            held, ann = await a_client_the_room_served(connector, server)
            yield GatedRoom(gate, room, connector, held, ann, events)


async def a_client_the_room_served(connector: App, server: TestServer) -> tuple[HeldEvents, Client]:
    """A client of ``connector`` whose session ``room-1`` served once, and the connector's
    held events."""
    assert connector.cluster is not None
    held = connector.cluster.users.held_events
    assert held is not None
    await until(lambda: connector.cluster.discovery.server("room-1") is not None)
    ann = await server.connect()
    assert await ann.request("room.echo.echo", "hi") == "hi"
    return held, ann


def connected(app: App) -> bool:
    assert app.cluster is not None
    return app.cluster.rpc_client.connected


async def test_held_events_reach_a_backend_that_reconnects_after_the_frontend(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    """After a NATS restart every server reconnects at its next attempt, in any order: the
    room here gets back after the frontend released what it held."""
    async with gated_room(nats_server, etcd_server) as cluster:
        cluster.gate.open = False
        await asyncio.to_thread(nats_server.stop)
        await until(lambda: not connected(cluster.connector))
        await until(lambda: not connected(cluster.room))
        assert await cluster.ann.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        await cluster.ann.close()
        await until(lambda: len(cluster.held) == 2)
        await asyncio.to_thread(nats_server.start)
        # Released as the frontend got back: tried since, nobody subscribed for them yet.
        await until(lambda: connected(cluster.connector), timeout=15)
        assert cluster.held.busy_for("room-1") and len(cluster.held) == 2
        assert not connected(cluster.room)
        cluster.gate.open = True
        await until(lambda: connected(cluster.room), timeout=15)
        await until(lambda: cluster.events == [("bind", "ann"), ("close", "ann")], timeout=5)


async def test_events_a_backend_missed_while_it_alone_lost_nats_reach_it_once_back(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """NATS stayed up, the room's connection to it did not: the frontend's notify of the
    player's bind and close found no subscriber and was gone, and the room kept the player
    for as long as it lived. Acknowledged, the events wait and reach the room once back."""
    caplog.set_level(logging.INFO, logger="actors.cluster.users")
    async with gated_room(nats_server, etcd_server) as cluster:
        cluster.gate.open = False
        cluster.gate.cut()
        await until(lambda: not connected(cluster.room))
        assert await cluster.ann.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        await cluster.ann.close()
        await until(lambda: cluster.held.busy_for("room-1") and len(cluster.held) == 2)
        assert connected(cluster.connector) and cluster.events == []
        cluster.gate.open = True
        await until(lambda: cluster.events == [("bind", "ann"), ("close", "ann")], timeout=15)
        await until(lambda: len(cluster.held) == 0)
    assert SENT_BIND_AND_CLOSE in caplog.text


async def test_a_graceful_stop_waits_for_the_backends_to_acknowledge_its_closes(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The stop kicks its sessions, and their closes go to the backends that served them:
    the stop waits (within its budget) until those are acknowledged, rather than close the
    connection under them and say they were lost."""
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Echo)
    running = asyncio.Event()
    finish = asyncio.Event()
    closed: list[int] = []

    async def left(session: Session) -> None:
        running.set()
        await finish.wait()  # a player's state being saved
        closed.append(session.id)

    room.on_remote_session_close(left)
    connector = App(server_type="connector", server_id="c-1", shutdown_timeout=5, **common)
    async with room, serve(connector) as server:
        held, ann = await a_client_the_room_served(connector, server)
        stopping = asyncio.create_task(connector.stop())
        await asyncio.wait_for(running.wait(), 5)
        assert len(held) == 1 and not stopping.done()  # sent, not acknowledged yet
        finish.set()
        await asyncio.wait_for(stopping, 5)
        await ann.close()
    assert len(closed) == 1
    assert "not acknowledged" not in caplog.text
