"""The local session pool: find a session by id or uid; bind and close callbacks.

Lookups are synchronous dict reads because every caller lives on the same event loop; the
pool only indexes sessions, it never mutates them except for ``uid`` on bind.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator

from actors.errors import FrontendOnly
from actors.session import Session

log = logging.getLogger(__name__)

SessionCallback = Callable[[Session], Awaitable[None] | None]
ClosingCallback = Callable[[Session], None]


class SessionRegistry:
    """All sessions connected to this server."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_id: dict[int, Session] = {}
        self._by_uid: dict[str, Session] = {}
        self._bind: list[SessionCallback] = []
        self._after_bind: list[SessionCallback] = []
        self._close: list[SessionCallback] = []
        self._closing: list[ClosingCallback] = []
        self.frontend = True
        """False on a cluster backend: sessions live on frontends, lookups here are errors."""

    def next_id(self) -> int:
        return next(self._ids)

    # -- callbacks -------------------------------------------------------------------------

    def on_session_bind(self, callback: SessionCallback) -> SessionCallback:
        """Runs during ``bind`` with the uid already set; raising refuses the bind."""
        self._bind.append(callback)
        return callback

    def on_after_session_bind(self, callback: SessionCallback) -> SessionCallback:
        """Runs once the bind succeeded; errors are logged, the bind stands."""
        self._after_bind.append(callback)
        return callback

    def on_session_close(self, callback: SessionCallback) -> SessionCallback:
        """Runs for every session when its connection is gone (after its own callbacks)."""
        self._close.append(callback)
        return callback

    def on_session_closing(self, callback: ClosingCallback) -> ClosingCallback:
        """Runs synchronously the moment a session is forgotten, before any close callback
        awaits: for the framework's own bookkeeping that must not lag (the cluster drops the
        uid's push subjects here). Must not block; errors are logged."""
        self._closing.append(callback)
        return callback

    # -- lookups ---------------------------------------------------------------------------

    def get(self, session_id: int) -> Session | None:
        self._require_frontend("looking up a session by id")
        return self._by_id.get(session_id)

    def by_uid(self, uid: str) -> Session | None:
        self._require_frontend("looking up a session by uid")
        return self._by_uid.get(uid)

    def _require_frontend(self, what: str) -> None:
        if not self.frontend:
            raise FrontendOnly(
                f"{what} is only possible on a frontend server (sessions live there); "
                "on a backend, use the session passed to the handler, or app.send_push_to_users"
            )

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))

    # -- lifecycle (called by session actors) ----------------------------------------------

    def add(self, session: Session) -> None:
        self._by_id[session.id] = session

    async def bind(self, session: Session, uid: str) -> None:
        session.uid = uid
        try:
            for callback in self._bind:
                await _call(callback, session)
        except BaseException:
            session.uid = None
            raise
        if session.closed:  # the connection went away while a callback awaited
            session.uid = None
            return
        self._by_uid[uid] = session
        for callback in self._after_bind:
            try:
                await _call(callback, session)
            except Exception:
                log.exception("after-bind callback failed for session %s", session.id)

    async def closed(self, session: Session) -> None:
        """Forget ``session`` and run its close callbacks, then the app-wide ones."""
        session.closed = True
        self._by_id.pop(session.id, None)
        if session.uid is not None and self._by_uid.get(session.uid) is session:
            del self._by_uid[session.uid]
        for closing in self._closing:
            try:
                closing(session)
            except Exception:
                log.exception("closing callback failed for session %s", session.id)
        for callback in [*session._close_callbacks, *self._close]:
            try:
                await _call(callback, session)
            except Exception:
                log.exception("close callback failed for session %s", session.id)


async def _call(callback: SessionCallback, session: Session) -> None:
    result = callback(session)
    if inspect.isawaitable(result):
        await result
