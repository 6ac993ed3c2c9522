"""Service discovery: which servers are alive, by type (etcd, Pitaya's key layout).

This server is registered under ``<prefix>servers/<type>/<id>`` (``prefix``: the
``etcd_prefix`` option, ``pitaya/`` by default as Go Pitaya's ``pitaya.cluster.sd.etcd.prefix``)
with a JSON value ``{"id","type","metadata","frontend","hostname"}`` attached to a lease (TTL
60 s by default, refreshed every TTL/3). The :class:`DiscoveryActor` watches the prefix and
keeps the table; if etcd goes away it keeps serving from the last table it knew (and stays
ready: :data:`Registration.UNREACHABLE`) and, when etcd is back, re-registers (with a new lease
if the old one expired). A periodic full read repairs
any event a watch could have missed.

Server ids are unique: the entry is created in one etcd transaction only if no entry with that
id exists, so a server started beside a live one with the same id refuses to start
(:class:`DuplicateServerId`); the entry of a crashed server (its lease no longer refreshed) is
taken over. Once registered, a server that sees its own entry vanish (deleted
by hand, or its lease lost) while it runs puts it back, again only if no other server took the
id meanwhile.

Routers read the table synchronously through :class:`ServerTable` (same event loop; only the
actor writes it).

:class:`ServiceDiscovery` is the seam: ``App(mode="cluster", discovery=...)`` takes any
implementation; :class:`~actors.cluster.memory.MemoryDiscovery` is the in-memory one for
tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from actors.actor import Actor
from actors.cluster.groups import EtcdGroupService, PushToUsers
from actors.cluster.subjects import server_problem
from actors.errors import ActorError
from actors.logs import ServerLog
from transport.etcd import (
    EtcdClient,
    EtcdHistoryLost,
    EtcdSecurity,
    EtcdUnavailable,
    EtcdWatchBroken,
    KeyEvent,
)
from transport.undo import undo_fully

if TYPE_CHECKING:
    from actors.config import Config
    from actors.groups import GroupService
    from actors.kernel import ActorRef
    from actors.system import ActorSystem

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "pitaya/"
"""Where Pitaya keeps its keys in etcd unless ``etcd_prefix`` says otherwise."""
SERVERS_PREFIX = f"{DEFAULT_PREFIX}servers/"
"""The servers' keys under the default prefix (:func:`servers_prefix` for any prefix)."""


def servers_prefix(prefix: str = DEFAULT_PREFIX) -> str:
    """``<prefix>servers/``: where every server's entry lives."""
    return f"{prefix}servers/"


STALE_SLACK = 2.0
"""Seconds a lease may go unrefreshed beyond a third of its TTL (its holder's keep-alive
period) before its holder is taken for dead: etcd counts TTLs in whole seconds, and a
refresh takes a round trip."""


class DuplicateServerId(ActorError):
    """Another live server is registered with this server's id: this one must not start."""


