"""The Go programs and the harness work: a Go connector forwards to a Go room, Pitaya's Go
client drives it (Go <-> Go only, so it tells a harness problem from an interop one)."""

from __future__ import annotations

from tests.cluster.harness import both_transports
from tests.interop.harness import RequestFailed


@both_transports
async def test_go_frontend_forwards_to_go_backend(
    nats_server, etcd_server, go_servers, go_clients, rpc_transport
) -> None:
    await go_servers("room", "room-go-1", nats_server, etcd_server)
    connector = await go_servers("connector", "connector-go-1", nats_server, etcd_server)
    client = go_clients()
    dictionary = await client.connect(connector.address("tcp"))
    assert dictionary["room.room.echo"] == 2

    local = await client.request("connector.me.echo", {"n": 1})
    assert local["server"] == "connector-go-1"
    answer = await client.request("room.room.echo", {"n": 2})
    assert answer == {"server": "room-go-1", "lang": "go", "uid": "", "body": {"n": 2}}

    bound = await client.request("room.room.bind", {"uid": "ann"})
    assert bound["uid"] == "ann"
    assert (await client.request("connector.me.show"))["uid"] == "ann"

    try:
        await client.request("room.room.fail", {"code": "GAME-7", "msg": "no luck"})
    except RequestFailed as failed:
        assert failed.body == {"code": "GAME-7", "msg": "no luck", "metadata": {"lang": "go"}}
    else:
        raise AssertionError("room.room.fail answered")
