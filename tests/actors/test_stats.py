"""The refusal counters (``actors.stats``): one ``AppStats`` per app, handed to the pieces
that count. Where each counter is counted is tested with its counter's owner (the gateway's
refusals in test_gateway.py, the rate limiter's in test_ratelimit.py)."""

from __future__ import annotations

import dataclasses

import pytest

from actors.stats import AppStats


def test_the_counters_start_at_zero() -> None:
    stats = AppStats()
    assert dataclasses.asdict(stats) == {
        "refused_connections": 0,
        "dropped_notifies": 0,
        "rate_limited": 0,
        "mailbox_overflows": 0,
    }


def test_counters_are_per_instance_and_count_up() -> None:
    one, other = AppStats(), AppStats()
    one.refused_connections += 2
    one.rate_limited += 1
    assert (one.refused_connections, one.rate_limited) == (2, 1)
    assert other == AppStats()


def test_a_misspelt_counter_fails_loudly() -> None:
    stats = AppStats()
    with pytest.raises(AttributeError):
        stats.refused_connection = 1  # type: ignore[attr-defined]
