"""Session events held while the RPC transport is down (``actors.cluster.held_events``): sent
as acknowledged requests once it is back, in order per server; tried again while the server
has no subscriber yet; bounded (the oldest dropped); not sent to servers gone meanwhile; and
said when lost. The outage itself, with a real NATS stopped and started (and a backend that
reconnects after the frontend): ``tests/cluster/test_nats_outage_session_events.py``.

On looptime's virtual clock: the retries' backoff and patience are exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from actors.cluster.discovery import ServerInfo
from actors.cluster.held_events import (
    FIRST_RETRY,
    MAX_HELD,
    RELEASE_PATIENCE,
    RETRY_UNAVAILABLE,
    ROUND,
    HeldEvents,
)
from actors.cluster.rpc import ClusterUnavailable, ServerUnreachable
from actors.cluster.session_events import BIND, CLOSE
from actors.errors import RpcTimeout
from actors.logs import ServerLog

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(10)]

LOGGER = "tests.held_events"
log = ServerLog(logging.getLogger(LOGGER), "c-1")


class Servers:
    """The part of discovery the held events read: servers by id."""

    def __init__(self, *ids: str) -> None:
        self.listed = {server_id: ServerInfo(server_id, "room") for server_id in ids}

    def server(self, server_id: str) -> ServerInfo | None:
        return self.listed.get(server_id)


class Backends:
    """``NatsRpc.start_call`` toward backends: each request is on the connection when the call
    returns (``sent``) and acknowledged a round trip (1 ms) later (``got``), unless the server
    has no subscriber until a moment (``unsubscribed_until``, or per event ``subscribed_at``:
    "no responders"), is told to fail (``failures[server_id]``: an error, or None to deliver,
    one per call), or is ``hung`` (a timeout)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.got: list[tuple[str, bytes, float]] = []
        self.failures: dict[str, list[Exception | None]] = {}
        self.unsubscribed_until: dict[str, float] = {}
        self.subscribed_at: dict[bytes, float] = {}
        self.hung: set[str] = set()
        self.connected = True
        self._answers: deque[Callable[[], None]] = deque()

    def start_call(self, server: ServerInfo, data: bytes, timeout: float, reply: Any) -> None:
        loop = asyncio.get_running_loop()
        if not self.connected:
            reply(None, ClusterUnavailable("not connected"))
            return
        self.sent.append((server.id, data))
        failures = self.failures.get(server.id)
        if server.id in self.hung:
            loop.call_later(timeout, reply, None, RpcTimeout(f"no answer within {timeout}s"))
            return
        failure = failures.pop(0) if failures else None
        if failure is not None:
            outcome: Callable[[], None] = partial(reply, None, failure)
        elif loop.time() < max(
            self.unsubscribed_until.get(server.id, -1.0), self.subscribed_at.get(data, -1.0)
        ):
            outcome = partial(reply, None, ServerUnreachable("no responders"))
        else:
            outcome = partial(self._deliver, server.id, data, reply)
        # Answers in the order of the requests (timers due at one moment run in any order).
        self._answers.append(outcome)
        loop.call_later(0.001, lambda: self._answers.popleft()())

    def _deliver(self, server_id: str, data: bytes, reply: Any) -> None:
        self.got.append((server_id, data, asyncio.get_running_loop().time()))
        reply(b"", None)

    def unsubscribed(self, server_id: str, seconds: float = float("inf")) -> None:
        self.unsubscribed_until[server_id] = asyncio.get_running_loop().time() + seconds


def held(servers: Servers, backends: Backends, limit: int = MAX_HELD) -> HeldEvents:
    return HeldEvents(
        backends.start_call,
        lambda: backends.connected,
        servers,  # type: ignore[arg-type]
        log,
        timeout=5.0,
        limit=limit,
    )


async def released(events: HeldEvents) -> None:
    releasing = events.release()
    if releasing is not None:
        await releasing


