"""The server-wide budget for unfinished packets, alone (sockets: ``test_websocket`` and
``tests/reliability/test_limits``)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from transport import partial
from transport.logs import ServerLog
from transport.partial import PartialBudget, PartialHold


class Peer:
    """A connection's side of the budget: records that it was dropped."""

    def __init__(self, budget: PartialBudget, name: str) -> None:
        self.name = name
        self.dropped = 0
        self.hold: PartialHold = budget.hold(self.drop, name)

    def drop(self) -> None:
        self.dropped += 1
        self.hold.set(0)  # as a connection does when it goes: must change nothing more


def test_the_total_follows_what_each_connection_holds() -> None:
    budget = PartialBudget(1000)
    a, b = Peer(budget, "a"), Peer(budget, "b")
    a.hold.set(300)
    b.hold.set(200)
    a.hold.set(100)
    assert budget.held == 300
    b.hold.set(0)
    assert budget.held == 100
    assert (a.dropped, b.dropped, budget.dropped) == (0, 0, 0)


def test_at_the_limit_nobody_is_dropped() -> None:
    budget = PartialBudget(1000)
    a, b = Peer(budget, "a"), Peer(budget, "b")
    a.hold.set(600)
    b.hold.set(400)
    assert budget.held == 1000
    assert (a.dropped, b.dropped) == (0, 0)


def test_over_the_limit_the_largest_holder_is_dropped_not_the_one_that_grew() -> None:
    budget = PartialBudget(1000)
    large, small, growing = Peer(budget, "large"), Peer(budget, "small"), Peer(budget, "grow")
    large.hold.set(500)
    small.hold.set(100)
    growing.hold.set(300)
    growing.hold.set(450)  # 1,050 in all
    assert (large.dropped, small.dropped, growing.dropped) == (1, 0, 0)
    assert budget.held == 550
    assert budget.dropped == 1


def test_back_at_the_limit_no_more_are_dropped() -> None:
    budget = PartialBudget(1000)
    peers = [Peer(budget, str(n)) for n in range(3)]
    for peer in peers:
        peer.hold.set(500)  # the third makes 1,500: one goes, 1,000 left
    assert sum(peer.dropped for peer in peers) == 1
    assert (budget.held, budget.dropped) == (1000, 1)


def test_a_connection_holding_nothing_is_not_kept() -> None:
    """Nor its drop callback (its connection): every closed connection stayed referenced."""
    budget = PartialBudget(1000)
    peer = Peer(budget, "a")
    peer.hold.set(300)
    peer.hold.set(0)
    assert budget._holders == {}


def test_the_largest_holders_are_dropped_until_the_total_is_within_the_limit() -> None:
    budget = PartialBudget(1000)
    peers = [Peer(budget, str(size)) for size in (100, 200, 300, 350)]
    for peer, size in zip(peers, (100, 200, 300, 350), strict=True):
        peer.hold.set(size)
    peers[0].hold.set(900)  # 1,750: drop 900 (850 left), then within
    assert [peer.dropped for peer in peers] == [1, 0, 0, 0]
    peers[1].hold.set(700)  # 1,350: drop 700 (650 left)
    assert [peer.dropped for peer in peers] == [1, 1, 0, 0]
    assert budget.held == 650
    big = Peer(budget, "big")
    big.hold.set(400)  # 1,050: big (400) is the largest now
    assert big.dropped == 1
    assert budget.held == 650


def test_a_drop_that_does_not_release_at_once_is_not_dropped_twice() -> None:
    """A socket's abort takes effect later (asyncio's ``connection_lost``): the budget stops
    counting the dropped holder at once, and asks nothing more of it."""
    budget = PartialBudget(100)
    calls: list[str] = []
    slow = budget.hold(lambda: calls.append("slow"), "slow")
    other = budget.hold(lambda: calls.append("other"), "other")
    slow.set(80)
    other.set(30)
    assert calls == ["slow"]
    other.set(60)
    assert calls == ["slow"]
    assert budget.held == 60
    slow.set(0)  # the connection finally goes
    assert budget.held == 60


