"""A backend closes the sessions of a frontend that died without sending their closes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from actors.app import App
from actors.cluster import served_sessions
from actors.cluster.codec import INCARNATION_KEY, SENDER_INCARNATION_KEY, SessionSnapshot
from actors.cluster.discovery import ServerInfo
from actors.cluster.rpc import ServerUnreachable
from actors.cluster.served_sessions import ServedSession, ServedSessions
from actors.cluster.session_events import EVERY_ROUTE, MAX_SERVED_ROUTES
from actors.errors import InternalError, RpcTimeout
from actors.testing import TestClient
from tests.actors.cluster.test_in_memory_cluster import Entry, Front, cluster, server
from tests.reliability.support import until

HANDSHAKE = {"sys": {"platform": "test"}, "user": {}}


class Table:
    """The part of discovery the sessions read: servers by id."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerInfo] = {}

    def server(self, server_id: str) -> ServerInfo | None:
        return self.servers.get(server_id)

    def list(self, server_id: str, incarnation: str | None) -> None:
        metadata = {} if incarnation is None else {INCARNATION_KEY: incarnation}
        self.servers[server_id] = ServerInfo(server_id, "connector", True, metadata=metadata)


class Probe:
    """Raises ``outcome`` if set; else says the sessions asked are open, but ``closed``."""

    def __init__(self) -> None:
        self.outcome: Exception | None = None
        self.closed: set[int] = set()
        self.asked: list[tuple[str, str]] = []
        self.ids: list[list[int]] = []

    async def __call__(self, frontend_id: str, frontend_type: str, ids: list[int]) -> list[int]:
        self.asked.append((frontend_id, frontend_type))
        self.ids.append(ids)
        if self.outcome is not None:
            raise self.outcome
        return [sid for sid in ids if sid not in self.closed]


class Sessions:
    def __init__(
        self,
        wanted: bool = True,
        limit: int = 100,
        interval: float = 3600,
        audit_interval: float = 3600,
    ) -> None:
        self.table = Table()
        self.probe = Probe()
        self.closed: list[ServedSession] = []
        self.closes_wanted = wanted
        self.served = ServedSessions(
            self.table,  # type: ignore[arg-type]
            self.probe,
            self.closed.extend,
            self,
            "room-1",
            interval=interval,
            audit_interval=audit_interval,
            limit=limit,
        )

    def message(
        self,
        sid: int,
        route: str = "room.room.join",
        frontend: str = "c-1",
        inc: str | None = None,
        **fields: Any,
    ) -> list[ServedSession] | None:
        """A message of a session; ``inc``: its frontend's incarnation, as the request names
        it (None: a frontend that does not, whose incarnation discovery gives)."""
        metadata = {} if inc is None else {SENDER_INCARNATION_KEY: inc}
        return self.served.served(snapshot(sid, frontend, **fields), route, metadata)

    async def settle(self) -> None:
        """Let the probes started by a check answer."""
        for _ in range(5):
            await asyncio.sleep(0)


def snapshot(
    sid: int, frontend: str = "c-1", uid: str | None = None, handshake: Any = None
) -> SessionSnapshot:
    return SessionSnapshot(sid, frontend, "connector", uid, {}, handshake, handshake is None)


async def test_a_frontend_that_restarted_has_its_old_sessions_closed_as_last_seen() -> None:
    s = Sessions()
    s.table.list("c-1", "first")
    s.message(1, handshake=HANDSHAKE)
    s.message(1, "room.room.chat", uid="ann")
    s.message(2)
    s.table.list("c-1", "first")
    s.served.check()
    assert s.closed == []
    s.table.list("c-1", "second")  # the same id, another process
    s.served.check()
    assert [(c.snapshot.id, c.snapshot.uid, c.routes) for c in s.closed] == [
        (1, "ann", {"room.room.join", "room.room.chat"}),
        (2, None, {"room.room.join"}),
    ]
    assert s.closed[0].snapshot.handshake is None  # the backend keeps it, not each session
    assert len(s.served) == 0
    s.served.check()
    assert len(s.closed) == 2  # once


