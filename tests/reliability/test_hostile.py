"""Hostile input through real sockets against one running App (TCP and WebSocket).

Hypothesis generates byte streams (random bytes, and valid protocol pieces gone wrong) sent
in random chunks. Every hostile connection must be closed by the server within
``hostile.BOUND`` seconds, everything the server wrote must be well-formed, and a
well-behaved client must keep getting correct answers between examples. A final test opens
10,000 hostile connections and checks that tasks, sessions, connections, actors and memory
come back to where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from actors.app import App
from tests.reliability import hostile
from tests.reliability.support import ServerThread, make_app, until
from transport.client import Client

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Target:
    """The App under attack, in its own thread, with two well-behaved clients (TCP, WS)."""

    server: ServerThread
    tcp: Client
    ws: Client
    checks: itertools.count[int]

    @property
    def app(self) -> App:
        return self.server.app

    async def assert_serving(self) -> None:
        """Both well-behaved clients get a correct answer right now."""
        n = next(self.checks)

        async def check() -> None:
            assert await self.tcp.request("echo.echo", {"n": n}) == {"n": n}
            assert await self.ws.request("echo.echo", [n]) == [n]

        await self.server.call(check)
        errors = [r.getMessage() for r in self.server.errors]
        assert not errors, f"the server logged errors: {errors}"

    async def settled(self) -> tuple[int, int]:
        """Wait until only the well-behaved clients are left; then (tasks, actors) of the
        server's loop (bounded wait: teardown is asynchronous)."""
        app = self.app

        async def wait() -> tuple[int, int]:
            try:
                await until(lambda: app.connection_count == 2 and len(app.sessions) == 2)
            except TimeoutError:
                raise AssertionError(
                    f"{app.connection_count} connections, {len(app.sessions)} sessions; "
                    f"clients closed: tcp {self.tcp.close_reason}, ws {self.ws.close_reason}"
                ) from None
            return len(asyncio.all_tasks()), app.system.actor_count

        return await self.server.call(wait)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    app = make_app(
        handshake_timeout=0.3,  # a stream stuck mid-handshake (or mid-upgrade) ends fast
        heartbeat_interval=0.3,  # ... and so does one stuck later (no heartbeats: 0.75 s)
        max_packet_size=16 * 1024,
        max_route_length=64,
        max_pending_requests=4,
    )
    with ServerThread(app) as server:
        assert server.server is not None and server.loop is not None
        connect = server.server.connect
        tcp = asyncio.run_coroutine_threadsafe(connect(), server.loop).result(10)
        ws = asyncio.run_coroutine_threadsafe(connect(websocket=True), server.loop).result(10)
        yield Target(server, tcp, ws, itertools.count())


@SETTINGS
@given(stream=hostile.STREAMS, sizes=hostile.CHUNKS, eof=st.booleans())
@example(stream=hostile.HANDSHAKE + hostile.ACK + hostile.BOMB, sizes=[4096], eof=False)
@example(stream=b"\x04\xff\xff\xff", sizes=[1], eof=False)
@example(stream=hostile.HANDSHAKE + hostile.request("echo.echo", b"1"), sizes=[7], eof=False)
async def test_hostile_tcp_streams(
    target: Target, stream: bytes, sizes: list[int], eof: bool
) -> None:
    host, port = target.app.address("tcp")
    outcome = await hostile.tcp_attack(host, port, stream, sizes, eof)
    assert outcome.closed, f"connection still open after {hostile.BOUND}s"
    await target.assert_serving()