def line(
    sent: int,
    gone: int = 0,
    given_up: int = 0,
    unanswered: int = 0,
    dropped: int = 0,
    limit: int = MAX_HELD,
) -> str:
    return (
        f"[c-1] sent {sent} session event(s) held during an outage of the transport or of "
        f"their server ({gone} to servers gone since, not sent; {given_up} given up, none "
        f"acknowledged within 30s; {unanswered} unanswered; {dropped} dropped past {limit} held)"
    )


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


async def test_held_events_go_out_in_order_per_server_acknowledged_and_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    events = held(Servers("room-1", "room-2"), backends)
    for server_id, data in [("room-1", b"bind"), ("room-2", b"bind"), ("room-1", b"close")]:
        events.hold(server_id, data)
    assert (len(events), backends.got) == (3, [])
    await released(events)
    got = [(server_id, data) for server_id, data, _ in backends.got]
    assert [d for s, d in got if s == "room-1"] == [b"bind", b"close"]
    assert [d for s, d in got if s == "room-2"] == [b"bind"]
    assert len(events) == 0
    await released(events)  # nothing twice
    assert len(backends.got) == 3
    assert lines(caplog) == [line(sent=3)]


async def test_an_event_goes_out_at_once_in_order_with_what_is_sent_around_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As the notify it replaces: on the connection when ``send`` returns, so after the
    session's messages sent before it and before those sent after it."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    servers = Servers("room-1")
    events = held(servers, backends)
    events.send(servers.listed["room-1"], b"close", 7, CLOSE)
    assert backends.sent == [("room-1", b"close")]
    assert len(events) == 1 and not events.busy_for("room-1")  # unacknowledged, not held
    assert await events.settled(1.0)
    assert (len(events), [d for _, d, _ in backends.got]) == (0, [b"close"])
    assert lines(caplog) == []  # nothing was held: nothing to say


async def test_an_event_a_backend_missed_while_it_lost_nats_reaches_it_once_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The frontend's NATS was up, the backend's was not (its subscription gone): the
    notify reached nobody, and the room kept the gone player for as long as it lived."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    servers = Servers("room-1")
    room = servers.listed["room-1"]
    events = held(servers, backends)
    start = asyncio.get_running_loop().time()
    backends.unsubscribed("room-1", 0.25)
    events.send(room, b"close-1", 1, CLOSE)
    events.send(room, b"close-2", 2, CLOSE)  # at once too: close-1 is not known lost yet
    await asyncio.sleep(0.01)
    assert events.busy_for("room-1") and len(events) == 2
    events.send(room, b"close-3", 3, CLOSE)  # behind the held ones
    assert backends.sent[-1] != ("room-1", b"close-3")
    assert await events.settled(5.0)
    assert [d for _, d, _ in backends.got] == [b"close-1", b"close-2", b"close-3"]
    # Sent at once and found nobody (1 ms), tried again at once (1 ms), then after 0.1 s
    # (1 ms) and 0.2 s: delivered in the third round.
    assert backends.got[0][2] - start == pytest.approx(0.001 + 0.001 + 0.1 + 0.001 + 0.2 + 0.001)
    assert lines(caplog) == [line(sent=3)]


@pytest.mark.parametrize("at_once", [True, False], ids=["sent-at-once", "held"])
async def test_a_bind_tried_again_is_dropped_once_its_session_s_close_was_acknowledged(
    at_once: bool,
) -> None:
    """The backend resubscribed between them: the binds found nobody, the close reached it.
    Sent again, the bind of the closed session would run after its close: a player who left,
    back in the room. The other session's bind still goes."""
    backends = Backends()
    servers = Servers("room-1")
    room = servers.listed["room-1"]
    events = held(servers, backends)
    backends.failures["room-1"] = [ServerUnreachable("no responders") for _ in range(2)]
    if at_once:
        events.send(room, b"bind-7", 7, BIND)
        events.send(room, b"bind-8", 8, BIND)
        events.send(room, b"close-7", 7, CLOSE)
        assert await events.settled(5.0)
    else:
        events.hold("room-1", b"bind-7", 7, BIND)
        events.hold("room-1", b"bind-8", 8, BIND)
        events.hold("room-1", b"close-7", 7, CLOSE)
        await released(events)
    assert [d for _, d, _ in backends.got] == [b"close-7", b"bind-8"]
    assert len(events) == 0 and not events.busy_for("room-1")


