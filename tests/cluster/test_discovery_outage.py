"""Outages of etcd and NATS are logged once, and their ends once (issue 19.1 and 19.2).

Real processes: the cluster sample's room and connector (chat with etcd groups), three chat
clients that keep joining and leaving while etcd is stopped by PID and started again. Before,
every failed group operation logged an ERROR with a 50-line traceback (315 tracebacks and
16.8k lines from 3 clients in 20 s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import pytest

from actors.app import App
from actors.cluster.rpc import ClusterStartupError
from actors.metrics import PrometheusReporter
from tests.actors.metrics.recorder import http_get
from tests.cluster.harness import NODE_ENV, Node, both_transports, start_node
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.client import Client, RequestError

OUTAGE = 5.0
"""Seconds etcd stays down."""


async def chat_client(port: int, stop: asyncio.Event, codes: list[str]) -> None:
    """Join, leave, again, until ``stop``; the error code of each failed join."""
    while not stop.is_set():
        client = await Client.connect("127.0.0.1", port, request_timeout=10)
        try:
            await client.request("room.room.join", {"name": "ann"})
            codes.append("ok")
        except RequestError as exc:
            codes.append(exc.code)
        finally:
            await client.close()
        await asyncio.sleep(0.05)


def lines_between(node: Node, first: int, until: str = "") -> list[str]:
    """The node's log lines from index ``first`` on, up to the first one containing
    ``until`` (included; "": to the end)."""
    lines = node.log[first:]
    end = next((i for i, line in enumerate(lines) if until and until in line), len(lines) - 1)
    return lines[: end + 1]


async def join_once_routed(client: Client, connector: Node) -> Any:
    """``room.room.join``, once the connector routes to the room again. The room's lease
    (TTL 2 s in tests) may expire while etcd restarts, if its keep-alive comes back later
    than that: the room then registers anew, and until the connector's watch sees it,
    requests are answered PIT-500 "no servers available" (as Pitaya's would be)."""
    for _ in range(3):
        seen = len(connector.log)
        try:
            return await client.request("room.room.join", {"name": "bob"})
        except RequestError as exc:
            if "no servers available" not in exc.msg:
                raise
        await connector.wait_for_log("server added room-1", timeout=15, start=seen)
    raise AssertionError("the connector never routed to the room again")


@both_transports
async def test_an_etcd_outage_is_told_once_and_its_end_once(
    rpc_transport: str, nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    """Over gRPC the binding storage fails too (binds, lookups for pushes): told once too.
    Afterwards, members whose leaving failed during the outage are still in the group (as
    in Pitaya): pushes to them are answered "not bound" (logged at info, one per push)."""
    env = {"PITAYA_ETCD_OUTAGE_LOG_INTERVAL": "2", "PITAYA_CLUSTER_CONNECT_TIMEOUT": "1"}
    room = await start_node(nodes, "room", "room-1", nats_server, etcd_server, **env)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server, **env)
    await room.wait_for_log("server added c-1")  # the last line before the outage
    marks = {node: len(node.log) for node in (room, connector)}
    etcd_server.stop(kill=True)
    down_at = time.monotonic()
    stop, codes = asyncio.Event(), list[str]()
    clients = [
        asyncio.create_task(chat_client(connector.ports["tcp"], stop, codes)) for _ in range(3)
    ]
    await room.wait_for_log("etcd at", timeout=10)
    await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
    etcd_server.start()
    back = await room.wait_for_log("] etcd at 127.0.0.1", timeout=1)  # the start, already
    for node in (room, connector):
        await node.wait_for_log("is back after", timeout=15)
    stop.set()
    await asyncio.gather(*clients)
    assert "PIT-500" in codes, codes  # group operations failed during the outage ...
    client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
    try:  # ... and work again after it
        assert (await join_once_routed(client, connector))["result"] == "success"
    finally:
        await client.close()
    for node in (room, connector):
        logged = lines_between(node, marks[node], until="is back after")
        print(f"{node.server_id}: {len(logged)} lines during the outage")
        print("\n".join(logged))
        assert not [line for line in logged if "Traceback" in line], logged
        assert not [line for line in logged if " ERROR " in line], logged
        etcd_lines = [line for line in logged if "etcd at 127.0.0.1" in line]
        starts = [line for line in etcd_lines if "is unreachable" in line]
        ends = [line for line in etcd_lines if "is back after" in line]
        summaries = [line for line in etcd_lines if "still unreachable after" in line]
        # Both use etcd: the room its groups and lease, the connector its lease and the
        # groups its sessions leave when they close.
        assert len(starts) == 1 and " WARNING " in starts[0], logged
        assert len(ends) == 1 and " INFO " in ends[0], logged
        assert 1 <= len(summaries) <= OUTAGE / 2 + 2, logged
        assert "operations failed" in ends[0] and "operations failed" in summaries[0]
        assert len(logged) == 2 + len(summaries), logged
    assert back


async def test_a_nats_outage_is_told_once_and_its_end_once(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    """Before: ``disconnected from NATS`` and then two ``NATS error`` warnings a second per
    server for as long as the outage lasted. Now a line when it starts, a summary every
    ``nats_outage_log_interval`` (2 s here) and a line when it ends."""
    env = {"PITAYA_NATS_OUTAGE_LOG_INTERVAL": "2"}
    room = await start_node(nodes, "room", "room-1", nats_server, etcd_server, **env)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server, **env)
    marks = {node: len(node.log) for node in (room, connector)}
    client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
    nats_server.stop(kill=True)
    await room.wait_for_log("lost the connection to NATS", timeout=10)
    await connector.wait_for_log("lost the connection to NATS", timeout=10)
    # Meanwhile a forwarded request fails at once (README: "When NATS or etcd is down").
    started = time.monotonic()
    try:
        await client.request("room.room.whoami", {})
        raise AssertionError("a forwarded request went through without NATS")
    except RequestError as exc:
        assert exc.code == "PIT-500", exc
    assert time.monotonic() - started < 1
    await client.close()
    await asyncio.sleep(OUTAGE)
    nats_server.start()
    for node in (room, connector):
        await node.wait_for_log("reconnected to NATS after", timeout=15)
    client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
    try:  # the cluster works again
        assert (await client.request("room.room.join", {"name": "ann"}))["result"] == "success"
    finally:
        await client.close()
    for node in (room, connector):
        logged = [line for line in lines_between(node, marks[node]) if "NATS" in line]
        print(f"{node.server_id}: {len(logged)} NATS lines for a {OUTAGE:g} s outage")
        print("\n".join(logged))
        summaries = [line for line in logged if "still unreachable after" in line]
        assert 1 <= len(summaries) <= OUTAGE / 2 + 2, logged
        assert all(" WARNING " in line and "failed attempts; last: " in line for line in summaries)
        assert len(logged) == 2 + len(summaries), logged
        assert " WARNING " in logged[0] and "lost the connection to NATS" in logged[0]
        assert " INFO " in logged[-1] and "failed attempts)" in logged[-1], logged[-1]


async def test_a_clean_stop_and_a_missing_etcd_say_nothing_of_nats(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    room = await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    assert await room.stop() == 0
    assert not [line for line in room.log if "NATS" in line and " WARNING " in line], room.log
    # etcd is not there at start-up: the one line names etcd, nothing is said of NATS.
    etcd_server.stop(kill=True)
    code, lines = await run_to_exit("room-2", nats_server, etcd_server)
    assert code == 1, lines
    assert lines[-1].startswith("room-2 cannot start: cannot reach etcd at "), lines
    assert not [line for line in lines if "NATS" in line], lines


async def run_to_exit(server_id: str, nats: NatsServer, etcd: EtcdServer) -> tuple[int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cluster.node", "room", "--id", server_id,
        "--nats", nats.url, "--etcd", etcd.endpoint,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **NODE_ENV, "PITAYA_CLUSTER_CONNECT_TIMEOUT": "1"},
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace").splitlines()


async def ready(prometheus: PrometheusReporter) -> tuple[int, str]:
    """What a readiness probe gets from ``GET /ready``: the status and the body's line."""
    response = await http_get(prometheus.address, "/ready")
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode().strip()


def cluster_app(nats: NatsServer, etcd: EtcdServer, **options: Any) -> App:
    return App(
        server_type="room",
        mode="cluster",
        frontend=False,
        nats_url=nats.url,
        etcd_endpoints=etcd.endpoint,
        etcd_lease_ttl=3,  # a keep-alive every second
        cluster_connect_timeout=1,
        **options,
    )


async def test_ready_holds_through_an_etcd_outage(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An etcd outage is every server's at once, and each keeps serving from its last table:
    ``/ready`` answered 503 on all of them for as long as it lasted, so a Kubernetes readiness
    probe took every pod out of its Service, an etcd blip becoming a full outage. It stays
    200 now (the body says discovery is unreachable), and plain ``ready`` once etcd is back.
    A server that never registered (started during the outage) is not ready."""
    caplog.set_level(logging.DEBUG, logger="actors.cluster.discovery")
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, process_metrics=False)
    app = cluster_app(nats_server, etcd_server)
    app.add_metrics_reporter(prometheus)
    async with app:
        assert await ready(prometheus) == (200, "ready")
        await asyncio.to_thread(etcd_server.stop, kill=True)
        # The lease keep-alive failed: the server rides out the outage.
        await until(lambda: "discovery rides out an etcd outage" in caplog.text, timeout=10)
        assert await ready(prometheus) == (
            200,
            "ready (degraded: discovery unreachable, serving from the last known server table)",
        )
        assert app.ready_now()
        newcomer = cluster_app(nats_server, etcd_server)  # never registered: not ready
        with pytest.raises(ClusterStartupError, match="cannot reach etcd"):
            await newcomer.start()
        assert not newcomer.ready_now()
        assert newcomer.readiness().line() == "not ready: start-up failed"
        status, line = await ready(prometheus)  # the one that registered still is
        assert status == 200 and "discovery unreachable" in line
        await asyncio.to_thread(etcd_server.start)
        await until(lambda: "registration confirmed" in caplog.text, timeout=15)
        assert await ready(prometheus) == (200, "ready")
    assert app.readiness().line() == "not ready: stopped"
