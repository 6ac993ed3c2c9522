"""NATS bytes per forwarded notify when the client's handshake is big (issue 18.4).

A connector and a room (in this process) over a real nats-server (with its monitoring port)
and etcd; one client handshakes with a ``handshake_user`` of ``--size`` bytes, sends one
request, then ``--notifies`` notifies of 22 bytes and a last request; nats-server's
``/varz`` ``in_bytes`` gives what crossed NATS. The room's handler checks that it sees the
whole handshake on every message. Before the fix every forwarded message carried the
handshake (one 900 KiB handshake made forty 22-byte notifies 36 MB of NATS traffic)::

    python -m tests.bench.bench_handshake_bytes [--size 921600] [--notifies 40]

``measure`` is used by tests/cluster/test_handshake_once.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from actors.app import App
from actors.handler import Handler, handler
from actors.modules.binding_storage import BindingStorage
from actors.session import Session
from actors.testing import serve
from tests.services import EtcdServer, NatsServer, free_port

NOTIFY_BODY = {"move": "north", "n": 1}  # 22 bytes of JSON


class MonitoredNats(NatsServer):
    """nats-server with its HTTP monitoring port, for ``/varz``."""

    def __init__(self) -> None:
        super().__init__()
        self.http_port = free_port()

    def command(self) -> list[str]:
        return [*super().command(), "-m", str(self.http_port)]

    def in_bytes(self) -> int:
        url = f"http://127.0.0.1:{self.http_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(json.load(answer)["in_bytes"])


class Seen(Handler):
    """``room.seen.*``: the size of the handshake each message arrived with."""

    service = "seen"

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes

    def _size(self, session: Session) -> int:
        handshake = session.handshake
        return len(handshake.user.get("blob", "")) if handshake is not None else -1

    @handler
    def size(self, session: Session, body: dict[str, Any]) -> dict[str, int]:
        self.sizes.append(self._size(session))
        return {"size": self.sizes[-1]}

    @handler
    def tick(self, session: Session, body: dict[str, Any]) -> None:
        self.sizes.append(self._size(session))


@dataclass
class Figures:
    handshake_size: int
    notifies: int
    first_request_bytes: int
    """NATS bytes of the first request (it carries the handshake) and its answer."""
    per_notify_bytes: float
    """NATS bytes per later notify (request and ack), the last request's share included."""
    sizes: list[int]
    """The handshake size the room saw with each message."""


def cluster_apps(
    nats: NatsServer, etcd: EtcdServer, sizes: list[int], transport: str = "nats"
) -> tuple[App, App]:
    common: dict[str, Any] = {
        "mode": "cluster",
        "nats_url": nats.url,
        "etcd_endpoints": etcd.endpoint,
        "rpc_timeout": 5,
        "rpc_transport": transport,
    }
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Seen, sizes)
    connector = App(
        server_type="connector",
        server_id="connector-1",
        max_handshake_size=4 * 1024 * 1024,
        **common,
    )
    if transport == "grpc":  # no per-uid subjects: the binding storage (as Pitaya)
        for app in (room, connector):
            app.register_module(BindingStorage(app), "binding_storage")
    return room, connector


async def measure(
    nats: MonitoredNats, etcd: EtcdServer, *, size: int = 900 * 1024, notifies: int = 40
) -> Figures:
    sizes: list[int] = []
    room, connector = cluster_apps(nats, etcd, sizes)
    async with room, serve(connector) as server:
        assert connector.cluster is not None
        deadline = time.monotonic() + 10
        while not connector.cluster.discovery.servers("room"):
            if time.monotonic() > deadline:
                raise TimeoutError("the connector never saw the room in discovery")
            await asyncio.sleep(0.05)
        client = await server.connect(handshake_user={"blob": "x" * size}, timeout=10)
        start = await asyncio.to_thread(nats.in_bytes)
        assert await client.request("room.seen.size", {}) == {"size": size}
        after_first = await asyncio.to_thread(nats.in_bytes)
        for _ in range(notifies):
            await client.notify("room.seen.tick", NOTIFY_BODY)
        assert await client.request("room.seen.size", {}) == {"size": size}  # after them all
        end = await asyncio.to_thread(nats.in_bytes)
    return Figures(
        size,
        notifies,
        after_first - start,
        (end - after_first) / notifies,
        sizes,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=900 * 1024)
    parser.add_argument("--notifies", type=int, default=40)
    args = parser.parse_args()
    nats, etcd = MonitoredNats(), EtcdServer()
    nats.start()
    etcd.start()
    try:
        figures = await measure(nats, etcd, size=args.size, notifies=args.notifies)
    finally:
        nats.close()
        etcd.close()
    total = figures.first_request_bytes + figures.per_notify_bytes * figures.notifies
    print(f"handshake {figures.handshake_size} bytes, {figures.notifies} notifies of 22 bytes")
    print(f"first request (with its answer): {figures.first_request_bytes} NATS bytes")
    print(f"per notify after it (request + ack): {figures.per_notify_bytes:.0f} NATS bytes")
    print(
        f"total: {total / 1e6:.2f} MB; the room saw the handshake each time: "
        f"{set(figures.sizes) == {figures.handshake_size}}"
    )


if __name__ == "__main__":
    asyncio.run(main())
