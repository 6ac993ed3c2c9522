"""Cluster-wide groups stored in etcd (Pitaya's etcd group service layout, so Go and Python
servers share groups).

``<prefix>groups/<name>`` marks the group and ``<prefix>groups/<name>/uids/<uid>`` each member,
all with empty values (``prefix``: the ``groups_etcd_prefix`` option, else ``etcd_prefix``;
``pitaya/`` by default, as Go Pitaya's ``pitaya.groups.etcd.prefix``); a group created with a
TTL has its key and its members' keys on one lease, read from the group key itself.

Any server can manage a group and broadcast to it; members are reached on whatever frontend
they are bound to, as any push by uid (``actors.cluster.users``: the binding storage, or NATS's
per-uid subjects). A group created with a TTL lives on a lease: it expires unless used (every
operation on it renews the lease) or renewed.

While etcd is unreachable every operation fails with :class:`GroupsUnavailable` (``PIT-500``
to a client whose handler lets it through), which is not logged per operation: the etcd
client tells the outage once (``transport.etcd.EtcdOutage``).

The store is anything with etcd's key and lease operations (:class:`KeyValueStore`): the etcd
client, or :class:`~actors.cluster.memory.MemoryStore` in tests.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar

from actors.errors import InternalError
from actors.groups import (
    GroupAlreadyExists,
    GroupNotFound,
    MemberAlreadyExists,
    MemberNotFound,
    UidPredicate,
    select_members,
)
from transport.etcd import EtcdUnavailable

log = logging.getLogger(__name__)

GROUPS_PREFIX = "pitaya/groups/"
"""The groups' keys under the default prefix."""

PushToUsers = Callable[[str, Any, list[str]], Awaitable[list[str]]]
"""``push(route, body, uids)`` reaches uids wherever they are bound and returns those it
could not reach (the app's ``send_push_to_users``)."""


class GroupsUnavailable(InternalError):
    """``PIT-500``: the group store (etcd) cannot be reached now; the operation did not run,
    or its outcome is unknown."""


P = ParamSpec("P")
R = TypeVar("R")


