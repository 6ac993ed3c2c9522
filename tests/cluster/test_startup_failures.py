"""A cluster server that cannot reach NATS or etcd at start-up: one clear line, exit 1; one
stopped while it still tries: stopped at once.

Real server processes (the cluster sample's ``room``) pointed at closed ports; the line names
the service, the address and the cause, never a password, and there is no traceback. Ports
that take connections and never answer (``Blackhole``) hold a start-up for its whole
``cluster_connect_timeout``: a stop request then abandons it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

import pytest

from actors.app import App
from actors.errors import StartAborted
from actors.modules.base import ModuleBase
from actors.readiness import Readiness
from actors.testing import MemoryCluster
from tests.services import NatsServer, free_port


async def start_room(nats: str, etcd: str) -> tuple[int, list[str]]:
    """Run ``python -m samples.cluster room``; (exit code, stderr lines)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "samples.cluster", "room", "--id", "room-9",
        "--nats", nats, "--etcd", etcd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PITAYA_CLUSTER_CONNECT_TIMEOUT": "1", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace").splitlines()


async def test_nats_unreachable() -> None:
    nats_port, etcd_port = free_port(), free_port()  # nothing listens on either
    code, lines = await start_room(
        f"nats://ann:s3cret@127.0.0.1:{nats_port}", f"127.0.0.1:{etcd_port}"
    )
    assert code == 1, lines
    assert lines[-1] == (
        f"room-9 cannot start: cannot reach NATS at nats://***@127.0.0.1:{nats_port}: no "
        f"connection within 1 s (127.0.0.1:{nats_port}: connection refused)"
    ), lines
    assert not any("Traceback" in line or "s3cret" in line for line in lines), lines


async def test_etcd_unreachable(nats_server: NatsServer) -> None:
    etcd_port = free_port()
    code, lines = await start_room(nats_server.url, f"127.0.0.1:{etcd_port}")
    assert code == 1, lines
    prefix = f"room-9 cannot start: cannot reach etcd at 127.0.0.1:{etcd_port}: "
    assert lines[-1].startswith(prefix), lines
    assert "connection refused" in lines[-1].lower(), lines[-1]  # the cause etcd's client gave
    assert not any("Traceback" in line for line in lines), lines


