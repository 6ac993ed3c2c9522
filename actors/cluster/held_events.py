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
close callbacks twice). The events of one server go one after another, in order, within
:data:`RELEASE_PATIENCE` seconds for them all (the rest are given up: a server still listed
but dead, or hung, does not hold the others' events for long); those of different servers go
at once.

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

    @property
    def settled(self) -> int:
        return self.sent + self.gone + self.lost


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
        self._held: deque[tuple[str, bytes]] = deque()
        self._releasing: asyncio.Task[None] | None = None
        self._round: tuple[_Tally, int, int] | None = None
        """The round being sent: its release's tally, what that tally had settled before
        it, how many events it took (a close counts those it did not settle as lost)."""
        self.dropped = 0
        """Events dropped (the oldest, past ``limit``) since the last release."""

    def __len__(self) -> int:
        return len(self._held)

    @property
    def busy(self) -> bool:
        """Events are held or being sent: a new one waits behind them (in order)."""
        return bool(self._held) or self._releasing is not None

    def hold(self, server_id: str, data: bytes) -> None:
        if len(self._held) >= self._limit:
            self._held.popleft()
            self.dropped += 1
        self._held.append((server_id, data))

    def release(self) -> asyncio.Task[None] | None:
        """Send what is held, in order per server (the transport is back); what comes
        meanwhile is held and sent after it. Returns the release under way, if any."""
        if self._releasing is None and self._held:
            self._releasing = asyncio.get_running_loop().create_task(self._send_held())
        return self._releasing

    async def _send_held(self) -> None:
        tally = _Tally()
        try:
            while self._held and self._connected():
                batch, self._held = self._held, deque()
                per_server: dict[str, list[bytes]] = {}
                for server_id, data in batch:
                    per_server.setdefault(server_id, []).append(data)
                self._round = (tally, tally.settled, len(batch))
                unsent = await asyncio.gather(
                    *(
                        self._send(server_id, events, tally)
                        for server_id, events in per_server.items()
                    )
                )
                self._round = None
                # The transport went down again: what is left waits, before what came since,
                # for the next reconnection (or, should it not have gone down, a while).
                for server_id, events in zip(per_server, unsent, strict=True):
                    self._held.extendleft((server_id, data) for data in reversed(events))
                if any(unsent):
                    await asyncio.sleep(RETRY_UNAVAILABLE)
        finally:
            self._releasing = None
            self._round = None
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

    async def _send(self, server_id: str, events: list[bytes], tally: _Tally) -> list[bytes]:
        """Send ``events`` to ``server_id`` one after another, within RELEASE_PATIENCE for
        them all (a server listed but dead, or hung, must not hold the events of the others,
        which wait behind this release, for a patience per event); returns those left unsent
        because this server's own transport went down meanwhile."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RELEASE_PATIENCE
        for index, data in enumerate(events):
            delay = FIRST_RETRY
            while True:
                server = self._discovery.server(server_id)
                if server is None:
                    tally.gone += len(events) - index
                    return []
                try:
                    await self._call(server, data, self._timeout)
                except ServerUnreachable:  # nobody subscribed yet: it reconnects after us
                    if loop.time() + delay > give_up:
                        tally.lost += len(events) - index
                        return []
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 1.0)
                    continue
                except ClusterUnavailable:
                    return events[index:]
                except Exception as exc:  # a timeout or its error: it may have run it
                    self._log.debug("a held session event to %s: %s", server_id, exc)
                    tally.lost += 1
                    if loop.time() > give_up:
                        tally.lost += len(events) - index - 1
                        return []
                else:
                    tally.sent += 1
                break
        return []

    async def close(self) -> None:
        """The server stops: a release under way is cancelled; what is held is lost
        (said)."""
        task, self._releasing = self._releasing, None
        sending, self._round = self._round, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        unsent = len(self._held) + self.dropped
        if sending is not None:  # those of the round cancelled that it had not settled
            tally, settled_before, size = sending
            unsent += size - (tally.settled - settled_before)
        if unsent:
            self._log.warning(
                "%d session event(s) held during the NATS outage not sent: the server stops",
                unsent,
            )
        self._held.clear()
        self.dropped = 0
