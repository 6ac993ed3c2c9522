"""Request/response throughput and latency: our server against the asyncio echo baseline.

Run: ``python -m tests.bench.bench_reqrep [--seconds 2] [--loop asyncio|uvloop]
[--client-procs 1] [--transports tcp,ws] [--clients 1,10,100] [--depths 1,16] [--profile]
[--loadgen python|go]``

For every transport x clients x depth, each server (``app_server``: the echo sample on our
framework; ``baseline_server``: a bare asyncio protocol with the same codecs) gets the same
closed-loop load from ``loadgen`` processes (or, with ``--loadgen go``, from the Go
``goload``, which costs less CPU per request and speaks TCP only: ``--transports tcp``):
``depth`` 1 is one request at a time per client, ``depth`` 16 is pipelined (16 in flight per
client). The servers run in their own processes, started once and reused; the two are
measured alternately so drift hits both alike.
Reported: requests/s, p50/p99 latency, ``ratio = ours / baseline`` per configuration, and the
CPU share (of one core) used by the server and by the load processes during the window — a
server near 100% is the bottleneck; a client near 100% means the load generator limited it.

``--profile`` runs cProfile in our server for the measured configurations and prints the
functions with the most own time (cProfile slows it down; read shares, not totals).
Writes ``results/reqrep-<loop>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import psutil

from tests.bench.harness import (
    Child,
    Histogram,
    add_common_args,
    children,
    client_loop,
    profile_report,
    run,
    split,
)
from tests.bench.loadgens import add_loadgen_arg, prepare_loadgen, start_loadgen
from tests.bench.report import Panel, plot_bars, print_table, write_results

SERVERS = {"ours": "app_server", "baseline": "baseline_server"}
TARGET_RATIO = 0.5
"""Issue 7: TCP with 100 clients must reach at least half the baseline."""


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def run_config(
    server: dict[str, Any], transport: str, clients: int, depth: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement: load processes against one server; returns the table row."""
    port = server[transport]
    async with children() as workers:
        for share in split(clients, args.client_procs):
            worker_args = [
                *("--port", port, "--clients", share, "--depth", depth),
                *("--seconds", args.seconds, "--warmup", args.warmup),
            ]
            if transport == "ws":
                worker_args.append("--ws")
            workers.append(await start_loadgen(args.loadgen, *worker_args, loop=client_loop(args)))
        for worker in workers:
            await worker.expect(timeout=60)
        for worker in workers:
            worker.send("go")
        await asyncio.sleep(args.warmup)
        cpu_start = cpu_seconds(server["pid"])
        await asyncio.sleep(args.seconds)
        server_cpu = (cpu_seconds(server["pid"]) - cpu_start) / args.seconds
        results = [await w.expect(timeout=args.warmup + args.seconds + 60) for w in workers]
    histogram = Histogram.merged(r["histogram"] for r in results)
    return {
        "transport": transport,
        "clients": clients,
        "depth": depth,
        "req_per_s": sum(r["count"] / r["elapsed"] for r in results),
        "p50_ms": histogram.percentile(50),
        "p99_ms": histogram.percentile(99),
        "errors": sum(r["errors"] for r in results),
        "server_cpu": server_cpu,
        "client_cpu": sum(r["cpu"] for r in results),
    }


async def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    profile = Path(tempfile.mkstemp(suffix=".prof")[1]) if args.profile else None
    rows: list[dict[str, Any]] = []
    async with children() as servers:
        ports: dict[str, dict[str, Any]] = {}
        for name in args.servers:
            extra = ["--profile", profile] if name == "ours" and profile else []
            child = await Child.start(SERVERS[name], "--port", 0, "--loop", args.loop, *extra)
            servers.append(child)
            ports[name] = await child.expect(timeout=30)
        for transport in args.transports:
            for clients in args.clients:
                for depth in args.depths:
                    for name in args.servers:
                        row = await run_config(ports[name], transport, clients, depth, args)
                        rows.append({"server": name, **row})
                        print(_progress(rows[-1]), flush=True)
    report = ""
    if profile is not None:
        report = profile_report(profile)
        profile.unlink(missing_ok=True)
    return rows, report


