"""Actor kernel micro-benchmarks: tell throughput (one hop) and ask round trip, one process.

Run: python -m tests.bench.bench_kernel [--messages N] [--loop asyncio|uvloop]
Prints a table and writes tests/bench/results/kernel[-uvloop].json and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from actors.actor import Actor
from actors.system import ActorSystem
from tests.bench.harness import add_common_args, run
from tests.bench.report import Panel, plot_bars, write_results


@dataclass(frozen=True, slots=True)
class Ping:
    n: int


@dataclass(frozen=True, slots=True)
class Done:
    pass


class Sink(Actor):
    def __init__(self, total: int, finished: asyncio.Future[float]) -> None:
        self.total = total
        self.finished = finished
        self.count = 0

    def on_ping(self, msg: Ping) -> None:
        self.count += 1
        if self.count == self.total:
            self.finished.set_result(time.perf_counter())


class Echo(Actor):
    def on_ping(self, msg: Ping) -> int:
        return msg.n


class Relay(Actor):
    """Forwards every Ping to the next actor: measures actor -> actor hops."""

    def __init__(self, target: object) -> None:
        self.target = target

    def on_ping(self, msg: Ping) -> None:
        self.target.tell(msg)  # type: ignore[attr-defined]


async def measure(messages: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    results: dict[str, float] = {}
    async with ActorSystem() as system:
        finished: asyncio.Future[float] = loop.create_future()
        sink = system.spawn(Sink, messages, finished)
        start = time.perf_counter()
        for i in range(messages):
            sink.tell(Ping(i))
        end = await finished
        results["tell_from_outside_msgs_per_s"] = messages / (end - start)
        results["tell_from_outside_us_per_msg"] = (end - start) / messages * 1e6

        hops = 10
        finished = loop.create_future()
        chain = system.spawn(Sink, messages // hops, finished)
        for _ in range(hops - 1):
            chain = system.spawn(Relay, chain)
        start = time.perf_counter()
        for i in range(messages // hops):
            chain.tell(Ping(i))
        end = await finished
        total_hops = (messages // hops) * hops
        results["actor_to_actor_hops_per_s"] = total_hops / (end - start)
        results["actor_to_actor_us_per_hop"] = (end - start) / total_hops * 1e6

        echo = system.spawn(Echo)
        n = messages // 10
        start = time.perf_counter()
        for i in range(n):
            await echo.ask(Ping(i))
        elapsed = time.perf_counter() - start
        results["ask_round_trips_per_s"] = n / elapsed
        results["ask_round_trip_us"] = elapsed / n * 1e6

        start = time.perf_counter()
        refs = [system.spawn(Echo) for _ in range(10_000)]
        await refs[-1].ask(Ping(0))
        results["spawn_us"] = (time.perf_counter() - start) / len(refs) * 1e6
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    results: dict[str, float | str] = {"loop": args.loop}
    results.update(run(measure(args.messages), args.loop))
    name = "kernel" if args.loop == "asyncio" else f"kernel-{args.loop}"
    write_results(name, results)
    costs = ["tell_from_outside_us_per_msg", "actor_to_actor_us_per_hop", "ask_round_trip_us"]
    plot_bars(
        name,
        [
            Panel(
                "cost per operation (target: a tell under 2 us)",
                ["tell (outside)", "actor->actor hop", "ask round trip", "spawn"],
                {"us": [float(results[k]) for k in [*costs, "spawn_us"]]},
                "microseconds",
                target=2.0,
            )
        ],
        f"actor kernel, {args.loop} loop",
    )


if __name__ == "__main__":
    main()
