"""Closes a frontend could not send: the sessions of a frontend that died, closed on a backend.

A frontend of ours tells the backends that served a session of its close
(``actors.cluster.session_events``). A frontend that dies without stopping (SIGKILL, a
crash, its host lost) sends none, and a room kept its players for as long as it lived. So a
backend with close callbacks remembers the sessions of our frontends it served (the routes
they used here, and the session as its last message carried it: uid, data), forgets each at
its close event, and closes here those of a frontend that is gone:

* **restarted**: a message of it names another incarnation than its sessions' (every
  request of ours names its sender's, ``SENDER_INCARNATION_KEY``: a token each server draws
  when it starts), or discovery lists its id with another one (:data:`INCARNATION_KEY`): no
  session of the old process is left. Seen at the new process's first message here, before
  this server's discovery may show it: its session ids begin from 1 again, and one bearing
  an old session's id is a new session (a late message of the old process is ignored);
* **dead**: discovery does not list it (its lease expired, or it left to drain) and asking
  it finds nobody there (NATS's "no responders"; over gRPC, no connection could be made). A
  frontend that left discovery to drain answers: it still sends its closes;
* **a close lost**: the frontend lives, but says a session is not open, twice at least
  :data:`CONFIRM_AFTER` seconds apart (its close event was given up during an outage, or
  never sent): the second time, however late a message sent before the close is, it was
  handled.

Checked every :data:`SWEEP_INTERVAL` seconds while sessions are remembered. A frontend not
listed is asked each time, a listed one every :data:`AUDIT_INTERVAL` seconds, which of at
most :data:`AUDIT_BATCH` of its sessions are open (``pysys.sessionsopen``: the longest
unasked first), one question per frontend at a time. The closes are handed to the bridge
(``close_here``), which runs each in its session's turn, after the messages of that session
still running or waiting, with the callbacks the frontend's close event would have run.

**Once per session.** A close event that comes after a close made here (a frontend cut off
from NATS and etcd for longer than its lease, which then came back with the closes it held)
runs no callback again (:meth:`ServedSessions.closing`). A message of such a session that
comes later makes it known here again: it lives, and its next close runs them.

Bounded: :data:`MAX_SESSIONS` sessions remembered in all (one past it has its frontend's
close event only), :data:`~actors.cluster.session_events.MAX_SERVED_ROUTES` routes each,
:data:`MAX_CLOSED_HERE` closes made here remembered against a late close event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from actors.cluster.codec import (
    INCARNATION_KEY,
    SENDER_INCARNATION_KEY,
    SessionSnapshot,
    without_handshake,
)
from actors.cluster.rpc import ServerUnreachable
from actors.cluster.session_events import add_route
from actors.cluster.subjects import MAX_LOGGED_ID, server_problem
from actors.logs import ServerLog, Throttle

if TYPE_CHECKING:
    from actors.cluster.discovery import ServiceDiscovery

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 2.0
"""Seconds between two checks of the frontends whose sessions are remembered."""
AUDIT_INTERVAL = 30.0
"""Seconds between two questions to a listed frontend about which sessions are open."""
AUDIT_BATCH = 1_000
"""Session ids one question asks about."""
CONFIRM_AFTER = 10.0
"""Seconds a frontend must say a session is not open, asked again, before it is closed here:
a message of the session sent before its close may still be on its way (its close event,
lost, kept no order with it)."""
MAX_SESSIONS = 100_000
"""Sessions remembered in all (a few hundred bytes each, with their last snapshot)."""
MAX_RETIRED = 4
"""Incarnations of one frontend id remembered as restarted from: a message that still comes
from one of those processes is not taken for a restart back to it."""
MAX_CLOSED_HERE = 10_000
"""Closes made here remembered, so that a late close event of the same session runs none of
its callbacks again."""


class CloseSubscriptions(Protocol):
    """Whether a close callback is subscribed (``RemoteSessionEvents``)."""

    closes_wanted: bool


Probe = Callable[[str, str, list[int]], Awaitable[list[int]]]
"""Asks the frontend (id, type) which of the session ids are open: raises ServerUnreachable
when nobody is there; another error says nothing (asked again later)."""


@dataclass(slots=True)
class ServedSession:
    """A session of one of our frontends this backend served."""

    snapshot: SessionSnapshot
    """As its last message carried it, its handshake left out (the backend keeps that), or
    put back in (``ControlHandler.take_handshakes``: a restarted frontend's new session of
    the same id keeps its own under that id)."""
    routes: set[str]
    """The routes it used here, as clients send them (past the cap: every route,
    ``actors.cluster.session_events.add_route``)."""


@dataclass(slots=True)
class _Frontend:
    frontend_type: str
    incarnation: str | None
    """From discovery when its first session came (None: not listed then, or an older
    server of ours: taken at the next check)."""
    sessions: dict[int, ServedSession] = field(default_factory=dict)
    """Oldest asked about (or remembered) first."""
    asked_at: float = 0.0
    """Loop time of the last question (or of its first session)."""
    not_open: dict[int, float] = field(default_factory=dict)
    """Sessions it said are not open, with the loop time it first said so."""
    probing: bool = False


class ServedSessions:
    """The sessions of our frontends served here, closed here when their frontend is gone
    (module docstring). ``events.closes_wanted``: whether a close callback is subscribed
    (else nothing is remembered; read for every message here); ``close_here(sessions)``:
    run their close callbacks, each in its session's turn."""

    def __init__(
        self,
        discovery: ServiceDiscovery,
        probe: Probe,
        close_here: Callable[[list[ServedSession]], None],
        events: CloseSubscriptions,
        server_id: str,
        interval: float | None = None,
        audit_interval: float | None = None,
        limit: int = MAX_SESSIONS,
    ) -> None:
        self._discovery = discovery
        self._probe = probe
        self._close_here = close_here
        self._events = events
        self._log = ServerLog(log, server_id)
        self._interval = SWEEP_INTERVAL if interval is None else interval
        self._audit_interval = AUDIT_INTERVAL if audit_interval is None else audit_interval
        self._limit = limit
        self._frontends: dict[str, _Frontend] = {}
        self._closed_here: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._retired: OrderedDict[str, list[str]] = OrderedDict()
        """Per frontend id, the incarnations it restarted from (a few, for a few frontends)."""
        self._sweep: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._full = Throttle()
        self._stopped = False

    def __len__(self) -> int:
        """Sessions remembered (read at a session's first message only: a few frontends)."""
        return sum(len(frontend.sessions) for frontend in self._frontends.values())

    def served(
        self, snapshot: SessionSnapshot, route: str, metadata: Mapping[str, Any]
    ) -> list[ServedSession] | None:
        """A message of ``snapshot``'s session (from one of our frontends) for ``route``,
        with its request's ``metadata`` (which names the frontend's incarnation). Returns the
        sessions of its frontend's previous process when the message shows it restarted: the
        caller closes them before it hands the message on (a player back on the new process
        must not be dropped by the old session's close run after its message); None
        otherwise."""
        if not self._events.closes_wanted:
            return None  # most backends: nothing to do per message
        incarnation = metadata.get(SENDER_INCARNATION_KEY)
        if incarnation is not None and incarnation in self._retired.get(snapshot.frontend_id, ()):
            return None  # a late message of a process that restarted since: not remembered
        if not isinstance(incarnation, str):  # an older frontend of ours: discovery says
            listed = self._discovery.server(snapshot.frontend_id)
            incarnation = listed.metadata.get(INCARNATION_KEY) if listed is not None else None
        frontend = self._frontends.get(snapshot.frontend_id)
        lost = None
        # A restarted frontend numbers its sessions from 1 again: its clients, back before
        # the next check (or before this server's discovery shows the restart), must not be
        # taken for (and closed with) the old ones.
        if frontend is not None and incarnation is not None and incarnation != frontend.incarnation:
            if frontend.incarnation is None:
                frontend.incarnation = incarnation  # its first sessions came unnamed
            else:
                lost = self._lost(snapshot.frontend_id, "restarted", hand=False)
                frontend = None
        if frontend is not None:
            seen = frontend.sessions.get(snapshot.id)
            if seen is not None:
                if snapshot.handshake is None:
                    seen.snapshot = snapshot
                if route not in seen.routes:  # (a call only for a route new to the record)
                    add_route(seen.routes, route)
                return None
        # Closed here before, yet it sends messages: it lives (its frontend came back), and
        # its close event must run the callbacks, remembered here again or not.
        self._closed_here.pop((snapshot.frontend_id, snapshot.id), None)
        if self._stopped:
            return lost
        if len(self) >= self._limit:
            self._full.log(
                time.monotonic(),
                self._log,
                logging.WARNING,
                "%d sessions of frontends remembered, the most: a session past it is closed "
                "here only by its frontend's close event (not if its frontend dies)",
                self._limit,
            )
            return lost
        if frontend is None:
            if server_problem(snapshot.frontend_type, snapshot.frontend_id) is not None:
                return None  # named by a forged request: no probe could ever reach it
            frontend = self._frontends[snapshot.frontend_id] = _Frontend(
                snapshot.frontend_type,
                incarnation,
                asked_at=asyncio.get_running_loop().time(),
            )
        frontend.sessions[snapshot.id] = ServedSession(without_handshake(snapshot), {route})
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().create_task(self._sweeping())
        return lost

    def bound(self, snapshot: SessionSnapshot) -> None:
        """The session's bind event: its uid, for a close made here later (a bind during a
        handler reaches the backend this way, not with a message)."""
        frontend = self._frontends.get(snapshot.frontend_id)
        seen = frontend.sessions.get(snapshot.id) if frontend is not None else None
        if seen is not None:
            seen.snapshot = without_handshake(snapshot)

    def closing(self, frontend_id: str, session_id: int) -> bool:
        """The frontend's close event of this session is about to run its callbacks: False
        when a close made here ran them (or will) already; else it is forgotten."""
        key = (frontend_id, session_id)
        if key in self._closed_here:
            del self._closed_here[key]
            return False
        frontend = self._frontends.get(frontend_id)
        if frontend is not None and frontend.sessions.pop(session_id, None) is not None:
            frontend.not_open.pop(session_id, None)
            if not frontend.sessions:
                del self._frontends[frontend_id]
        return True

    async def _sweeping(self) -> None:
        try:
            while self._frontends:
                await asyncio.sleep(self._interval)
                self.check()
        finally:
            self._sweep = None

    def check(self) -> None:
        """Close the sessions of the frontends gone; ask those discovery does not list, and
        the others once per :data:`AUDIT_INTERVAL`, which sessions are open."""
        now = asyncio.get_running_loop().time()
        for frontend_id, frontend in list(self._frontends.items()):
            listed = self._discovery.server(frontend_id)
            if listed is not None:
                incarnation = listed.metadata.get(INCARNATION_KEY)
                if frontend.incarnation is None:
                    frontend.incarnation = incarnation
                elif incarnation != frontend.incarnation:
                    self._lost(frontend_id, "restarted")
                    continue
                if now - frontend.asked_at < self._audit_interval:
                    continue
            if not frontend.probing:
                frontend.probing = True
                frontend.asked_at = now
                task = asyncio.get_running_loop().create_task(self._probing(frontend_id, frontend))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _probing(self, frontend_id: str, frontend: _Frontend) -> None:
        asked = list(islice(frontend.sessions, AUDIT_BATCH))
        try:
            open_ids = await self._probe(frontend_id, frontend.frontend_type, asked)
        except ServerUnreachable:
            if (
                self._frontends.get(frontend_id) is frontend
                and self._discovery.server(frontend_id) is None
            ):
                self._lost(frontend_id, "gone from discovery, and nobody answers for it")
        except Exception as exc:  # a timeout, our own transport down: not known, asked again
            self._log.debug("frontend %s not asked: %s", frontend_id[:MAX_LOGGED_ID], exc)
        else:
            if self._frontends.get(frontend_id) is frontend:
                self._answered(frontend_id, frontend, asked, set(open_ids))
        finally:
            frontend.probing = False

    def _answered(
        self, frontend_id: str, frontend: _Frontend, asked: list[int], open_ids: set[int]
    ) -> None:
        """Close the sessions it said twice, :data:`CONFIRM_AFTER` apart, are not open."""
        now = asyncio.get_running_loop().time()
        sessions, not_open = frontend.sessions, frontend.not_open
        closed: list[ServedSession] = []
        for sid in asked:
            seen = sessions.pop(sid, None)
            if seen is None:  # its close event came meanwhile (which forgot it whole)
                continue
            if sid in open_ids:
                not_open.pop(sid, None)
                sessions[sid] = seen  # to the end: the next question asks of others first
            elif now - not_open.setdefault(sid, now) >= CONFIRM_AFTER:
                not_open.pop(sid)
                closed.append(seen)
            else:
                sessions[sid] = seen
        if not closed:
            return
        if not sessions:
            del self._frontends[frontend_id]
        self._closing_here(
            frontend_id,
            "says they are not open",
            closed,
        )

    def _lost(self, frontend_id: str, why: str, hand: bool = True) -> list[ServedSession]:
        """Close here every session of that frontend (``hand=False``: the caller does)."""
        frontend = self._frontends.pop(frontend_id)
        if frontend.incarnation is not None:
            retired = self._retired.setdefault(frontend_id, [])
            retired[:] = [*retired[-(MAX_RETIRED - 1) :], frontend.incarnation]
            self._retired.move_to_end(frontend_id)
            while len(self._retired) > MAX_CLOSED_HERE:
                self._retired.popitem(last=False)
        sessions = list(frontend.sessions.values())
        self._closing_here(frontend_id, why, sessions, hand)
        return sessions

    def _closing_here(
        self, frontend_id: str, why: str, sessions: list[ServedSession], hand: bool = True
    ) -> None:
        closed_here = self._closed_here
        for session in sessions:
            closed_here[(frontend_id, session.snapshot.id)] = None
        while len(closed_here) > MAX_CLOSED_HERE:
            closed_here.popitem(last=False)
        self._log.info(
            "frontend %s %s: closing here the %d session(s) of it this server served (their "
            "close events never came)",
            frontend_id[:MAX_LOGGED_ID],
            why,
            len(sessions),
        )
        if hand:
            self._close_here(sessions)

    async def close(self) -> None:
        """The server stops: no more checks."""
        self._stopped = True
        tasks = [*self._probes, *([self._sweep] if self._sweep is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._frontends.clear()