async def test_events_sent_while_a_server_s_are_held_keep_their_session_and_kind() -> None:
    """Held behind the server's earlier events, a bind that found nobody in its round is
    dropped when its session's close in the same round was acknowledged."""
    backends = Backends()
    servers = Servers("room-1")
    room = servers.listed["room-1"]
    events = held(servers, backends)
    backends.connected = False
    events.send(room, b"first", 1, CLOSE)
    backends.connected = True
    events.send(room, b"bind-7", 7, BIND)  # behind "first": held with its session and kind
    events.send(room, b"bind-8", 8, BIND)
    events.send(room, b"close-7", 7, CLOSE)
    unreachable = ServerUnreachable("no responders")
    backends.failures["room-1"] = [None, unreachable, unreachable]
    await released(events)
    assert [d for _, d, _ in backends.got] == [b"first", b"close-7", b"bind-8"]
    assert len(events) == 0


async def test_a_server_with_no_subscriber_yet_is_tried_again_backing_off() -> None:
    """NATS keeps nothing for a subject nobody holds: a backend that reconnects after the
    frontend missed what was sent it at once, and kept the gone player for good."""
    backends = Backends()
    backends.unsubscribed("room-1", 0.65)
    events = held(Servers("room-1", "room-2"), backends)
    events.hold("room-1", b"close-1")
    events.hold("room-1", b"close-2")
    events.hold("room-2", b"close")
    start = asyncio.get_running_loop().time()
    await released(events)
    times = {data: at - start for _, data, at in backends.got}
    # Three failed rounds (0.001 s each) and their waits: 0.1, 0.2, 0.4 s; then in order.
    assert times[b"close-1"] == pytest.approx(0.7 + 4 * 0.001)
    assert times[b"close-2"] == pytest.approx(0.7 + 4 * 0.001)
    assert times[b"close"] == pytest.approx(0.001)  # another server does not wait for it
    assert [d for s, d, _ in backends.got if s == "room-1"] == [b"close-1", b"close-2"]


async def test_an_event_with_no_subscriber_within_the_patience_is_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    backends.unsubscribed("room-1")
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"close")
    start = asyncio.get_running_loop().time()
    await released(events)
    assert backends.got == []
    assert RELEASE_PATIENCE - 1 <= asyncio.get_running_loop().time() - start <= RELEASE_PATIENCE
    assert lines(caplog) == [line(sent=0, given_up=1)]


async def test_a_timeout_or_an_error_is_not_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The backend may have run it: a close run twice runs its callbacks twice."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    backends.failures["room-1"] = [RpcTimeout("no answer within 5s")]
    backends.failures["room-2"] = [ValueError("its callback failed")]
    events = held(Servers("room-1", "room-2"), backends)
    events.hold("room-1", b"close")
    events.hold("room-2", b"close")
    events.hold("room-1", b"bind")  # the next one of that server still goes
    await released(events)
    assert [(s, d) for s, d, _ in backends.got] == [("room-1", b"bind")]
    assert lines(caplog) == [line(sent=1, unanswered=2)]


async def test_what_is_left_when_the_transport_goes_down_again_waits_in_order() -> None:
    backends = Backends()
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"first")
    backends.connected = False  # down again by the time the release runs
    await released(events)
    assert backends.got == [] and len(events) == 1
    events.hold("room-1", b"second")
    backends.connected = True
    backends.failures["room-1"] = [ClusterUnavailable("its buffer is full") for _ in range(2)]
    start = asyncio.get_running_loop().time()
    await released(events)  # refused once: tried again a while later, not in a spin
    assert [d for _, d, _ in backends.got] == [b"first", b"second"]
    assert backends.got[0][2] - start == pytest.approx(RETRY_UNAVAILABLE + 2 * 0.001)


