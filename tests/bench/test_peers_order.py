"""``bench_peers`` runs every server once per load and round, in an order that changes each
round: over ``n`` rounds (``2n`` for an odd ``n``) each server runs right after every other
equally often, so none always pays for what the same one before it leaves behind."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from tests.bench.bench_peers import SERVERS, round_order


def pairs(orders: list[list[str]]) -> Counter[tuple[str, str]]:
    """How often each server ran right after each other one, within a round."""
    return Counter((a, b) for order in orders for a, b in pairwise(order))


@pytest.mark.parametrize("count", [3, 4, 5, 6, 7])
def test_each_server_follows_every_other_equally_often(count: int) -> None:
    servers = list(SERVERS[:count])
    rounds = count if count % 2 == 0 else 2 * count
    orders = [round_order(servers, n) for n in range(rounds)]
    for order in orders:
        assert sorted(order) == sorted(servers)
    followed = pairs(orders)
    assert set(followed) == {(a, b) for a in servers for b in servers if a != b}
    assert len(set(followed.values())) == 1
    for position in range(count):
        at = Counter(order[position] for order in orders)
        assert set(at) == set(servers) and len(set(at.values())) == 1


def test_the_first_round_keeps_the_given_order() -> None:
    servers = ["ours", "asyncio", "go", "pinus", "ours-uvloop"]
    assert round_order(servers, 0) == servers


def test_a_fixed_order_would_not_do() -> None:
    """What the design is for: a plain rotation keeps each server's predecessor."""
    servers = list(SERVERS[:6])
    rotations = [servers[n:] + servers[:n] for n in range(6)]
    assert len(pairs(rotations)) == 6  # one predecessor each, round after round
    assert len(pairs([round_order(servers, n) for n in range(6)])) == 30


def test_one_or_two_servers_and_none() -> None:
    assert round_order(["ours"], 3) == ["ours"]
    assert round_order(["ours", "go"], 1) == ["go", "ours"]
    assert round_order([], 2) == []
