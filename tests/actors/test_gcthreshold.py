"""actors/gcthreshold.py: the collector's young threshold while servers run (``gc_threshold``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from actors.app import App
from actors.config import ConfigError
from actors.gcthreshold import YOUNG_THRESHOLD, YoungThreshold


@pytest.fixture(autouse=True)
def python_default_thresholds() -> Iterator[None]:
    """Each test starts from Python's defaults and leaves the process as it found it."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_hold_raises_only_the_young_threshold_and_release_puts_it_back() -> None:
    holder = YoungThreshold()
    holder.hold(10_000)
    assert gc.get_threshold() == (10_000, 10, 10)
    holder.release()
    assert gc.get_threshold() == (700, 10, 10)


def test_hold_never_lowers_what_the_process_already_has() -> None:
    gc.set_threshold(50_000, 20, 30)
    holder = YoungThreshold()
    holder.hold(10_000)
    assert gc.get_threshold() == (50_000, 20, 30)
    holder.release()
    assert gc.get_threshold() == (50_000, 20, 30)


def test_the_last_of_several_holders_restores_whatever_order_they_stop_in() -> None:
    holder = YoungThreshold()
    holder.hold(10_000)
    holder.hold(20_000)  # a second server with a higher setting
    assert gc.get_threshold()[0] == 20_000
    holder.release()  # the first server stops: the second still runs, still raised
    assert gc.get_threshold()[0] == 20_000
    holder.release()
    assert gc.get_threshold() == (700, 10, 10)


def test_a_change_made_by_someone_else_while_held_is_left_alone() -> None:
    holder = YoungThreshold()
    holder.hold(10_000)
    gc.set_threshold(3_000, 5, 5)  # the application tunes the collector itself
    holder.release()
    assert gc.get_threshold() == (3_000, 5, 5)


def test_a_release_without_a_hold_changes_nothing() -> None:
    holder = YoungThreshold()
    holder.release()
    assert gc.get_threshold() == (700, 10, 10)
    holder.hold(10_000)
    holder.release()
    holder.release()
    assert gc.get_threshold() == (700, 10, 10)


async def test_a_running_server_holds_the_default_threshold_until_it_stops() -> None:
    app = App()
    async with app:
        assert gc.get_threshold() == (10_000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


async def test_the_option_sets_the_threshold_and_zero_leaves_the_collector_alone() -> None:
    async with App(gc_threshold=25_000):
        assert gc.get_threshold()[0] == 25_000
    async with App(gc_threshold=0):
        assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


async def test_two_servers_in_one_process_share_the_setting() -> None:
    first, second = App(), App()
    await first.start()
    await second.start()
    await first.stop()
    assert gc.get_threshold()[0] == 10_000  # the second server still runs
    await second.stop()
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("value", [-1, 2.5, "many"])
async def test_a_bad_value_is_a_config_error_and_nothing_is_held(value: object) -> None:
    app = App(gc_threshold=value)
    with pytest.raises(ConfigError, match="gc_threshold must be a whole number >= 0"):
        await app.start()
    assert gc.get_threshold() == (700, 10, 10)


def test_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.config import Config

    monkeypatch.setenv("PITAYA_GC_THRESHOLD", "0")
    assert Config.from_env().gc_threshold == 0


def test_the_process_has_one_holder() -> None:
    from actors import lifecycle

    assert lifecycle.YOUNG_THRESHOLD is YOUNG_THRESHOLD
