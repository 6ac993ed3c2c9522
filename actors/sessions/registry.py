"""The local session pool: find a session by id or uid; bind and close callbacks.

Lookups are synchronous dict reads because every caller lives on the same event loop; the
pool only indexes sessions, it never mutates them except for ``uid`` on bind.

**Binds of one uid take turns.** Bind callbacks may await (load a profile, claim the uid in
etcd), so two sessions binding the same uid at once would otherwise both run their callbacks
before either is indexed, and neither would see the other. A bind waits until no other bind
of the same uid is running, so each one sees the outcome of the one before it, exactly as if
they had come one after another: with the unique session module the later bind kicks the
earlier session (``kick``) or is refused (``refuse``). Binds of different uids never wait for
each other.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from actors.errors import FrontendOnly
from actors.session import Session, SessionAlreadyBound, SessionClosed
from transport.waiting import set_within

log = logging.getLogger(__name__)

SessionCallback = Callable[[Session], Awaitable[None] | None]
ClosingCallback = Callable[[Session], None]


@dataclass(slots=True)
class _UidTurn:
    """The binds of one uid, run one at a time; dropped when none is left."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    binds: int = 0


class SessionRegistry:
    """All sessions connected to this server."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_id: dict[int, Session] = {}
        self._by_uid: dict[str, Session] = {}
        self._shadowed: dict[str, list[Session]] = {}
        """Per uid, its older sessions still open (bound before the one ``_by_uid`` names,
        without the unique session module): the newest found by the uid, the one before it
        again once the newest closes (it was unreachable by its uid for good)."""
        self._bind: list[SessionCallback] = []
        self._after_bind: list[SessionCallback] = []
        self._bind_failed: list[SessionCallback] = []
        self._turns: dict[str, _UidTurn] = {}
        self._binding: set[int] = set()
        """Ids of the sessions with a bind under way (waiting for their turn or running)."""
        self._close: list[SessionCallback] = []
        self._closing: list[ClosingCallback] = []
        self._closing_now: set[int] = set()
        """Ids of the sessions whose close callbacks run now."""
        self._close_done: dict[int, asyncio.Event] = {}
        """Set when the close callbacks of the session with that id have run (made by
        :meth:`wait_closed`, for a session it waits for)."""
        self.frontend = True
        """False on a cluster backend: sessions live on frontends, lookups here are errors."""

    def next_id(self) -> int:
        return next(self._ids)

    # -- callbacks -------------------------------------------------------------------------

    def on_session_bind(self, callback: SessionCallback) -> SessionCallback:
        """Runs during ``bind`` with the uid already set; raising refuses the bind. Runs in
        the uid's turn: no other bind of the same uid runs meanwhile (module docstring)."""
        self._bind.append(callback)
        return callback

    def on_session_bind_failed(self, callback: SessionCallback) -> SessionCallback:
        """Runs when a bind does not complete (a bind callback raised, or the connection
        closed while one awaited), with ``session.uid`` still set to the uid, before it is
        reset: to undo what an earlier bind callback did (the unique session module releases
        its claim on the uid here). Errors are logged."""
        self._bind_failed.append(callback)
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
        """Register ``session``; one that comes bound (a test's) is found by its uid too."""
        self._by_id[session.id] = session
        if session.uid is not None:
            self._index(session.uid, session)

    async def bind(self, session: Session, uid: str) -> None:
        """Bind ``uid`` to ``session``: waits for the uid's turn (no other bind of ``uid``
        running), runs the bind callbacks, indexes the uid, runs the after-bind callbacks.
        A second bind of one session while its first is under way raises
        :class:`~actors.session.SessionAlreadyBound`; a session whose connection closes
        before the bind completes raises :class:`~actors.session.SessionClosed`."""
        if session.id in self._binding:
            raise SessionAlreadyBound(f"session {session.id} is already binding a uid")
        self._binding.add(session.id)
        try:
            async with self.turn(uid):
                await self._run_bind(session, uid)
        finally:
            self._binding.discard(session.id)

    @asynccontextmanager
    async def turn(self, uid: str) -> AsyncIterator[None]:
        """Hold ``uid``'s turn: no bind of ``uid`` runs meanwhile (waits for the one under
        way, and those before it). What must see how the binds of a uid ended takes it: a
        closed session's uid subjects are dropped in it (``ClusterUsers.closing``)."""
        turn = self._turns.get(uid)
        if turn is None:
            turn = self._turns[uid] = _UidTurn()
        turn.binds += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.binds -= 1
            if not turn.binds:
                del self._turns[uid]

    async def _run_bind(self, session: Session, uid: str) -> None:
        # A bind that cannot complete raises: the handler awaiting it must not go on as if
        # the player were bound (join a room, register close callbacks that never run).
        if session.closed:  # the connection went away while it waited for its turn
            raise SessionClosed(f"session {session.id} closed before it was bound")
        session.uid = uid
        try:
            for callback in self._bind:
                await _call(callback, session)
        except BaseException:
            await self._failed(session)
            raise
        if session.closed:  # the connection went away while a callback awaited
            await self._failed(session)
            raise SessionClosed(f"session {session.id} closed while it was being bound")
        self._index(uid, session)
        for callback in self._after_bind:
            try:
                await _call(callback, session)
            except Exception:
                log.exception("after-bind callback failed for session %s", session.id)

    async def _failed(self, session: Session) -> None:
        for callback in self._bind_failed:
            try:
                await _call(callback, session)
            except Exception:
                log.exception("bind-failed callback failed for session %s", session.id)
        session.uid = None

    async def closed(self, session: Session) -> None:
        """Forget ``session`` and run its close callbacks, then the app-wide ones."""
        session.closed = True
        self._closing_now.add(session.id)
        self._by_id.pop(session.id, None)
        if session.uid is not None:
            self._unindex(session.uid, session)
        try:
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
        finally:
            self._closing_now.discard(session.id)
            done = self._close_done.pop(session.id, None)
            if done is not None:
                done.set()

    def _index(self, uid: str, session: Session) -> None:
        older = self._by_uid.get(uid)
        if older is not None and older is not session and not older.closed:
            self._shadowed.setdefault(uid, []).append(older)
        self._by_uid[uid] = session

    def _unindex(self, uid: str, session: Session) -> None:
        shadowed = self._shadowed.get(uid)
        if self._by_uid.get(uid) is session:
            del self._by_uid[uid]
            while shadowed:  # the newest of the older ones still open takes the uid back
                older = shadowed.pop()
                if not older.closed:
                    self._by_uid[uid] = older
                    break
        elif shadowed and session in shadowed:
            shadowed.remove(session)
        if shadowed is not None and not shadowed:
            del self._shadowed[uid]

    async def wait_closed(self, session: Session, timeout: float) -> bool:
        """Whether the close callbacks of ``session`` (closing, or about to: kicked) ran
        within ``timeout`` seconds. A bind that kicked the uid's older session waits so:
        the older session's callbacks (a player marked offline, a seat freed) must not run
        after the new session's bind, and undo it."""
        if session.closed and session.id not in self._closing_now:
            return True
        done = self._close_done.get(session.id)
        if done is None:
            done = self._close_done[session.id] = asyncio.Event()
        return await set_within(done, timeout)


async def _call(callback: SessionCallback, session: Session) -> None:
    result = callback(session)
    if inspect.isawaitable(result):
        await result
