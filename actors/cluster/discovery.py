"""Service discovery: which servers are alive, by type (etcd, Pitaya's key layout).

This server is registered under ``pitaya/servers/<type>/<id>`` with a JSON value
``{"id","type","metadata","frontend","hostname"}`` attached to a lease (TTL 60 s by default,
refreshed every TTL/3). The :class:`DiscoveryActor` watches the prefix and keeps the table;
if etcd goes away it keeps serving from the last table it knew and, when etcd is back,
re-registers (with a new lease if the old one expired). A periodic full read repairs any event
a watch could have missed.

Routers read the table synchronously through :class:`ServerTable` (same event loop; only the
actor writes it).

:class:`ServiceDiscovery` is the seam: ``App(mode="cluster", discovery=...)`` takes any
implementation; :class:`~actors.cluster.memory.MemoryDiscovery` is the in-memory one for
tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from actors.actor import Actor
from actors.cluster.groups import EtcdGroupService, PushToUsers
from actors.errors import ActorError
from transport.etcd import EtcdClient, EtcdUnavailable, KeyEvent

if TYPE_CHECKING:
    from actors.groups import GroupService
    from actors.kernel import ActorRef
    from actors.system import ActorSystem

log = logging.getLogger(__name__)

SERVERS_PREFIX = "pitaya/servers/"


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A server as published in discovery."""

    id: str
    type: str
    frontend: bool = False
    hostname: str = field(default_factory=socket.gethostname)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{SERVERS_PREFIX}{self.type}/{self.id}"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "type": self.type,
                "metadata": self.metadata,
                "frontend": self.frontend,
                "hostname": self.hostname,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ServerInfo:
        value = json.loads(data)
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise ValueError(f"not a server entry: {data[:100]!r}")
        return cls(
            id=value["id"],
            type=str(value.get("type", "")),
            frontend=bool(value.get("frontend", False)),
            hostname=str(value.get("hostname", "")),
            metadata={str(k): str(v) for k, v in (value.get("metadata") or {}).items()},
        )


DiscoveryListener = Callable[[ServerInfo, bool], None]
"""Called with ``(server, added)`` when a server appears (True) or disappears (False)."""


class ServiceDiscovery(Protocol):
    """What the cluster needs from a discovery backend (plug your own:
    ``App(mode="cluster", discovery=...)``).

    The table (``servers``, ``server``, ``server_types``) is read synchronously on every
    routed message: keep it in memory and follow the backend in the background.
    """

    @property
    def registered(self) -> bool:
        """This server is registered now (part of readiness)."""
        ...

    def servers(self, server_type: str) -> list[ServerInfo]: ...
    def server(self, server_id: str) -> ServerInfo | None: ...
    def server_types(self) -> set[str]: ...
    def add_listener(self, listener: DiscoveryListener) -> None: ...
    async def connect(self) -> None:
        """Check the backend is reachable (raise ``EtcdUnavailable``-like errors)."""
        ...

    async def start(self, me: ServerInfo) -> None:
        """Register ``me`` (this server; its metadata is final) and follow the others."""
        ...

    async def lookup(self, server_type: str, server_id: str) -> ServerInfo | None:
        """Read one server's entry from the backend itself, not the table (which may lag
        behind, or no longer list a server that left to drain); None if it has none or
        cannot be read now."""
        ...

    def group_service(self, push: PushToUsers) -> GroupService | None:
        """The cluster-wide group service kept in this backend's store (etcd groups for
        etcd), members reached with ``push``; None if it keeps none (the app then needs one
        set with ``app.set_group_service``)."""
        ...

    async def stop(self) -> None:
        """Deregister (no new traffic should be routed here)."""
        ...

    async def close(self) -> None:
        """Release connections; after ``stop``."""
        ...


