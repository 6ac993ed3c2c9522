"""A uid logged in again on the same frontend, with unique sessions, over NATS (real NATS and
etcd, in-process servers): the older session is kicked during the new bind, and the uid is
still reached by pushes and kicks by uid afterwards.

The older session's close ran during the bind (its close callbacks must not undo the new
login): with no session holding the uid at that moment, the close unsubscribed the uid's
push and kick subjects while the new bind subscribed them.
"""

from __future__ import annotations

from actors.app import App
from actors.testing import serve
from tests.actors.cluster.test_carry import Account
from tests.cluster.test_concurrency import cluster_options
from tests.cluster.test_nats_outage_binds import Poke
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer


async def test_a_uid_logged_in_again_is_reached_by_uid(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    common = cluster_options(nats_server, etcd_server)
    game = App(server_type="game", server_id="game-1", frontend=False, **common)
    game.register(Poke)
    connector = App(server_type="connector", server_id="c-1", unique_session=True, **common)
    connector.register(Account)  # account.login binds the uid it is given, on the frontend
    async with game, serve(connector) as server:
        assert connector.cluster is not None
        await until(lambda: connector.cluster.discovery.server("game-1") is not None)
        old, bob = await server.connect(), await server.connect()
        assert await old.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        for _ in range(5):  # each login kicks the session before it
            new = await server.connect()
            assert await new.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
            await old.wait_closed(timeout=5)
            assert old.kicked
            assert await bob.request("game.poke.push", {"uid": "ann"}) == {"unreached": []}
            assert (await new.next_push("onPoke", timeout=5)).body == {}
            old = new
