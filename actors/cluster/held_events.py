"""Session events to backends, acknowledged: held while NATS or the backend is unreachable.

A frontend tells the backends that served a session of its bind and close
(``actors.cluster.session_events``). That used to be a notify, which NATS drops when nobody
subscribes to its subject: while NATS was down, and while a backend had lost its own NATS
connection (reconnecting, its subscription gone), a backend never heard that a player left,
and a room kept a member who was gone for as long as the room lived. Each event is now a
request the backend answers once its callbacks ran, and what does not reach it waits here, in
order, to be sent again.

**At once, in order.** With the transport up and nothing of that server held, an event is
handed to the connection as it is made (``start_call``), in order with the session's messages
before and after it, as the notify was. An event that finds no subscriber ("no responders")
or the transport refusing it, and every later event to that server, is held, in order. So is
every event made while the transport is down: those go out when it is back
(:meth:`HeldEvents.release`).

**Tried again.** A server's held events go out in rounds of at most :data:`ROUND` requests at
once, by a sender of its own (a server still listed but dead, its lease not expired yet, holds
up only its own). "No responders" is tried again, backing off from :data:`FIRST_RETRY` to
1 s; a refusal of our own transport after :data:`RETRY_UNAVAILABLE`; a timeout or an error
is not (the backend may have run the event: running it twice would run its close callbacks
twice). A server's events are given up after :data:`RELEASE_PATIENCE` seconds with none
acknowledged. An event to a server that left discovery meanwhile is not sent: that server is
gone, and so is the state it kept of the session.

**One order per session.** A bind tried again is dropped once the same session's close was
acknowledged: the close overtook it (the backend resubscribed between the two), and a bind
run after the close would bring back a player who left.

Bounded: at most :data:`MAX_HELD` events (some hundred bytes each); past it the oldest is
dropped and counted. Events held, dropped or lost are logged in one line once the senders are
done (one sent at once and never held, but not acknowledged, has a line apart, at most one
per 10 s); a graceful stop waits for the events to be acknowledged
(:meth:`HeldEvents.settled`), unless the transport is gone for good, and says how many were
not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from actors.cluster.event_queues import Event, EventQueues
from actors.cluster.rpc import ClusterUnavailable, ServerUnreachable
from actors.cluster.session_events import CLOSE
from actors.logs import Throttle
from transport.waiting import set_within

if TYPE_CHECKING:
    from actors.cluster.discovery import ServerInfo, ServiceDiscovery
    from actors.kernel import Reply
    from actors.logs import ServerLog

MAX_HELD = 10_000
"""Session events held at once (all servers together)."""
ROUND = 64
"""Held events of one server sent at once, before their answers are awaited."""
RELEASE_PATIENCE = 30.0
"""Seconds the held events of one server are tried, all together, while it has no
subscriber (it reconnects after this one, or lost its NATS connection) or does not answer,
before the rest are given up."""
RETRY_UNAVAILABLE = 1.0
"""Seconds before events are tried again after this server's own transport refused them
(it went down again, or its buffer is full)."""
FIRST_RETRY = 0.1
"""Seconds before the first retry of an event nobody was subscribed for (doubling, to 1 s)."""

StartCall = Callable[["ServerInfo", bytes, float, "Reply"], None]
"""``NatsRpc.start_call``: a request to one server, on the connection when this returns (in
order with what is sent before and after it); ``reply(answer, error)`` once it is known, at
once when it cannot be sent (raising nothing)."""

_NOT_YET = object()
"""A round's outcome not known yet."""


@dataclass(slots=True)
class _Tally:
    """What became of held events since the last line."""

    sent: int = 0
    gone: int = 0
    """Events to servers gone from discovery: not sent."""
    given_up: int = 0
    """Events given up: none of their server's acknowledged within RELEASE_PATIENCE."""
    unanswered: int = 0
    """Timeouts and errors of our own transport: the backend may have run them."""

    def __bool__(self) -> bool:
        return bool(self.sent or self.gone or self.given_up or self.unanswered)


