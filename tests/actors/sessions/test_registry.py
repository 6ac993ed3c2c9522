"""The session registry (``actors.sessions.registry``): lookups by id and uid, bind with its
callbacks, and a session's close with its closing and close callbacks.

Sessions are ``TestSession``s sharing one registry (no connection, no app).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from actors.errors import FrontendOnly, PitayaError
from actors.session import Session, SessionAlreadyBound, SessionClosed
from actors.sessions.registry import SessionRegistry
from actors.testing import TestSession


def session(registry: SessionRegistry, session_id: int | None = None) -> TestSession:
    return TestSession(session_id or registry.next_id(), registry=registry)


# -- lookups -------------------------------------------------------------------------------


def test_ids_count_from_one() -> None:
    registry = SessionRegistry()
    assert [registry.next_id() for _ in range(3)] == [1, 2, 3]
    assert SessionRegistry().next_id() == 1  # per registry


def test_added_sessions_are_found_by_id_counted_and_listed() -> None:
    registry = SessionRegistry()
    a, b = session(registry), session(registry)
    assert len(registry) == 2
    assert registry.get(a.id) is a and registry.get(b.id) is b
    assert registry.get(99) is None
    assert registry.by_uid("nobody") is None
    listed = []
    for s in registry:  # a snapshot: adding while iterating is fine
        listed.append(s)
        session(registry)
    assert listed == [a, b] and len(registry) == 4


def test_a_backend_registry_refuses_lookups() -> None:
    registry = SessionRegistry()
    assert registry.frontend
    registry.frontend = False
    with pytest.raises(FrontendOnly) as caught:
        registry.get(1)
    assert str(caught.value) == (
        "looking up a session by id is only possible on a frontend server (sessions live "
        "there); on a backend, use the session passed to the handler, or app.send_push_to_users"
    )
    with pytest.raises(FrontendOnly, match="looking up a session by uid is only possible on a"):
        registry.by_uid("ann")


# -- bind ------------------------------------------------------------------------------------


async def test_bind_sets_the_uid_runs_the_callbacks_in_order_then_indexes_it() -> None:
    registry = SessionRegistry()
    calls: list[Any] = []

    @registry.on_session_bind
    def first(s: Session) -> None:
        calls.append(("bind1", s.uid, registry.by_uid("ann")))

    @registry.on_session_bind
    async def second(s: Session) -> None:
        await asyncio.sleep(0)
        calls.append(("bind2", s.uid))

    @registry.on_after_session_bind
    async def after(s: Session) -> None:
        calls.append(("after", registry.by_uid("ann") is s))

    ann = session(registry)
    await ann.bind("ann")
    assert ann.uid == "ann" and registry.by_uid("ann") is ann
    # the uid is set during the bind callbacks, indexed only once they all passed
    assert calls == [("bind1", "ann", None), ("bind2", "ann"), ("after", True)]


def test_the_callback_registrations_return_the_callback() -> None:
    registry = SessionRegistry()

    def callback(s: Session) -> None: ...

    assert registry.on_session_bind(callback) is callback
    assert registry.on_after_session_bind(callback) is callback
    assert registry.on_session_close(callback) is callback
    assert registry.on_session_closing(callback) is callback


async def test_a_bind_callback_that_raises_refuses_the_bind() -> None:
    registry = SessionRegistry()
    later: list[str] = []

    @registry.on_session_bind
    async def refuse(s: Session) -> None:
        raise PitayaError("PIT-409", "taken")

    registry.on_session_bind(lambda s: later.append("bind"))
    registry.on_after_session_bind(lambda s: later.append("after"))
    ann = session(registry)
    with pytest.raises(PitayaError, match="taken"):
        await ann.bind("ann")
    assert ann.uid is None and registry.by_uid("ann") is None
    assert later == []


async def test_a_cancelled_bind_leaves_the_session_unbound() -> None:
    registry = SessionRegistry()
    gate = asyncio.Event()

    @registry.on_session_bind
    async def slow(s: Session) -> None:
        await gate.wait()

    ann = session(registry)
    binding = asyncio.ensure_future(ann.bind("ann"))
    await asyncio.sleep(0)
    assert ann.uid == "ann"
    binding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await binding
    assert ann.uid is None and registry.by_uid("ann") is None


async def test_binds_of_one_uid_take_turns_and_other_uids_do_not_wait() -> None:
    registry = SessionRegistry()
    gates = {"ann": asyncio.Event(), "bob": asyncio.Event()}
    seen: list[tuple[int, str, int | None]] = []

    @registry.on_session_bind
    async def slow(s: Session) -> None:
        assert s.uid is not None
        holder = registry.by_uid(s.uid)
        seen.append((s.id, s.uid, holder.id if holder else None))
        await gates[s.uid].wait()

    ann, again, bob = session(registry), session(registry), session(registry)
    binds = [asyncio.ensure_future(x.bind(uid)) for x, uid in ((ann, "ann"), (again, "ann"))]
    bob_bind = asyncio.ensure_future(bob.bind("bob"))
    await asyncio.sleep(0)
    assert seen == [(1, "ann", None), (3, "bob", None)]  # 'again' waits for ann's turn
    assert again.uid is None  # not set while it waits
    gates["bob"].set()
    await bob_bind  # bob never waited for ann
    gates["ann"].set()
    await asyncio.gather(*binds)
    assert seen[2] == (2, "ann", 1)  # the later bind saw the earlier one bound
    assert registry.by_uid("ann") is again and registry._turns == {}


async def test_a_second_bind_of_one_session_while_the_first_is_under_way_is_refused() -> None:
    registry = SessionRegistry()
    gate = asyncio.Event()

    @registry.on_session_bind
    async def slow(s: Session) -> None:
        await gate.wait()

    ann = session(registry)
    binding = asyncio.ensure_future(ann.bind("ann"))
    await asyncio.sleep(0)
    with pytest.raises(SessionAlreadyBound):
        await ann.bind("ann")
    gate.set()
    await binding
    assert registry.by_uid("ann") is ann


async def test_a_session_waiting_for_its_turn_cannot_bind_another_uid_meanwhile() -> None:
    registry = SessionRegistry()
    gate = asyncio.Event()

    @registry.on_session_bind
    async def slow(s: Session) -> None:
        await gate.wait()

    holder, waiting = session(registry), session(registry)
    first = asyncio.ensure_future(holder.bind("ann"))
    second = asyncio.ensure_future(waiting.bind("ann"))  # waits for ann's turn, uid unset
    await asyncio.sleep(0)
    assert waiting.uid is None
    with pytest.raises(SessionAlreadyBound) as caught:
        await asyncio.wait_for(waiting.bind("bob"), 5)  # refused at once, never waits
    assert caught.value.msg == f"session {waiting.id} is already binding a uid"
    gate.set()
    await asyncio.gather(first, second)
    assert registry.by_uid("ann") is waiting and registry.by_uid("bob") is None


async def test_a_session_whose_bind_was_refused_may_bind_again() -> None:
    registry = SessionRegistry()

    @registry.on_session_bind
    def refuse_once(s: Session) -> None:
        if s.uid == "taken":
            raise PitayaError("PIT-409", "taken")

    ann = session(registry)
    with pytest.raises(PitayaError):
        await ann.bind("taken")
    await ann.bind("ann")
    assert registry.by_uid("ann") is ann


async def test_three_binds_of_one_uid_run_one_at_a_time() -> None:
    registry = SessionRegistry()
    gates = [asyncio.Event() for _ in range(4)]
    running: list[int] = []
    overlaps: list[tuple[int, ...]] = []

    @registry.on_session_bind
    async def slow(s: Session) -> None:
        running.append(s.id)
        overlaps.append(tuple(running))
        await gates[s.id - 1].wait()
        running.remove(s.id)

    a, b, c, d = (session(registry) for _ in range(4))
    binds = [asyncio.ensure_future(x.bind("ann")) for x in (a, b, c)]
    await asyncio.sleep(0)
    gates[0].set()  # a finishes; b takes the turn, c still waits
    for _ in range(5):
        await asyncio.sleep(0)
    binds.append(asyncio.ensure_future(d.bind("ann")))  # arrives while b runs
    for _ in range(5):
        await asyncio.sleep(0)
    for gate in gates:
        gate.set()
    await asyncio.gather(*binds)
    assert overlaps == [(1,), (2,), (3,), (4,)]  # never two at once
    assert registry._turns == {}


async def test_bind_failed_callbacks_run_with_the_uid_when_a_bind_does_not_complete() -> None:
    registry = SessionRegistry()
    gate = asyncio.Event()
    failed: list[tuple[int, str | None]] = []

    @registry.on_session_bind
    async def check(s: Session) -> None:
        if s.uid == "refused":
            raise PitayaError("PIT-403", "no")
        await gate.wait()

    @registry.on_session_bind_failed
    def undo(s: Session) -> None:
        failed.append((s.id, s.uid))

    refused, closed, cancelled, bound = (session(registry) for _ in range(4))
    with pytest.raises(PitayaError):
        await refused.bind("refused")
    closing = asyncio.ensure_future(closed.bind("closed"))
    cancelling = asyncio.ensure_future(cancelled.bind("cancelled"))
    binding = asyncio.ensure_future(bound.bind("bound"))
    await asyncio.sleep(0)
    await closed.disconnect()
    cancelling.cancel()
    gate.set()
    with pytest.raises(SessionClosed, match="session 2 closed while it was being bound"):
        await closing
    await binding
    with pytest.raises(asyncio.CancelledError):
        await cancelling
    assert sorted(failed) == [(1, "refused"), (2, "closed"), (3, "cancelled")]
    assert [s.uid for s in (refused, closed, cancelled, bound)] == [None, None, None, "bound"]


async def test_a_session_closed_while_a_bind_callback_awaits_stays_unbound() -> None:
    registry = SessionRegistry()
    gate = asyncio.Event()
    after: list[Session] = []

    @registry.on_session_bind
    async def slow(s: Session) -> None:
        await gate.wait()

    registry.on_after_session_bind(after.append)
    ann = session(registry)
    binding = asyncio.ensure_future(ann.bind("ann"))
    await asyncio.sleep(0)
    await ann.disconnect()
    gate.set()
    # The handler awaiting the bind learns it did not happen: it must not go on as if the
    # player were bound (join a room it would never leave).
    with pytest.raises(SessionClosed):
        await binding
    assert ann.uid is None and registry.by_uid("ann") is None
    assert after == []


async def test_a_session_closed_while_its_bind_waits_for_its_turn_is_not_bound() -> None:
    registry = SessionRegistry()
    gate = asyncio.Event()

    @registry.on_session_bind
    async def slow(s: Session) -> None:
        await gate.wait()

    first, second = session(registry), session(registry)
    first_bind = asyncio.ensure_future(first.bind("ann"))
    await asyncio.sleep(0)
    second_bind = asyncio.ensure_future(second.bind("ann"))  # waits for ann's turn
    await asyncio.sleep(0)
    await second.disconnect()
    gate.set()
    await first_bind
    with pytest.raises(SessionClosed, match="closed before it was bound"):
        await second_bind
    assert (first.uid, second.uid) == ("ann", None)


async def test_a_failing_bind_failed_callback_is_logged_and_the_uid_still_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = SessionRegistry()

    @registry.on_session_bind
    def refuse(s: Session) -> None:
        raise PitayaError("PIT-403", "no")

    @registry.on_session_bind_failed
    def broken(s: Session) -> None:
        raise RuntimeError("undo bug")

    ann = session(registry, 7)
    with pytest.raises(PitayaError):
        await ann.bind("ann")
    assert ann.uid is None
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "bind-failed callback failed for session 7"


async def test_a_failing_after_bind_callback_is_logged_and_the_bind_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = SessionRegistry()
    ran: list[str] = []

    @registry.on_after_session_bind
    def broken(s: Session) -> None:
        raise RuntimeError("after-bind bug")

    registry.on_after_session_bind(lambda s: ran.append("next"))
    ann = session(registry, 7)
    await ann.bind("ann")
    assert registry.by_uid("ann") is ann and ran == ["next"]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "after-bind callback failed for session 7"
    assert record.exc_info is not None and str(record.exc_info[1]) == "after-bind bug"


async def test_binding_a_uid_again_points_it_at_the_newer_session() -> None:
    registry = SessionRegistry()
    old, new = session(registry), session(registry)
    await old.bind("ann")
    await new.bind("ann")
    assert registry.by_uid("ann") is new
    await old.disconnect()  # the older session leaving does not unbind the newer one
    assert registry.by_uid("ann") is new
    await new.disconnect()
    assert registry.by_uid("ann") is None


async def test_once_the_newest_session_of_a_uid_closes_the_one_before_it_has_the_uid() -> None:
    """Without the unique session module a uid may be bound by several sessions: the newest
    is found by it. Once that one closed, an older one still open was found by nothing: no
    push or kick by uid reached it, for as long as it stayed."""
    registry = SessionRegistry()
    first, second, third = session(registry), session(registry), session(registry)
    for each in (first, second, third):
        await each.bind("ann")
    assert registry.by_uid("ann") is third
    await third.disconnect()
    assert registry.by_uid("ann") is second
    await first.disconnect()  # an older one leaving: the uid stays with the newer
    assert registry.by_uid("ann") is second
    await second.disconnect()
    assert registry.by_uid("ann") is None
    assert registry._shadowed == {}  # nothing kept of a uid no session holds


async def test_a_session_added_bound_shadows_the_uid_s_older_one_too() -> None:
    registry = SessionRegistry()
    older = session(registry)
    await older.bind("ann")
    newer = TestSession(registry.next_id(), uid="ann", registry=registry)  # added bound
    assert registry.by_uid("ann") is newer
    await newer.disconnect()
    assert registry.by_uid("ann") is older


# -- close -----------------------------------------------------------------------------------


async def test_closed_forgets_the_session_and_runs_closing_then_own_then_app_callbacks() -> None:
    registry = SessionRegistry()
    order: list[Any] = []
    gate = asyncio.Event()

    @registry.on_session_close
    async def app_wide(s: Session) -> None:
        order.append(("app", s.id))

    @registry.on_session_closing
    def closing(s: Session) -> None:
        order.append(("closing", s.closed, registry.get(s.id), registry.by_uid("ann")))

    ann = session(registry, 5)
    await ann.bind("ann")

    async def own(s: Session) -> None:
        order.append(("own", s.id))
        await gate.wait()

    ann.on_close(own)
    other = session(registry)
    closing_task = asyncio.ensure_future(registry.closed(ann))
    await asyncio.sleep(0)
    # Closing callbacks ran at once, before the first close callback awaited.
    assert order == [("closing", True, None, None), ("own", 5)]
    assert len(registry) == 1 and registry.get(other.id) is other
    gate.set()
    await closing_task
    assert order[-1] == ("app", 5)


async def test_failing_closing_and_close_callbacks_are_logged_and_the_rest_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = SessionRegistry()
    ran: list[str] = []

    def bad_closing(s: Session) -> None:
        raise RuntimeError("closing bug")

    async def bad_close(s: Session) -> None:
        raise RuntimeError("close bug")

    registry.on_session_closing(bad_closing)
    registry.on_session_closing(lambda s: ran.append("closing"))
    registry.on_session_close(bad_close)
    registry.on_session_close(lambda s: ran.append("close"))
    ann = session(registry, 9)
    ann.on_close(bad_close)
    ann.on_close(lambda s: ran.append("own"))
    await registry.closed(ann)
    assert ran == ["closing", "own", "close"]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert messages == [
        "closing callback failed for session 9",
        "close callback failed for session 9",
        "close callback failed for session 9",
    ]


async def test_closing_an_unknown_or_unbound_session_is_harmless() -> None:
    registry = SessionRegistry()
    stranger = TestSession(42)  # another registry's
    await registry.closed(stranger)
    assert stranger.closed and len(registry) == 0
    lone = session(registry)
    await registry.closed(lone)
    await registry.closed(lone)  # twice: nothing left to forget
    assert len(registry) == 0


# -- waiting for a close ---------------------------------------------------------------------


@pytest.mark.looptime
async def test_wait_closed_waits_for_the_close_callbacks_bounded() -> None:
    registry = SessionRegistry()
    release = asyncio.Event()
    done: list[int] = []

    async def slow(closed: Session) -> None:
        await release.wait()
        done.append(closed.id)

    registry.on_session_close(slow)
    a, b = session(registry), session(registry)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert not await registry.wait_closed(a, 3)  # not even closing: waited, in vain
    assert loop.time() - start == pytest.approx(3)
    closing = asyncio.ensure_future(registry.closed(a))
    waiting = asyncio.ensure_future(registry.wait_closed(a, 60))
    loop.call_later(2, release.set)
    assert await waiting and done == [a.id]  # once the callbacks ran, not before
    await closing
    start = loop.time()
    assert await registry.wait_closed(a, 60)  # closed already: at once
    assert loop.time() == start
    later = asyncio.ensure_future(registry.wait_closed(b, 60))  # before it starts closing
    await registry.closed(b)
    assert await later
