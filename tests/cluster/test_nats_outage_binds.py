"""A uid bound on a frontend while NATS is down is reachable by uid once NATS is back (real
NATS and etcd, in-process servers).

A frontend handler binds a session with no NATS round trip, so a bind succeeds during an
outage. The uid's push and kick subjects were taken only while connected: such a uid never
had them, and every push and kick by uid to it reached nobody for as long as its session
lived, long after NATS came back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from tests.actors.cluster.test_carry import Account
from tests.cluster.test_concurrency import cluster_options
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer


class Poke(Handler):
    """``game.poke.push`` and ``game.poke.kick``: by uid, answering the uids not reached."""

    service = "poke"

    @handler
    async def push(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        return {"unreached": await self.app.send_push_to_users("onPoke", {}, [body["uid"]])}

    @handler
    async def kick(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        return {"unreached": await self.app.send_kick_to_users([body["uid"]])}


async def test_a_uid_bound_during_a_nats_outage_gets_pushes_and_kicks_after_it(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    common = cluster_options(nats_server, etcd_server)
    game = App(server_type="game", server_id="game-1", frontend=False, **common)
    game.register(Poke)
    connector = App(server_type="connector", server_id="c-1", **common)
    connector.register(Account)  # account.login binds the uid it is given, on the frontend
    async with game, serve(connector) as server:
        assert game.cluster is not None and connector.cluster is not None
        ann, bob = await server.connect(), await server.connect()
        await until(lambda: connector.cluster.discovery.server("game-1") is not None)
        await asyncio.to_thread(nats_server.stop)
        await until(lambda: not connector.cluster.rpc_client.connected)
        assert await ann.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        await asyncio.to_thread(nats_server.start)
        await until(
            lambda: connector.cluster.rpc_client.connected and game.cluster.rpc_client.connected,
            timeout=15,
        )
        assert await bob.request("game.poke.push", {"uid": "ann"}) == {"unreached": []}
        assert (await ann.next_push("onPoke", timeout=5)).body == {}
        assert await bob.request("game.poke.kick", {"uid": "ann"}) == {"unreached": []}
        await ann.wait_closed(timeout=5)
        assert ann.kicked
