"""``Tally`` (``actors.tally``): a count whose ``zero`` event is set exactly when it is zero;
a graceful stop waits on it (requests in flight, open connections)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from actors.tally import Tally


async def test_a_new_tally_is_zero() -> None:
    tally = Tally()
    assert tally.count == 0 and tally.zero.is_set()
    await asyncio.wait_for(tally.zero.wait(), 1)  # nothing to wait for


async def test_up_clears_zero_and_the_last_down_sets_it() -> None:
    tally = Tally()
    tally.up()
    tally.up()
    assert tally.count == 2 and not tally.zero.is_set()
    waiter = asyncio.ensure_future(tally.zero.wait())
    tally.down()
    await asyncio.sleep(0)
    assert tally.count == 1 and not waiter.done()
    tally.down()
    await asyncio.wait_for(waiter, 1)
    assert tally.count == 0


async def test_a_down_too_many_stays_at_zero() -> None:
    tally = Tally()
    tally.down()
    assert tally.count == 0 and tally.zero.is_set()
    tally.up()
    assert tally.count == 1 and not tally.zero.is_set()  # one up is one in flight again


@given(st.lists(st.booleans(), max_size=50))
def test_zero_is_set_exactly_when_the_count_is_zero(steps: list[bool]) -> None:
    async def run() -> None:
        tally, model = Tally(), 0
        for up in steps:
            if up:
                tally.up()
                model += 1
            else:
                tally.down()
                model = max(model - 1, 0)
            assert tally.count == model
            assert tally.zero.is_set() == (model == 0)

    asyncio.run(run())


def test_a_tally_has_no_other_state() -> None:
    assert Tally.__slots__ == ("count", "zero")
