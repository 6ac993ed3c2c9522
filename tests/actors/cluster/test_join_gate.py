"""The join gate alone: held in order until opened, dropped once refused, bounded."""

from __future__ import annotations

import pytest

from actors.cluster.bridge import Inbound
from actors.cluster.join_gate import MAX_HELD_BYTES, MAX_HELD_INBOUND, JoinGate
from actors.cluster.rpc import PUSH, REQUEST


def test_what_came_before_the_grant_is_told_first_and_in_order() -> None:
    dropped: list[None] = []
    gate = JoinGate(on_dropped=lambda: dropped.append(None))
    told: list[Inbound] = []
    gate.deliver(REQUEST, b"1", None)
    gate.deliver(REQUEST, b"2", None)
    assert told == []
    gate.open(told.append)
    respond = told.append  # any callable: it is handed over as it is
    gate.deliver(PUSH, b"3", respond)
    assert told == [
        Inbound(REQUEST, b"1", None),
        Inbound(REQUEST, b"2", None),
        Inbound(PUSH, b"3", respond),
    ]
    assert dropped == []


def test_a_refused_gate_drops_what_it_held_and_what_comes_later_uncounted() -> None:
    dropped: list[None] = []
    gate = JoinGate(on_dropped=lambda: dropped.append(None))
    gate.deliver(PUSH, b"for the id's holder", lambda data: None)
    gate.refuse()
    gate.deliver(REQUEST, b"pending, delivered while closing", None)
    with pytest.raises(RuntimeError, match=r"^the join gate was refused: it cannot open$"):
        gate.open(lambda inbound: None)
    assert dropped == []


def test_a_gate_refused_after_it_opened_tells_nothing_more() -> None:
    gate = JoinGate(on_dropped=lambda: None)
    told: list[Inbound] = []
    gate.open(told.append)
    gate.refuse()
    gate.deliver(REQUEST, b"late", None)
    assert told == []


@pytest.mark.parametrize(
    ("count", "size", "past_the_bound"),
    [(MAX_HELD_INBOUND + 2, 1, 2), (3, MAX_HELD_BYTES // 2, 1)],
)
def test_past_either_bound_messages_are_dropped_and_counted(
    count: int, size: int, past_the_bound: int
) -> None:
    dropped: list[None] = []
    gate = JoinGate(on_dropped=lambda: dropped.append(None))
    for _ in range(count):
        gate.deliver(REQUEST, b"x" * size, None)
    told: list[Inbound] = []
    gate.open(told.append)
    assert len(dropped) == past_the_bound
    assert len(told) == count - past_the_bound