class HeldEvents:
    """Encoded session events for servers of ours; ``start_call`` sends one and hands over
    its acknowledgement (:data:`StartCall`); ``connected`` says whether the transport is up;
    ``timeout`` is how long an acknowledgement may take."""

    def __init__(
        self,
        start_call: StartCall,
        connected: Callable[[], bool],
        discovery: ServiceDiscovery,
        log: ServerLog,
        timeout: float,
        limit: int = MAX_HELD,
    ) -> None:
        self._start_call = start_call
        self._connected = connected
        self._discovery = discovery
        self._log = log
        self._timeout = timeout
        self._queues = EventQueues(limit)
        """Per server, its held events in order (oldest first); those of a round under way
        stay in it until settled."""
        self._in_flight: dict[str, int] = {}
        """Per server, events sent at once and not answered yet: its sender waits for them
        (one not delivered is held, in its place)."""
        self._numbers = 0
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._releasing: asyncio.Task[None] | None = None
        """Until every sender of this release ended (then the release's line is logged)."""
        self._settled: asyncio.Event | None = None
        """Set once no event is held or unanswered, for whoever waits in :meth:`settled`."""
        self._tally = _Tally()
        self._unanswered = Throttle()
        """Events sent at once and not acknowledged (a timeout, an error): a line per 10 s."""
        self._closed = False

    def __len__(self) -> int:
        """Events held, or sent and not acknowledged yet."""
        return len(self._queues) + sum(self._in_flight.values())

    @property
    def dropped(self) -> int:
        """Events dropped (the oldest, past the limit) since the last line."""
        return self._queues.dropped

    def busy_for(self, server_id: str) -> bool:
        """``server_id`` has events held: a new one queues behind them."""
        return server_id in self._queues

    def send(self, server: ServerInfo, data: bytes, session: int | None, kind: str) -> None:
        """Send a session event (``kind``, of ``session``) to ``server``: at once when the
        transport is up and none of this server's is held, else held behind those."""
        if self._closed:
            self._log.debug("a session event to %s after the stop: not sent", server.id)
            return
        if server.id in self._queues or not self._connected():
            self.hold(server.id, data, session, kind)
            return
        self._numbers += 1
        event = Event(self._numbers, data, session, kind)
        self._in_flight[server.id] = self._in_flight.get(server.id, 0) + 1
        self._start_call(server, data, self._timeout, partial(self._answered, server.id, event))

    def hold(self, server_id: str, data: bytes, session: int | None = None, kind: str = "") -> None:
        """Hold an event for ``server_id``, behind those held before it (the transport is
        down: it goes out with them once it is back)."""
        self._numbers += 1
        self._queues.append(server_id, Event(self._numbers, data, session, kind))
        if self._releasing is not None:
            self._start(server_id)  # a release is under way: this server's goes now

    def _maybe_settled(self) -> None:
        """Wake whoever waits in :meth:`settled` once nothing is held or unanswered."""
        if self._settled is not None and not len(self):
            self._settled.set()
            self._settled = None

    def _answered(
        self, server_id: str, event: Event, _answer: object, error: BaseException | None
    ) -> None:
        """The outcome of an event sent at once: settled, or held in its place (by its
        number: behind those held before it, before those sent after it)."""
        if self._closed:
            return
        left = self._in_flight[server_id] - 1
        if left:
            self._in_flight[server_id] = left
        else:
            del self._in_flight[server_id]
        if isinstance(error, ServerUnreachable | ClusterUnavailable):
            self._queues.put_back(server_id, event)
        elif error is None:
            if event.kind == CLOSE:
                self._queues.drop_binds(server_id, (event.session,))
        else:  # sent at once, never held: not said with those that were
            self._unanswered.log(
                time.monotonic(),
                self._log,
                logging.INFO,
                "a session event to %s got no acknowledgement (not sent again: it may "
                "have run): %s: %s",
                server_id,
                type(error).__name__,
                error,
            )
        if not left and server_id in self._queues:
            self._start(server_id)  # whose end says what became of them (and of a drop)
        self._maybe_settled()

    def release(self) -> asyncio.Task[None] | None:
        """Send what is held (the transport is back): a sender per server, in order; what
        comes meanwhile queues behind its server's. Returns the release under way, if any
        (it ends when every sender has)."""
        if self._closed or not len(self._queues):
            return self._releasing
        # Back while a release still runs (a sender retrying): the senders that ended while
        # the transport was down start again, and that release waits for them too.
        for server_id in self._queues.servers():
            self._start(server_id)
        if self._releasing is None:
            self._releasing = asyncio.get_running_loop().create_task(self._release())
        return self._releasing

    async def _release(self) -> None:
        try:
            while self._senders:
                await asyncio.wait(list(self._senders.values()))
        finally:
            self._releasing = None
        self._say()

    def _say(self) -> None:
        """One line for what became of the held events since the last one (if anything)."""
        tally, self._tally = self._tally, _Tally()
        dropped, self._queues.dropped = self._queues.dropped, 0
        if tally or dropped:
            self._log.info(
                "sent %d session event(s) held during an outage of the transport or of their "
                "server (%d to servers gone since, not sent; %d given up, none acknowledged "
                "within %.0fs; %d unanswered; %d dropped past %d held)",
                tally.sent,
                tally.gone,
                tally.given_up,
                RELEASE_PATIENCE,
                tally.unanswered,
                dropped,
                self._queues.limit,
            )

    def _start(self, server_id: str) -> None:
        """Start ``server_id``'s sender, unless it runs, or events sent at once are not
        answered yet (the last answer starts it)."""
        running = self._senders.get(server_id)
        if (running is not None and not running.done()) or self._in_flight.get(server_id):
            return  # (one that has ended, its callback not run yet, is replaced)
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._send(server_id))
        self._senders[server_id] = task
        task.add_done_callback(partial(self._sender_ended, server_id))

    def _sender_ended(self, server_id: str, task: asyncio.Task[None]) -> None:
        if self._senders.get(server_id) is task:
            del self._senders[server_id]
        if not self._senders and self._releasing is None and not self._closed:
            self._say()

    async def _send(self, server_id: str) -> None:
        """Send the held events of ``server_id`` in rounds while the transport is up (else
        they wait for the next release); given up after RELEASE_PATIENCE with none
        acknowledged."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RELEASE_PATIENCE
        delay = FIRST_RETRY
        while server_id in self._queues and self._connected():
            if self._in_flight.get(server_id):
                # Sent at once meanwhile (the queue emptied while this one slept): their
                # answers may put them before what is held, so the last one starts a sender.
                return
            server = self._discovery.server(server_id)
            if server is None:
                self._tally.gone += self._forget(server_id)
                return
            batch = self._queues.front(server_id, ROUND)
            outcomes = await self._round(server, batch)
            acknowledged, unsubscribed, refused = self._settle(server_id, batch, outcomes)
            if acknowledged:
                give_up = loop.time() + RELEASE_PATIENCE  # it answers: patience anew
                delay = FIRST_RETRY
            if refused:  # down again, or its buffer is full
                await asyncio.sleep(RETRY_UNAVAILABLE)
            elif unsubscribed:  # nobody subscribed: it reconnects after us
                if loop.time() + delay > give_up:
                    self._tally.given_up += self._forget(server_id)
                    return
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)
            elif loop.time() > give_up:  # timeouts only, past the patience
                self._tally.given_up += self._forget(server_id)
                return

    async def _round(self, server: ServerInfo, batch: list[Event]) -> list[object]:
        """Send ``batch`` at once, in order; each one's error, or None, once all are known."""
        outcomes: list[object] = [_NOT_YET] * len(batch)
        waiting = len(batch)
        done = asyncio.get_running_loop().create_future()

        def answered(index: int, _answer: object, error: BaseException | None) -> None:
            nonlocal waiting
            outcomes[index] = error
            waiting -= 1
            if not waiting and not done.done():
                done.set_result(None)

        for index, event in enumerate(batch):
            self._start_call(server, event.data, self._timeout, partial(answered, index))
        await done
        return outcomes

    def _settle(
        self, server_id: str, batch: list[Event], outcomes: list[object]
    ) -> tuple[bool, bool, bool]:
        """Out of the queue: the events of ``batch`` acknowledged or failed for good; held
        still, at its front: those nobody received. Whether any was acknowledged, found no
        subscriber, was refused by our transport."""
        outcome = {event.number: error for event, error in zip(batch, outcomes, strict=True)}
        acknowledged = unsubscribed = refused = False
        closed: list[int | None] = []
        kept: list[Event] = []
        tally = self._tally
        for event in self._queues.take(server_id, batch):
            error = outcome[event.number]
            if isinstance(error, ServerUnreachable):
                unsubscribed = True
                kept.append(event)
            elif isinstance(error, ClusterUnavailable):
                refused = True
                kept.append(event)
            elif error is None:
                acknowledged = True
                tally.sent += 1
                if event.kind == CLOSE:
                    closed.append(event.session)
            else:
                self._log.debug("a held session event to %s: %s", server_id, error)
                tally.unanswered += 1
        self._queues.put_front(server_id, kept)
        self._queues.drop_binds(server_id, closed)
        self._maybe_settled()
        return acknowledged, unsubscribed, refused

    def _forget(self, server_id: str) -> int:
        forgotten = self._queues.forget(server_id)
        self._maybe_settled()
        return forgotten

    async def settled(self, timeout: float) -> bool:
        """Wait, at most ``timeout`` seconds, until every event was acknowledged or given up
        (a stop's last chance to send them); whether they all were."""
        if not len(self):
            return True
        if self._settled is None:
            self._settled = asyncio.Event()
        return await set_within(self._settled, timeout)

    async def close(self) -> None:
        """The server stops: the senders are cancelled; what is held or unanswered is lost
        (said)."""
        self._closed = True  # a reconnection from now on releases nothing
        tasks = [*self._senders.values()]
        if self._releasing is not None:
            tasks.append(self._releasing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._senders.clear()
        lost = len(self) + self._queues.dropped
        self._queues.dropped = 0
        self._say()  # what the release cut short had done
        if lost:
            self._log.warning(
                "%d session event(s) not acknowledged by their server (held during an outage "
                "of the transport or of their server, or not answered yet): the server stops",
                lost,
            )
        self._queues.clear()
        self._in_flight.clear()
