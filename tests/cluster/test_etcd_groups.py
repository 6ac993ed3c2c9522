"""actors/cluster/groups.py on a real etcd: what one group's operations leave of the others
(groups share one key space, ``<prefix>groups/<name>``, where a name may hold ``/``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from actors.cluster.groups import EtcdGroupService
from actors.groups import GroupNotFound, MemberAlreadyExists
from tests.services import EtcdServer
from transport.etcd import EtcdClient


class Interleaved(EtcdClient):
    """The etcd client, running ``meanwhile`` (once) right after a group operation read the
    group: what another server does between that read and the operation's write."""

    meanwhile: Callable[[], Awaitable[None]] | None = None
    before_delete: Callable[[], Awaitable[None]] | None = None
    """Run before each delete: what another server does between them."""

    async def get_with_lease(self, key: str) -> tuple[bytes, int] | None:
        found = await super().get_with_lease(key)
        step, self.meanwhile = self.meanwhile, None
        if step is not None:
            await step()
        return found

    async def _deleting(self) -> None:
        if self.before_delete is not None:
            await self.before_delete()

    async def delete(self, key: str) -> bool:
        await self._deleting()
        return await super().delete(key)

    async def delete_prefix(self, prefix: str) -> int:
        await self._deleting()
        return await super().delete_prefix(prefix)

    async def delete_with_prefix(self, key: str, prefix: str) -> bool:
        await self._deleting()
        return await super().delete_with_prefix(key, prefix)


async def _nobody(route: str, body: object, uids: list[str]) -> list[str]:
    return uids


@pytest.fixture
async def groups(etcd_server: EtcdServer) -> AsyncIterator[EtcdGroupService]:
    etcd = Interleaved([etcd_server.endpoint])
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


@pytest.mark.parametrize("ttl", [None, 60])
async def test_a_member_added_as_its_group_is_deleted_is_not_left_in_etcd(
    groups: EtcdGroupService, ttl: float | None
) -> None:
    assert isinstance(groups.etcd, Interleaved)
    await groups.create("room:1", ttl=ttl)
    groups.etcd.meanwhile = lambda: groups.delete("room:1")
    # Without a TTL the member's key was written after the group's delete, and a group
    # made again with that name began with it as a member; with one, the write named the
    # revoked lease: GroupsUnavailable (PIT-500), and an etcd outage told.
    with pytest.raises(GroupNotFound):
        await groups.add("room:1", "bob")
    await groups.create("room:1", ttl=ttl)
    assert await groups.members("room:1") == []
    assert groups.etcd.outage.since is None


async def test_a_member_added_while_its_group_is_deleted_goes_with_it(
    groups: EtcdGroupService,
) -> None:
    assert isinstance(groups.etcd, Interleaved)
    await groups.create("room:1")
    joining = iter(["ann", "bob", "carl"])

    async def join() -> None:
        with contextlib.suppress(GroupNotFound):
            await groups.add("room:1", next(joining))

    groups.etcd.before_delete = join
    await groups.delete("room:1")
    groups.etcd.before_delete = None
    # The members' keys, then the group's, were deleted one after the other: a member
    # added between the two outlived its group, and joined the one made again by its name.
    await groups.create("room:1")
    assert await groups.members("room:1") == []


async def test_a_member_added_twice_is_told_so(groups: EtcdGroupService) -> None:
    await groups.create("room:1")
    await groups.add("room:1", "bob")
    with pytest.raises(MemberAlreadyExists):
        await groups.add("room:1", "bob")