async def test_a_frontend_gone_from_discovery_is_probed_and_closed_when_nobody_answers() -> None:
    s = Sessions()
    s.table.list("c-1", "one")
    s.message(1)
    del s.table.servers["c-1"]
    s.probe.outcome = RpcTimeout()  # not known: asked again at the next check
    s.served.check()
    await s.settle()
    s.probe.outcome = None  # it answers: it drains, and still sends its closes
    s.served.check()
    await s.settle()
    assert s.closed == [] and len(s.served) == 1
    s.probe.outcome = ServerUnreachable("nobody subscribed")
    s.served.check()
    await s.settle()
    assert [c.snapshot.id for c in s.closed] == [1]
    assert s.probe.asked == [("c-1", "connector")] * 3


async def test_a_frontend_back_in_discovery_before_the_probe_answers_is_not_closed() -> None:
    s = Sessions()
    s.table.list("c-1", "one")
    s.message(1)
    del s.table.servers["c-1"]
    s.probe.outcome = ServerUnreachable("a reconnection under way")
    s.table.list("c-1", "one")  # listed again by the time the probe fails
    s.served.check()  # (listed: no probe)
    assert s.probe.asked == []
    del s.table.servers["c-1"]
    gate = asyncio.Event()

    async def late(frontend_id: str, frontend_type: str, ids: list[int]) -> list[int]:
        await gate.wait()
        raise ServerUnreachable("nobody")

    s.served._probe = late
    s.served.check()
    s.table.list("c-1", "one")
    gate.set()
    await s.settle()
    assert s.closed == []


async def test_the_close_event_of_a_session_forgets_it_and_a_late_one_runs_nothing() -> None:
    s = Sessions()
    s.table.list("c-1", "one")
    s.message(1)
    s.message(2)
    s.message(3)
    assert s.served.closing("c-1", 1)  # its frontend's close event: callbacks run
    assert len(s.served) == 2
    assert s.served.closing("c-1", 99)  # one it never served: nothing to forget
    assert s.served.closing("c-1", 3)
    assert len(s.served) == 1
    s.table.list("c-1", "two")
    s.served.check()
    assert [c.snapshot.id for c in s.closed] == [2]
    assert not s.served.closing("c-1", 2)  # held by a frontend cut off, sent once back
    assert s.served.closing("c-1", 2)  # (once only: a later one is a new life's)


async def test_a_session_closed_here_that_sends_again_lives_and_closes_again() -> None:
    s = Sessions()
    s.table.list("c-1", "one")
    s.message(1)
    s.table.list("c-1", "two")
    s.served.check()
    s.message(1)  # it was not gone after all: known again
    assert len(s.served) == 1
    assert s.served.closing("c-1", 1)  # its close event runs the callbacks


async def test_nothing_is_remembered_without_close_callbacks_or_past_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Sessions(wanted=False)
    s.message(1)
    assert len(s.served) == 0
    s = Sessions(limit=2)
    for sid in (1, 2, 3, 4):
        s.message(sid)
    assert len(s.served) == 2
    told = (
        "[room-1] 2 sessions of frontends remembered, the most: a session past it is closed "
        "here only by its frontend's close event (not if its frontend dies)"
    )
    assert caplog.text.count(told) == 1  # throttled


async def test_a_frontend_no_subject_can_name_is_not_remembered() -> None:
    """A forged request may name any frontend: one no probe can reach would be probed every
    check, for ever."""
    s = Sessions()
    s.message(1, frontend="c 1")
    s.message(2, frontend="c-1")
    assert len(s.served) == 1


