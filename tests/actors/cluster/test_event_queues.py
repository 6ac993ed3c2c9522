"""The queues of held session events (``actors.cluster.event_queues``): order per server,
the limit across servers, rounds taken and put back, binds overtaken by their close."""

from __future__ import annotations

from actors.cluster.event_queues import Event, EventQueues
from actors.cluster.session_events import BIND, CLOSE


def event(number: int, session: int | None = None, kind: str = CLOSE) -> Event:
    return Event(number, b"%d" % number, session, kind)


def numbers(queues: EventQueues, server_id: str) -> list[int]:
    return [e.number for e in queues.front(server_id, 1000)]


def test_an_event_put_back_takes_its_place_by_number() -> None:
    queues = EventQueues(limit=10)
    for n in (1, 4):
        queues.append("room-1", event(n))
    assert queues.put_back("room-1", event(3)) == 0
    queues.put_back("room-1", event(5))
    queues.put_back("room-1", event(0))
    assert numbers(queues, "room-1") == [0, 1, 3, 4, 5]
    assert len(queues) == 5 and "room-1" in queues and "room-2" not in queues


def test_past_the_limit_the_oldest_of_all_servers_is_dropped_and_counted() -> None:
    queues = EventQueues(limit=3)
    queues.append("room-2", event(2))
    queues.append("room-1", event(1))
    queues.append("room-1", event(3))
    assert queues.append("room-2", event(4)) == 1  # room-1's 1 is the oldest
    assert (numbers(queues, "room-1"), numbers(queues, "room-2")) == ([3], [2, 4])
    assert queues.put_back("room-3", event(5)) == 1  # then room-2's 2
    assert (len(queues), queues.dropped) == (3, 2)
    assert queues.servers() == ["room-2", "room-1", "room-3"]


def test_a_round_is_taken_from_the_front_and_what_was_not_received_put_back() -> None:
    queues = EventQueues(limit=10)
    for n in (1, 2, 3, 4):
        queues.append("room-1", event(n))
    batch = queues.front("room-1", 3)
    assert [e.number for e in batch] == [1, 2, 3] and len(queues) == 4  # still held
    queues.forget("room-9")
    taken = queues.take("room-1", batch)
    assert [e.number for e in taken] == [1, 2, 3] and len(queues) == 1
    queues.put_front("room-1", [taken[1], taken[2]])
    assert numbers(queues, "room-1") == [2, 3, 4] and len(queues) == 3


def test_what_was_dropped_during_a_round_is_not_taken() -> None:
    queues = EventQueues(limit=2)
    queues.append("room-1", event(1))
    queues.append("room-1", event(2))
    batch = queues.front("room-1", 2)
    queues.append("room-2", event(3))  # drops 1, the round's first
    assert [e.number for e in queues.take("room-1", batch)] == [2]
    assert "room-1" not in queues and len(queues) == 1
    assert queues.take("room-1", batch) == [] and queues.take("room-2", []) == []


def test_only_the_binds_of_the_closed_sessions_are_dropped() -> None:
    queues = EventQueues(limit=10)
    queues.append("room-1", event(1, session=7, kind=BIND))
    queues.append("room-1", event(2, session=8, kind=BIND))
    queues.append("room-1", event(3, session=7, kind=CLOSE))
    queues.append("room-2", event(4, session=7, kind=BIND))
    assert queues.drop_binds("room-1", []) == 0
    assert queues.drop_binds("room-1", [7]) == 1
    assert numbers(queues, "room-1") == [2, 3] and numbers(queues, "room-2") == [4]
    assert queues.drop_binds("room-2", [7]) == 1
    assert "room-2" not in queues and len(queues) == 2
    assert queues.forget("room-1") == 2 and len(queues) == 0
    queues.append("room-1", event(5))
    queues.clear()
    assert (len(queues), queues.servers(), queues.dropped) == (0, [], 0)


def test_a_server_with_nothing_held_has_nothing_to_take_drop_or_forget() -> None:
    queues = EventQueues(limit=10)
    assert queues.front("room-1", 3) == []
    assert queues.drop_binds("room-1", [7]) == 0
    assert queues.forget("room-1") == 0
    assert len(queues) == 0
