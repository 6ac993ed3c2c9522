"""Cluster forwarding: client -> connector -> RPC -> room -> back, over NATS and gRPC, next to
raw nats-py.

    python -m tests.bench.bench_cluster [--seconds 2] [--concurrency 1x1,10x1,100x1,10x16]
                                        [--transports nats,grpc]

Starts a real nats-server and etcd (Debian packages ``nats-server``, ``etcd-server``) and, per
RPC transport, a ``room`` backend and a ``connector`` frontend (each its own process,
``cluster_server``; the gRPC pair uses the room type ``room_grpc``, so both pairs share etcd
without routing to each other). For each shape it drives ``<room type>.echo.echo`` through
each connector with ``loadgen`` (``clients x depth`` requests in flight), one transport after
the other, then the yardstick: the same number of concurrent closed loops of raw nats-py
``request`` against a nats-py responder (``nats_echo``), the NATS round trip our forwarding
contains. ``ratio = forwarded over NATS / raw``; issue 7's target is >= 0.7. ``grpc_ratio``
compares forwarding over gRPC with the same raw NATS loop.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from tests.bench.cluster_server import room_type
from tests.bench.harness import Child, Histogram, add_common_args, children, client_loop, run
from tests.bench.report import Panel, plot_bars, write_results
from tests.services import EtcdServer, NatsServer

TARGET_RATIO = 0.7
TRANSPORTS = ("nats", "grpc")


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


async def start_pair(
    servers: list[Child], rpc: str, common: list[Any], args: argparse.Namespace
) -> int:
    """A room and a connector over ``rpc``; returns the connector's TCP port."""
    for role in ("room", "connector"):
        profile = ["--profile", f"{args.profile}.{rpc}.{role}"] if args.profile else []
        child = await Child.start("cluster_server", role, "--rpc", rpc, *common, *profile)
        servers.append(child)
        ready = await child.expect(timeout=60)
    return int(ready["tcp"])


def column(rpc: str, what: str) -> str:
    """Row keys: NATS keeps the names of earlier results (``forwarded_req_per_s``)."""
    return f"forwarded_{what}" if rpc == "nats" else f"{rpc}_forwarded_{what}"


def ratio_key(rpc: str) -> str:
    return "ratio" if rpc == "nats" else f"{rpc}_ratio"


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    nats_server, etcd_server = NatsServer(), EtcdServer()
    await asyncio.to_thread(nats_server.start)
    await asyncio.to_thread(etcd_server.start)
    rows: list[dict[str, Any]] = []
    try:
        common = ["--nats", nats_server.url, "--etcd", etcd_server.endpoint, "--loop", args.loop]
        async with children() as servers:
            ports = {rpc: await start_pair(servers, rpc, common, args) for rpc in args.transports}
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
                row: dict[str, Any] = {"clients": clients, "depth": depth}
                forwarded: dict[str, dict[str, Any]] = {}
                for rpc in args.transports:
                    route = f"{room_type(rpc)}.echo.echo"
                    async with children() as workers:
                        worker = await Child.start(
                            "loadgen", "--port", ports[rpc], "--route", route, *shape
                        )
                        workers.append(worker)
                        forwarded[rpc] = await load(worker, args)
                async with children() as workers:
                    worker = await Child.start(
                        "nats_echo", "requester", "--nats", nats_server.url, *shape
                    )
                    workers.append(worker)
                    raw = await load(worker, args)
                row["raw_nats_req_per_s"] = raw["req_per_s"]
                errors = raw["errors"]
                for rpc, ours in forwarded.items():
                    row[column(rpc, "req_per_s")] = ours["req_per_s"]
                    ratio = ours["req_per_s"] / raw["req_per_s"] if raw["req_per_s"] else 0.0
                    row[ratio_key(rpc)] = ratio
                    row[column(rpc, "p50_ms")] = ours["p50_ms"]
                    row[column(rpc, "p99_ms")] = ours["p99_ms"]
                    errors += ours["errors"]
                row["raw_p50_ms"] = raw["p50_ms"]
                row["raw_p99_ms"] = raw["p99_ms"]
                row["errors"] = errors
                rows.append(row)
                measured = ", ".join(
                    f"{rpc} {row[column(rpc, 'req_per_s')]:,.0f}/s" for rpc in forwarded
                )
                print(
                    f"{clients}x{depth}: forwarded {measured}; "
                    f"raw nats {row['raw_nats_req_per_s']:,.0f}/s",
                    flush=True,
                )
    finally:
        nats_server.close()
        etcd_server.close()
    return rows


def parse_transports(text: str) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = set(chosen) - set(TRANSPORTS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TRANSPORTS)}")
    return chosen


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
        "--profile",
        default="",
        help="cProfile the servers into FILE.<transport>.room and FILE.<transport>.connector",
    )
    parser.add_argument(
        "--transports",
        type=parse_transports,
        default=parse_transports("nats,grpc"),
        help="RPC transports to forward over, comma-separated (nats, grpc)",
    )
    parser.add_argument(
        "--concurrency",
        type=parse_concurrency,
        default=parse_concurrency("1x1,10x1,100x1,10x16"),
        help="clients x depth per run, comma-separated",
    )
    args = parser.parse_args()
    rows = run(measure(args))
    results: dict[str, Any] = {"target_ratio": TARGET_RATIO}
    for rpc in args.transports:
        results[f"best_{ratio_key(rpc)}"] = max((r[ratio_key(rpc)] for r in rows), default=0.0)
    name = f"cluster-{args.loop}"
    write_results(name, results, rows)
    labels = [f"{r['clients']}x{r['depth']}" for r in rows]
    series = {
        f"forwarded over {rpc}": [r[column(rpc, "req_per_s")] for r in rows]
        for rpc in args.transports
    }
    series["raw nats-py"] = [r["raw_nats_req_per_s"] for r in rows]
    notes = [" / ".join(f"{r[ratio_key(rpc)]:.0%}" for rpc in args.transports) for r in rows]
    plot_bars(
        name,
        [
            Panel(
                "forwarded through a connector (" + " / ".join(args.transports) + ") vs raw "
                "nats-py request/reply",
                labels,
                series,
                "requests/s",
                notes=notes,
            )
        ],
    )


if __name__ == "__main__":
    main()