async def test_past_the_route_cap_a_session_matches_every_route_filter() -> None:
    s = Sessions()
    s.table.list("c-1", "one")
    for n in range(MAX_SERVED_ROUTES):
        s.message(1, f"room.r.m{n}")
    s.message(2)
    s.served.closing("c-1", 2)
    s.table.list("c-1", "two")
    s.served.check()
    assert len(s.closed[0].routes) == MAX_SERVED_ROUTES  # up to the cap, each its own
    s.closed.clear()
    s.table.list("c-1", "one")
    for n in range(MAX_SERVED_ROUTES + 1):
        s.message(1, f"room.r.m{n}")
    assert s.served._frontends["c-1"].sessions[1].routes == {EVERY_ROUTE}  # one past the cap
    s.message(1, "room.r.more")
    s.table.list("c-1", "two")
    s.served.check()
    assert s.closed[0].routes == {EVERY_ROUTE}


async def test_a_frontend_not_listed_at_its_first_session_takes_its_incarnation_later() -> None:
    s = Sessions()
    s.message(1)  # the watch has not shown it yet
    s.table.list("c-1", "one")
    s.served.check()
    s.served.check()
    assert s.closed == []
    s.table.list("c-1", "two")
    s.served.check()
    assert len(s.closed) == 1


async def test_the_checks_run_by_themselves_while_sessions_are_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(served_sessions, "SWEEP_INTERVAL", 3600)  # the interval given counts
    s = Sessions(interval=0.01)
    s.table.list("c-1", "one")
    s.message(1)
    s.table.list("c-1", "two")
    await until(lambda: len(s.closed) == 1)
    await until(lambda: s.served._sweep is None)  # nothing left: the checks stop
    await s.served.close()


async def test_a_probe_that_fails_otherwise_is_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Sessions()
    s.message(1)
    s.probe.outcome = InternalError("frontend not found")
    s.served.check()
    await s.settle()
    s.served.check()
    await s.settle()
    assert len(s.probe.asked) == 2 and s.closed == []


# -- on an in-memory cluster -------------------------------------------------------------------