async def test_an_event_made_while_the_transport_is_down_is_held_for_its_return() -> None:
    backends = Backends()
    servers = Servers("room-1")
    events = held(servers, backends)
    backends.connected = False
    events.send(servers.listed["room-1"], b"close", 7, CLOSE)
    assert events.busy_for("room-1") and backends.sent == []
    backends.connected = True
    await released(events)
    assert [d for _, d, _ in backends.got] == [b"close"]


async def test_past_the_limit_the_oldest_is_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    events = held(Servers("room-1"), backends, limit=2)
    for data in (b"1", b"2", b"3"):
        events.hold("room-1", data)
    assert (len(events), events.dropped) == (2, 1)
    await released(events)
    assert [d for _, d, _ in backends.got] == [b"2", b"3"]
    assert lines(caplog) == [line(sent=2, dropped=1, limit=2)]
    assert events.dropped == 0  # counted per line


async def test_the_limit_bounds_what_is_held_not_what_is_sent_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    servers = Servers("room-1")
    room = servers.listed["room-1"]
    events = held(servers, backends, limit=2)
    for n in range(3):
        events.send(room, b"%d" % n, n, CLOSE)
    assert (len(events), events.dropped) == (3, 0)
    assert await events.settled(1.0)
    assert [d for _, d, _ in backends.got] == [b"0", b"1", b"2"]
    backends.unsubscribed("room-1", 0.05)
    for n in range(3, 6):
        events.send(room, b"%d" % n, n, CLOSE)  # all found nobody: held, the oldest dropped
    assert await events.settled(5.0)
    assert [d for _, d, _ in backends.got][3:] == [b"4", b"5"]
    assert lines(caplog) == [line(sent=2, dropped=1, limit=2)]


async def test_an_event_to_a_server_gone_meanwhile_is_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    servers = Servers("room-1", "room-2")
    backends = Backends()
    events = held(servers, backends)
    events.hold("room-1", b"close")
    events.hold("room-2", b"close")
    del servers.listed["room-1"]
    await released(events)
    assert [s for s, _, _ in backends.got] == ["room-2"]
    assert lines(caplog) == [line(sent=1, gone=1)]


async def test_a_release_with_nothing_held_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    events = held(Servers(), backends)
    await released(events)
    await events.close()
    assert (backends.got, lines(caplog)) == ([], [])


async def test_events_held_at_close_are_counted_in_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backends = Backends()
    servers = Servers("room-1")
    events = held(servers, backends, limit=1)
    events.hold("room-1", b"bind")
    events.hold("room-1", b"close")  # the bind dropped: both lost
    backends.hung.add("room-2")
    servers.listed["room-2"] = ServerInfo("room-2", "room")
    events.send(servers.listed["room-2"], b"close", 7, CLOSE)  # sent, unanswered: lost too
    assert not await events.settled(0.5)
    await events.close()
    assert len(events) == 0 and backends.got == []
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (
            logging.WARNING,
            "[c-1] 3 session event(s) not acknowledged by their server (held during an "
            "outage of the transport or of their server, or not answered yet): the server stops",
        )
    ]
    events.send(servers.listed["room-2"], b"close", 8, CLOSE)  # after the stop: dropped
    assert backends.sent == [("room-2", b"close")] and len(events) == 0


async def test_close_cancels_a_release_under_way() -> None:
    backends = Backends()
    backends.unsubscribed("room-1")
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"close")
    events.release()
    await asyncio.sleep(FIRST_RETRY * 3)
    assert len(events) == 1
    await events.close()
    assert len(events) == 0 and backends.got == []


async def test_the_patience_is_one_server_s_for_all_its_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server still listed but not subscribed (dead, its lease not expired yet) held a
    release for the patience once per event: 100 events, 50 minutes, with every other
    server's new events waiting behind it."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    backends.unsubscribed("dead-1")
    events = held(Servers("dead-1", "room-1"), backends)
    for n in range(100):
        events.hold("dead-1", b"close-%d" % n)
    events.hold("room-1", b"close")
    start = asyncio.get_running_loop().time()
    await released(events)
    assert asyncio.get_running_loop().time() - start <= RELEASE_PATIENCE
    assert [(s, d) for s, d, _ in backends.got] == [("room-1", b"close")]
    assert lines(caplog) == [line(sent=1, given_up=100)]