class Registration(enum.Enum):
    """Where this server stands in discovery, as far as it knows; readiness reads it
    (``App.readiness``, ``GET /ready``). The values are the words ``/ready`` says."""

    UNREGISTERED = "not registered in discovery"
    """Not registered yet (starting), or its registration failed."""
    REGISTERED = "registered"
    """Registered, and the backend confirms it."""
    UNREACHABLE = "discovery unreachable"
    """Registered, then the backend stopped answering: the lease keep-alive fails (an etcd
    outage). The server still serves, from the last table it knew; its entry stands until
    its lease expires (etcd lets no lease expire while it is down, and renews them all when
    it comes back; a server that alone cannot reach etcd is dropped after the TTL), and is
    put back if it is gone when the backend answers again. Not a reason to take the server
    out of service: every server sees the same outage at once."""
    DISPLACED = "another server registered with this server's id"
    """Another server holds this server's id: this one is out of discovery until it stops."""
    LEFT = "left discovery"
    """Deregistered for good (draining or stopping)."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A server as published in discovery."""

    id: str
    type: str
    frontend: bool = False
    hostname: str = field(default_factory=socket.gethostname)
    metadata: dict[str, str] = field(default_factory=dict)

    def key(self, prefix: str = DEFAULT_PREFIX) -> str:
        """``<prefix>servers/<type>/<id>``, this server's entry."""
        return f"{servers_prefix(prefix)}{self.type}/{self.id}"

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
        """This server is registered now and the backend confirms it.

        A discovery may also have a ``registration`` property (a :class:`Registration`)
        that says more: :data:`Registration.UNREACHABLE` keeps the server ready while the
        backend does not answer (``Cluster.registration`` reads it when present, else
        this)."""
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
        self.log = ServerLog(log, "")
        """Where servers coming and going are logged; the discovery names it after its server
        once it knows it (``start``), so the lines say which server saw the change (several
        servers in one process, or a test waiting for one to see another)."""
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
        self.log.info("server %s %s (%s)", "added" if added else "removed", server.id, server.type)
        for listener in self.listeners:
            try:
                listener(server, added)
            except Exception:
                self.log.exception("discovery listener failed")


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
    """Owns the etcd registration and the watch; applies changes to the table in order.

    ``prefix``: the etcd prefix (``etcd_prefix``). A server that cannot register (etcd
    down, or its id taken: :class:`DuplicateServerId`) answers :class:`Registered` with
    that error and does nothing else. ``on_registration`` is told every change of this
    server's :class:`Registration` (and again while an outage lasts).
    """

    def __init__(
        self,
        etcd: EtcdClient,
        me: ServerInfo,
        table: ServerTable,
        ttl: int,
        sync_interval: float,
        on_registration: Callable[[Registration], None],
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.etcd = etcd
        self.me = me
        self.log = ServerLog(log, me.id)
        self.table = table
        self.ttl = ttl
        self.sync_interval = sync_interval
        self.registration_changed = on_registration
        self.prefix = servers_prefix(prefix)
        self.key = me.key(prefix)
        self.value = me.to_json()
        self.lease: int | None = None
        self.refused: Exception | None = None
        self._registering = asyncio.Lock()
        self._displaced = False
        """Another server holds this server's key (logged once, until we hold it again)."""
        self.left = False
        """Deregistered for good (a draining or stopping server): the table is still
        followed, the entry is not put back."""

    async def started(self) -> None:
        try:
            items, revision = await self.etcd.get_prefix(self.prefix)
            self._refuse_if_taken_elsewhere(items)
            await self._register()
        except (EtcdUnavailable, DuplicateServerId) as exc:
            self.refused = exc
            return
        items[self.key] = self.value
        self.on_resync(Resync(items))
        self.run_task(self._keep_alive())
        self.run_task(self._watch(revision + 1))
        self.run_task(self._sync())

    def _refuse_if_taken_elsewhere(self, items: dict[str, bytes]) -> None:
        """The same id under another server type is a duplicate too (ids are unique)."""
        for key, value in items.items():
            if key != self.key and key.rsplit("/", 1)[-1] == self.me.id:
                other = _parse(key, value)
                if other is not None and other.id == self.me.id:
                    raise DuplicateServerId(
                        f"server id {self.me.id!r} is already registered by a {other.type!r} "
                        f"server on {other.hostname or 'an unknown host'} ({key}): give each "
                        "server its own id"
                    )

    async def _register(self) -> None:
        """Create this server's entry under a new lease, only if no entry has its id (one
        transaction), or take over the entry of a server that stopped refreshing its lease
        (crashed); DuplicateServerId if a live server holds it."""
        lease = await self.etcd.grant(self.ttl)
        try:
            created = await self.etcd.put_if_absent(self.key, self.value, lease=lease)
            refusal = "" if created else await self._take_over_or_refuse(lease)
        except BaseException:
            with contextlib.suppress(EtcdUnavailable):
                await self.etcd.revoke(lease)
            raise
        if refusal:
            with contextlib.suppress(EtcdUnavailable):
                await self.etcd.revoke(lease)
            raise DuplicateServerId(refusal)
        self.lease = lease
        self._displaced = False
        self.registration_changed(Registration.REGISTERED)
        self.log.info("registered in etcd (lease %x, ttl %ss)", lease, self.ttl)

    async def _take_over_or_refuse(self, lease: int) -> str:
        """Our key is held: take it over if its holder is gone, else say why we must not
        start (who holds it, and when the id is free if that server is gone).

        A live server refreshes its lease every third of its TTL, so a lease that has not
        been refreshed for longer than that (plus :data:`STALE_SLACK`) belongs to a server
        that crashed: a restarted server waits that long, not a whole TTL.
        """
        found = await self.etcd.get_with_lease(self.key)
        if found is None:  # gone in between
            if await self.etcd.put_if_absent(self.key, self.value, lease=lease):
                return ""
            return f"server id {self.me.id!r} was registered by another server a moment ago"
        value, held_by = found
        other = _parse(self.key, value)
        host = other.hostname if other is not None and other.hostname else "an unknown host"
        free_in = ""
        if held_by:
            left, granted = await self.etcd.lease_ttl(held_by)
            unrefreshed = granted - left
            wait = granted / 3 + STALE_SLACK - unrefreshed
            if left >= 0 and wait < 0:
                # A delete, then a new entry: Go Pitaya's discovery ignores a changed entry
                # of a server it knows (its gRPC peers would keep dialling the old port), and
                # takes a delete and a put as a server that left and one that came.
                taken = await self.etcd.delete_if_lease(self.key, held_by)
                if taken and await self.etcd.put_if_absent(self.key, self.value, lease=lease):
                    self.log.warning(
                        "took over the discovery entry of a server with this id on %s: its "
                        "lease was not refreshed for %d s (it crashed)",
                        host,
                        unrefreshed,
                    )
                    return ""
            elif left >= 0:
                free_in = (
                    f"; if that server is gone, the id is free in {math.ceil(min(left, wait))} s"
                )
        return (
            f"server id {self.me.id!r} is already registered by a live server on {host} "
            f"({self.key}{free_in}): give each server its own id"
        )

    async def _ensure_registered(self) -> None:
        """Put this server's entry back if it is gone (deleted, lease lost, etcd restarted
        without its data), unless another server holds the id now (logged once)."""
        async with self._registering:
            if self.left:
                return
            lost = self.lease is None or await self.etcd.keep_alive(self.lease) == 0
            if lost:
                self.lease = await self.etcd.grant(self.ttl)
            current = await self.etcd.get(self.key)
            if current == self.value:
                return
            if current is None:
                assert self.lease is not None
                if await self.etcd.put_if_absent(self.key, self.value, lease=self.lease):
                    self.log.warning(
                        "%s; registered again",
                        "discovery lease lost"
                        if lost
                        else "this server's discovery entry vanished",
                    )
                    self._displaced = False
                    self.registration_changed(Registration.REGISTERED)
                    return
            self._displace()

    def _displace(self) -> None:
        self.registration_changed(Registration.DISPLACED)
        if not self._displaced:
            self._displaced = True
            self.log.error(
                "another server registered with this server's id (%s): this server is "
                "no longer in discovery; stop one of them",
                self.key,
            )

    async def _keep_alive(self) -> None:
        interval = max(self.ttl / 3, 0.2)
        outage = False
        while not self.left:
            await asyncio.sleep(interval if not outage else min(1.0, interval))
            if self.left:
                return
            try:
                if outage or self.lease is None or await self.etcd.keep_alive(self.lease) == 0:
                    await self._ensure_registered()
                if self.left:  # revoked meanwhile: its state is LEFT for good
                    return
                if outage:
                    outage = False
                    if not self._displaced:
                        self.registration_changed(Registration.REGISTERED)
                    self.log.debug("etcd is back; registration confirmed")
                    items, _ = await self.etcd.get_prefix(self.prefix)
                    self.ref.tell(Resync(items))
            except EtcdUnavailable as exc:
                if self.left:
                    return
                # Told once for the whole process by the client (transport.etcd.EtcdOutage).
                if not outage:
                    self.log.debug("discovery rides out an etcd outage: %s", exc)
                outage = True
                # Still serving, from the last table: readiness holds (Registration).
                self.registration_changed(
                    Registration.DISPLACED if self._displaced else Registration.UNREACHABLE
                )

    async def _watch(self, revision: int) -> None:
        while True:
            try:
                async for event in self.etcd.watch_prefix(self.prefix, revision):
                    self.ref.tell(KeyChanged(event))
                return
            except EtcdHistoryLost as exc:
                self.log.warning("%s; reading the server table again", exc)
            except EtcdWatchBroken as exc:  # etcd restarted or went away: told by the client
                self.log.debug("etcd watch broke (%s); reading the table again", exc)
            except Exception as exc:  # the watch gave up: resync and watch again
                self.log.warning("etcd watch failed (%s); retrying", exc)
            # Watched again only from a read of the table: from the revision seen before, a
            # watch would miss the changes of an etcd that came back without its data.
            while True:
                await asyncio.sleep(1.0)
                try:
                    items, last = await self.etcd.get_prefix(self.prefix)
                except EtcdUnavailable:
                    continue
                self.ref.tell(Resync(items))
                revision = last + 1
                break

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                items, _ = await self.etcd.get_prefix(self.prefix)
            except EtcdUnavailable:
                continue
            self.ref.tell(Resync(items))

    def on_registered_query(self, msg: Registered) -> bool:
        if self.refused is not None:
            raise self.refused
        return self.lease is not None

    def on_key_changed(self, msg: KeyChanged) -> None:
        event = msg.event
        if event.key == self.key:
            self._own_key_changed(event.value)
            return
        server_type, server_id = event.key.rsplit("/", 2)[-2:]
        if event.value is None:
            known = self.table.by_id.get(server_id)
            # Only the server's own key removes it: a stray key naming its id does not.
            if server_id != self.me.id and known is not None and known.type == server_type:
                self.table.delete(server_id)
            return
        server = _parse(event.key, event.value)
        if server is not None:
            self.table.put(server)

    def _own_key_changed(self, value: bytes | None) -> None:
        """Our entry vanished: put it back; someone else wrote it: say so (once)."""
        if self.left:
            return
        if value is None:
            self.run_task(self._repair())
        elif value != self.value:
            self._displace()

    async def _repair(self) -> None:
        # In an outage the keep-alive loop registers again when it ends.
        with contextlib.suppress(EtcdUnavailable):
            await self._ensure_registered()

    def on_resync(self, msg: Resync) -> None:
        seen: set[str] = set()
        for key, value in msg.items.items():
            server = _parse(key, value)
            if server is not None:
                seen.add(server.id)
                if server.id != self.me.id:
                    self.table.put(server)
        self.table.put(self.me)
        for server_id in list(self.table.by_id):
            if server_id not in seen and server_id != self.me.id:
                self.table.delete(server_id)
        if self.lease is not None and msg.items.get(self.key) != self.value:
            self._own_key_changed(msg.items.get(self.key))

    async def revoke(self) -> None:
        """Leave discovery for good: the entry goes with its lease, the table stays
        followed (a draining frontend still routes its clients' messages). After a
        registration under way: it must not put the entry back once this returns."""
        self.left = True
        self.registration_changed(Registration.LEFT)
        async with self._registering:
            if self.lease is not None:
                try:
                    await self.etcd.revoke(self.lease)
                except EtcdUnavailable as exc:
                    self.log.warning("could not revoke the discovery lease: %s", exc)
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
        server = ServerInfo.from_json(value)
        if not key.endswith(f"/{server.type}/{server.id}"):
            # An entry under another server's key would replace that server in every table.
            raise ValueError(f"it names server {server.type}/{server.id}, not its key's")
        problem = server_problem(server.type, server.id)
        if problem is not None:
            # Sending to it would end the sender's NATS connection, or fail every time.
            raise ValueError(problem)
        return server
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


def etcd_endpoints(config: Config) -> list[str]:
    """The ``etcd_endpoints`` option as a list."""
    return [e.strip() for e in config.etcd_endpoints.split(",") if e.strip()]


def etcd_security(config: Config) -> EtcdSecurity:
    """The ``etcd_user``/``etcd_password`` and ``etcd_tls_*`` options."""
    return EtcdSecurity(
        user=config.etcd_user,
        password=config.etcd_password,
        ca_file=config.etcd_tls_ca,
        cert_file=config.etcd_tls_cert,
        key_file=config.etcd_tls_key,
        server_name=config.etcd_tls_server_name,
    )


def etcd_client(config: Config) -> EtcdClient:
    """An etcd client as the options say (endpoints, credentials, TLS, prefix): the one
    discovery uses, and the binding storage's."""
    return EtcdClient(
        etcd_endpoints(config),
        timeout=config.cluster_connect_timeout,
        probe_key=f"{config.etcd_prefix}ping",
        security=etcd_security(config),
        name=config.server_id,
        outage_summary_interval=config.etcd_outage_log_interval,
    )


class EtcdServiceDiscovery:
    """The default :class:`ServiceDiscovery`, backed by etcd.

    ``system``: where its :class:`DiscoveryActor` runs; ``endpoints``: etcd's ``host:port``
    list; ``timeout``: per etcd operation (and twice that for the first registration);
    ``lease_ttl`` and ``sync_interval``: seconds, see the module docstring; ``prefix``: where
    the keys live (``etcd_prefix``), the groups' under ``groups_prefix`` when given (Go
    Pitaya's groups have a prefix of their own); ``security``: etcd credentials and TLS;
    ``outage_summary_interval``: seconds between summaries of an etcd outage.
    """

    def __init__(
        self,
        system: ActorSystem,
        endpoints: list[str],
        *,
        timeout: float,
        lease_ttl: int,
        sync_interval: float,
        prefix: str = DEFAULT_PREFIX,
        groups_prefix: str | None = None,
        security: EtcdSecurity | None = None,
        outage_summary_interval: float = 30.0,
    ) -> None:
        self.system = system
        self.prefix = prefix
        self.groups_prefix = groups_prefix or prefix
        self.etcd = EtcdClient(
            endpoints,
            timeout=timeout,
            probe_key=f"{prefix}ping",
            security=security,
            outage_summary_interval=outage_summary_interval,
        )
        """The etcd connection, shared with the etcd group service (:meth:`group_service`)."""
        self.timeout = timeout
        self.lease_ttl = lease_ttl
        self.sync_interval = sync_interval
        self.table = ServerTable()
        self._registration = Registration.UNREGISTERED
        self._actor: ActorRef | None = None

    @property
    def registered(self) -> bool:
        return self._registration is Registration.REGISTERED

    @property
    def registration(self) -> Registration:
        """This server's :class:`Registration`: ``UNREACHABLE`` during an etcd outage once
        it was registered (it keeps serving), ``UNREGISTERED`` until it first was."""
        return self._registration

    def _set_registration(self, state: Registration) -> None:
        self._registration = state

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
        self.etcd.name = me.id
        self.table.log = ServerLog(log, me.id)
        self._actor = self.system.spawn(
            DiscoveryActor,
            self.etcd,
            me,
            self.table,
            self.lease_ttl,
            self.sync_interval,
            self._set_registration,
            self.prefix,
            name="discovery",
        )
        # Wait for started() (registration + first table) to finish.
        try:
            await self._actor.ask(Registered(), timeout=self.timeout * 2)
        except BaseException as exc:
            # All of it, even if a stop comes meanwhile: cut short, the entry would hold
            # this server's id in etcd for a lease's TTL.
            await undo_fully(self._abandon())
            if isinstance(exc, ActorError | EtcdUnavailable) and not isinstance(
                exc, DuplicateServerId
            ):
                raise EtcdUnavailable(f"discovery could not register in etcd: {exc}") from exc
            raise

    async def _abandon(self) -> None:
        """The start failed or was cancelled (a stop during the start-up): leave no entry
        behind. A registration under way revokes its own lease when stopped; one that
        finished (the ask timed out, or was cancelled, just after) has its lease revoked
        here (else its entry would hold this server's id for a TTL, and a restart would be
        refused as a duplicate)."""
        assert self._actor is not None
        actor = self._actor._cell.actor
        assert isinstance(actor, DiscoveryActor)
        await self._actor.stop()
        lease, actor.lease = actor.lease, None
        if lease is not None:
            with contextlib.suppress(EtcdUnavailable):
                await self.etcd.revoke(lease)
        self._registration = Registration.UNREGISTERED

    async def lookup(self, server_type: str, server_id: str) -> ServerInfo | None:
        key = f"{servers_prefix(self.prefix)}{server_type}/{server_id}"
        try:
            value = await self.etcd.get(key)
        except EtcdUnavailable:
            return None
        return _parse(key, value) if value is not None else None

    def group_service(self, push: PushToUsers) -> GroupService:
        return EtcdGroupService(self.etcd, push, prefix=self.groups_prefix)

    async def stop(self) -> None:
        """Deregister; the watch goes on until :meth:`close` (a draining frontend keeps
        routing its connected clients' messages to the servers there are now)."""
        if self._actor is not None and self._actor.alive:
            actor = self._actor._cell.actor
            assert isinstance(actor, DiscoveryActor)
            await actor.revoke()
        if self._registration is not Registration.UNREGISTERED:
            self._registration = Registration.LEFT

    async def close(self) -> None:
        if self._actor is not None and self._actor.alive:
            await self._actor.stop()
        await self.etcd.close()