class ServerTable:
    """Live servers by id and type; written by the discovery actor only."""

    def __init__(self) -> None:
        self.by_id: dict[str, ServerInfo] = {}
        self.by_type: dict[str, list[ServerInfo]] = {}
        self.listeners: list[DiscoveryListener] = []

    def put(self, server: ServerInfo) -> None:
        old = self.by_id.get(server.id)
        if old == server:
            return
        if old is not None:
            self._remove(old)
        self.by_id[server.id] = server
        self.by_type.setdefault(server.type, []).append(server)
        if old is None:
            self._notify(server, True)

    def delete(self, server_id: str) -> None:
        server = self.by_id.pop(server_id, None)
        if server is not None:
            self._remove(server)
            self._notify(server, False)

    def _remove(self, server: ServerInfo) -> None:
        servers = self.by_type.get(server.type, [])
        self.by_type[server.type] = [s for s in servers if s.id != server.id]
        if not self.by_type[server.type]:
            del self.by_type[server.type]

    def _notify(self, server: ServerInfo, added: bool) -> None:
        log.info("server %s %s (%s)", "added" if added else "removed", server.id, server.type)
        for listener in self.listeners:
            try:
                listener(server, added)
            except Exception:
                log.exception("discovery listener failed")


@dataclass(frozen=True, slots=True)
class KeyChanged:
    event: KeyEvent


@dataclass(frozen=True, slots=True)
class Resync:
    items: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Registered:
    """Ask it: answered once ``started`` (registration and first table) has finished."""


class DiscoveryActor(Actor):
    """Owns the etcd registration and the watch; applies changes to the table in order."""

    def __init__(
        self,
        etcd: EtcdClient,
        me: ServerInfo,
        table: ServerTable,
        ttl: int,
        sync_interval: float,
        on_registered: Callable[[bool], None],
    ) -> None:
        self.etcd = etcd
        self.me = me
        self.table = table
        self.ttl = ttl
        self.sync_interval = sync_interval
        self.registration_changed = on_registered
        self.lease: int | None = None

    async def started(self) -> None:
        await self._register()
        items, revision = await self.etcd.get_prefix(SERVERS_PREFIX)
        self.on_resync(Resync(items))
        self.run_task(self._keep_alive())
        self.run_task(self._watch(revision + 1))
        self.run_task(self._sync())

    async def _register(self) -> None:
        self.lease = await self.etcd.grant(self.ttl)
        await self.etcd.put(self.me.key, self.me.to_json(), lease=self.lease)
        self.registration_changed(True)
        log.info("[%s] registered in etcd (lease %x, ttl %ss)", self.me.id, self.lease, self.ttl)

    async def _keep_alive(self) -> None:
        interval = max(self.ttl / 3, 0.2)
        outage = False
        while True:
            await asyncio.sleep(interval if not outage else min(1.0, interval))
            try:
                if self.lease is None or await self.etcd.keep_alive(self.lease) == 0:
                    log.warning("[%s] discovery lease lost; registering again", self.me.id)
                    await self._register()
                elif outage and await self.etcd.get(self.me.key) is None:
                    # The lease survived the outage but our key did not: put it back.
                    await self.etcd.put(self.me.key, self.me.to_json(), lease=self.lease)
                if outage:
                    outage = False
                    self.registration_changed(True)
                    log.info("[%s] etcd is back; registration confirmed", self.me.id)
                    items, _ = await self.etcd.get_prefix(SERVERS_PREFIX)
                    self.ref.tell(Resync(items))
            except EtcdUnavailable as exc:
                if not outage:
                    log.warning(
                        "[%s] etcd unreachable (%s); serving from the last known server table",
                        self.me.id,
                        exc,
                    )
                outage = True
                self.registration_changed(False)

    async def _watch(self, revision: int) -> None:
        while True:
            try:
                async for event in self.etcd.watch_prefix(SERVERS_PREFIX, revision):
                    self.ref.tell(KeyChanged(event))
                return
            except Exception as exc:  # the watch gave up: resync and watch again
                log.warning("[%s] etcd watch failed (%s); retrying", self.me.id, exc)
                await asyncio.sleep(1.0)
                try:
                    items, last = await self.etcd.get_prefix(SERVERS_PREFIX)
                    self.ref.tell(Resync(items))
                    revision = last + 1
                except EtcdUnavailable:
                    pass

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                items, _ = await self.etcd.get_prefix(SERVERS_PREFIX)
            except EtcdUnavailable:
                continue
            self.ref.tell(Resync(items))

    def on_registered_query(self, msg: Registered) -> bool:
        return self.lease is not None

    def on_key_changed(self, msg: KeyChanged) -> None:
        event = msg.event
        server_id = event.key.rsplit("/", 1)[-1]
        if event.value is None:
            if server_id != self.me.id:
                self.table.delete(server_id)
            return
        server = _parse(event.key, event.value)
        if server is not None:
            self.table.put(server)

    def on_resync(self, msg: Resync) -> None:
        seen: set[str] = set()
        for key, value in msg.items.items():
            server = _parse(key, value)
            if server is not None:
                seen.add(server.id)
                self.table.put(server)
        self.table.put(self.me)
        for server_id in list(self.table.by_id):
            if server_id not in seen and server_id != self.me.id:
                self.table.delete(server_id)

    async def revoke(self) -> None:
        if self.lease is not None:
            try:
                await self.etcd.revoke(self.lease)
            except EtcdUnavailable as exc:
                log.warning("[%s] could not revoke the discovery lease: %s", self.me.id, exc)
            self.lease = None