async def test_a_room_closes_the_session_of_a_frontend_that_died_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The frontend leaves discovery and stops serving its subject without a word (as a
    SIGKILL leaves it): the room probes it, nobody answers, the session is closed there with
    its uid. When the frontend stops for real later, its close event runs nothing again."""
    monkeypatch.setattr(served_sessions, "SWEEP_INTERVAL", 0.05)
    events: list[tuple[str, str | None]] = []

    def setup(room: App) -> None:
        room.on_remote_session_close(lambda s: events.append(("close", s.uid)))
        room.on_remote_session_close(
            lambda s: events.append(("close-whoami", s.uid)), route="room.ops.whoami"
        )
        room.on_remote_session_close(
            lambda s: events.append(("close-never", s.uid)), route="room.ops.wait"
        )

    async with cluster(room_setup=setup) as net:
        client = await net.client()
        await client.request("connector.entry.login", {"uid": "ann"})
        await client.request("room.ops.whoami")
        front = net.connectors[0].cluster
        room = net.rooms[0].cluster
        assert front is not None and room is not None and room.served_sessions is not None
        assert len(room.served_sessions) == 1
        await front.discovery.stop()
        await front.rpc_server.stop()
        await until(lambda: len(events) == 2, timeout=5)
        assert sorted(events) == [("close", "ann"), ("close-whoami", "ann")]
        assert len(room.served_sessions) == 0
        await client.close()
        await until(lambda: net.connectors[0].connection_count == 0)
    assert len(events) == 2


async def test_its_bind_gives_a_remembered_session_its_uid() -> None:
    """A handler that binds (a room's join) reaches the backend's record through the bind
    event, not through a message: closed here, the session had no uid."""
    s = Sessions()
    s.table.list("c-1", "one")
    s.message(1)
    s.served.bound(snapshot(1, uid="ann"))
    s.served.bound(snapshot(2, uid="bob"))  # not served here: not remembered
    s.served.bound(snapshot(1, "c-9", uid="cid"))  # nor any session of that frontend
    s.table.list("c-1", "two")
    s.served.check()
    assert [(c.snapshot.id, c.snapshot.uid) for c in s.closed] == [(1, "ann")]


async def test_each_frontend_is_checked_and_probed_once_at_a_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.cluster.served_sessions")
    s = Sessions()
    gate = asyncio.Event()
    asked: list[str] = []

    async def slow(frontend_id: str, frontend_type: str, ids: list[int]) -> list[int]:
        asked.append(frontend_id)
        await gate.wait()
        raise ServerUnreachable("nobody")

    s.served._probe = slow
    s.message(1, frontend="c-1")  # never listed: probed
    s.table.list("c-2", "one")
    s.message(1, frontend="c-2")
    s.message(2, frontend="c-2")
    s.table.list("c-2", "two")  # restarted
    s.served.check()
    s.served.check()  # c-1's probe still waits: not asked twice
    await s.settle()
    assert asked == ["c-1"]
    assert [(c.snapshot.frontend_id, c.snapshot.id) for c in s.closed] == [("c-2", 1), ("c-2", 2)]
    assert (
        "[room-1] frontend c-2 restarted: closing here the 2 session(s) of it this server "
        "served (their close events never came)"
    ) in caplog.text
    gate.set()
    await s.settle()
    assert [c.snapshot.frontend_id for c in s.closed] == ["c-2", "c-2", "c-1"]
    assert "frontend c-1 gone from discovery, and nobody answers for it: closing here the 1" in (
        caplog.text
    )
    assert not s.served._probes  # done, and forgotten


async def test_a_probe_that_cannot_tell_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.cluster.served_sessions")
    s = Sessions()
    s.message(1)
    s.probe.outcome = RpcTimeout("no answer within 5s")
    s.served.check()
    await s.settle()
    assert "[room-1] frontend c-1 not asked: " in caplog.text
    assert "no answer within 5s" in caplog.text


async def test_the_closes_made_here_kept_against_late_events_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(served_sessions, "MAX_CLOSED_HERE", 2)
    s = Sessions()
    s.table.list("c-1", "one")
    for sid in (1, 2, 3):
        s.message(sid)
    s.table.list("c-1", "two")
    s.served.check()
    assert len(s.closed) == 3
    assert s.served.closing("c-1", 1)  # the oldest is forgotten: its late event runs
    assert not s.served.closing("c-1", 2)
    assert not s.served.closing("c-1", 3)


async def test_once_closed_it_remembers_nothing_and_checks_no_more() -> None:
    s = Sessions(interval=0.01)
    gate = asyncio.Event()

    async def stuck(frontend_id: str, frontend_type: str, ids: list[int]) -> list[int]:
        await gate.wait()
        return ids

    s.served._probe = stuck
    s.message(1)  # not listed: probed, the probe never answers
    await until(lambda: bool(s.served._probes))
    tasks = [*s.served._probes, s.served._sweep]
    await s.served.close()
    assert all(task is not None and task.done() for task in tasks)
    assert len(s.served) == 0
    s.message(2)
    assert len(s.served) == 0 and s.served._sweep is None


# -- a close event lost while its frontend lives -----------------------------------------------


def said_not_open_long_ago(s: Sessions, frontend: str = "c-1") -> None:
    """As if the frontend first said so CONFIRM_AFTER seconds ago (no sleep in the test)."""
    not_open = s.served._frontends[frontend].not_open
    for sid in not_open:
        not_open[sid] -= served_sessions.CONFIRM_AFTER


async def test_a_session_its_frontend_says_twice_is_not_open_is_closed_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.cluster.served_sessions")
    s = Sessions(audit_interval=0)
    s.table.list("c-1", "one")
    for sid in (1, 2, 3):
        s.message(sid, uid=f"u{sid}")
    s.probe.closed = {2}  # its close event was given up during an outage
    s.served.check()
    await s.settle()
    assert s.closed == [] and len(s.served) == 3  # once is not enough: a message may lag
    s.served.check()
    await s.settle()
    assert s.closed == []  # nor twice at once
    said_not_open_long_ago(s)
    s.served.check()
    await s.settle()
    assert [(c.snapshot.id, c.snapshot.uid) for c in s.closed] == [(2, "u2")]
    assert len(s.served) == 2
    assert "frontend c-1 says they are not open: closing here the 1 session(s)" in caplog.text
    assert not s.served.closing("c-1", 2)  # its event, if it comes after all, runs nothing
    s.probe.closed = {1, 3}  # the others, asked of again, close in their turn
    s.served.check()
    await s.settle()
    said_not_open_long_ago(s)
    s.served.check()
    await s.settle()
    assert [c.snapshot.id for c in s.closed] == [2, 1, 3]
    assert len(s.served) == 0 and "c-1" not in s.served._frontends  # nothing left of it


async def test_a_session_said_not_open_once_then_open_again_stays() -> None:
    s = Sessions(audit_interval=0)
    s.table.list("c-1", "one")
    s.message(1)
    s.probe.closed = {1}
    s.served.check()
    await s.settle()
    s.probe.closed = set()  # (a frontend's answer raced its registry: it is open)
    s.served.check()
    await s.settle()
    said_not_open_long_ago(s)  # nothing to age: it was cleared
    s.probe.closed = {1}
    s.served.check()
    await s.settle()
    assert s.closed == []  # said not open once more, not twice in a row
    said_not_open_long_ago(s)
    s.served.check()
    await s.settle()
    assert [c.snapshot.id for c in s.closed] == [1]


async def test_a_listed_frontend_is_asked_once_per_audit_interval() -> None:
    s = Sessions(audit_interval=3600)
    s.table.list("c-1", "one")
    s.message(1)
    s.served.check()
    await s.settle()
    assert s.probe.asked == []  # its first session is new: not asked yet
    s.served._frontends["c-1"].asked_at -= 3600
    s.served.check()
    s.served.check()
    await s.settle()
    assert s.probe.asked == [("c-1", "connector")]


async def test_each_question_asks_first_of_the_sessions_asked_of_longest_ago(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(served_sessions, "AUDIT_BATCH", 2)
    s = Sessions(audit_interval=0)
    s.table.list("c-1", "one")
    for sid in (1, 2, 3, 4, 5):
        s.message(sid)
    for _ in range(3):
        s.served.check()
        await s.settle()
    assert s.probe.ids == [[1, 2], [3, 4], [5, 1]]


async def test_a_close_event_that_comes_while_the_frontend_is_asked_is_not_repeated() -> None:
    s = Sessions(audit_interval=0)
    s.table.list("c-1", "one")
    for sid in (1, 2, 3):
        s.message(sid)
    s.probe.closed = {1}
    s.served.check()
    await s.settle()
    assert s.served.closing("c-1", 1)  # its event came: forgotten, with what was said of it
    assert s.served._frontends["c-1"].not_open == {}
    gate, asked = asyncio.Event(), asyncio.Event()

    async def slow(frontend_id: str, frontend_type: str, ids: list[int]) -> list[int]:
        assert ids == [2, 3]
        asked.set()
        await gate.wait()
        return []  # neither is open by the time it answers

    s.served._probe = slow
    s.served.check()
    await asked.wait()
    assert s.served.closing("c-1", 2)  # whose event comes before the answer
    gate.set()
    await s.settle()
    assert s.closed == [] and len(s.served) == 1
    assert list(s.served._frontends["c-1"].not_open) == [3]  # 3 is said not open, once


async def test_a_room_closes_a_session_whose_close_event_was_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The frontend lives, but the close event of one session never reached the room (given
    up during an outage): the room asks the frontend, and closes it after CONFIRM_AFTER."""
    monkeypatch.setattr(served_sessions, "SWEEP_INTERVAL", 0.02)
    monkeypatch.setattr(served_sessions, "AUDIT_INTERVAL", 0.02)
    monkeypatch.setattr(served_sessions, "CONFIRM_AFTER", 0.1)
    caplog.set_level(logging.INFO, logger="actors.cluster.served_sessions")
    events: list[str | None] = []

    def setup(room: App) -> None:
        room.on_remote_session_close(lambda s: events.append(s.uid))

    async with cluster(room_setup=setup) as net:
        front = net.connectors[0].cluster
        assert front is not None
        lost = front.users.session_event

        def lose_closes(session: Any, event: str) -> None:
            if event != "close":
                lost(session, event)

        monkeypatch.setattr(front.users, "session_event", lose_closes)
        ann, bob = await net.client(), await net.client()
        await ann.request("connector.entry.login", {"uid": "ann"})
        await bob.request("connector.entry.login", {"uid": "bob"})
        await ann.request("room.ops.whoami")
        await bob.request("room.ops.whoami")
        await ann.close()
        await until(lambda: events == ["ann"], timeout=5)
        assert "frontend c-1 says they are not open: closing here the 1 session(s)" in caplog.text
        await bob.request("room.ops.whoami")  # still open: not closed here
        assert events == ["ann"]


async def test_every_frontend_is_checked_whatever_the_one_before_it() -> None:
    """A frontend restarted, or not due for a question, is no reason to skip the next."""
    s = Sessions(audit_interval=3600)
    for frontend in ("c-1", "c-2", "c-3"):
        s.table.list(frontend, "one")
        s.message(1, frontend=frontend)
    s.table.list("c-1", "two")  # restarted
    s.served._frontends["c-3"].asked_at -= 3600  # c-2 is not due, c-3 is
    s.served.check()
    await s.settle()
    assert [c.snapshot.frontend_id for c in s.closed] == ["c-1"]
    assert s.probe.asked == [("c-3", "connector")]


async def test_the_sessions_of_a_restarted_frontend_are_not_closed_with_its_old_ones() -> None:
    """Its session ids start again from 1: a message of the new process, come before the
    check that sees the restart, is no message of the old session of that id."""
    s = Sessions()
    s.table.list("c-1", "first")
    s.message(1, uid="ann")
    s.message(2, uid="bob")
    s.table.list("c-1", "second")  # restarted; its clients are back before the next check
    lost = s.message(1, "room.room.chat", uid="carl")
    assert s.message(3, uid="dan") is None
    # Handed to the caller, which closes them before it runs carl's message.
    assert [(c.snapshot.id, c.snapshot.uid, c.routes) for c in lost or ()] == [
        (1, "ann", {"room.room.join"}),
        (2, "bob", {"room.room.join"}),
    ]
    assert s.closed == []
    s.served.check()
    assert s.closed == []  # carl and dan live
    assert len(s.served) == 2
    assert s.served.closing("c-1", 1) is True  # carl's own close event runs its callbacks


async def test_a_session_closed_here_that_sends_again_past_the_limit_still_closes() -> None:
    """Not remembered again (the limit), its close event must still run the callbacks: the
    message it sent may have joined it to a room again."""
    s = Sessions(limit=1)
    s.table.list("c-1", "one")
    s.message(1)
    s.table.list("c-1", "two")
    s.served.check()
    s.message(5, frontend="c-2")  # the one remembered
    s.message(1)  # it was not gone after all, but no room is left to remember it
    assert len(s.served) == 1
    assert s.served.closing("c-1", 1)


async def test_a_player_back_on_a_restarted_frontend_is_not_dropped_by_its_old_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The frontend dies without a word and starts again under its id before the room's next
    check: the old session (ann, id 1) is closed there before the first message of the new
    one (ann again, id 1 again) runs, not after it (a room keyed by uid would drop her), with
    its own handshake (the new one's, kept under the same id, stays)."""
    monkeypatch.setattr(served_sessions, "SWEEP_INTERVAL", 3600)
    notes_at_close: list[tuple[str | None, list[str], Any]] = []
    seen: list[list[str]] = []

    def setup(room: App) -> None:
        room.on_remote_session_close(
            lambda s: notes_at_close.append(
                (s.uid, list(seen[0]), s.handshake and s.handshake.user)
            )
        )

    async with cluster(room_setup=setup) as net:
        seen.append(net.notes)
        old = await net.client(handshake_user={"life": 1})
        await old.request("connector.entry.login", {"uid": "ann"})
        await old.notify("room.ops.note", {"text": "first life"})
        await until(lambda: net.notes == ["first life"], timeout=5)
        front = net.connectors[0].cluster
        assert front is not None
        await front.discovery.stop()
        await front.rpc_server.stop()
        again = server(net.network, "connector", "c-1")
        again.register(Entry)
        again.register_remote(Front)
        test = TestClient(again, request_timeout=5)
        await test.start()
        try:
            client = await test.connect(handshake_user={"life": 2})
            await client.request("connector.entry.login", {"uid": "ann"})
            await client.notify("room.ops.note", {"text": "second life"})
            await until(lambda: len(net.notes) == 2 and len(notes_at_close) == 1, timeout=5)
            assert notes_at_close == [("ann", ["first life"], {"life": 1})]
            room = net.rooms[0].cluster
            assert room is not None
            kept = room.handshakes.get("c-1", 1)
            assert kept is not None and kept["user"] == {"life": 2}
            await client.close()
        finally:
            await test.stop()
        await old.close()


async def test_a_restart_is_seen_at_the_new_process_s_first_message_whatever_discovery_says() -> (
    None
):
    """The new process's messages name its incarnation: before this server's discovery shows
    the restart (its watch lags), they were taken for the old process's sessions of the same
    ids, and closed with them once it did."""
    s = Sessions()
    s.table.list("c-1", "first")  # and it stays so here for now
    s.message(1, uid="ann", inc="first")
    s.message(2, uid="bob", inc="first")
    lost = s.message(1, uid="carl", inc="second")
    assert [(c.snapshot.id, c.snapshot.uid) for c in lost or ()] == [(1, "ann"), (2, "bob")]
    assert s.message(2, uid="dan", inc="second") is None
    s.table.list("c-1", "second")  # discovery catches up
    s.served.check()
    assert s.closed == [] and len(s.served) == 2  # carl and dan live on
    # A late message of the old process is no restart back to it, nor remembered.
    assert s.message(7, inc="first") is None
    assert len(s.served) == 2 and s.message(1, inc="second") is None


async def test_a_frontend_whose_first_sessions_came_unnamed_takes_the_name_it_sends_later() -> None:
    s = Sessions()
    s.message(1)  # not listed, no name: unknown
    assert s.message(2, inc="one") is None  # named now: the same process, not a restart
    assert s.message(3, inc="one") is None and len(s.served) == 3
    assert s.message(1, inc="two") is not None  # another one: a restart


async def test_a_restart_seen_at_a_message_is_told_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.cluster.served_sessions")
    s = Sessions()
    s.message(1, inc="one")
    s.message(2, inc="one")
    assert s.message(3, inc="two") is not None
    assert (
        caplog.text.count(
            "[room-1] frontend c-1 restarted: closing here the 2 session(s) of it this server "
            "served (their close events never came)"
        )
        == 1
    )
    assert s.closed == []  # handed to the caller, which runs them in their turns


async def test_the_incarnations_a_frontend_restarted_from_are_remembered_within_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(served_sessions, "MAX_RETIRED", 2)
    monkeypatch.setattr(served_sessions, "MAX_CLOSED_HERE", 2)
    s = Sessions()
    for inc in ("A", "B", "C", "D"):
        s.message(1, inc=inc)
    assert s.message(2, inc="C") is None and s.message(3, inc="B") is None  # the last 2
    assert len(s.served) == 1
    assert s.message(4, inc="A") is not None  # forgotten: taken for a restart (to A)
    for frontend in ("f-1", "f-2", "f-3"):
        s.message(1, frontend=frontend, inc="old")
        s.message(1, frontend=frontend, inc="new")
    # The last 2 frontends' are remembered; the first's is forgotten.
    assert s.message(2, frontend="f-3", inc="old") is None
    assert s.message(2, frontend="f-2", inc="old") is None
    assert s.message(2, frontend="f-1", inc="old") is not None
