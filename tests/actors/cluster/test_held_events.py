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

import pytest

from actors.cluster.discovery import ServerInfo
from actors.cluster.held_events import (
    FIRST_RETRY,
    MAX_HELD,
    RELEASE_PATIENCE,
    RETRY_UNAVAILABLE,
    HeldEvents,
)
from actors.cluster.rpc import ClusterUnavailable, ServerUnreachable
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
    """``RPCClient.call`` toward backends: each acknowledges what it gets, unless told to
    fail first (``failures[server_id]``: errors raised, one per call, before it answers)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, float]] = []
        self.failures: dict[str, list[Exception]] = {}
        self.connected = True

    async def call(self, server: ServerInfo, data: bytes, timeout: float) -> bytes:
        await asyncio.sleep(0.001)  # a round trip
        failures = self.failures.get(server.id)
        if failures:
            raise failures.pop(0)
        self.got.append((server.id, data, asyncio.get_running_loop().time()))
        return b""


def held(servers: Servers, backends: Backends, limit: int = MAX_HELD) -> HeldEvents:
    return HeldEvents(
        backends.call,  # type: ignore[arg-type]
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
    assert lines(caplog) == [
        "[c-1] sent 3 session event(s) held during the outage (0 to servers gone since, not "
        "sent; 0 lost; 0 dropped past 10000 held)"
    ]


async def test_a_server_with_no_subscriber_yet_is_tried_again_backing_off() -> None:
    """NATS keeps nothing for a subject nobody holds: a backend that reconnects after the
    frontend missed what was sent it at once, and kept the gone player for good."""
    backends = Backends()
    unsubscribed = [ServerUnreachable("no responders") for _ in range(3)]
    backends.failures["room-1"] = unsubscribed
    events = held(Servers("room-1", "room-2"), backends)
    events.hold("room-1", b"close-1")
    events.hold("room-1", b"close-2")
    events.hold("room-2", b"close")
    start = asyncio.get_running_loop().time()
    await released(events)
    times = {data: at - start for _, data, at in backends.got}
    # Three failed calls (0.001 s each) and their waits: 0.1, 0.2, 0.4 s; then in order.
    assert times[b"close-1"] == pytest.approx(0.7 + 4 * 0.001)
    assert times[b"close-2"] == pytest.approx(0.7 + 5 * 0.001)
    assert times[b"close"] == pytest.approx(0.001)  # another server does not wait for it
    assert [d for s, d, _ in backends.got if s == "room-1"] == [b"close-1", b"close-2"]


async def test_an_event_with_no_subscriber_within_the_patience_is_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    backends = Backends()
    backends.failures["room-1"] = [ServerUnreachable("no responders") for _ in range(100)]
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"close")
    start = asyncio.get_running_loop().time()
    await released(events)
    assert backends.got == []
    assert RELEASE_PATIENCE - 1 <= asyncio.get_running_loop().time() - start <= RELEASE_PATIENCE
    assert "(0 to servers gone since, not sent; 1 lost;" in lines(caplog)[-1]


async def test_a_timeout_or_an_error_is_not_tried_again() -> None:
    """The backend may have run it: a close run twice runs its callbacks twice."""
    backends = Backends()
    backends.failures["room-1"] = [RpcTimeout("no answer within 5s")]
    backends.failures["room-2"] = [ValueError("its callback failed")]
    events = held(Servers("room-1", "room-2"), backends)
    events.hold("room-1", b"close")
    events.hold("room-2", b"close")
    events.hold("room-1", b"bind")  # the next one of that server still goes
    await released(events)
    assert [(s, d) for s, d, _ in backends.got] == [("room-1", b"bind")]


async def test_what_is_left_when_the_transport_goes_down_again_waits_in_order() -> None:
    backends = Backends()
    events = held(Servers("room-1"), backends)
    events.hold("room-1", b"first")
    backends.connected = False  # down again by the time the release runs
    await released(events)
    assert backends.got == [] and len(events) == 1
    events.hold("room-1", b"second")
    backends.connected = True
    backends.failures["room-1"] = [ClusterUnavailable("its buffer is full")]
    start = asyncio.get_running_loop().time()
    await released(events)  # refused once: tried again a while later, not in a spin
    assert [d for _, d, _ in backends.got] == [b"first", b"second"]
    assert backends.got[0][2] - start == pytest.approx(RETRY_UNAVAILABLE + 2 * 0.001)


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
    assert lines(caplog) == [
        "[c-1] sent 2 session event(s) held during the outage (0 to servers gone since, not "
        "sent; 0 lost; 1 dropped past 2 held)"
    ]
    assert events.dropped == 0  # counted per outage


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
    assert "(1 to servers gone since, not sent; 0 lost;" in lines(caplog)[-1]


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
    events = held(Servers("room-1"), backends, limit=1)
    events.hold("room-1", b"bind")
    events.hold("room-1", b"close")  # the bind dropped: both lost
    await events.close()
    assert len(events) == 0 and backends.got == []
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (
            logging.WARNING,
            "[c-1] 2 session event(s) held during the NATS outage not sent: the server stops",
        )
    ]


async def test_close_cancels_a_release_under_way() -> None:
    backends = Backends()
    backends.failures["room-1"] = [ServerUnreachable("no responders") for _ in range(100)]
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
    backends.failures["dead-1"] = [ServerUnreachable("no responders") for _ in range(1000)]
    events = held(Servers("dead-1", "room-1"), backends)
    for n in range(100):
        events.hold("dead-1", b"close-%d" % n)
    events.hold("room-1", b"close")
    start = asyncio.get_running_loop().time()
    await released(events)
    assert asyncio.get_running_loop().time() - start <= RELEASE_PATIENCE
    assert [(s, d) for s, d, _ in backends.got] == [("room-1", b"close")]
    assert "(0 to servers gone since, not sent; 100 lost;" in lines(caplog)[-1]


async def test_a_server_that_does_not_answer_is_given_up_after_the_patience() -> None:
    backends = Backends()

    async def hung(server: ServerInfo, data: bytes, timeout: float) -> bytes:
        if server.id == "hung-1":
            await asyncio.sleep(timeout)
            raise RpcTimeout(f"no answer within {timeout}s")
        return await backends.call(server, data, timeout)

    events = HeldEvents(
        hung,
        lambda: True,
        Servers("hung-1"),  # type: ignore[arg-type]
        log,
        timeout=5.0,
    )
    for n in range(100):
        events.hold("hung-1", b"close-%d" % n)
    start = asyncio.get_running_loop().time()
    await released(events)
    # Timeouts of 5 s until the patience is spent: 7 tries, not 100.
    assert asyncio.get_running_loop().time() - start == pytest.approx(7 * 5.0)


async def test_events_of_the_release_under_way_at_close_are_counted_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A release took what was held out of the queue as it started: cancelled by the close,
    the events it had not sent yet were lost but not counted."""
    backends = Backends()
    backends.failures["room-1"] = [ServerUnreachable("no responders") for _ in range(100)]
    events = held(Servers("room-1", "room-2"), backends)
    events.hold("room-2", b"close")
    events.hold("room-1", b"bind")
    events.hold("room-1", b"close")
    events.release()
    await asyncio.sleep(FIRST_RETRY * 3)
    events.hold("room-1", b"bind-2")  # came meanwhile: queues behind room-1's
    assert [(s, d) for s, d, _ in backends.got] == [("room-2", b"close")]
    assert events.busy_for("room-1") and not events.busy_for("room-2")
    await events.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "[c-1] 3 session event(s) held during the NATS outage not sent: the server stops"
    ]
    assert events.release() is None  # closed: a reconnection releases nothing


async def test_a_new_event_to_a_healthy_server_does_not_wait_for_a_dead_one_s_patience() -> None:
    """While a release ran, every new event was held behind it, and the release (one round
    for all servers) ended when its slowest server did: a dead server still listed (its lease
    not expired) kept a close to a healthy backend from it for RELEASE_PATIENCE, again each
    round. Each server has a sender of its own now."""
    backends = Backends()
    backends.failures["dead-1"] = [ServerUnreachable("no responders") for _ in range(1000)]
    events = held(Servers("dead-1", "room-1"), backends)
    events.hold("dead-1", b"close")
    releasing = events.release()
    await asyncio.sleep(1.0)
    assert len(events) == 1 and not events.busy_for("room-1")  # session_event would send it
    events.hold("room-1", b"close")  # held all the same: it goes at once
    held_at = asyncio.get_running_loop().time()
    assert releasing is not None
    await releasing
    sent_at = {(s, d): at for s, d, at in backends.got}[("room-1", b"close")]
    assert sent_at - held_at < RETRY_UNAVAILABLE
