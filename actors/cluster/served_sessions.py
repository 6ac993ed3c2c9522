"""Closes a frontend could not send: the sessions of a frontend that died, closed on a backend.

A frontend of ours tells the backends that served a session of its close
(``actors.cluster.session_events``). A frontend that dies without stopping (SIGKILL, a
crash, its host lost) sends none, and a room kept its players for as long as it lived. So a
backend with close callbacks remembers the sessions of our frontends it served (the routes
they used here, and the session as its last message carried it: uid, data), forgets each at
its close event, and closes here those of a frontend that is gone:

* **restarted**: discovery lists its id with another incarnation (:data:`INCARNATION_KEY`, a
  token each server of ours draws when it starts): no session of the old process is left;
* **dead**: discovery does not list it (its lease expired, or it left to drain) and a probe
  finds nobody there (NATS's "no responders"; over gRPC, no connection could be made). A
  frontend that left discovery to drain answers the probe: it still sends its closes.

Checked every :data:`SWEEP_INTERVAL` seconds while sessions are remembered (one probe per
frontend at a time). The closes are handed to the bridge (``close_here``), which runs each in
its session's turn, after the messages of that session still running or waiting, with the
callbacks the frontend's close event would have run.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.cluster.codec import SessionSnapshot, without_handshake
from actors.cluster.rpc import ServerUnreachable
from actors.cluster.session_events import EVERY_ROUTE, MAX_SERVED_ROUTES
from actors.cluster.subjects import MAX_LOGGED_ID, server_problem
from actors.logs import ServerLog, Throttle

if TYPE_CHECKING:
    from actors.cluster.discovery import ServiceDiscovery

log = logging.getLogger(__name__)

INCARNATION_KEY = "pitayaActorsIncarnation"
"""Discovery metadata key: a token a server of ours draws when it starts (a restart with the
same id has another)."""
SWEEP_INTERVAL = 2.0
"""Seconds between two checks of the frontends whose sessions are remembered."""
MAX_SESSIONS = 100_000
"""Sessions remembered in all (a few hundred bytes each, with their last snapshot)."""
MAX_CLOSED_HERE = 10_000
"""Closes made here remembered, so that a late close event of the same session runs none of
its callbacks again."""

Probe = Callable[[str, str], Awaitable[object]]
"""Asks the frontend (id, type) anything: raises ServerUnreachable when nobody is there; any
answer, an error too, says a process serves that id."""


@dataclass(slots=True)
class ServedSession:
    """A session of one of our frontends this backend served."""

    snapshot: SessionSnapshot
    """As its last message carried it (its handshake left out: the backend keeps that)."""
    routes: set[str]
    """The routes it used here, as clients send them (:data:`EVERY_ROUTE` past the cap)."""


@dataclass(slots=True)
class _Frontend:
    frontend_type: str
    incarnation: str | None
    """From discovery when its first session came (None: not listed then, or an older
    server of ours: taken at the next check)."""
    sessions: dict[int, ServedSession] = field(default_factory=dict)
    probing: bool = False


class ServedSessions:
    """The sessions of our frontends served here, closed here when their frontend is gone
    (module docstring). ``wanted()``: whether a close callback is subscribed (else nothing
    is remembered; read at each session's first message here); ``close_here(sessions)``:
    run their close callbacks, each in its session's turn."""

    def __init__(
        self,
        discovery: ServiceDiscovery,
        probe: Probe,
        close_here: Callable[[list[ServedSession]], None],
        wanted: Callable[[], bool],
        server_id: str,
        interval: float | None = None,
        limit: int = MAX_SESSIONS,
    ) -> None:
        self._discovery = discovery
        self._probe = probe
        self._close_here = close_here
        self._wanted = wanted
        self._log = ServerLog(log, server_id)
        self._interval = SWEEP_INTERVAL if interval is None else interval
        self._limit = limit
        self._frontends: dict[str, _Frontend] = {}
        self._count = 0
        self._closed_here: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._sweep: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._full = Throttle()
        self._stopped = False

    def __len__(self) -> int:
        """Sessions remembered."""
        return self._count

    def served(self, snapshot: SessionSnapshot, route: str) -> None:
        """A message of ``snapshot``'s session (from one of our frontends) for ``route``."""
        frontend = self._frontends.get(snapshot.frontend_id)
        if frontend is not None:
            seen = frontend.sessions.get(snapshot.id)
            if seen is not None:
                if snapshot.handshake is None:
                    seen.snapshot = snapshot
                routes = seen.routes
                if route not in routes and EVERY_ROUTE not in routes:
                    if len(routes) >= MAX_SERVED_ROUTES:
                        routes.clear()
                        routes.add(EVERY_ROUTE)
                    else:
                        routes.add(route)
                return
        if self._stopped or not self._wanted():
            return
        if self._count >= self._limit:
            self._full.log(
                time.monotonic(),
                self._log,
                logging.WARNING,
                "%d sessions of frontends remembered, the most: a session past it is closed "
                "here only by its frontend's close event (not if its frontend dies)",
                self._limit,
            )
            return
        if frontend is None:
            if server_problem(snapshot.frontend_type, snapshot.frontend_id) is not None:
                return  # named by a forged request: no probe could ever reach it
            listed = self._discovery.server(snapshot.frontend_id)
            frontend = self._frontends[snapshot.frontend_id] = _Frontend(
                snapshot.frontend_type,
                listed.metadata.get(INCARNATION_KEY) if listed is not None else None,
            )
        frontend.sessions[snapshot.id] = ServedSession(without_handshake(snapshot), {route})
        self._count += 1
        # Closed here before, yet it sends messages: it lives (its frontend came back).
        self._closed_here.pop((snapshot.frontend_id, snapshot.id), None)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().create_task(self._sweeping())

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
            self._count -= 1
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
        """Close the sessions of the frontends gone; probe those discovery does not list."""
        for frontend_id, frontend in list(self._frontends.items()):
            listed = self._discovery.server(frontend_id)
            if listed is None:
                if not frontend.probing:
                    frontend.probing = True
                    task = asyncio.get_running_loop().create_task(
                        self._probing(frontend_id, frontend)
                    )
                    self._probes.add(task)
                    task.add_done_callback(self._probes.discard)
                continue
            incarnation = listed.metadata.get(INCARNATION_KEY)
            if frontend.incarnation is None:
                frontend.incarnation = incarnation
            elif incarnation != frontend.incarnation:
                self._lost(frontend_id, "restarted")

    async def _probing(self, frontend_id: str, frontend: _Frontend) -> None:
        try:
            await self._probe(frontend_id, frontend.frontend_type)
        except ServerUnreachable:
            if (
                self._frontends.get(frontend_id) is frontend
                and self._discovery.server(frontend_id) is None
            ):
                self._lost(frontend_id, "gone from discovery, and nobody answers for it")
        except Exception as exc:  # a timeout, our own transport down: not known, asked again
            self._log.debug("frontend %s not probed: %s", frontend_id[:MAX_LOGGED_ID], exc)
        finally:
            frontend.probing = False

    def _lost(self, frontend_id: str, why: str) -> None:
        frontend = self._frontends.pop(frontend_id)
        sessions = list(frontend.sessions.values())
        self._count -= len(sessions)
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
        self._close_here(sessions)

    async def close(self) -> None:
        """The server stops: no more checks."""
        self._stopped = True
        tasks = [*self._probes, *([self._sweep] if self._sweep is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._frontends.clear()
        self._count = 0
