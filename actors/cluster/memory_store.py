"""etcd's keys and leases in memory: the store the in-memory cluster keeps its groups in
(``actors.cluster.memory``), usable wherever a :class:`~actors.cluster.groups.KeyValueStore`
is wanted."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Lease:
    ttl: int
    expiry: asyncio.TimerHandle
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    """An in-memory :class:`~actors.cluster.groups.KeyValueStore` with etcd's semantics: a
    key put under a lease is deleted when the lease expires (``ttl`` seconds after it was
    granted or last kept alive, on the event loop's clock) or is revoked."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.revision = 0
        self._lease_of: dict[str, int] = {}
        self._leases: dict[int, _Lease] = {}
        self._ids = itertools.count(1)

    async def grant(self, ttl: int) -> int:
        lease_id = next(self._ids)
        expiry = asyncio.get_running_loop().call_later(ttl, self._end, lease_id)
        self._leases[lease_id] = _Lease(ttl, expiry)
        return lease_id

    async def keep_alive(self, lease_id: int) -> int:
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0
        lease.expiry.cancel()
        lease.expiry = asyncio.get_running_loop().call_later(lease.ttl, self._end, lease_id)
        return lease.ttl

    async def revoke(self, lease_id: int) -> None:
        self._end(lease_id)

    def _end(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is not None:
            lease.expiry.cancel()
            for key in list(lease.keys):
                self._remove(key)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        self._put(key, value, lease)

    def _put(self, key: str, value: bytes, lease: int) -> None:
        # Synchronous, so a conditional put checks and writes in one step (one transaction
        # in etcd), even when a subclass makes ``put`` yield like a network round trip.
        if lease and lease not in self._leases:
            raise ValueError(f"etcd: lease {lease:x} not found")
        self._remove(key)
        self.data[key] = value
        self.revision += 1
        if lease:
            self._lease_of[key] = lease
            self._leases[lease].keys.add(key)

    async def put_if_absent(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        if key in self.data:
            return False
        self._put(key, value, lease)
        return True

    async def put_if_absent_while(
        self, key: str, value: bytes, *, present: str, lease: int = 0
    ) -> bool:
        if key in self.data or present not in self.data:
            return False
        self._put(key, value, lease)
        return True

    async def put_if_value(
        self, key: str, expected: bytes, value: bytes, *, lease: int = 0
    ) -> bool:
        if self.data.get(key) != expected:
            return False
        self._put(key, value, lease)
        return True

    async def delete(self, key: str) -> bool:
        return self._remove(key)

    async def delete_if_value(self, key: str, value: bytes) -> bool:
        if self.data.get(key) != value:
            return False
        return self._remove(key)

    async def delete_with_prefix(self, key: str, prefix: str) -> bool:
        existed = self._remove(key)
        await self.delete_prefix(prefix)
        return existed

    async def delete_prefix(self, prefix: str) -> int:
        return sum(self._remove(key) for key in [k for k in self.data if k.startswith(prefix)])

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def get_with_lease(self, key: str) -> tuple[bytes, int] | None:
        value = self.data.get(key)
        return None if value is None else (value, self._lease_of.get(key, 0))

    async def get_prefix(self, prefix: str) -> tuple[dict[str, bytes], int]:
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}, self.revision

    def _remove(self, key: str) -> bool:
        if key not in self.data:
            return False
        del self.data[key]
        self.revision += 1
        lease_id = self._lease_of.pop(key, 0)
        if lease_id in self._leases:
            self._leases[lease_id].keys.discard(key)
        return True
