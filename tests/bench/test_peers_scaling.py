"""``bench_peers``'s scaling table: one process against several on one port, next to the most
the machine allowed them (the servers and the load generator share its cores)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench.bench_peers import scaling


def row(server: str, load: str, req_per_s: float, server_us: float, client_us: float) -> Any:
    return {
        "server": server,
        "load": load,
        "req_per_s": req_per_s,
        "cpu_us_per_req": server_us,
        "client_us_per_req": client_us,
    }


def test_the_bound_is_the_cores_over_what_a_request_costs_both_sides() -> None:
    table = [
        row("ours", "100x1", 60_000, 16.5, 6.5),
        row("ours-reuseport", "100x1", 84_000, 17.0, 6.0),
    ]
    [scaled] = scaling(table, cores=2)
    assert scaled["load"] == "100x1"
    assert scaled["ratio"] == pytest.approx(1.4)
    # 2 cores / 23 µs per request = 86,957 req/s, over one process's 60,000.
    assert scaled["bound"] == pytest.approx(2 / 23e-6 / 60_000)
    assert (scaled["server_cpu_us"], scaled["loadgen_cpu_us"]) == (17.0, 6.0)


def test_a_cheaper_load_generator_raises_the_bound_and_more_cores_too() -> None:
    def bound(client_us: float, cores: int) -> float:
        table = [
            row("ours", "10x10", 100_000, 7.5, 2.0),
            row("ours-reuseport", "10x10", 150_000, 8.0, client_us),
        ]
        return float(scaling(table, cores)[0]["bound"])

    assert bound(1.0, 2) > bound(3.0, 2)
    assert bound(3.0, 4) == pytest.approx(2 * bound(3.0, 2))


def test_loads_without_both_rows_are_left_out_in_the_order_measured() -> None:
    table = [
        row("ours", "1000x1", 48_000, 20.8, 8.0),
        row("asyncio", "1000x1", 70_000, 14.5, 8.0),
        row("ours", "10x10", 130_000, 7.4, 1.3),
        row("ours-reuseport", "10x10", 210_000, 7.9, 1.3),
        row("ours-reuseport", "100x1", 80_000, 17.5, 6.0),
        row("ours", "100x1", 59_000, 16.8, 6.5),
    ]
    assert [r["load"] for r in scaling(table, cores=2)] == ["10x10", "100x1"]
