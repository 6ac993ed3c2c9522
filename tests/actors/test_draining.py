"""Session draining (``actors.draining``): wait for the connections to reach zero, a second
signal, or the drain timeout, whichever comes first, logging progress.

Run on looptime's virtual clock: the drain timeout and the progress lines are exact, and a
test of a 60 s drain takes milliseconds. How a signal starts the drain is the lifecycle's.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from actors.draining import PROGRESS_EVERY, drain_sessions
from actors.tally import Tally

# A broken drain loop spins without advancing the virtual clock: fail it in seconds.
pytestmark = [pytest.mark.looptime, pytest.mark.timeout(10)]


def connected(n: int) -> Tally:
    tally = Tally()
    for _ in range(n):
        tally.up()
    return tally


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "actors.draining"]


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="actors.draining")


async def test_nobody_connected_ends_the_drain_at_once(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await drain_sessions(Tally(), 30.0, "s1", asyncio.Event())
    assert loop.time() == start
    assert lines(caplog) == [
        (
            logging.INFO,
            "[s1] draining: 0 session(s) connected, waiting up to 30.0s (signal again to stop now)",
        ),
        (logging.INFO, "[s1] drained: every session left"),
    ]


async def test_the_drain_ends_when_the_last_session_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    connections = connected(2)
    start = loop.time()
    loop.call_later(3, connections.down)
    loop.call_later(12, connections.down)
    await drain_sessions(connections, 60.0, "s1", asyncio.Event())
    assert loop.time() - start == pytest.approx(12)
    assert lines(caplog)[1:] == [
        (logging.INFO, "[s1] draining: 1 session(s) still connected"),  # at 5 s
        (logging.INFO, "[s1] draining: 1 session(s) still connected"),  # at 10 s
        (logging.INFO, "[s1] drained: every session left"),
    ]


async def test_a_second_signal_ends_the_drain(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    skip = asyncio.Event()
    start = loop.time()
    loop.call_later(7, skip.set)
    await drain_sessions(connected(3), 60.0, "s1", skip)
    assert loop.time() - start == pytest.approx(7)
    assert lines(caplog)[-1] == (
        logging.INFO,
        "[s1] drain skipped by a second signal: 3 session(s) connected",
    )


async def test_the_drain_timeout_ends_it_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await drain_sessions(connected(4), 12.0, "s1", asyncio.Event())
    assert loop.time() - start == pytest.approx(12)
    assert lines(caplog) == [
        (
            logging.INFO,
            "[s1] draining: 4 session(s) connected, waiting up to 12.0s (signal again to stop now)",
        ),
        (logging.INFO, "[s1] draining: 4 session(s) still connected"),  # 5 s
        (logging.INFO, "[s1] draining: 4 session(s) still connected"),  # 10 s
        (logging.INFO, "[s1] draining: 4 session(s) still connected"),  # 12 s: the last wait
        (logging.WARNING, "[s1] drain timeout: 4 session(s) still connected"),
    ]
    assert PROGRESS_EVERY == 5.0


async def test_the_last_fraction_of_a_second_is_waited_too() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await drain_sessions(connected(1), 5.5, "s1", asyncio.Event())
    assert loop.time() - start == pytest.approx(5.5)


async def test_a_zero_timeout_waits_for_nothing(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await drain_sessions(connected(1), 0.0, "s1", asyncio.Event())
    assert loop.time() == start
    assert lines(caplog)[-1] == (
        logging.WARNING,
        "[s1] drain timeout: 1 session(s) still connected",
    )


async def test_the_drain_leaves_no_waiter_behind() -> None:
    connections = connected(1)
    skip = asyncio.Event()
    before = asyncio.all_tasks()
    asyncio.get_running_loop().call_later(1, skip.set)
    await drain_sessions(connections, 10.0, "s1", skip)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before
