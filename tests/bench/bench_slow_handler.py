"""Handlers that await (a database call, an RPC): does one session's wait hold the others?

Run: ``python -m tests.bench.bench_slow_handler [--seconds 3] [--clients 1000]
[--batches 8,50] [--loadgen python|go]``

Two measurements against ``app_server`` (the echo sample plus the ``slow`` service):

* **Batch**: N clients each send one request to a handler that awaits 0.5 s, all at once;
  the time until the last answer. Concurrent across sessions, it is about 0.5 s whatever N
  (Pitaya, 25 dispatchers: ~0.5 s for 8, ~1 s for 50); one handler at a time, N x 0.5 s.
* **Throughput**: ``--clients`` clients in a closed loop (one request at a time each) against
  a handler awaiting 10 ms, and against the same async handler without the await. Target:
  the awaiting one reaches at least 80% of the other.

The throughput load comes from ``loadgen`` (``--loadgen python``, the default) or from the
cheaper Go ``goload`` (``--loadgen go``, see ``loadgens.py``).

Writes ``results/slow-handler.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from tests.bench.bench_reqrep import cpu_seconds
from tests.bench.harness import Child, Histogram, add_common_args, children, client_loop, run
from tests.bench.loadgens import add_loadgen_arg, prepare_loadgen, start_loadgen
from tests.bench.report import print_table, write_results
from transport.client import Client, RequestError, RequestTimeout

TARGET_RATIO = 0.8
CLIENT_TIMEOUT = 5.0
"""The Python client's default request timeout: an answer later than this is PIT-504."""


async def batch(port: int, clients: int) -> dict[str, Any]:
    """``clients`` clients, one 0.5 s request each, sent at once."""
    connected = [
        await Client.connect("127.0.0.1", port, request_timeout=CLIENT_TIMEOUT)
        for _ in range(clients)
    ]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(c.request("slow.wait500ms", {}) for c in connected), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    for client in connected:
        await client.close()
    failed = [a for a in answers if isinstance(a, RequestError | RequestTimeout)]
    return {"clients": clients, "batch_s": elapsed, "failed": len(failed)}


async def throughput(
    server: dict[str, Any], route: str, args: argparse.Namespace
) -> dict[str, Any]:
    async with children() as workers:
        worker = await start_loadgen(
            args.loadgen,
            *("--port", server["tcp"], "--clients", args.clients, "--depth", 1),
            *("--route", route, "--seconds", args.seconds, "--warmup", args.warmup),
            loop=client_loop(args),
        )
        workers.append(worker)
        await worker.expect(timeout=120)
        worker.send("go")
        await asyncio.sleep(args.warmup)
        cpu_start = cpu_seconds(server["pid"])
        await asyncio.sleep(args.seconds)
        server_cpu = (cpu_seconds(server["pid"]) - cpu_start) / args.seconds
        result = await worker.expect(timeout=args.warmup + args.seconds + 120)
    histogram = Histogram.merged([result["histogram"]])
    rate = result["count"] / result["elapsed"]
    return {
        "route": route,
        "clients": args.clients,
        "req_per_s": rate,
        "p50_ms": histogram.percentile(50),
        "p99_ms": histogram.percentile(99),
        "errors": result["errors"],
        "server_cpu": server_cpu,
        "cpu_us_per_req": server_cpu / rate * 1e6 if rate else float("nan"),
        "client_cpu": result["cpu"],
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    async with children() as servers:
        child = await Child.start("app_server", "--port", 0, "--loop", args.loop)
        servers.append(child)
        server = await child.expect(timeout=30)
        batches = [await batch(server["tcp"], n) for n in args.batches]
        for row in batches:
            print(
                f"  batch: {row['clients']} clients x one 0.5 s request: "
                f"{row['batch_s']:.2f} s, {row['failed']} failed",
                flush=True,
            )
        rows = []
        for route in ("slow.nowait", "slow.wait10ms"):
            rows.append(await throughput(server, route, args))
            row = rows[-1]
            print(
                f"  {route:>14} {args.clients} clients: {row['req_per_s']:,.0f} req/s "
                f"p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms "
                f"cpu server {row['server_cpu']:.0%} ({row['cpu_us_per_req']:.1f} us/req) "
                f"clients {row['client_cpu']:.0%}",
                flush=True,
            )
    return {"batches": batches, "throughput": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser, seconds=3.0, clients=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--batches", default="8,50")
    add_loadgen_arg(parser)
    args = parser.parse_args()
    prepare_loadgen(args.loadgen)
    args.batches = [int(n) for n in args.batches.split(",")]
    results = run(measure(args))
    write_results("slow-handler", {"loop": args.loop, **results}, rows=results["throughput"])
    print_table(results["batches"])
    print_table(results["throughput"])
    nowait, wait = (r["req_per_s"] for r in results["throughput"])
    nowait_cpu, wait_cpu = (r["cpu_us_per_req"] for r in results["throughput"])
    ratio = wait / nowait
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"target: 10 ms await at {ratio:.0%} of no await (>= {TARGET_RATIO:.0%}) {met}")
    cpu_ratio = nowait_cpu / wait_cpu
    print(
        f"server CPU per request: {nowait_cpu:.1f} us without the await, {wait_cpu:.1f} us "
        f"with it ({cpu_ratio:.0%}: the ratio the server alone allows; below 100% server CPU, "
        "the throughput ratio says more about the machine than the server)"
    )


if __name__ == "__main__":
    main()
