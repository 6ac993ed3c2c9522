"""Binding claims against a real etcd: conditional writes are single transactions, so two
frontends taking over a dead frontend's uid at once cannot both win
(``BindingStorage.claim``; the same with the in-memory store in
tests/actors/modules/test_binding_storage.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from actors.config import Config
from actors.modules.binding_storage import BindingStorage, binding_key
from actors.sessions.registry import SessionRegistry
from tests.services import EtcdServer
from transport.etcd import EtcdClient


def frontend(server_id: str, etcd: EtcdServer) -> SimpleNamespace:
    """What the module uses of a frontend; discovery lists fe-1 and fe-2 (fe-9 is dead)."""
    alive = {"fe-1", "fe-2"}
    return SimpleNamespace(
        server_id=server_id,
        server_type="connector",
        config=Config(mode="cluster", etcd_endpoints=etcd.endpoint, etcd_lease_ttl=30),
        is_frontend=True,
        sessions=SessionRegistry(),
        cluster=SimpleNamespace(
            outbound=None,
            discovery=SimpleNamespace(server=lambda i: object() if i in alive else None),
            users=SimpleNamespace(bindings=None),
        ),
    )


async def test_put_if_value_is_a_compare_and_swap(etcd_server: EtcdServer) -> None:
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        assert not await etcd.put_if_value("t/k", b"old", b"new")  # absent: not created
        assert await etcd.get("t/k") is None
        await etcd.put("t/k", b"old")
        lease = await etcd.grant(30)
        swaps = await asyncio.gather(
            *(etcd.put_if_value("t/k", b"old", name, lease=lease) for name in (b"a", b"b"))
        )
        assert sorted(swaps) == [False, True]
        winner = b"a" if swaps[0] else b"b"
        assert await etcd.get_with_lease("t/k") == (winner, lease)
        assert not await etcd.put_if_value("t/k", b"old", b"c")
        await etcd.revoke(lease)
        assert await etcd.get("t/k") is None
    finally:
        await etcd.close()


async def test_two_frontends_claiming_a_dead_ones_uid_at_once_one_wins(
    etcd_server: EtcdServer,
) -> None:
    storages = [BindingStorage(frontend(i, etcd_server)) for i in ("fe-1", "fe-2")]
    for storage in storages:
        await storage.init()
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    key = binding_key("connector", "ann")
    try:
        for round_ in range(20):  # each round a fresh race over a dead holder's entry
            await etcd.put(key, b"fe-9")
            holders = list(await asyncio.gather(*(s.claim("ann") for s in storages)))
            assert holders in ([None, "fe-1"], ["fe-2", None]), round_
            assert await etcd.get(key) == (b"fe-1" if holders[0] is None else b"fe-2")
    finally:
        await etcd.close()
        for storage in storages:
            await storage.shutdown()
