"""The router's probation: a server the transport refused (nobody received the request) is
not chosen for a while, then tried once; see ``actors.cluster.router``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.cluster.discovery import ServerInfo
from actors.cluster.router import FORGET_AFTER, Router


class Servers:
    """The one thing the router reads from discovery: the live servers of a type."""

    def __init__(self, *servers: ServerInfo) -> None:
        self.table = list(servers)

    def servers(self, server_type: str) -> list[ServerInfo]:
        return [s for s in self.table if s.type == server_type]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def room(n: int) -> ServerInfo:
    return ServerInfo(id=f"room-{n}", type="room", hostname="h")


def router_over(*servers: ServerInfo, probation: float = 3.0) -> tuple[Router, Clock, Servers]:
    clock = Clock()
    discovery = Servers(*servers)
    router = Router(discovery, probation=probation, clock=clock, server_id="c-1")  # type: ignore[arg-type]
    return router, clock, discovery


def picks(router: Router, n: int = 60) -> set[str]:
    return {router.pick("room", "room.room.join", None).id for _ in range(n)}


def test_an_unreachable_server_is_not_chosen_during_its_probation() -> None:
    router, clock, _ = router_over(room(1), room(2), room(3))
    router.unreachable(room(1))
    assert picks(router) == {"room-2", "room-3"}
    clock.now += 2.9
    assert picks(router) == {"room-2", "room-3"}


def test_after_the_probation_one_request_tries_it_then_it_waits_for_the_outcome() -> None:
    router, clock, _ = router_over(room(1), room(2))
    router.unreachable(room(1))
    clock.now += 3.0
    # Only one trial: once chosen, the others skip it until the trial is answered.
    chosen = [router.pick("room", "room.room.join", None).id for _ in range(200)]
    assert chosen.count("room-1") == 1
    router.answered(room(1))
    assert picks(router, 200) == {"room-1", "room-2"}
    assert router.probation == {}


def test_a_refused_trial_starts_the_probation_over() -> None:
    router, clock, _ = router_over(room(1), room(2))
    router.unreachable(room(1))
    clock.now += 3.0
    while router.pick("room", "r.s.m", None).id != "room-1":  # the trial...
        pass
    router.unreachable(room(1))  # ...refused
    clock.now += 2.9
    assert picks(router) == {"room-2"}


def test_an_unanswered_trial_is_followed_by_another_one_a_probation_later() -> None:
    router, clock, _ = router_over(room(1), room(2))
    router.unreachable(room(1))
    clock.now += 3.0
    trial = [router.pick("room", "r.s.m", None).id for _ in range(100)]
    assert trial.count("room-1") == 1  # and its answer never comes (a timeout)
    clock.now += 3.0
    again = [router.pick("room", "r.s.m", None).id for _ in range(100)]
    assert again.count("room-1") == 1


def test_when_every_server_is_on_probation_all_are_chosen_as_before() -> None:
    router, _, _ = router_over(room(1), room(2))
    router.unreachable(room(1))
    router.unreachable(room(2))
    assert picks(router) <= {"room-1", "room-2"}
    assert len(picks(router)) >= 1


def test_reroute_gives_another_untried_server_not_on_probation_or_none() -> None:
    router, _, _ = router_over(room(1), room(2), room(3))
    router.unreachable(room(1))
    assert router.reroute("room", "r.s.m", None, {"room-1"}) in (room(2), room(3))
    router.unreachable(room(2))
    assert router.reroute("room", "r.s.m", None, {"room-1", "room-2"}) == room(3)
    assert router.reroute("room", "r.s.m", None, {"room-1", "room-2", "room-3"}) is None
    router.unreachable(room(3))
    # Every other server is on probation too: no resend to a server known to be unreachable.
    assert router.reroute("room", "r.s.m", None, {"room-1"}) is None


def test_a_custom_route_sees_only_servers_off_probation() -> None:
    router, _, _ = router_over(room(1), room(2), room(3))
    seen: list[list[str]] = []

    def first(session: Any, route: str, servers: list[ServerInfo]) -> ServerInfo:
        seen.append([s.id for s in servers])
        return servers[0]

    router.add_route("room", first)
    router.unreachable(room(1))
    assert router.pick("room", "r.s.m", None) == room(2)
    assert router.reroute("room", "r.s.m", None, {"room-2"}) == room(3)
    assert seen == [["room-2", "room-3"], ["room-3"]]


def test_a_custom_route_sees_the_rerouted_requests_session_and_route() -> None:
    router, _, _ = router_over(room(1), room(2))
    seen: list[tuple[object, str]] = []

    def last(session: Any, route: str, servers: list[ServerInfo]) -> ServerInfo:
        seen.append((session, route))
        return servers[-1]

    router.add_route("room", last)
    session = object()
    assert router.reroute("room", "room.room.join", session, {"room-1"}) == room(2)  # type: ignore[arg-type]
    assert seen == [(session, "room.room.join")]


def test_a_custom_route_returning_a_tried_server_ends_the_reroute() -> None:
    router, _, _ = router_over(room(1), room(2))
    router.add_route("room", lambda session, route, servers: room(1))
    router.unreachable(room(1))
    assert router.reroute("room", "r.s.m", None, {"room-1"}) is None


def test_probation_and_return_are_each_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    router, clock, _ = router_over(room(1), room(2))
    caplog.set_level(logging.INFO, logger="actors.cluster.router")
    for _ in range(5):  # the requests in flight at the death are refused one by one
        router.unreachable(room(1))
    clock.now += 3.0
    router.unreachable(room(1))  # a refused trial
    router.answered(room(2))  # not on probation: nothing to say
    router.answered(room(1))
    router.answered(room(1))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            "WARNING",
            "[c-1] server room-1 (room) is unreachable (nobody receives its requests): "
            "not chosen for 3s, then tried again",
        ),
        ("INFO", "[c-1] server room-1 (room) answers again: chosen again"),
    ]


def test_the_probation_of_a_server_long_gone_is_forgotten() -> None:
    router, clock, discovery = router_over(room(1), room(2), room(3))
    router.unreachable(room(1))
    discovery.table = [room(2), room(3)]  # its lease expired
    clock.now += FORGET_AFTER + 10
    router.unreachable(room(2))
    assert set(router.probation) == {"room-2"}


def test_a_probation_is_forgotten_only_once_forget_after_has_passed_since_it_ended() -> None:
    router, clock, _ = router_over(room(1), room(2), room(3))
    router.unreachable(room(1))  # its probation ends 3 s from now
    clock.now += 3.0 + FORGET_AFTER
    router.unreachable(room(2))
    assert set(router.probation) == {"room-1", "room-2"}  # exactly FORGET_AFTER: kept
    clock.now += 0.5
    router.unreachable(room(3))
    assert set(router.probation) == {"room-2", "room-3"}


def test_a_router_without_a_server_id_logs_without_a_prefix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router(Servers(room(1)), clock=Clock())  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="actors.cluster.router")
    router.unreachable(room(1))
    assert [r.getMessage() for r in caplog.records] == [
        "server room-1 (room) is unreachable (nobody receives its requests): "
        "not chosen for 3s, then tried again"
    ]


def test_no_probation_costs_no_clock_reading() -> None:
    router, _, _ = router_over(room(1), room(2))

    def no_clock() -> float:
        raise AssertionError("clock read without any probation")

    router.clock = no_clock
    assert picks(router) == {"room-1", "room-2"}
    router.answered(room(1))