_warned_keys: set[str] = set()
"""Keys of malformed entries already logged: each is reported once, not at every resync."""
_MAX_WARNED_KEYS = 1024


def _parse(key: str, value: bytes) -> ServerInfo | None:
    """The entry at ``key``, or None (skipped, warned once per key) if it is not one.

    Anyone with write access to etcd can put garbage there (a list as metadata, JSON nested
    thousands deep): no error of any kind may escape into the watch or the resync.
    """
    try:
        return ServerInfo.from_json(value)
    except Exception as exc:  # ValueError, TypeError, AttributeError, RecursionError, ...
        if key not in _warned_keys:
            if len(_warned_keys) >= _MAX_WARNED_KEYS:
                _warned_keys.clear()
            _warned_keys.add(key)
            log.warning(
                "ignoring malformed discovery entry %s: %s: %s",
                key,
                type(exc).__name__,
                str(exc)[:200],
            )
        return None


class EtcdServiceDiscovery:
    """The default :class:`ServiceDiscovery`, backed by etcd.

    ``system``: where its :class:`DiscoveryActor` runs; ``endpoints``: etcd's ``host:port``
    list; ``timeout``: per etcd operation (and twice that for the first registration);
    ``lease_ttl`` and ``sync_interval``: seconds, see the module docstring.
    """

    def __init__(
        self,
        system: ActorSystem,
        endpoints: list[str],
        *,
        timeout: float,
        lease_ttl: int,
        sync_interval: float,
    ) -> None:
        self.system = system
        self.etcd = EtcdClient(endpoints, timeout=timeout)
        """The etcd connection, shared with the etcd group service (:meth:`group_service`)."""
        self.timeout = timeout
        self.lease_ttl = lease_ttl
        self.sync_interval = sync_interval
        self.table = ServerTable()
        self._registered = False
        self._actor: ActorRef | None = None

    @property
    def registered(self) -> bool:
        return self._registered

    def _set_registered(self, value: bool) -> None:
        self._registered = value

    def servers(self, server_type: str) -> list[ServerInfo]:
        return self.table.by_type.get(server_type, [])

    def server(self, server_id: str) -> ServerInfo | None:
        return self.table.by_id.get(server_id)

    def server_types(self) -> set[str]:
        return set(self.table.by_type)

    def add_listener(self, listener: DiscoveryListener) -> None:
        self.table.listeners.append(listener)

    async def connect(self) -> None:
        await self.etcd.connect()

    async def start(self, me: ServerInfo) -> None:
        """Register, load the table, follow changes; raises EtcdUnavailable if etcd fails."""
        self._actor = self.system.spawn(
            DiscoveryActor,
            self.etcd,
            me,
            self.table,
            self.lease_ttl,
            self.sync_interval,
            self._set_registered,
            name="discovery",
        )
        # Wait for started() (registration + first table) to finish.
        try:
            await self._actor.ask(Registered(), timeout=self.timeout * 2)
        except ActorError as exc:
            raise EtcdUnavailable(f"discovery could not register in etcd: {exc}") from exc

    async def lookup(self, server_type: str, server_id: str) -> ServerInfo | None:
        key = f"{SERVERS_PREFIX}{server_type}/{server_id}"
        try:
            value = await self.etcd.get(key)
        except EtcdUnavailable:
            return None
        return _parse(key, value) if value is not None else None

    def group_service(self, push: PushToUsers) -> GroupService:
        return EtcdGroupService(self.etcd, push)

    async def stop(self) -> None:
        if self._actor is not None and self._actor.alive:
            actor = self._actor._cell.actor
            assert isinstance(actor, DiscoveryActor)
            await self._actor.stop()
            await actor.revoke()
        self._registered = False

    async def close(self) -> None:
        await self.etcd.close()
