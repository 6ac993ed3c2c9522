"""actors/cluster/groups.py on a real etcd: what one group's operations leave of the others
(groups share one key space, ``<prefix>groups/<name>``, where a name may hold ``/``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from actors.cluster.groups import EtcdGroupService
from tests.services import EtcdServer
from transport.etcd import EtcdClient


async def _nobody(route: str, body: object, uids: list[str]) -> list[str]:
    return uids


@pytest.fixture
async def groups(etcd_server: EtcdServer) -> AsyncIterator[EtcdGroupService]:
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        yield EtcdGroupService(etcd, _nobody)
    finally:
        await etcd.close()


async def test_deleting_a_group_leaves_the_groups_named_below_it(
    groups: EtcdGroupService,
) -> None:
    await groups.create("lobby")
    await groups.create("lobby/eu")
    await groups.add("lobby", "ann")
    await groups.add("lobby/eu", "bob")
    await groups.delete("lobby")
    assert not await groups.exists("lobby")
    # Deleted too (its key and its members'), as every key under "lobby/" was.
    assert await groups.exists("lobby/eu")
    assert await groups.members("lobby/eu") == ["bob"]