def test_bytes_a_dropped_connection_still_reports_count_no_more() -> None:
    """Reads already on their way when the connection was dropped (its abort takes effect
    later) neither count again nor make another client go in its place."""
    budget = PartialBudget(100)
    calls: list[str] = []
    dropped = budget.hold(lambda: calls.append("dropped"), "dropped")
    honest = budget.hold(lambda: calls.append("honest"), "honest")
    dropped.set(70)
    honest.set(40)  # 110: the larger one goes
    assert calls == ["dropped"]
    dropped.set(90)  # a read still in its mailbox
    assert (budget.held, budget.dropped, calls) == (40, 1, ["dropped"])
    honest.set(60)
    assert calls == ["dropped"]


def test_the_warning_names_the_dropped_peer_and_is_throttled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = PartialBudget(100)
    with caplog.at_level(logging.WARNING, logger="transport.partial"):
        for n in range(3):
            peer = Peer(budget, f"tcp peer 10.0.0.{n}:4000")
            peer.hold.set(150)
            assert peer.dropped == 1
    assert budget.dropped == 3
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "clients hold 150 bytes of unfinished packets, over max_partial_bytes (100): "
        "dropping tcp peer 10.0.0.0:4000, which held 150"
    ]


def test_the_warning_after_a_quiet_spell_counts_the_drops_not_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator reading one line in ten seconds must learn how many clients went unseen,
    and the totals of the drop the line is about (one holder stays, so held != total)."""
    now = [1000.0]
    monkeypatch.setattr(partial, "time", SimpleNamespace(monotonic=lambda: now[0]))
    budget = PartialBudget(100)
    stays = Peer(budget, "stays")
    stays.hold.set(40)
    with caplog.at_level(logging.WARNING, logger="transport.partial"):
        for n in range(3):  # the first is logged, the next two within the interval are not
            Peer(budget, f"p{n}").hold.set(70 + n)
        now[0] += 10.0  # the throttle's interval
        last = Peer(budget, "last")
        last.hold.set(90)
    assert stays.dropped == 0
    assert budget.dropped == 4
    assert [record.getMessage() for record in caplog.records] == [
        "clients hold 110 bytes of unfinished packets, over max_partial_bytes (100): "
        "dropping p0, which held 70",
        "clients hold 130 bytes of unfinished packets, over max_partial_bytes (100): "
        "dropping last, which held 90 (2 more since the last such line, not logged)",
    ]


def test_each_hold_s_bytes_are_what_it_counts_in_the_total() -> None:
    """A dropped holder counts nothing from its drop on: its ``bytes`` say 0, so that the
    total is always the sum of the holds' bytes."""
    budget = PartialBudget(1000)
    peers = [Peer(budget, str(n)) for n in range(3)]
    for peer, size in zip(peers, (600, 300, 200), strict=True):
        peer.hold.set(size)
        assert budget.held == sum(p.hold.bytes for p in peers)
    assert [p.hold.bytes for p in peers] == [0, 300, 200]
    peers[0].hold.set(50)  # read after its drop: still nothing
    assert budget.held == sum(p.hold.bytes for p in peers) == 500


def test_a_connection_that_never_held_anything_may_go() -> None:
    """Every connection reports 0 when it goes, most of them having held nothing."""
    budget = PartialBudget(1000)
    other = Peer(budget, "other")
    other.hold.set(10)
    quiet = Peer(budget, "quiet")
    quiet.hold.set(0)
    assert (budget.held, quiet.dropped, other.dropped) == (10, 0, 0)


def test_the_warning_is_the_server_s(caplog: pytest.LogCaptureFixture) -> None:
    log = ServerLog(logging.getLogger("transport.partial"), "connector-1")
    budget = PartialBudget(100, log)
    with caplog.at_level(logging.WARNING, logger="transport.partial"):
        Peer(budget, "p").hold.set(150)
    [record] = caplog.records
    assert record.getMessage().startswith("[connector-1] clients hold 150 bytes")
    assert record.server_id == "connector-1"  # type: ignore[attr-defined]
