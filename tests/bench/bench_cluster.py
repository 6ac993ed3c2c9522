"""Cluster forwarding: client -> connector -> NATS -> room -> back, next to raw nats-py.

    python -m tests.bench.bench_cluster [--seconds 2] [--concurrency 1x1,10x1,100x1,10x16]

Starts a real nats-server and etcd (Debian packages ``nats-server``, ``etcd-server``), a
``room`` backend and a ``connector`` frontend (each its own process, ``cluster_server``), and
drives ``room.echo.echo`` through the connector with ``loadgen`` (``clients x depth`` requests
in flight). The yardstick is the same number of concurrent closed loops of raw nats-py
``request`` against a nats-py responder (``nats_echo``): the NATS round trip our forwarding
contains. ``ratio = forwarded / raw``; issue 7's target is >= 0.7.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from tests.bench.harness import Child, Histogram, add_common_args, children, client_loop, run
from tests.bench.report import Panel, plot_bars, write_results
from tests.services import EtcdServer, NatsServer

TARGET_RATIO = 0.7


async def load(worker: Child, args: argparse.Namespace) -> dict[str, Any]:
    await worker.expect(timeout=60)
    worker.send("go")
    result = await worker.expect(timeout=args.warmup + args.seconds + 60)
    histogram = Histogram.merged([result["histogram"]])
    return {
        "req_per_s": result["count"] / result["elapsed"],
        "p50_ms": histogram.percentile(50),
        "p99_ms": histogram.percentile(99),
        "errors": result["errors"],
        "client_cpu": result["cpu"],
    }


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    nats_server, etcd_server = NatsServer(), EtcdServer()
    await asyncio.to_thread(nats_server.start)
    await asyncio.to_thread(etcd_server.start)
    rows: list[dict[str, Any]] = []
    try:
        common = ["--nats", nats_server.url, "--etcd", etcd_server.endpoint, "--loop", args.loop]
        async with children() as servers:
            profile = ["--profile", args.profile + ".room"] if args.profile else []
            room = await Child.start("cluster_server", "room", *common, *profile)
            servers.append(room)
            await room.expect(timeout=60)
            profile = ["--profile", args.profile + ".connector"] if args.profile else []
            connector = await Child.start("cluster_server", "connector", *common, *profile)
            servers.append(connector)
            ports = await connector.expect(timeout=60)
            responder = await Child.start("nats_echo", "responder", "--nats", nats_server.url)
            servers.append(responder)
            await responder.expect(timeout=30)
            timing = ["--seconds", args.seconds, "--warmup", args.warmup]
            for clients, depth in args.concurrency:
                shape = [
                    "--clients",
                    clients,
                    "--depth",
                    depth,
                    *timing,
                    "--loop",
                    client_loop(args),
                ]
                async with children() as workers:
                    worker = await Child.start(
                        "loadgen", "--port", ports["tcp"], "--route", "room.echo.echo", *shape
                    )
                    workers.append(worker)
                    ours = await load(worker, args)
                async with children() as workers:
                    worker = await Child.start(
                        "nats_echo", "requester", "--nats", nats_server.url, *shape
                    )
                    workers.append(worker)
                    raw = await load(worker, args)
                row = {
                    "clients": clients,
                    "depth": depth,
                    "forwarded_req_per_s": ours["req_per_s"],
                    "raw_nats_req_per_s": raw["req_per_s"],
                    "ratio": ours["req_per_s"] / raw["req_per_s"] if raw["req_per_s"] else 0.0,
                    "forwarded_p50_ms": ours["p50_ms"],
                    "forwarded_p99_ms": ours["p99_ms"],
                    "raw_p50_ms": raw["p50_ms"],
                    "raw_p99_ms": raw["p99_ms"],
                    "errors": ours["errors"] + raw["errors"],
                }
                rows.append(row)
                print(
                    f"{clients}x{depth}: forwarded {row['forwarded_req_per_s']:,.0f}/s, "
                    f"raw nats {row['raw_nats_req_per_s']:,.0f}/s, ratio {row['ratio']:.2f}",
                    flush=True,
                )
    finally:
        nats_server.close()
        etcd_server.close()
    return rows


def parse_concurrency(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        clients, _, depth = item.partition("x")
        shapes.append((int(clients), int(depth or 1)))
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, seconds=2.0, clients=True)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument(
        "--profile", default="", help="cProfile both servers into FILE.room and FILE.connector"
    )
    parser.add_argument(
        "--concurrency",
        type=parse_concurrency,
        default=parse_concurrency("1x1,10x1,100x1,10x16"),
        help="clients x depth per run, comma-separated",
    )
    args = parser.parse_args()
    rows = run(measure(args))
    best = max((r["ratio"] for r in rows), default=0.0)
    name = f"cluster-{args.loop}"
    write_results(name, {"best_ratio": best, "target_ratio": TARGET_RATIO}, rows)
    labels = [f"{r['clients']}x{r['depth']}" for r in rows]
    plot_bars(
        name,
        [
            Panel(
                "forwarded through a connector vs raw nats-py request/reply",
                labels,
                {
                    "forwarded": [r["forwarded_req_per_s"] for r in rows],
                    "raw nats-py": [r["raw_nats_req_per_s"] for r in rows],
                },
                "requests/s",
                notes=[f"{r['ratio']:.0%}" for r in rows],
            )
        ],
    )


if __name__ == "__main__":
    main()
