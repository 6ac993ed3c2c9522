"""Backends observe the sessions they served (``actors.cluster.session_events``): the bounded
record of who served a session (:func:`record_served`) and the callbacks that hear of its
bind and close (:class:`RemoteSessionEvents`)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from actors.cluster.session_events import (
    BIND,
    CLOSE,
    EVERY_ROUTE,
    MAX_SERVED_ROUTES,
    MAX_SERVED_SERVERS,
    RemoteSessionEvents,
    record_served,
)


def test_the_caps_and_names() -> None:
    assert (BIND, CLOSE, EVERY_ROUTE) == ("bind", "close", "*")
    assert (MAX_SERVED_SERVERS, MAX_SERVED_ROUTES) == (64, 64)


def test_each_server_and_its_routes_are_recorded() -> None:
    served: dict[str, set[str]] = {}
    assert record_served(served, "room-1", "room.r.join")
    assert record_served(served, "room-1", "room.r.chat")
    assert record_served(served, "room-1", "room.r.join")
    assert record_served(served, "room-2", "room.r.join")
    assert served == {"room-1": {"room.r.join", "room.r.chat"}, "room-2": {"room.r.join"}}


def test_past_the_servers_cap_a_new_server_is_not_recorded() -> None:
    served: dict[str, set[str]] = {}
    for i in range(MAX_SERVED_SERVERS):
        assert record_served(served, f"room-{i}", "r")
    assert not record_served(served, "room-new", "r")
    assert "room-new" not in served and len(served) == MAX_SERVED_SERVERS
    assert record_served(served, "room-0", "other")  # a recorded one still records routes
    assert served["room-0"] == {"r", "other"}


def test_past_the_routes_cap_a_server_serves_every_route() -> None:
    served: dict[str, set[str]] = {}
    for i in range(MAX_SERVED_ROUTES):
        record_served(served, "room-1", f"room.r.m{i}")
    assert len(served["room-1"]) == MAX_SERVED_ROUTES
    assert record_served(served, "room-1", "room.r.m0")  # known: unchanged
    assert len(served["room-1"]) == MAX_SERVED_ROUTES
    assert record_served(served, "room-1", "room.r.new")
    assert served["room-1"] == {EVERY_ROUTE}
    assert record_served(served, "room-1", "room.r.more")
    assert served["room-1"] == {EVERY_ROUTE}


def session(sid: int = 7) -> Any:
    return SimpleNamespace(id=sid, uid="ann")


async def test_callbacks_run_for_their_event_and_route_filter() -> None:
    events = RemoteSessionEvents()
    assert not events.wanted
    heard: list[str] = []
    events.subscribe(BIND, lambda s: heard.append(f"bind any {s.uid}"), None)
    events.subscribe(CLOSE, lambda s: heard.append("close any"), None)
    events.subscribe(CLOSE, lambda s: heard.append("close join"), "room.r.join")
    events.subscribe(CLOSE, lambda s: heard.append("close chat"), "room.r.chat")
    assert events.wanted
    await events.emit(CLOSE, session(), {"room.r.join"})
    assert heard == ["close any", "close join"]
    heard.clear()
    await events.emit(BIND, session(), {"room.r.join"})
    assert heard == ["bind any ann"]
    heard.clear()
    await events.emit(CLOSE, session(), {EVERY_ROUTE})
    assert heard == ["close any", "close join", "close chat"]
    heard.clear()
    await events.emit(CLOSE, session(), {"room.r.chat"})  # a filter not met skips one only
    assert heard == ["close any", "close chat"]
    heard.clear()
    await events.emit("other", session(), {"room.r.join"})
    assert heard == []


async def test_async_callbacks_are_awaited_and_a_failing_one_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = RemoteSessionEvents()
    heard: list[str] = []

    async def saved(s: Any) -> None:
        heard.append("saved")

    def broken(s: Any) -> None:
        raise RuntimeError("bug")

    async def broken_async(s: Any) -> None:
        raise RuntimeError("async bug")

    events.subscribe(CLOSE, broken, None)
    events.subscribe(CLOSE, saved, None)
    events.subscribe(CLOSE, broken_async, None)
    events.subscribe(CLOSE, lambda s: heard.append("after"), None)
    with caplog.at_level(logging.ERROR):
        await events.emit(CLOSE, session(9), set())
    assert heard == ["saved", "after"]
    failures = [r for r in caplog.records if "callback failed for session 9" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].getMessage().startswith("remote session close callback")


def test_an_unknown_event_cannot_be_subscribed() -> None:
    with pytest.raises(KeyError):
        RemoteSessionEvents().subscribe("open", lambda s: None, None)