async def test_a_server_that_does_not_answer_costs_a_timeout_per_round_not_per_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    backends.hung.add("hung-1")
    events = held(Servers("hung-1"), backends)
    for n in range(100):
        events.hold("hung-1", b"close-%d" % n)
    start = asyncio.get_running_loop().time()
    await released(events)
    # Rounds of ROUND events at once: two timeouts of 5 s, not 100.
    assert asyncio.get_running_loop().time() - start == pytest.approx(2 * 5.0)
    assert len(backends.sent) == 100 == ROUND + 36
    assert lines(caplog) == [line(sent=0, unanswered=100)]


async def test_events_of_the_release_under_way_at_close_are_counted_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A release took what was held out of the queue as it started: cancelled by the close,
    the events it had not sent yet were lost but not counted."""
    backends = Backends()
    backends.unsubscribed("room-1")
    events = held(Servers("room-1", "room-2"), backends)
    events.hold("room-2", b"close")
    events.hold("room-1", b"bind")
    events.hold("room-1", b"close")
    events.release()
    await asyncio.sleep(FIRST_RETRY * 3)
    events.hold("room-1", b"bind-2")  # came meanwhile: queues behind room-1's
    assert [(s, d) for s, d, _ in backends.got] == [("room-2", b"close")]
    assert events.busy_for("room-1") and not events.busy_for("room-2")
    caplog.set_level(logging.INFO, logger=LOGGER)
    await events.close()
    assert lines(caplog)[0] == line(sent=1)  # what the release had done, said all the same
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "[c-1] 3 session event(s) not acknowledged by their server (held during an "
        "outage of the transport or of their server, or not answered yet): the server stops"
    ]
    assert events.release() is None  # closed: a reconnection releases nothing


async def test_a_new_event_to_a_healthy_server_does_not_wait_for_a_dead_one_s_patience() -> None:
    """While a release ran, every new event was held behind it, and the release (one round
    for all servers) ended when its slowest server did: a dead server still listed (its lease
    not expired) kept a close to a healthy backend from it for RELEASE_PATIENCE, again each
    round. Each server has a sender of its own now."""
    backends = Backends()
    backends.unsubscribed("dead-1")
    servers = Servers("dead-1", "room-1")
    events = held(servers, backends)
    events.hold("dead-1", b"close")
    releasing = events.release()
    await asyncio.sleep(1.0)
    assert len(events) == 1 and not events.busy_for("room-1")
    events.send(servers.listed["room-1"], b"close", 7, CLOSE)
    assert backends.sent[-1] == ("room-1", b"close")  # at once
    assert releasing is not None
    await releasing
    assert [(s, d) for s, d, _ in backends.got] == [("room-1", b"close")]


async def test_a_reconnection_during_a_release_sends_what_was_held_while_it_was_down() -> None:
    """The transport went down and came back while a release was still retrying a dead
    server: what was held for another server meanwhile waited for the next outage, since the
    release under way was returned as it was, and its sender (started while the transport
    was down) had ended at once."""
    backends = Backends()
    backends.unsubscribed("dead-1")
    servers = Servers("dead-1", "room-1")
    events = held(servers, backends)
    events.hold("dead-1", b"close")
    events.release()
    await asyncio.sleep(FIRST_RETRY / 2)  # dead-1's sender waits to try again
    backends.connected = False
    events.send(servers.listed["room-1"], b"close", 7, CLOSE)
    await asyncio.sleep(0.01)
    backends.connected = True
    events.release()  # the transport is back
    await asyncio.sleep(0.5)
    assert [(s, d) for s, d, _ in backends.got] == [("room-1", b"close")]
    await events.close()


async def test_events_sent_at_once_and_unanswered_are_not_said_held_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A backend slow to answer (its close callbacks run long): each close sent at once
    and timed out made a line of its own saying it was held during an outage, and sent 0."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    backends.hung.add("room-1")
    servers = Servers("room-1")
    events = held(servers, backends)
    for n in range(3):
        events.send(servers.listed["room-1"], b"close-%d" % n, n, CLOSE)
        await asyncio.sleep(0.01)
    assert await events.settled(10.0)
    assert not events.busy_for("room-1") and len(backends.sent) == 3  # not sent again
    said = lines(caplog)
    assert len(said) == 1 and "held during an outage" not in said[0]
    assert "got no acknowledgement" in said[0] and "RpcTimeout" in said[0]


async def test_a_sender_waits_for_the_events_sent_at_once_before_its_next_round() -> None:
    """A sleeping sender's last event was dropped (past the limit), so the next two went at
    once; the second found nobody first and was held, and the sender woke to send it while
    the first was still out. Found nobody too, the first was put before it, into the round
    under way: the round's settling met an event it had not sent, and the sender died."""
    sent: list[bytes] = []
    replies: dict[bytes, Any] = {}

    def start_call(server: ServerInfo, data: bytes, timeout: float, reply: Any) -> None:
        sent.append(data)
        replies[data] = reply  # answered by the test, in the order it chooses

    servers = Servers("room-1", "room-2")
    room = servers.listed["room-1"]
    events = HeldEvents(start_call, lambda: True, servers, log, timeout=5.0, limit=3)  # type: ignore[arg-type]

    async def answer(data: bytes, error: Exception | None) -> None:
        for _ in range(10):  # a few passes of the loop: the release's task, then the sender's
            if data in replies:
                break
            await asyncio.sleep(0)
        replies.pop(data)(None if error else b"", error)

    events.hold("room-1", b"old")
    releasing = events.release()
    await answer(b"old", ServerUnreachable("no responders"))  # the sender sleeps
    for data in (b"x", b"y", b"z"):
        events.hold("room-2", data)  # past the limit: room-1's "old" dropped
    assert not events.busy_for("room-1")
    events.send(room, b"e2", 2, CLOSE)
    events.send(room, b"e3", 3, CLOSE)
    await answer(b"e3", ServerUnreachable("no responders"))
    await asyncio.sleep(FIRST_RETRY * 2)  # the sender is awake: e2 is still out
    await answer(b"e2", ServerUnreachable("no responders"))
    for _ in range(10):
        await asyncio.sleep(FIRST_RETRY)
        for data in list(replies):
            replies.pop(data)(b"", None)
    assert releasing is not None
    await releasing
    assert releasing.exception() is None
    assert len(events) == 0
    assert [d for d in sent if d in (b"e2", b"e3")][-2:] == [b"e2", b"e3"], sent


