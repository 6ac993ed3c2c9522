"""Unique session: one session per uid across the frontends of a type (Pitaya's UniqueSession).

When a session binds a uid that another session already holds:

* ``on_conflict="kick"`` (default, Pitaya's behaviour): the old session is kicked (a kick
  packet, then the connection closes) and the new bind stands. On this frontend this happens
  during the bind, which goes on once the older session's close callbacks ran (at most
  :data:`OLDER_CLOSE_WAIT`): run later, they would undo the new login. On other frontends of
  the same type it happens when they receive this frontend's ``BindNotice``: over NATS
  published on ``pitaya/<frontendType>/bindings`` at every bind; over gRPC sent to the
  frontend the binding storage names for the uid (Pitaya's way). Nobody acknowledges a
  notice, so there the older session's close callbacks may run after the new bind.
* ``on_conflict="refuse"``: the new bind fails with :class:`UidAlreadyBound` (``PIT-409``)
  and the old session stays. Across frontends this needs to know where the uid is bound *now*,
  which is what the binding storage module keeps: register
  :class:`~actors.modules.binding_storage.BindingStorage` too; the claim is one etcd
  transaction, so two frontends binding a uid at once cannot both win.

On one frontend, binds of one uid take turns (``actors.sessions.registry``): when two sessions bind
the same uid at once, even with bind callbacks that await, the later one sees the earlier
one bound, so one session ends up with the uid (``kick``: the later; ``refuse``: the
earlier). In ``refuse`` mode the uid is claimed in etcd during the bind; if the bind then
does not complete (a later bind callback refuses it, or the connection goes away), the claim
is released, so other frontends may bind the uid.

Known limit (as in Pitaya): two binds of one uid on two frontends within a network round trip can
kick both sessions in ``kick`` mode, since a notice does not say which bind came first.

::

    app.register_module(UniqueSession(app), "unique_session")
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from actors.errors import PitayaError
from actors.logs import ServerLog
from actors.modules.base import ModuleBase
from transport.etcd import EtcdUnavailable

if TYPE_CHECKING:
    from actors.cluster.codec import BindNotice
    from actors.modules.binding_storage import BindingStorage
    from actors.modules.host import ModuleHost
    from actors.session import Session

log = logging.getLogger(__name__)

KICK_REASON = "logged in elsewhere"

OLDER_CLOSE_WAIT = 5.0
"""Seconds a bind that kicked the uid's older session on this frontend waits for that
session's close callbacks to run (as Go Pitaya runs them during the kick): run later, they
would undo what the new session's bind and login did (a player marked offline)."""


class UidAlreadyBound(PitayaError):
    """``PIT-409``: refused bind, the uid is bound to another session (``refuse`` mode)."""

    default_code = "PIT-409"

    def __init__(self, uid: str, holder: str) -> None:
        super().__init__(self.default_code, f"uid {uid} is already bound on {holder}", {"uid": uid})
        self.uid = uid
        self.holder = holder


class UniqueSession(ModuleBase):
    """One session per uid; see the module docstring. Does nothing on backends."""

    def __init__(self, app: ModuleHost, *, on_conflict: Literal["kick", "refuse"] = "kick") -> None:
        if on_conflict not in ("kick", "refuse"):
            raise ValueError(f"on_conflict must be 'kick' or 'refuse', not {on_conflict!r}")
        self.app = app
        self.log = ServerLog(log, app.server_id)
        self.on_conflict = on_conflict
        self.kicked = 0
        """Sessions kicked because their uid was bound again (here or elsewhere)."""
        self._active = False
        self._storage: BindingStorage | None = None
        self._claims: set[int] = set()
        """Ids of the sessions whose bind claimed its uid in etcd and is still under way."""

    async def init(self) -> None:
        if not self.app.is_frontend:
            return
        cluster = self.app.cluster
        if cluster is not None and self.on_conflict == "refuse":
            self._storage = self._find_storage()
        if cluster is not None:
            await cluster.users.watch_binds(self._on_binding)
        self.app.sessions.on_session_bind(self._check)
        if self._storage is not None:
            self.app.sessions.on_after_session_bind(self._claim_kept)
            self.app.sessions.on_session_bind_failed(self._release)
        self._active = True

    async def shutdown(self) -> None:
        self._active = False  # the cluster's bind notices stop with its transport

    def _find_storage(self) -> BindingStorage:
        from actors.modules.binding_storage import BindingStorage

        for _, module in self.app.modules:
            if isinstance(module, BindingStorage):
                return module
        raise RuntimeError(
            "unique session with on_conflict='refuse' in cluster mode needs the binding "
            "storage module (app.register_module(BindingStorage(app), 'binding_storage'))"
        )

    # -- during a bind on this frontend ----------------------------------------------------

    async def _check(self, session: Session) -> None:
        """A bind callback: runs with ``session.uid`` set; raising refuses the bind."""
        uid = session.uid
        if not self._active or uid is None:
            return
        old = self.app.sessions.by_uid(uid)
        if old is not None and old is not session and not old.closed:
            if self.on_conflict == "refuse":
                raise UidAlreadyBound(uid, self.app.server_id)
            self._kick(old, f"uid {uid} bound again by session {session.id}")
            if not await self.app.sessions.wait_closed(old, OLDER_CLOSE_WAIT):
                self.log.session(session.id).warning(
                    "the older session %d of uid %s is still closing after %ss: the bind "
                    "goes on (its close callbacks may run after it)",
                    old.id,
                    uid,
                    OLDER_CLOSE_WAIT,
                )
        if self._storage is not None:
            try:
                holder = await self._storage.claim(uid)
            except EtcdUnavailable as exc:  # cannot know: the bind stands (like kick mode)
                self.log.warning("cannot check uid %s in etcd: %s", uid, exc)
                return
            if holder is not None:
                raise UidAlreadyBound(uid, holder)
            self._claims.add(session.id)

    def _claim_kept(self, session: Session) -> None:
        self._claims.discard(session.id)  # bound: the binding storage keeps the entry now

    async def _release(self, session: Session) -> None:
        """The bind did not complete after our claim: give the uid back in etcd."""
        if session.id not in self._claims:
            return
        self._claims.discard(session.id)
        if self._storage is not None and session.uid is not None:
            await self._storage.release(session.uid)

    # -- binds on other frontends ----------------------------------------------------------

    def _on_binding(self, notice: BindNotice) -> None:
        if not self._active or notice.frontend_id == self.app.server_id:
            return
        session = self.app.sessions.by_uid(notice.uid)
        if session is not None and not session.closed:
            self._kick(session, f"uid {notice.uid} bound on {notice.frontend_id}")

    def _kick(self, session: Session, why: str) -> None:
        self.kicked += 1
        self.log.session(session.id).info("kicking session %d: %s", session.id, why)
        session.kick(KICK_REASON)
