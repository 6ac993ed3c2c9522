"""The decode budget per loop turn (``actors.turns``), on a real event loop, no sockets."""

from __future__ import annotations

import asyncio

from actors.turns import BYTES_PER_TURN, MAX_PAUSE, WAKE_PER_TURN, DecodeTurns


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


async def test_charge_corrects_an_estimate_and_never_goes_below_zero() -> None:
    turns = DecodeTurns(asyncio.get_running_loop())
    assert turns.take(BYTES_PER_TURN, lambda: None)
    turns.charge(-BYTES_PER_TURN + 100)  # the body inflated to 100 bytes
    assert turns.used == 100
    assert turns.take(1000, lambda: None)  # room again in the same turn
    turns.charge(-10 * BYTES_PER_TURN)
    assert turns.used == 0