async def test_each_acknowledgement_renews_the_patience_and_the_backoff() -> None:
    """One event reached the server after 25 s, the other not before 50: the server answers,
    so its events are tried on (30 s from its last acknowledgement), from the first backoff."""
    backends = Backends()
    backends.subscribed_at[b"a"] = 25.0 + asyncio.get_running_loop().time()
    backends.subscribed_at[b"b"] = 50.0 + asyncio.get_running_loop().time()
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"a")
    events.hold("room-1", b"b")
    start = asyncio.get_running_loop().time()
    await released(events)
    at = {d: t - start for _, d, t in backends.got}
    assert 25.0 <= at[b"a"] <= 26.1
    assert 50.0 <= at[b"b"] <= 51.1
    assert len(events) == 0


async def test_the_counts_of_the_line_add_up_over_servers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given up: a dead server's (no subscriber for 30 s) and what a hung one had left when its
    30 s were spent on timeouts; gone: two servers that left discovery."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    servers = Servers("dead-1", "dead-2", "hung-1", "gone-1", "gone-2")
    backends = Backends()
    backends.unsubscribed("dead-1")
    backends.unsubscribed("dead-2")
    backends.hung.add("hung-1")
    events = held(servers, backends)
    events.hold("dead-1", b"close")
    events.hold("dead-2", b"close")
    for n in range(500):
        events.hold("hung-1", b"close-%d" % n)
    events.hold("gone-1", b"close")
    events.hold("gone-2", b"close")
    del servers.listed["gone-1"], servers.listed["gone-2"]
    await released(events)
    # Rounds of 64 time out at 5 s each: past 30 s after the 7th, the rest is given up.
    assert lines(caplog) == [
        line(sent=0, gone=2, given_up=2 + 500 - 7 * ROUND, unanswered=7 * ROUND)
    ]
    assert len(events) == 0 and not events.busy_for("hung-1")


