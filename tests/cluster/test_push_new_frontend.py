"""A backend's pushes reach the players of a frontend that started after it (real NATS and
etcd).

A frontend accepts clients once it is registered in etcd; a backend's table hears of it a
moment later, through its watch. A player quick enough to log in and reach the backend in
that moment (the README's start order is backends first; a restarted connector is the same)
had every push by uid, group broadcast included, reach nobody: with no frontend type listed,
there was no subject to publish on. Such pushes now wait for discovery to list a frontend.
"""

from __future__ import annotations

from typing import Any

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from tests.actors.cluster.test_carry import Account
from tests.cluster.test_concurrency import cluster_options
from tests.services import EtcdServer, NatsServer


class Game(Handler):
    service = "game"

    @handler
    async def join(self, session: Session) -> dict[str, Any]:
        uid = session.uid
        assert uid is not None
        app = self.app
        app.push_to_users("onTell", {}, [uid])
        unreached = await app.send_push_to_users("onAwait", {}, [uid])
        if not await app.groups.exists("table"):
            await app.groups.create("table")
        await app.groups.add("table", uid)
        failed = await app.groups.broadcast("table", "onGroup", {})
        session.push("onSession", {})
        return {"unreached": unreached, "failed": failed}


async def test_pushes_by_uid_reach_a_player_of_a_frontend_the_backend_has_not_heard_of(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    common = cluster_options(nats_server, etcd_server)
    game = App(server_type="game", server_id="game-1", frontend=False, **common)
    game.register(Game)
    connector = App(server_type="connector", server_id="c-1", **common)
    connector.register(Account)  # account.login binds the uid it is given
    async with game, serve(connector) as server:
        client = await server.connect()  # at once: no wait for the game server's table
        assert await client.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        assert await client.request("game.game.join") == {"unreached": [], "failed": []}
        routes = []
        async for push in client.pushes():
            routes.append(push.route)
            if len(routes) == 4:
                break
        assert routes == ["onTell", "onAwait", "onGroup", "onSession"]