@SETTINGS
@given(
    garbage=st.none() | hostile.WS_GARBAGE,
    actions=st.lists(hostile.FRAMES, max_size=5),
    sizes=hostile.CHUNKS,
)
@example(garbage=b"GET / HTTP/1.1\r\nHost: x\r\n", actions=[], sizes=[3])
@example(garbage=b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", actions=[], sizes=[64])
@example(garbage=None, actions=[("binary", b"\x04\xff\xff\xff")], sizes=[2])
async def test_hostile_websocket_streams(
    target: Target, garbage: bytes | None, actions: list[tuple[str, bytes]], sizes: list[int]
) -> None:
    host, port = target.app.address("ws")
    outcome = await hostile.ws_attack(host, port, garbage=garbage, actions=actions, sizes=sizes)
    assert outcome.closed, f"connection still open after {hostile.BOUND}s"
    if garbage is None:
        assert outcome.http_status == 101
    await target.assert_serving()


async def test_hostile_examples_left_nothing_behind(target: Target) -> None:
    await target.settled()
    await target.assert_serving()


# -- 10,000 hostile connections -------------------------------------------------------------

_TCP_ATTACKS: list[tuple[bytes, bool]] = [
    # (bytes, the server closes by itself) -- otherwise the client leaves abruptly.
    (b"\x00garbage", True),
    (b"\x04\xff\xff\xff", True),
    (hostile.packet(1, b"{not json"), True),
    (hostile.HANDSHAKE + hostile.request("echo.echo", b"1"), True),
    (hostile.HANDSHAKE + hostile.ACK + hostile.request("x" * 70, b"1"), True),
    (hostile.HANDSHAKE + hostile.ACK + hostile.request("echo.echo", b"1"), False),
    (hostile.HANDSHAKE + hostile.ACK + b"\x04\x00\x10", False),
    (b"", False),
    (hostile.HANDSHAKE + hostile.ACK + hostile.request("probe.me", b"", notify=True) * 10, False),
]


def _ws_attacks() -> list[bytes]:
    protocol = hostile.ws_client("127.0.0.1", 1)
    protocol.send_request(protocol.connect())
    upgrade = b"".join(protocol.data_to_send())
    # Frames are masked by the client; reusing the same bytes is fine for the server.
    protocol.state = hostile.OPEN
    frames = hostile.frames_bytes(
        protocol,
        [("binary", hostile.HANDSHAKE), ("binary", hostile.ACK), ("binary", b"\x00junk")],
    )
    return [b"\x16\x03\x01garbage\r\n\r\n", upgrade, upgrade + frames]


async def _leave(writer: asyncio.StreamWriter, abort: bool) -> None:
    if abort:  # RST instead of FIN (unless the server was faster)
        with contextlib.suppress(OSError):
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _one_attack(app: App, n: int) -> None:
    if n % 4 == 3:
        attacks = _WS
        data, waits = attacks[n // 4 % len(attacks)], False
        host, port = app.address("ws")
    else:
        data, waits = _TCP_ATTACKS[n % len(_TCP_ATTACKS)]
        host, port = app.address("tcp")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if data:
            writer.write(data)
            await writer.drain()
        if waits:
            while await asyncio.wait_for(reader.read(65536), hostile.BOUND):
                pass
        elif n % 3 == 0:
            await reader.read(1)  # wait for the server's first answer, then vanish
    except OSError:
        pass
    finally:
        await _leave(writer, abort=n % 2 == 0)


_WS = _ws_attacks()


async def _attack_many(app: App, total: int, concurrency: int = 200) -> None:
    numbers = iter(range(total))

    async def worker() -> None:
        for n in numbers:
            await _one_attack(app, n)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)


async def test_ten_thousand_hostile_connections_leak_nothing(target: Target) -> None:
    app = target.app
    await target.settled()
    await _attack_many(app, 2000)  # warm up caches and allocator pools first
    baseline = await target.settled()
    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss

    await _attack_many(app, 10_000)

    async def back_to_baseline() -> None:
        await until(lambda: (len(asyncio.all_tasks()), app.system.actor_count) == baseline)

    await target.settled()
    await target.server.call(back_to_baseline)
    assert sum(a.stats.active for a in app.acceptors) == 2  # type: ignore[attr-defined]
    gc.collect()
    growth = process.memory_info().rss - rss_before
    print(f"RSS growth after 10,000 hostile connections: {growth / 2**20:.1f} MiB")
    assert growth < 32 * 2**20
    await target.assert_serving()