def _store_errors(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """An unreachable store raises GroupsUnavailable, with no traceback or chained error to
    log: the outage is reported once, where it is seen (the etcd client)."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except EtcdUnavailable as exc:
            error = GroupsUnavailable(f"groups unavailable: {exc}")
        raise error

    return call


class KeyValueStore(Protocol):
    """The etcd operations the groups use (:class:`transport.etcd.EtcdClient` has them)."""

    async def grant(self, ttl: int) -> int: ...
    async def keep_alive(self, lease_id: int) -> int: ...
    async def revoke(self, lease_id: int) -> None: ...
    async def put_if_absent(self, key: str, value: bytes, *, lease: int = 0) -> bool: ...
    async def put_if_absent_while(
        self, key: str, value: bytes, *, present: str, lease: int = 0
    ) -> bool: ...
    async def delete(self, key: str) -> bool: ...
    async def delete_prefix(self, prefix: str) -> int: ...
    async def delete_with_prefix(self, key: str, prefix: str) -> bool: ...
    async def get(self, key: str) -> bytes | None: ...
    async def get_with_lease(self, key: str) -> tuple[bytes, int] | None: ...
    async def get_prefix(self, prefix: str) -> tuple[dict[str, bytes], int]: ...


class EtcdGroupService:
    """A :class:`actors.groups.GroupService` shared by every server of the cluster, kept in
    ``etcd`` under ``prefix``; a broadcast reaches the members with ``push``."""

    def __init__(self, etcd: KeyValueStore, push: PushToUsers, *, prefix: str = "pitaya/") -> None:
        self.etcd = etcd
        self.push = push
        self.groups_prefix = f"{prefix}groups/"
        self._expiry_listeners: list[Callable[[str], None]] = []

    def _group_key(self, name: str) -> str:
        return f"{self.groups_prefix}{name}"

    def _member_key(self, name: str, uid: str) -> str:
        return f"{self.groups_prefix}{name}/uids/{uid}"

    async def _lease(self, name: str) -> int:
        """The group's lease (0 without TTL); GroupNotFound if the group does not exist."""
        found = await self.etcd.get_with_lease(self._group_key(name))
        if found is None:
            raise GroupNotFound(name)
        lease = found[1]
        if lease:
            await self.etcd.keep_alive(lease)  # every use renews an expiring group
        return lease

    @_store_errors
    async def create(self, name: str, *, ttl: float | None = None) -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive")
        lease = await self.etcd.grant(max(1, round(ttl))) if ttl else 0
        if not await self.etcd.put_if_absent(self._group_key(name), b"", lease=lease):
            if lease:
                await self.etcd.revoke(lease)
            raise GroupAlreadyExists(name)

    @_store_errors
    async def delete(self, name: str) -> None:
        lease = await self._lease(name)
        # The group and its members in one transaction, as Go's GroupDelete: one after the
        # other, a member added between the two would outlive its group. Its members only:
        # under "<name>/" are also the groups whose names go on from it ("lobby/eu").
        await self.etcd.delete_with_prefix(self._group_key(name), self._member_key(name, ""))
        if lease:
            await self.etcd.revoke(lease)

    @_store_errors
    async def exists(self, name: str) -> bool:
        return await self.etcd.get(self._group_key(name)) is not None

    @_store_errors
    async def add(self, name: str, uid: str) -> None:
        lease = await self._lease(name)
        group = self._group_key(name)
        # While the group exists, in the write itself (as Go's GroupAddMember): deleted since
        # it was read, the member would outlive it (and join a group made again by that
        # name), or name its revoked lease.
        member = self._member_key(name, uid)
        if not await self.etcd.put_if_absent_while(member, b"", present=group, lease=lease):
            if await self.etcd.get(group) is None:
                raise GroupNotFound(name)
            raise MemberAlreadyExists(name, uid)

    @_store_errors
    async def remove(self, name: str, uid: str) -> None:
        await self._lease(name)
        if not await self.etcd.delete(self._member_key(name, uid)):
            raise MemberNotFound(name, uid)

    @_store_errors
    async def remove_all(self, name: str) -> None:
        await self._lease(name)
        await self.etcd.delete_prefix(self._group_key(name) + "/uids/")

    @_store_errors
    async def contains(self, name: str, uid: str) -> bool:
        await self._lease(name)
        return await self.etcd.get(self._member_key(name, uid)) is not None

    @_store_errors
    async def members(self, name: str) -> list[str]:
        await self._lease(name)
        prefix = self._group_key(name) + "/uids/"
        items, _ = await self.etcd.get_prefix(prefix)
        return sorted(key[len(prefix) :] for key in items)

    @_store_errors
    async def count(self, name: str) -> int:
        return len(await self.members(name))

    @_store_errors
    async def renew_ttl(self, name: str) -> None:
        await self._lease(name)

    async def broadcast(self, name: str, route: str, body: Any) -> list[str]:
        return await self.multicast(name, route, body)

    @_store_errors
    async def multicast(
        self,
        name: str,
        route: str,
        body: Any,
        *,
        uids: Iterable[str] | None = None,
        where: UidPredicate | None = None,
    ) -> list[str]:
        """Push to the selected members wherever they are bound; returns the unreached."""
        members = select_members(await self.members(name), uids, where)
        if not members:
            return []
        return await self.push(route, body, members)

    @_store_errors
    async def leave_all(self, uid: str) -> None:
        items, _ = await self.etcd.get_prefix(self.groups_prefix)
        suffix = f"/uids/{uid}"
        for key in items:
            if key.endswith(suffix):
                await self.etcd.delete(key)

    def on_group_expired(self, listener: Callable[[str], None]) -> None:
        """Expiry happens in etcd (the lease); listeners are kept for interface parity."""
        self._expiry_listeners.append(listener)
