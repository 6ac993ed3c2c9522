"""Session events held while the RPC transport is down (``actors.cluster.held_events``): in
order, bounded (the oldest dropped), not sent to servers gone meanwhile, and said when lost.
The outage itself, with a real NATS stopped and started: ``tests/cluster/
test_nats_outage_session_events.py``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.cluster.discovery import ServerInfo
from actors.cluster.held_events import MAX_HELD, HeldEvents
from actors.logs import ServerLog

log = ServerLog(logging.getLogger("tests.held_events"), "c-1")


class Servers:
    """The part of discovery the held events read: servers by id."""

    def __init__(self, *ids: str) -> None:
        self.listed = {server_id: ServerInfo(server_id, "room") for server_id in ids}

    def server(self, server_id: str) -> ServerInfo | None:
        return self.listed.get(server_id)


def held(servers: Servers, limit: int = MAX_HELD) -> tuple[HeldEvents, list[tuple[str, bytes]]]:
    sent: list[tuple[str, bytes]] = []
    events = HeldEvents(
        lambda server, data: sent.append((server.id, data)),
        servers,
        log,
        limit,  # type: ignore[arg-type]
    )
    return events, sent


def test_held_events_go_out_in_the_order_they_came_and_once() -> None:
    events, sent = held(Servers("room-1", "room-2"))
    for server_id, data in [("room-1", b"bind"), ("room-2", b"bind"), ("room-1", b"close")]:
        events.hold(server_id, data)
    assert (len(events), sent) == (3, [])
    events.release()
    assert sent == [("room-1", b"bind"), ("room-2", b"bind"), ("room-1", b"close")]
    assert len(events) == 0
    events.release()  # nothing twice
    assert len(sent) == 3


def test_past_the_limit_the_oldest_is_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tests.held_events")
    events, sent = held(Servers("room-1"), limit=2)
    for data in (b"1", b"2", b"3"):
        events.hold("room-1", data)
    assert (len(events), events.dropped) == (2, 1)
    events.release()
    assert sent == [("room-1", b"2"), ("room-1", b"3")]
    assert caplog.messages == [
        "[c-1] sent 2 session event(s) held during the outage (0 to servers gone since, not "
        "sent; 1 dropped past 2 held)"
    ]
    assert events.dropped == 0  # counted per outage


def test_an_event_to_a_server_gone_meanwhile_is_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tests.held_events")
    servers = Servers("room-1", "room-2")
    events, sent = held(servers)
    events.hold("room-1", b"close")
    events.hold("room-2", b"close")
    del servers.listed["room-1"]
    events.release()
    assert sent == [("room-2", b"close")]
    assert "(1 to servers gone since, not sent; 0 dropped" in caplog.text


def test_a_release_with_nothing_held_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.held_events")
    events, sent = held(Servers())
    events.release()
    events.forget()
    assert (sent, caplog.messages) == ([], [])


def test_forgotten_events_are_counted_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    events, sent = held(Servers("room-1"), limit=1)
    events.hold("room-1", b"bind")
    events.hold("room-1", b"close")  # the bind dropped: both lost
    events.forget()
    assert len(events) == 0 and sent == []
    records: list[Any] = [r for r in caplog.records if r.name == "tests.held_events"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (
            logging.WARNING,
            "[c-1] 2 session event(s) held during the NATS outage not sent: the server stops",
        )
    ]
    events.release()
    assert sent == []
