"""The decode budget per loop turn (``actors.turns``), on a real event loop, no sockets."""

from __future__ import annotations

import asyncio

import pytest

from actors.turns import BYTES_PER_TURN, MAX_PAUSE, WAKE_PER_TURN, DecodeTurns, turns_for


async def turns_pass(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_first_body_of_a_turn_always_fits_then_the_budget_applies() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    woken: list[str] = []
    assert turns.take(BYTES_PER_TURN * 4, lambda: woken.append("a"))  # alone: fits
    assert not turns.take(1, lambda: woken.append("b"))  # the turn is spent
    assert turns.waiting == 1 and woken == []
    await turns_pass(3)
    assert woken == ["b"] and turns.waiting == 0


async def test_small_bodies_share_a_turn_and_waiters_keep_their_order() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    woken: list[int] = []
    half = BYTES_PER_TURN // 2
    assert turns.take(half, lambda: None)
    assert turns.take(half, lambda: None)  # exactly the budget
    for i in range(WAKE_PER_TURN + 2):
        assert not turns.take(10, lambda i=i: woken.append(i))
    # Later arrivals wait behind the waiting ones, even with budget to spare.
    await turns_pass(1)
    assert woken == list(range(WAKE_PER_TURN))  # at most WAKE_PER_TURN grants per turn
    assert not turns.take(10, lambda: woken.append(99))
    await turns_pass(3)
    assert woken == [*range(WAKE_PER_TURN + 2), 99]


async def test_the_turn_count_starts_at_zero_and_counts_each_turn() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    assert (turns.turn, turns.used, turns.waiting) == (0, 0, 0)
    assert turns.take(BYTES_PER_TURN, lambda: None)
    assert turns.turn == 0  # taken in the turn under way
    assert not turns.take(1, lambda: None)
    await turns_pass(1)
    assert turns.turn == 1  # the waiter's turn
    await turns_pass(1)
    assert turns.turn == 2  # the turn that closed the waiter's
    await turns_pass(3)
    assert turns.turn == 2  # nothing taken or waiting: no more turns


async def test_the_waiters_woken_in_one_turn_share_its_budget() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    woken: list[int] = []
    third = BYTES_PER_TURN * 2 // 5
    assert turns.take(BYTES_PER_TURN, lambda: None)
    for i in range(3):
        assert not turns.take(third, lambda i=i: woken.append(i))
    await turns_pass(1)
    assert woken == [0, 1] and turns.used == 2 * third  # a third would pass the budget
    await turns_pass(1)
    assert woken == [0, 1, 2] and turns.used == third


async def woken_after(turns: DecodeTurns) -> float:
    """Seconds until a waiter queued now is woken."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[float] = loop.create_future()
    start = loop.time()
    assert not turns.take(1, lambda: woken.set_result(loop.time()))
    return await asyncio.wait_for(woken, 5) - start


async def test_a_turn_that_decoded_is_followed_by_a_pause_as_long() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    assert turns.take(BYTES_PER_TURN, lambda: None)
    turns.spent(0.05)
    assert 0.045 <= await woken_after(turns) < 0.1
    await turns_pass(3)
    turns.spent(60.0)  # the pause is capped
    assert turns.take(BYTES_PER_TURN, lambda: None)
    assert await woken_after(turns) < MAX_PAUSE + 0.1


@pytest.mark.looptime
async def test_the_pause_is_the_whole_time_the_turn_spent_decoding() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    assert turns.take(BYTES_PER_TURN, lambda: None)
    turns.spent(0.02)
    turns.spent(0.03)
    assert await woken_after(turns) == pytest.approx(0.05)


@pytest.mark.looptime
async def test_nothing_fits_during_the_pause_and_a_take_does_not_end_it() -> None:
    loop = asyncio.get_running_loop()
    turns = DecodeTurns(loop)
    start = loop.time()
    assert turns.take(10, lambda: None)
    turns.spent(0.05)
    await turns_pass(1)  # the pause began, with nobody waiting
    woken: asyncio.Future[float] = loop.create_future()
    assert not turns.take(10, lambda: woken.set_result(loop.time()))  # small, but in the pause
    await turns_pass(3)
    assert not woken.done()
    assert await asyncio.wait_for(woken, 5) - start == pytest.approx(0.05)


async def test_charge_corrects_an_estimate_and_never_goes_below_zero() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    assert turns.take(BYTES_PER_TURN, lambda: None)
    turns.charge(-BYTES_PER_TURN + 100)  # the body inflated to 100 bytes
    assert turns.used == 100
    assert turns.take(1000, lambda: None)  # room again in the same turn
    turns.charge(-10 * BYTES_PER_TURN)
    assert turns.used == 0


async def test_each_loop_has_one_budget_which_runs_its_turns_on_that_loop() -> None:
    loop = asyncio.get_running_loop()
    turns = turns_for(loop)
    assert turns is turns_for(loop)
    other = asyncio.new_event_loop()
    try:
        assert turns_for(other) is not turns
    finally:
        other.close()
    woken: list[str] = []
    assert turns.take(BYTES_PER_TURN, lambda: None)
    assert not turns.take(1, lambda: woken.append("b"))
    await turns_pass(3)
    assert woken == ["b"]
