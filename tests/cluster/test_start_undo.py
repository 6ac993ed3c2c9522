"""A start-up that fails or is abandoned undoes what it had done, all of it, even when a stop
(or a cancellation of its caller) comes while it undoes: nothing is left behind, no etcd
entry, no NATS connection, no task, no module left started.

Each undo used to run where the stop could cut it short: the stop cancelled the start-up
whenever the life cycle itself was not undoing yet (a module's undo, the cluster's join or
connect undoing theirs), and a cancelled caller cancelled any undo. The timing is driven by
events: a module or a patched step waits for one while the stop comes. The last test guards
the plain case (a stop while a module starts), which the code before handled too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import psutil
import pytest

from actors.app import App
from actors.cluster.cluster import Cluster
from actors.cluster.discovery import EtcdServiceDiscovery
from actors.cluster.rpc import ServerIdTaken
from actors.errors import StartAborted
from actors.modules.base import ModuleBase, ModuleStartError
from actors.readiness import Readiness
from tests.services import EtcdServer, NatsServer, free_port
from transport.etcd import EtcdClient
from transport.nats_client import LeanClient


class Gate:
    """``reached`` is set when a step gets to the gate; it goes on once ``opened``."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def wait(self) -> None:
        self.reached.set()
        await self.opened.wait()


class SlowToShutDown(ModuleBase):
    """Started fine; its ``before_shutdown`` waits at ``gate``; ``shut_down`` once its
    ``shutdown`` ran (what a module's undo must get to)."""

    def __init__(self, app: App | None = None) -> None:
        self.app = app
        self.gate = Gate()
        self.shut_down = False
        self.cluster: Cluster | None = None

    async def init(self) -> None:
        if self.app is not None:
            self.cluster = self.app.cluster  # to look at once the start-up is undone

    async def before_shutdown(self) -> None:
        await self.gate.wait()

    async def shutdown(self) -> None:
        self.shut_down = True


class FailsToStart(ModuleBase):
    async def init(self) -> None:
        raise ValueError("no database")


def pending_tasks() -> set[asyncio.Task[Any]]:
    """The tasks still running, but this one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


def connections_to(port: int) -> int:
    """This process's open TCP connections to ``port`` on 127.0.0.1 (NATS's, etcd's)."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def cluster_app(nats: NatsServer, etcd: str, server_id: str = "c-1", **options: Any) -> App:
    return App(
        server_type="connector",
        server_id=server_id,
        mode="cluster",
        nats_url=nats.url,
        etcd_endpoints=etcd,
        **options,
    )


@pytest.fixture
async def etcd(etcd_server: EtcdServer) -> AsyncIterator[EtcdClient]:
    client = EtcdClient([etcd_server.endpoint])
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


async def test_a_stop_while_failed_modules_shut_down_lets_every_module_shut_down() -> None:
    """A module fails in ``init``; the modules started before it are shut down, and a stop
    comes during that. The stop cancelled the modules' undo (the life cycle was not undoing
    yet): the started module never got its ``shutdown``, and start() said StartAborted
    instead of the failure. Now every started module shuts down, the failure is raised, and
    the stop returns once that is done."""
    app = App(server_type="connector", server_id="c-1")
    slow = SlowToShutDown()
    app.register_module(slow, "slow")
    app.register_module(FailsToStart(), "fails")
    starting = asyncio.ensure_future(app.start())
    await asyncio.wait_for(slow.gate.reached.wait(), 10)  # the modules' undo is under way ...
    app.request_stop()  # ... when SIGTERM comes
    stopping = asyncio.ensure_future(app.stop())  # and a stop by code, which waits for it
    slow.gate.opened.set()
    with pytest.raises(ModuleStartError, match="no database"):
        await asyncio.wait_for(starting, 10)
    await asyncio.wait_for(stopping, 10)
    assert slow.shut_down
    assert app.system.lookup("handler:sys") is None
    assert app.readiness() == Readiness(False, "start-up failed")


