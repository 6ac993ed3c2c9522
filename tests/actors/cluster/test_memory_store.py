"""The in-memory store keeps etcd's rules for keys and leases (the groups rely on them)."""

from __future__ import annotations

import asyncio

import pytest

from actors.cluster.memory_store import MemoryStore


async def test_keys_prefixes_and_conditional_puts() -> None:
    store = MemoryStore()
    assert await store.put_if_absent("a/1", b"x")
    assert not await store.put_if_absent("a/1", b"y")
    await store.put("a/2", b"z")
    await store.put("b/1", b"w")
    items, revision = await store.get_prefix("a/")
    assert items == {"a/1": b"x", "a/2": b"z"} and revision == 3
    assert await store.get("a/1") == b"x" and await store.get("nope") is None
    assert await store.delete("a/1") and not await store.delete("a/1")
    assert await store.delete_prefix("a/") == 1
    assert store.data == {"b/1": b"w"}


async def test_a_key_is_created_only_while_the_key_it_belongs_to_exists() -> None:
    store = MemoryStore()
    assert not await store.put_if_absent_while("g/uids/a", b"", present="g")
    await store.put("g", b"")
    assert await store.put_if_absent_while("g/uids/a", b"", present="g")
    assert not await store.put_if_absent_while("g/uids/a", b"x", present="g")
    assert store.data == {"g": b"", "g/uids/a": b""}


async def test_a_key_and_the_keys_under_a_prefix_are_deleted_together() -> None:
    store = MemoryStore()
    for key in ("g", "g/uids/a", "g/x", "h"):
        await store.put(key, b"")
    assert await store.delete_with_prefix("g", "g/uids/")
    assert store.data == {"g/x": b"", "h": b""}
    assert not await store.delete_with_prefix("g", "g/uids/")


@pytest.mark.looptime
async def test_a_lease_ends_its_keys_unless_kept_alive() -> None:
    store = MemoryStore()
    lease = await store.grant(10)
    await store.put("k", b"1", lease=lease)
    await asyncio.sleep(8)
    assert await store.keep_alive(lease) == 10
    await asyncio.sleep(8)
    assert await store.get("k") == b"1"
    await asyncio.sleep(3)
    assert await store.get("k") is None
    assert await store.keep_alive(lease) == 0  # gone
    with pytest.raises(ValueError, match="lease"):
        await store.put("k", b"2", lease=lease)


async def test_revoking_a_lease_deletes_only_the_keys_still_under_it() -> None:
    store = MemoryStore()
    lease = await store.grant(60)
    await store.put("moved", b"1", lease=lease)
    await store.put("kept", b"1", lease=lease)
    await store.put("moved", b"2")  # put again without the lease
    await store.revoke(lease)
    assert store.data == {"moved": b"2"}


async def test_compare_and_swap_and_delete_if_value() -> None:
    store = MemoryStore()
    assert not await store.put_if_value("k", b"old", b"new")  # absent: not created
    await store.put("k", b"old")
    lease = await store.grant(60)
    assert await store.put_if_value("k", b"old", b"a", lease=lease)
    assert not await store.put_if_value("k", b"old", b"b")  # lost the race: value moved on
    assert await store.get_with_lease("k") == (b"a", lease)
    assert not await store.delete_if_value("k", b"old")
    assert await store.delete_if_value("k", b"a") and store.data == {}


class SlowPut(MemoryStore):
    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        await asyncio.sleep(0)  # a network round trip
        await super().put(key, value, lease=lease)


async def test_conditional_puts_stay_atomic_when_put_yields() -> None:
    store = SlowPut()
    created = await asyncio.gather(store.put_if_absent("k", b"1"), store.put_if_absent("k", b"2"))
    assert sorted(created) == [False, True]
    value = await store.get("k")
    assert value is not None
    swapped = await asyncio.gather(
        store.put_if_value("k", value, b"a"), store.put_if_value("k", value, b"b")
    )
    assert sorted(swapped) == [False, True]
