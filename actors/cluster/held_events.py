"""Session events held while the RPC transport is down, sent once it is back.

A frontend tells the backends that served a session of its bind and close
(``actors.cluster.session_events``) with a notify. While NATS was down that notify was
dropped: a backend never heard that a player left during the outage, and a room kept a
member who was gone, for as long as the room lived. Those events now wait here, in order,
and go out when the transport reconnects, before any event that comes after them (so one
session's bind still reaches a backend before its close).

**Acknowledged.** NATS keeps nothing for a subject nobody subscribes to, and after an outage
the servers reconnect one by one, in no set order: a backend that is not back yet would miss
what a notify sent it. So a held event goes out as a request, which the backend answers once
its callbacks ran. "No responders" (nobody subscribed yet) is tried again, backing off; a
timeout or an error is not (the backend may have run the event: running it twice would run its
close callbacks twice). The events of one server go one after another, in order, by a sender
of its own; those of different servers at once, so a server still listed but dead (its lease
not expired yet), or hung, holds up only its own. Its events are given up after
:data:`RELEASE_PATIENCE` seconds with none acknowledged. While a server has events here, its
new ones queue behind them; the others' go out at once.

Bounded: at most :data:`MAX_HELD` events (some hundred bytes each); past it the oldest is
dropped and counted. What was sent, dropped or lost is logged in one line per release. An
event to a server that left discovery meanwhile is not sent: that server is gone, and so is
the state it kept of the session.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.cluster.rpc import ClusterUnavailable, ServerUnreachable

if TYPE_CHECKING:
    from actors.cluster.discovery import ServerInfo, ServiceDiscovery
    from actors.logs import ServerLog

MAX_HELD = 10_000
"""Session events held during one outage (all servers together)."""
RELEASE_PATIENCE = 30.0
"""Seconds the held events of one server are tried, all together, while it has no
subscriber yet (it reconnects after this one) or does not answer, before the rest are given
up."""
RETRY_UNAVAILABLE = 1.0
"""Seconds before events are tried again after this server's own transport refused them
(it went down again, or its buffer is full)."""
FIRST_RETRY = 0.1
"""Seconds before the first retry of an event nobody was subscribed for (doubling, to 1 s)."""

Call = Callable[["ServerInfo", bytes, float], Awaitable[bytes]]
"""``RPCClient.call``: a request to one server, its answer (raises when there is none)."""


@dataclass(slots=True)
class _Tally:
    """What one release did."""

    sent: int = 0
    gone: int = 0
    """Events to servers gone from discovery: not sent."""
    lost: int = 0
    """Events given up: no subscriber within RELEASE_PATIENCE, a timeout, an error."""


class HeldEvents:
    """Encoded session events for servers of ours, waiting for the transport; ``call`` sends
    one and waits for its acknowledgement (``RPCClient.call``); ``connected`` says whether the
    transport is up; ``timeout`` is how long an acknowledgement may take."""

    def __init__(
        self,
        call: Call,
        connected: Callable[[], bool],
        discovery: ServiceDiscovery,
        log: ServerLog,
        timeout: float,
        limit: int = MAX_HELD,
    ) -> None:
        self._call = call
        self._connected = connected
        self._discovery = discovery
        self._log = log
        self._timeout = timeout
        self._limit = limit
        self._queues: dict[str, deque[tuple[int, bytes]]] = {}
        """Per server, its events in order (numbered, oldest first); the first one is being
        sent while its sender runs, and leaves the queue once settled."""
        self._count = 0
        self._numbers = 0
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._releasing: asyncio.Task[None] | None = None
        """Until every sender of this release ended (then the release's line is logged)."""
        self._tally = _Tally()
        self._closed = False
        self.dropped = 0
        """Events dropped (the oldest, past ``limit``) since the last release."""

    def __len__(self) -> int:
        """Events held or being sent."""
        return self._count

    def busy_for(self, server_id: str) -> bool:
        """``server_id`` has events held or being sent: a new one queues behind them."""
        return server_id in self._queues

    def hold(self, server_id: str, data: bytes) -> None:
        if self._count >= self._limit:
            self._drop_oldest()
        self._numbers += 1
        queue = self._queues.get(server_id)
        if queue is None:
            queue = self._queues[server_id] = deque()
        queue.append((self._numbers, data))
        self._count += 1
        if self._releasing is not None and server_id not in self._senders:
            self._start(server_id)  # a release is under way: this server's goes now

    def _drop_oldest(self) -> None:
        server_id = min(self._queues, key=lambda key: self._queues[key][0][0])
        self._pop_first(server_id)
        self.dropped += 1

    def release(self) -> asyncio.Task[None] | None:
        """Send what is held (the transport is back): a sender per server, in order; what
        comes meanwhile queues behind its server's. Returns the release under way, if any
        (it ends when every sender has)."""
        if self._releasing is None and self._queues and not self._closed:
            self._releasing = asyncio.get_running_loop().create_task(self._release())
        return self._releasing

    async def _release(self) -> None:
        try:
            for server_id in list(self._queues):
                self._start(server_id)
            while self._senders:
                await asyncio.wait(list(self._senders.values()))
        finally:
            self._releasing = None
        tally, self._tally = self._tally, _Tally()
        if tally.sent or tally.gone or tally.lost or self.dropped:
            self._log.info(
                "sent %d session event(s) held during the outage (%d to servers gone since, "
                "not sent; %d lost; %d dropped past %d held)",
                tally.sent,
                tally.gone,
                tally.lost,
                self.dropped,
                self._limit,
            )
        self.dropped = 0

    def _start(self, server_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(server_id))
        self._senders[server_id] = task

    async def _send(self, server_id: str) -> None:
        """Send the events of ``server_id`` one after another while the transport is up
        (else they wait for the next release); given up after RELEASE_PATIENCE with none
        acknowledged."""
        loop = asyncio.get_running_loop()
        tally = self._tally
        give_up = loop.time() + RELEASE_PATIENCE
        delay = FIRST_RETRY
        try:
            while (queue := self._queues.get(server_id)) and self._connected():
                number, data = queue[0]
                server = self._discovery.server(server_id)
                if server is None:
                    tally.gone += self._forget(server_id)
                    return
                try:
                    await self._call(server, data, self._timeout)
                except ServerUnreachable:  # nobody subscribed yet: it reconnects after us
                    if loop.time() + delay > give_up:
                        tally.lost += self._forget(server_id)
                        return
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 1.0)
                    continue
                except ClusterUnavailable:  # down again, or its buffer is full
                    await asyncio.sleep(RETRY_UNAVAILABLE)
                    continue
                except Exception as exc:  # a timeout or its error: it may have run it
                    self._log.debug("a held session event to %s: %s", server_id, exc)
                    tally.lost += self._settle(server_id, number)
                    if loop.time() > give_up:
                        tally.lost += self._forget(server_id)
                        return
                    continue
                tally.sent += self._settle(server_id, number)
                give_up = loop.time() + RELEASE_PATIENCE  # it answers: patience anew
                delay = FIRST_RETRY
        finally:
            if self._senders.get(server_id) is asyncio.current_task():
                del self._senders[server_id]

    def _settle(self, server_id: str, number: int) -> int:
        """The event ``number`` of ``server_id`` is settled: out of its queue (1), unless it
        was dropped meanwhile (0)."""
        queue = self._queues.get(server_id)
        if not queue or queue[0][0] != number:
            return 0
        self._pop_first(server_id)
        return 1

    def _pop_first(self, server_id: str) -> None:
        """The first event of ``server_id``'s queue out (and the queue, once empty)."""
        queue = self._queues[server_id]
        queue.popleft()
        self._count -= 1
        if not queue:
            del self._queues[server_id]

    def _forget(self, server_id: str) -> int:
        queue = self._queues.pop(server_id, None)
        if queue is None:
            return 0
        self._count -= len(queue)
        return len(queue)

    async def close(self) -> None:
        """The server stops: the senders are cancelled; what is held or was being sent is
        lost (said)."""
        self._closed = True  # a reconnection from now on releases nothing
        tasks = [*self._senders.values()]
        if self._releasing is not None:
            tasks.append(self._releasing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._senders.clear()
        lost = self._count + self.dropped
        if lost:
            self._log.warning(
                "%d session event(s) held during the NATS outage not sent: the server stops",
                lost,
            )
        self._queues.clear()
        self._count = 0
        self.dropped = 0
