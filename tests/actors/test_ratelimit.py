"""The token bucket and the rate-limit options, on their own (no app, no clock).

The end-to-end behaviour (dropping, PIT-429, metrics) is in tests/reliability/test_limits.py.
"""

from __future__ import annotations

import pytest

from actors.config import Config
from actors.ratelimit import TokenBucket, check_config, new_bucket

BUCKET_RULE = "a token bucket needs capacity >= 1 and interval > 0"
CONFIG_RULE = "rate limiting needs rate_limit_packets >= 1 and rate_limit_interval > 0"


@pytest.mark.parametrize(("capacity", "interval"), [(0, 1.0), (1, 0.0), (5, -1.0), (-1, 2.0)])
def test_bucket_refuses_a_bad_capacity_or_interval(capacity: int, interval: float) -> None:
    with pytest.raises(ValueError) as info:
        TokenBucket(capacity, interval, now=0.0)
    assert str(info.value) == BUCKET_RULE


def test_smallest_bucket_is_one_token_per_interval() -> None:
    bucket = TokenBucket(1, 0.5, now=0.0)
    assert [bucket.take(0.0), bucket.take(0.0)] == [True, False]
    assert not bucket.take(0.49)
    assert bucket.take(0.99)  # 0.98 + 0.98, capped at one token
    assert not bucket.take(0.99)


def test_refill_rate_is_capacity_per_interval() -> None:
    # 4 tokens per 2 s is 2 per second: after 0.5 s exactly one token is back.
    bucket = TokenBucket(4, 2.0, now=10.0)
    assert [bucket.take(10.0) for _ in range(5)] == [True] * 4 + [False]
    assert not bucket.take(10.4)  # 0.8 of a token
    assert bucket.take(10.5)  # 1.0
    assert not bucket.take(10.5)


def test_an_idle_bucket_holds_no_more_than_its_capacity() -> None:
    bucket = TokenBucket(2, 1.0, now=0.0)
    # Long idle: capped at 2, not 2 + 100 * 2.
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


def test_new_bucket_is_off_unless_enabled() -> None:
    assert new_bucket(Config()) is None
    assert new_bucket(Config(rate_limit_packets=0, rate_limit_interval=0.0)) is None


def test_new_bucket_is_full_from_time_zero() -> None:
    # The session actor's clock (loop.time()) is >= 0, so a new connection gets its whole
    # burst at once, whatever the clock reads.
    bucket = new_bucket(Config(rate_limit_enabled=True, rate_limit_packets=3))
    assert bucket is not None
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(1.0 / 3)  # refilled at 3 per second


def test_check_config_accepts_the_smallest_limit() -> None:
    check_config(Config(rate_limit_enabled=True, rate_limit_packets=1, rate_limit_interval=0.001))
    # Disabled: the numbers are not looked at.
    check_config(Config(rate_limit_packets=0, rate_limit_interval=0.0))


@pytest.mark.parametrize(("packets", "interval"), [(0, 1.0), (1, 0.0), (3, -1.0), (-2, 5.0)])
def test_check_config_refuses_a_bad_limit(packets: int, interval: float) -> None:
    config = Config(
        rate_limit_enabled=True, rate_limit_packets=packets, rate_limit_interval=interval
    )
    with pytest.raises(ValueError) as info:
        check_config(config)
    assert str(info.value) == CONFIG_RULE


@pytest.mark.parametrize("action", ["drop", "error"])
def test_check_config_accepts_both_actions(action: str) -> None:
    check_config(Config(rate_limit_action=action))


def test_check_config_names_a_bad_action() -> None:
    with pytest.raises(ValueError) as info:
        check_config(Config(rate_limit_action="block"))
    assert str(info.value) == "rate_limit_action must be one of ('drop', 'error'), not 'block'"