async def test_a_cancelled_caller_waits_for_the_undo_of_a_failed_start(
    nats_server: NatsServer, etcd_server: EtcdServer, etcd: EtcdClient
) -> None:
    """Real NATS and etcd. The start-up fails at its last step (its port is taken) after the
    server registered; while it undoes (a module's before_shutdown waits), a stop comes and
    the task running start() is cancelled (a task group, a timeout). The cancellation cut the
    undo short: the server stayed in etcd (its id refused to its next start for a lease's
    TTL), its NATS connection open, its module never shut down. Now the undo finishes first,
    then the caller sees its cancellation."""
    before = pending_tasks()
    nats_before = connections_to(nats_server.port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = cluster_app(nats_server, etcd_server.endpoint)
        slow = SlowToShutDown(app)
        app.register_module(slow, "slow")
        app.listen_tcp("127.0.0.1", taken.getsockname()[1])
        starting = asyncio.ensure_future(app.start())
        await asyncio.wait_for(slow.gate.reached.wait(), 20)  # registered, now undoing ...
        assert await etcd.get("pitaya/servers/connector/c-1") is not None
        app.request_stop()  # ... when a stop comes
        starting.cancel()  # and the caller is cancelled
        slow.gate.opened.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(starting, 20)
    await asyncio.wait_for(app.stop(), 10)  # nothing more to do
    assert await etcd.get("pitaya/servers/connector/c-1") is None
    assert slow.cluster is not None and not slow.cluster.connected
    assert connections_to(nats_server.port) == nats_before
    assert slow.shut_down
    assert pending_tasks() <= before
    assert app.system.lookup("handler:sys") is None


async def test_a_stop_while_a_refused_join_closes_the_cluster_lets_it_close(
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    etcd: EtcdClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real NATS and etcd. The join is refused (a live server holds the id) and the cluster
    closes what it opened; a stop comes while etcd's side closes. The stop cancelled that
    close (the life cycle was not undoing yet), so the NATS connection opened for the
    start-up stayed open, with its tasks, and start() said StartAborted. Now the close
    finishes: the refusal is raised, the NATS connection is closed, and the holder keeps
    its entry."""
    holder = cluster_app(nats_server, etcd_server.endpoint)
    async with holder:
        held = await etcd.get("pitaya/servers/connector/c-1")
        before = pending_tasks()
        nats_before = connections_to(nats_server.port)
        gate = Gate()
        close = EtcdServiceDiscovery.close

        async def close_at_the_gate(self: EtcdServiceDiscovery) -> None:
            await gate.wait()
            await close(self)

        monkeypatch.setattr(EtcdServiceDiscovery, "close", close_at_the_gate)
        twin = cluster_app(nats_server, etcd_server.endpoint)
        starting = asyncio.ensure_future(twin.start())
        await asyncio.wait_for(gate.reached.wait(), 20)  # refused, closing ...
        cluster = twin.cluster
        stopping = asyncio.ensure_future(twin.stop())  # ... when the stop comes
        gate.opened.set()
        with pytest.raises(ServerIdTaken):
            await asyncio.wait_for(starting, 20)
        await asyncio.wait_for(stopping, 10)
        monkeypatch.undo()
        assert cluster is not None and not cluster.connected
        assert connections_to(nats_server.port) == nats_before
        assert pending_tasks() <= before
        assert await etcd.get("pitaya/servers/connector/c-1") == held  # the holder's, still
        assert holder.ready_now()


async def test_a_stop_just_after_nats_connected_closes_the_connection(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real NATS. The stop comes once the NATS connection is open, while the connect still
    subscribes (its reply subject). The cancellation left the connection open, with
    nats-py's reader and flusher tasks: nothing closed a connect that had connected. Now it
    is closed before start() says StartAborted."""
    gate = Gate()
    subscribe = LeanClient.subscribe

    def subscribe_at_the_gate(
        self: LeanClient, *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]:
        async def at_the_gate() -> Any:
            await gate.wait()  # never opened: the stop comes here
            return await subscribe(self, *args, **kwargs)

        return at_the_gate()

    patched: Callable[..., Any] = subscribe_at_the_gate
    monkeypatch.setattr(LeanClient, "subscribe", patched)
    before = pending_tasks()
    nats_before = connections_to(nats_server.port)
    app = cluster_app(nats_server, f"127.0.0.1:{free_port()}")
    starting = asyncio.ensure_future(app.start())
    await asyncio.wait_for(gate.reached.wait(), 20)
    assert connections_to(nats_server.port) == nats_before + 1  # connected, subscribing ...
    await asyncio.wait_for(app.stop(), 10)  # ... when the stop comes
    with pytest.raises(StartAborted):
        starting.result()
    assert connections_to(nats_server.port) == nats_before
    assert pending_tasks() <= before
    assert app.readiness() == Readiness(False, "stopped")


class SlowToStart(ModuleBase):
    """Its ``init`` waits at ``gate`` (never opened: the stop comes there)."""

    def __init__(self) -> None:
        self.gate = Gate()

    async def init(self) -> None:
        await self.gate.wait()


async def test_a_stop_while_a_module_starts_leaves_nothing_behind(
    nats_server: NatsServer, etcd_server: EtcdServer, etcd: EtcdClient
) -> None:
    """Real NATS and etcd: the server registered, then a module's ``init`` waits when the
    stop comes. start() says StartAborted, stop() returns once it is undone, and nothing is
    left: no etcd entry, no NATS connection, no task, no actor."""
    before = pending_tasks()
    nats_before = connections_to(nats_server.port)
    app = cluster_app(nats_server, etcd_server.endpoint)
    slow = SlowToStart()
    app.register_module(slow, "slow")
    starting = asyncio.ensure_future(app.start())
    await asyncio.wait_for(slow.gate.reached.wait(), 20)
    assert await etcd.get("pitaya/servers/connector/c-1") is not None
    await asyncio.wait_for(app.stop(), 10)
    with pytest.raises(StartAborted):
        starting.result()
    assert await etcd.get("pitaya/servers/connector/c-1") is None
    assert connections_to(nats_server.port) == nats_before
    assert pending_tasks() <= before
    assert app.system.lookup("handler:sys") is None
    assert app.readiness() == Readiness(False, "stopped")
