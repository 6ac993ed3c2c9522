"""Binding storage: which frontend each uid is bound on, in etcd (Pitaya's ETCDBindingStorage).

Without it, a push or kick by uid is a NATS request on ``pitaya/<frontendType>/user/<uid>/...``
tried for every frontend type. With it, the sender reads
``<prefix>bindings/<frontendType>/<uid>`` -> frontend id (``prefix``: the
``binding_storage_etcd_prefix`` option, else ``etcd_prefix``; ``pitaya/`` by default) and sends
one RPC (the controls ``sys.pushuser`` / ``sys.kickuser`` of ``actors.cluster.control``) to that
frontend: no fan-out over types, and an unknown uid fails at once instead of after a NATS
timeout. With ``rpc_transport="grpc"`` it is the only way (there are no per-uid subjects), so
every server must register it, as in Pitaya.

Register it on every server that pushes or kicks by uid (backends included); on frontends it
also maintains the entries:

* written after each bind, under a lease of this frontend (``etcd_lease_ttl``, refreshed every
  TTL/3), so the entries of a frontend that dies expire with its lease;
* removed when the session closes, only if the entry still names this frontend (the uid may
  have been bound elsewhere since);
* rewritten when the lease was lost (etcd restarted, or unreachable for longer than the TTL).

If etcd cannot be read, pushes and kicks fall back to the per-uid subjects (NATS; over gRPC
they fail).

::

    app.register_module(BindingStorage(app), "binding_storage")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors.cluster.control import Control, UidKick, UidPush
from actors.cluster.discovery import etcd_client
from actors.cluster.users import UserDelivery
from actors.config import bindings_prefix
from actors.logs import ServerLog
from actors.modules.base import ModuleBase
from transport.etcd import EtcdClient, EtcdUnavailable

if TYPE_CHECKING:
    from actors.cluster.discovery import ServiceDiscovery
    from actors.cluster.outbound import Outbound
    from actors.cluster.users import ClusterUsers
    from actors.modules.host import ModuleHost
    from actors.session import Session

log = logging.getLogger(__name__)

BINDINGS_PREFIX = "pitaya/bindings/"

CLAIM_ATTEMPTS = 4
"""Rounds of read-then-swap in :meth:`BindingStorage.claim` before it gives up under contention
(each lost round means another frontend wrote the key in between)."""


def binding_key(frontend_type: str, uid: str, prefix: str = "pitaya/") -> str:
    """``<prefix>bindings/<frontendType>/<uid>`` (Pitaya's layout)."""
    return f"{prefix}bindings/{frontend_type}/{uid}"


class BindingStorage(ModuleBase):
    """uid -> frontend id in etcd; see the module docstring. Needs cluster mode. A
    :class:`~actors.cluster.users.UserDelivery`."""

    def __init__(self, app: ModuleHost, *, lease_ttl: int | None = None) -> None:
        self.app = app
        self.log = ServerLog(log, app.server_id)
        self.lease_ttl = lease_ttl or app.config.etcd_lease_ttl
        self.etcd: EtcdClient | None = None
        self.lease: int | None = None
        self._outbound: Outbound | None = None
        self._discovery: ServiceDiscovery | None = None
        self._users: ClusterUsers | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._dirty = False
        """A write failed: every local binding is written again once etcd answers."""

    @property
    def _me(self) -> tuple[str, str]:
        return self.app.server_type, self.app.server_id

    # -- lifecycle -------------------------------------------------------------------------

    async def init(self) -> None:
        cluster = self.app.cluster
        if cluster is None:
            raise RuntimeError("the binding storage needs cluster mode (mode='cluster')")
        config = self.app.config
        self.etcd = etcd_client(config)
        await self.etcd.connect()
        self._outbound, self._discovery = cluster.outbound, cluster.discovery
        self._users = cluster.users
        if self.app.is_frontend:
            self.lease = await self.etcd.grant(self.lease_ttl)
            self._keeper = asyncio.get_running_loop().create_task(self._keep_alive())
            self.app.sessions.on_after_session_bind(self._store)
            self.app.sessions.on_session_close(self._remove)
        cluster.users.bindings = self
        self.log.info(
            "binding storage on (etcd %s%s)",
            config.etcd_endpoints,
            f", lease ttl {self.lease_ttl}s" if self.lease is not None else "",
        )

    async def shutdown(self) -> None:
        if self._users is not None and self._users.bindings is self:
            self._users.bindings = None
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        etcd, self.etcd = self.etcd, None
        if etcd is None:
            return
        if self.lease is not None:  # drops every binding of this frontend at once
            with contextlib.suppress(EtcdUnavailable):
                await etcd.revoke(self.lease)
            self.lease = None
        await etcd.close()

    # -- lookups ---------------------------------------------------------------------------

    async def frontend_of(self, uid: str, frontend_types: list[str]) -> str | None:
        """The id of the frontend ``uid`` is bound on (first of ``frontend_types`` that has
        it), None if it is bound nowhere. Raises EtcdUnavailable."""
        etcd = self._require_etcd()
        prefix = bindings_prefix(self.app.config)
        for frontend_type in frontend_types:
            value = await etcd.get(binding_key(frontend_type, uid, prefix))
            if value is not None:
                return value.decode()
        return None

    async def claim(self, uid: str) -> str | None:
        """Frontends: take ``uid`` for this frontend unless another live frontend holds it.

        Returns None when taken (or already ours), else the holder's id. Each write is one
        etcd transaction: the key is created only if absent, and a dead frontend's entry (or
        our own, to move it onto our current lease) is replaced only while it still holds
        the value read (compare-and-swap). So two frontends binding one uid at once cannot
        both win, even over a dead holder's entry (the unique session module's ``refuse``
        mode relies on it): the loser reads the winner and gets its id. Raises
        EtcdUnavailable.
        """
        etcd = self._require_etcd()
        server_type, server_id = self._me
        key = binding_key(server_type, uid, bindings_prefix(self.app.config))
        mine, lease = server_id.encode(), self.lease or 0
        holder_id = ""
        for _ in range(CLAIM_ATTEMPTS):
            if await etcd.put_if_absent(key, mine, lease=lease):
                return None
            holder = await etcd.get(key)
            if holder is None:
                continue  # deleted in between: try to create it again
            holder_id = holder.decode()
            if holder_id and holder_id != server_id and self._alive(holder_id):
                return holder_id
            if await etcd.put_if_value(key, holder, mine, lease=lease):
                return None  # ours, or a dead one's
            # Someone else wrote it in between: read the new holder.
        return holder_id or "unknown"  # still contended: refuse rather than take it blindly

    def _alive(self, server_id: str) -> bool:
        """Still in discovery (a dead frontend's bindings outlive it until its lease ends)."""
        return self._discovery is not None and self._discovery.server(server_id) is not None

    # -- delivery (UserDelivery) -----------------------------------------------------------

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]:
        return await self._deliver(uids, frontend_types, lambda uid: UidPush(uid, route, payload))

    async def kick_users(
        self, reason: str, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]:
        return await self._deliver(uids, frontend_types, lambda uid: UidKick(uid, reason))

    async def _deliver(
        self,
        uids: list[str],
        frontend_types: list[str],
        control: Callable[[str], Control],
    ) -> tuple[list[str], list[str]]:
        outbound = self._outbound
        if outbound is None or self.etcd is None:
            return [], list(uids)

        async def one(uid: str) -> str:
            try:
                frontend_id = await self.frontend_of(uid, frontend_types)
            except EtcdUnavailable as exc:
                self._etcd_failed("binding lookup of %s failed: %s", uid, exc)
                return "unknown"
            if frontend_id is None:
                return "failed"
            message = control(uid)
            self.log.debug("%s to %s via %s", message.route, uid, frontend_id)
            try:
                await outbound.frontend_call(frontend_id, message)
            except Exception as exc:
                self.log.info("%s to %s failed: %s", message.route, uid, exc)
                return "failed"
            return "ok"

        outcomes = await asyncio.gather(*(one(uid) for uid in uids))
        pairs = list(zip(uids, outcomes, strict=True))
        return [u for u, o in pairs if o == "failed"], [u for u, o in pairs if o == "unknown"]

    # -- frontend bookkeeping --------------------------------------------------------------

    async def _store(self, session: Session) -> None:
        if session.uid is None or self.etcd is None:
            return
        server_type, server_id = self._me
        try:
            await self.etcd.put(
                binding_key(server_type, session.uid, bindings_prefix(self.app.config)),
                server_id.encode(),
                lease=self.lease or 0,
            )
        except EtcdUnavailable as exc:
            self._dirty = True
            self._etcd_failed("could not store the binding of %s (retried): %s", session.uid, exc)

    async def release(self, uid: str) -> None:
        """Frontends: remove this frontend's entry for ``uid`` unless a live session here
        holds the uid (a claim whose bind did not complete). Never raises: a failure is
        logged."""
        holder = self.app.sessions.by_uid(uid)
        if self.etcd is None or (holder is not None and not holder.closed):
            return
        await self._delete_mine(uid, "could not release the claim on %s: %s")

    async def _remove(self, session: Session) -> None:
        if session.uid is None or self.etcd is None:
            return
        if self.app.sessions.by_uid(session.uid) not in (None, session):
            return  # a newer session here holds the uid now
        await self._delete_mine(
            session.uid, "could not remove the binding of %s (its lease will): %s"
        )

    async def _delete_mine(self, uid: str, failure: str) -> None:
        """Delete ``uid``'s entry if it still names this frontend (one transaction)."""
        assert self.etcd is not None
        server_type, server_id = self._me
        key = binding_key(server_type, uid, bindings_prefix(self.app.config))
        try:
            await self.etcd.delete_if_value(key, server_id.encode())
        except EtcdUnavailable as exc:
            self._etcd_failed(failure, uid, exc)

    async def _keep_alive(self) -> None:
        """Refresh the lease; when it was lost or a write failed, write every binding again."""
        etcd = self._require_etcd()
        interval = max(self.lease_ttl / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                assert self.lease is not None
                if await etcd.keep_alive(self.lease) == 0:
                    self.log.warning("binding lease lost; storing again")
                    self.lease = await etcd.grant(self.lease_ttl)
                    self._dirty = True
                if self._dirty:
                    self._dirty = False
                    for session in self.app.sessions:
                        if session.uid is not None and not session.closed:
                            await self._store(session)
            except EtcdUnavailable as exc:
                self._etcd_failed("binding lease refresh failed: %s", exc)

    def _etcd_failed(self, message: str, *args: object) -> None:
        """A failed etcd operation: at debug during an etcd outage, which the etcd client
        logs once for the process (``transport.etcd.EtcdOutage``), else a warning."""
        outage = getattr(self.etcd, "outage", None)  # None: a store with no outage record
        in_outage = outage is not None and outage.since is not None
        level = logging.DEBUG if in_outage else logging.WARNING
        self.log.log(level, message, *args)

    def _require_etcd(self) -> EtcdClient:
        if self.etcd is None:
            raise EtcdUnavailable("the binding storage is not started")
        return self.etcd


__all__ = ["BINDINGS_PREFIX", "BindingStorage", "UserDelivery", "binding_key"]