@pytest.mark.parametrize("moment", ["sleeping", "sending"])
async def test_one_sender_per_server_even_when_more_comes_during_a_release(moment: str) -> None:
    """Two senders of one server would send its events twice, the second round while the
    first one's answers are still to come."""
    backends = Backends()
    if moment == "sleeping":
        backends.unsubscribed("room-1", 0.3)
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"first")
    releasing = events.release()
    if moment == "sleeping":
        await asyncio.sleep(0.05)  # the sender waits to try again
    else:
        for _ in range(10):  # the release's task, then the sender's: a round is out
            if backends.sent:
                break
            await asyncio.sleep(0)
        assert backends.sent and not backends.got
    events.hold("room-1", b"late")  # a release is under way: a sender runs already
    assert releasing is not None
    await releasing
    assert [d for _, d, _ in backends.got] == [b"first", b"late"]  # each once


async def test_the_line_waits_for_every_sender(caplog: pytest.LogCaptureFixture) -> None:
    """One line for what became of the held events, once no sender runs: not one when one
    server's are settled while another's are still tried."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    servers = Servers("room-1", "room-2", "room-3")
    events = held(servers, backends)
    backends.unsubscribed("room-1", 0.5)
    backends.failures["room-2"] = [ServerUnreachable("no responders"), ValueError("failed")]
    events.send(servers.listed["room-1"], b"close", 1, CLOSE)
    events.send(servers.listed["room-2"], b"close", 2, CLOSE)
    await asyncio.sleep(0.1)  # room-2's was held, then failed; room-1's is still tried
    assert events.busy_for("room-1") and not events.busy_for("room-2")
    events.send(servers.listed["room-3"], b"close", 3, CLOSE)  # at once, acknowledged
    await asyncio.sleep(0.01)
    assert lines(caplog) == []
    assert await events.settled(5.0)
    await asyncio.sleep(0)
    assert lines(caplog) == [line(sent=1, unanswered=1)]


async def test_what_is_said_at_debug_of_events_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    backends = Backends()
    servers = Servers("room-1", "room-2")
    events = held(servers, backends)
    backends.failures["room-1"] = [ServerUnreachable("no responders"), ValueError("it failed")]
    events.send(servers.listed["room-1"], b"close", 1, CLOSE)
    assert await events.settled(5.0)
    assert "[c-1] a held session event to room-1: it failed" in lines(caplog)
    backends.failures["room-2"] = [ValueError("no good")]
    events.send(servers.listed["room-2"], b"close", 2, CLOSE)
    assert await events.settled(5.0)
    assert (
        "[c-1] a session event to room-2 got no acknowledgement (not sent again: it may have "
        "run): ValueError: no good"
    ) in lines(caplog)
    await events.close()
    events.send(servers.listed["room-2"], b"close", 3, CLOSE)
    assert lines(caplog)[-1] == "[c-1] a session event to room-2 after the stop: not sent"


async def test_with_nothing_out_there_is_nothing_to_wait_for_or_release() -> None:
    events = held(Servers("room-1"), Backends())
    assert await events.settled(0)
    assert events.release() is None


async def test_the_backoff_grows_to_one_second_and_no_further() -> None:
    backends = Backends()
    backends.unsubscribed("room-1", 4.0)
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"close")
    start = asyncio.get_running_loop().time()
    await released(events)
    # Tried at 0, then after 0.1, 0.2, 0.4, 0.8, 1, 1 and 1 s (each round 1 ms).
    assert backends.got[0][2] - start == pytest.approx(4.5 + 8 * 0.001)
