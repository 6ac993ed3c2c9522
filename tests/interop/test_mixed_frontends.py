"""A Go Pitaya frontend and a Python frontend of the same type ("connector") in one cluster:
push and kick by uid from one language's frontend to the other's users, and the unique-session
bind broadcast (a uid bound on one frontend kicks the older session on the other)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cluster.harness import TRANSPORTS
from tests.interop.conftest import PyNode
from tests.interop.harness import GoClient, GoServer, wait_known
from tests.services import EtcdServer, NatsServer

pytestmark = pytest.mark.parametrize("rpc_transport", TRANSPORTS, indirect=True)


@dataclass
class Frontends:
    go: GoServer
    py: PyNode
    go_clients: Callable[..., GoClient]
    ready: bool = False

    async def client(self, lang: str) -> GoClient:
        """A Go client of the ``lang`` frontend; the first call waits until each frontend
        sees the other (an etcd watch away), in the test's call phase."""
        if not self.ready:
            self.ready = True
            for here, there in (("go", self.py.server_id), ("py", self.go.server_id)):
                probe = await self.client(here)
                await wait_known(probe, "connector.me.servers", there)
                await probe.disconnect()
        client = self.go_clients()
        if lang == "go":
            await client.connect(self.go.address("tcp"))
        else:
            await client.connect(("127.0.0.1", self.py.ports["tcp"]))
        return client


@pytest.fixture
async def frontends(
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Callable[..., GoClient],
) -> Frontends:
    go = await go_servers("connector", "connector-go-1", nats_server, etcd_server)
    py = await py_nodes("connector", "connector-py-1", nats_server, etcd_server)
    return Frontends(go, py, go_clients)


@pytest.mark.parametrize("first", ["go", "py"])
async def test_unique_session_bind_broadcast(frontends: Frontends, first: str) -> None:
    second = "py" if first == "go" else "go"
    old = await frontends.client(first)
    await old.request("connector.me.bind", {"uid": f"unique-{first}"})
    new = await frontends.client(second)
    await new.request("connector.me.bind", {"uid": f"unique-{first}"})
    await old.kicked()
    assert not new.was_kicked
    assert (await new.request("connector.me.show"))["uid"] == f"unique-{first}"


@pytest.mark.parametrize("sender", ["go", "py"])
async def test_push_and_kick_by_uid_to_the_other_frontend(
    frontends: Frontends, sender: str
) -> None:
    receiver = "py" if sender == "go" else "go"
    target = await frontends.client(receiver)
    await target.request("connector.me.bind", {"uid": f"target-{receiver}"})
    source = await frontends.client(sender)
    await source.request("connector.me.bind", {"uid": f"source-{sender}"})

    reply = await source.request(
        "connector.me.pushto", {"uids": [f"target-{receiver}"], "body": {"n": 1}}
    )
    assert reply["failed"] == []
    push = await target.push("onPushTo")
    assert push == {"from": f"connector-{sender}-1", "lang": sender, "body": {"n": 1}}

    reply = await source.request("connector.me.kickusers", {"uids": [f"target-{receiver}"]})
    assert reply["failed"] == []
    await target.kicked()
    assert not source.was_kicked
