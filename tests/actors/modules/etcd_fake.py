"""An in-memory etcd client for the module tests: the calls the binding storage makes."""

from __future__ import annotations

from types import SimpleNamespace

from actors.cluster.memory_store import MemoryStore
from transport.etcd import EtcdUnavailable


class FakeEtcd(MemoryStore):
    """The etcd client's calls the module makes, on MemoryStore; ``down`` makes each fail."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.connected = False
        self.closed = False
        self.revoked: list[int] = []
        self.outage = SimpleNamespace(since=None)
        """As ``transport.etcd.EtcdOutage``: ``since`` is set while the client's process
        knows etcd is down (and has said so once)."""

    def _check(self) -> None:
        if self.down:
            raise EtcdUnavailable("etcd is down")

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.closed = True

    async def grant(self, ttl: int) -> int:
        self._check()
        return await super().grant(ttl)

    async def keep_alive(self, lease_id: int) -> int:
        self._check()
        return await super().keep_alive(lease_id)

    async def revoke(self, lease_id: int) -> None:
        self._check()
        self.revoked.append(lease_id)
        await super().revoke(lease_id)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        self._check()
        await super().put(key, value, lease=lease)

    async def put_if_absent(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        self._check()
        return await super().put_if_absent(key, value, lease=lease)

    async def put_if_value(
        self, key: str, expected: bytes, value: bytes, *, lease: int = 0
    ) -> bool:
        self._check()
        return await super().put_if_value(key, expected, value, lease=lease)

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await super().get(key)

    async def delete_if_value(self, key: str, value: bytes) -> bool:
        self._check()
        return await super().delete_if_value(key, value)