def _progress(row: dict[str, Any]) -> str:
    return (
        f"  {row['server']:>8} {row['transport']:>3} clients={row['clients']:<3} "
        f"depth={row['depth']:<2} {row['req_per_s']:>9,.0f} req/s  p50 {row['p50_ms']:.2f} ms"
        f"  p99 {row['p99_ms']:.2f} ms  cpu server {row['server_cpu']:.0%} "
        f"clients {row['client_cpu']:.0%}"
    )


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours and baseline side by side per configuration, with the ratio."""
    keyed = {(r["server"], r["transport"], r["clients"], r["depth"]): r for r in rows}
    table = []
    for (server, transport, clients, depth), ours in keyed.items():
        if server != "ours":
            continue
        base = keyed.get(("baseline", transport, clients, depth))
        table.append(
            {
                "transport": transport,
                "clients": clients,
                "depth": depth,
                "ours_req_s": ours["req_per_s"],
                "base_req_s": base["req_per_s"] if base else float("nan"),
                "ratio": ours["req_per_s"] / base["req_per_s"] if base else float("nan"),
                "ours_p50_ms": ours["p50_ms"],
                "ours_p99_ms": ours["p99_ms"],
                "base_p50_ms": base["p50_ms"] if base else float("nan"),
                "base_p99_ms": base["p99_ms"] if base else float("nan"),
                "errors": ours["errors"],
            }
        )
    return table


def plot(name: str, table: list[dict[str, Any]], loop: str) -> None:
    panels = []
    for transport in sorted({r["transport"] for r in table}, key=["tcp", "ws"].index):
        part = [r for r in table if r["transport"] == transport]
        labels = [f"{r['clients']} cl, depth {r['depth']}" for r in part]
        panels.append(
            Panel(
                f"{transport.upper()} throughput (numbers: ours / baseline)",
                labels,
                {
                    "ours": [r["ours_req_s"] for r in part],
                    "asyncio baseline": [r["base_req_s"] for r in part],
                },
                "requests/s",
                notes=[f"{r['ratio']:.0%}" for r in part],
            )
        )
        panels.append(
            Panel(
                f"{transport.upper()} latency",
                labels,
                {
                    "ours p50": [r["ours_p50_ms"] for r in part],
                    "ours p99": [r["ours_p99_ms"] for r in part],
                    "baseline p50": [r["base_p50_ms"] for r in part],
                    "baseline p99": [r["base_p99_ms"] for r in part],
                },
                "ms (log)",
                log=True,
            )
        )
    plot_bars(name, panels, f"request/response, {loop} loop (2-core dev machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser, seconds=2.0, clients=True)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--client-procs", type=int, default=1, help="load processes (max)")
    parser.add_argument("--transports", default="tcp,ws")
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--depths", default="1,16", help="1 = one at a time, >1 = pipelined")
    parser.add_argument("--servers", default="ours,baseline")
    parser.add_argument("--profile", action="store_true", help="cProfile our server")
    parser.add_argument("--name", default="", help="results name (default reqrep-<loop>)")
    add_loadgen_arg(parser)
    args = parser.parse_args()
    args.transports = args.transports.split(",")
    if args.loadgen == "go" and "ws" in args.transports:
        parser.error("--loadgen go speaks TCP only: pass --transports tcp")
    prepare_loadgen(args.loadgen)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.depths = [int(d) for d in args.depths.split(",")]
    args.servers = args.servers.split(",")
    rows, profile = run(measure(args))
    table = summarize(rows)
    name = args.name or f"reqrep-{args.loop}"
    write_results(
        name,
        {
            "loop": args.loop,
            "seconds": args.seconds,
            "client_procs": args.client_procs,
            "client_loop": client_loop(args),
            "loadgen": args.loadgen,
            "per_server": rows,
        },
        rows=table or rows,
    )
    print("\nper server (cpu = share of one core during the window):")
    print_table(rows)
    if table:
        plot(name, table, args.loop)
        for row in table:
            if row["transport"] == "tcp" and row["clients"] == 100:
                met = "met" if row["ratio"] >= TARGET_RATIO else "NOT met"
                print(
                    f"target tcp/100 clients/depth {row['depth']}: ratio {row['ratio']:.0%} "
                    f"(>= {TARGET_RATIO:.0%}) {met}"
                )
    if profile:
        print("\ncProfile of our server, top functions by own time:\n" + profile)


if __name__ == "__main__":
    main()