class Blackhole:
    """A port that takes connections and never answers: a NATS (or etcd) that hangs, so a
    start-up waits on it for its whole ``cluster_connect_timeout``. ``tried`` is set when a
    client connected, ``hung_up`` when every client closed its connection again."""

    def __init__(self) -> None:
        self.tried = asyncio.Event()
        self.hung_up = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Blackhole:
        self._server = await asyncio.start_server(self._take, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:  # their readers see the end, and their tasks end
            writer.transport.abort()
        await self._server.wait_closed()

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.hung_up.clear()
        self.tried.set()
        try:
            while await reader.read(4096):  # whatever it says goes unanswered
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            if not self._writers:
                self.hung_up.set()


def stuck_app(nats: str, etcd: str, **options: Any) -> App:
    """A cluster app whose connection attempts would last 30 s."""
    return App(
        server_type="room",
        server_id="room-9",
        mode="cluster",
        frontend=False,
        nats_url=nats,
        etcd_endpoints=etcd,
        cluster_connect_timeout=30,
        **options,
    )


def pending_tasks() -> set[asyncio.Task[Any]]:
    """The tasks still running, but this one and the blackholes'."""
    return {
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and not task.done()
        and getattr(task.get_coro(), "__qualname__", "") != Blackhole._take.__qualname__
    }


async def test_a_stop_request_abandons_a_start_up_waiting_for_nats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGTERM (``request_stop``) during the start-up waited out the NATS connect
    (``cluster_connect_timeout``, here 30 s) before the server stopped. Now the connect is
    cancelled at once, the start-up raises StartAborted, and nothing is left: the
    connection attempt is closed, the server stopped with one line."""
    caplog.set_level(logging.INFO)
    async with Blackhole() as nats:
        before = pending_tasks()
        app = stuck_app(f"nats://127.0.0.1:{nats.port}", f"127.0.0.1:{free_port()}")
        starting = asyncio.ensure_future(app.start())
        await asyncio.wait_for(nats.tried.wait(), 10)  # the start-up waits on NATS ...
        mark = len(caplog.records)
        app.request_stop()  # ... when the stop comes
        with pytest.raises(StartAborted):
            await asyncio.wait_for(starting, 10)  # the connect would still be pending
        await asyncio.wait_for(nats.hung_up.wait(), 10)  # its connection is closed
        assert pending_tasks() <= before
        assert app.readiness() == Readiness(False, "stopped")
        lines = [(r.levelname, r.getMessage()) for r in caplog.records[mark:]]
        assert lines == [
            (
                "INFO",
                "[room-9] stopped during the start-up: a stop was requested, the start abandoned",
            )
        ]
        await app.stop()  # stopped already: nothing to do
        with pytest.raises(RuntimeError, match="an App starts once"):
            await app.start()


async def test_serve_forever_returns_as_after_a_stop_when_stopped_during_the_start_up() -> None:
    async with Blackhole() as nats:
        app = stuck_app(f"nats://127.0.0.1:{nats.port}", f"127.0.0.1:{free_port()}")
        serving = asyncio.ensure_future(app.serve_forever())
        await asyncio.wait_for(nats.tried.wait(), 10)
        app.request_stop()
        await asyncio.wait_for(serving, 10)  # returns: no exception, as a normal stop
        await asyncio.wait_for(nats.hung_up.wait(), 10)


async def test_stop_by_code_during_the_start_up_returns_once_it_is_undone(
    nats_server: NatsServer,
) -> None:
    """Here etcd hangs (NATS is up): the stop cancels the etcd connect, closes the NATS
    connection the start-up had opened (no nats-py task is left) and the etcd channel, and
    returns once that is done. (gRPC's core may finish the TCP attempt of the closed
    channel on its own, in its own thread: nothing of ours waits for it.)"""
    async with Blackhole() as etcd:
        before = pending_tasks()
        app = stuck_app(nats_server.url, f"127.0.0.1:{etcd.port}")
        starting = asyncio.ensure_future(app.start())
        await asyncio.wait_for(etcd.tried.wait(), 10)
        await asyncio.wait_for(app.stop(), 10)
        assert starting.done()
        with pytest.raises(StartAborted):
            starting.result()
        assert pending_tasks() <= before
        assert app.readiness() == Readiness(False, "stopped")


async def test_sigterm_during_the_start_up_stops_the_server_at_once() -> None:
    """The process: SIGTERM while NATS hangs ends it with status 0 (a normal stop) and one
    line, where it waited out cluster_connect_timeout (30 s here) and exited 1."""
    async with Blackhole() as nats:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "samples.cluster", "room", "--id", "room-9",
            "--nats", f"nats://127.0.0.1:{nats.port}", "--etcd", f"127.0.0.1:{free_port()}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PITAYA_CLUSTER_CONNECT_TIMEOUT": "30", "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            await asyncio.wait_for(nats.tried.wait(), 20)
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        lines = err.decode(errors="replace").splitlines()
        assert process.returncode == 0, lines
        assert lines[-1].endswith(
            "[room-9] stopped during the start-up: a stop was requested, the start abandoned"
        ), lines
        assert not [line for line in lines if " WARNING " in line or " ERROR " in line], lines


class SlowToStop(ModuleBase):
    """A module whose ``before_shutdown`` waits for ``release``; ``stopping`` says it began."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.release = asyncio.Event()

    async def before_shutdown(self) -> None:
        self.stopping.set()
        await self.release.wait()


async def test_a_stop_while_a_failed_start_is_undone_lets_the_undo_finish() -> None:
    """The start-up fails (its port is taken) after the server registered, and a stop comes
    while it undoes what it had started (here: a module's before_shutdown). The stop
    cancelled the undo, so the server stayed registered (its id refused to the next start,
    for a lease's TTL with etcd), its actors running, and start() said StartAborted (exit 0)
    instead of the failure. Now the undo finishes, the failure is raised, and the stop
    returns once it is done."""
    network = MemoryCluster()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = App(
            server_type="connector",
            server_id="c-1",
            mode="cluster",
            discovery=network.discovery(),
            rpc=network.rpc(),
        )
        module = SlowToStop()
        app.register_module(module, "slow")
        app.listen_tcp("127.0.0.1", taken.getsockname()[1])
        starting = asyncio.ensure_future(app.start())
        await asyncio.wait_for(module.stopping.wait(), 10)  # the failed start is undone ...
        app.request_stop()  # ... when the stop comes (SIGTERM)
        stopping = asyncio.ensure_future(app.stop())  # and one by code, which waits
        module.release.set()
        with pytest.raises(OSError):
            await asyncio.wait_for(starting, 10)
        await asyncio.wait_for(stopping, 10)
    assert "c-1" not in network.servers  # out of discovery
    assert app.system.lookup("handler:sys") is None  # its actors stopped
    assert app.readiness() == Readiness(False, "start-up failed")
    twin = App(
        server_type="connector",
        server_id="c-1",
        mode="cluster",
        discovery=network.discovery(),
        rpc=network.rpc(),
    )
    async with twin:  # its id is free
        assert twin.ready_now()
