"""Cluster forwarding: client -> connector -> RPC -> room -> back, over NATS and gRPC, next to
raw nats-py.

    python -m tests.bench.bench_cluster [--seconds 2] [--concurrency 1x1,10x1,100x1,10x16]
                                        [--transports nats,grpc] [--repeat 3]

Starts a real nats-server and etcd (Debian packages ``nats-server``, ``etcd-server``) and, per
RPC transport, a ``room`` backend and a ``connector`` frontend (each its own process,
``cluster_server``; the gRPC pair uses the room type ``room_grpc``, so both pairs share etcd
without routing to each other). For each shape it drives ``<room type>.echo.echo`` through
each connector with ``loadgen`` (``clients x depth`` requests in flight), one transport after
the other, then the yardstick: the same number of concurrent closed loops of raw nats-py
``request`` against a nats-py responder (``nats_echo``), the NATS round trip our forwarding
contains, both ends on the servers' event loop (``--loop``: they are the ends our connector
and room replace). ``ratio = forwarded over NATS / raw``; issue 7's target is >= 0.7.
``grpc_ratio`` compares forwarding over gRPC with the same raw NATS loop; with gRPC in
``--transports``, gRPC is also measured the same way against its own yardstick, raw grpcio
unary calls (``grpc_echo``): ``grpc_vs_grpcio_ratio`` and ``grpc_vs_grpcio_cpu_ratio``.

Server CPU per request (issue 17.3) is read from ``/proc/<pid>/stat`` over the measuring
window: connector + room for a forwarded request (``forwarded_cpu_us``), requester +
responder for the raw pair (``raw_cpu_us``; the load generator's CPU is not counted for
ours, the raw requester is: it is the end our connector replaces). ``cpu_ratio = raw /
ours`` (target >= 0.7). The connector also answers ``echo.echo`` itself (``local_cpu_us``:
the client-facing part of a forwarded request, its own CPU); ``floor_cpu_us = raw + local``
is what forwarding would cost if our two NATS ends cost what nats-py's do, and
``floor_ratio = floor / ours``. A bare asyncio echo (``baseline_server``: framing and the
message codec, no framework) answers the same load too (``bare_cpu_us``): ``ceiling_cpu_ratio =
raw / (raw + bare)`` is the best CPU ratio a server could reach whose forwarding cost what
nats-py's two ends do and whose client side cost no more than that echo, i.e. with no framework
at all; how far the ceiling lies above the target is what a framework may cost.
``--room-without-framework`` measures the same with a room that has none (``cluster_server
--without-framework``): the room's figure is then what our NATS end, the envelope and the
echo cost alone. On a shared
machine CPU per request is far steadier than req/s: each configuration runs ``--repeat``
times, alternated, and the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

from tests.bench.cluster_server import room_type
from tests.bench.harness import (
    Child,
    Histogram,
    add_common_args,
    children,
    client_loop,
    run,
    tree_cpu_seconds,
)
from tests.bench.report import Panel, plot_bars, write_results
from tests.services import EtcdServer, NatsServer

TARGET_RATIO = 0.7
TRANSPORTS = ("nats", "grpc")
ROLES = ("room", "connector")
LIFETIME = ("--max-seconds", 3600)
"""The servers live through every run (the parent stops them; this is a safety net)."""


async def load(
    worker: Child,
    server_pids: list[int],
    args: argparse.Namespace,
    spy: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Drive one closed-loop run; CPU of ``server_pids`` (and their children) is read from
    ``/proc`` over the measuring window. ``spy``: PIDs to sample with py-spy over the
    window, each into its file (collapsed stacks; sampling costs the process some CPU)."""
    await worker.expect(timeout=60)
    worker.send("go")
    await asyncio.sleep(args.warmup)
    cpu_start, start = [tree_cpu_seconds(pid) for pid in server_pids], time.perf_counter()
    spies = [await _py_spy(pid, path, args.seconds) for pid, path in (spy or {}).items()]
    await asyncio.sleep(args.seconds)
    cpu = [tree_cpu_seconds(pid) - was for pid, was in zip(server_pids, cpu_start, strict=True)]
    wall = time.perf_counter() - start
    if any(c < 0 for c in cpu):  # /proc reads 0 for a process that is gone
        raise RuntimeError(f"a server process ({server_pids}) exited during the run")
    for process in spies:
        await process.wait()
    result = await worker.expect(timeout=args.warmup + args.seconds + 60)
    histogram = Histogram.merged([result["histogram"]])
    req_per_s = result["count"] / result["elapsed"]
    return {
        "req_per_s": req_per_s,
        "cpu_us": sum(cpu) / wall / req_per_s * 1e6 if req_per_s else 0.0,
        "cpu_us_each": [c / wall / req_per_s * 1e6 if req_per_s else 0.0 for c in cpu],
        "p50_ms": histogram.percentile(50),
        "p99_ms": histogram.percentile(99),
        "errors": result["errors"],
        "client_cpu": result["cpu"],
    }


async def run_once(
    command: tuple[Any, ...],
    pids: list[int],
    args: argparse.Namespace,
    *,
    with_worker: bool = False,
    spy: dict[int, str] | None = None,
) -> dict[str, Any]:
    """One measured run of the load process ``python -m tests.bench.<command...>``: the CPU
    of ``pids`` (then of the worker itself, ``with_worker``: a raw requester is one of the
    ends measured), see :func:`load`."""
    async with children() as workers:
        worker = await Child.start(*command)
        workers.append(worker)
        measured = [*pids, worker.pid] if with_worker else pids
        return await load(worker, measured, args, spy)


async def _py_spy(pid: int, path: str, seconds: float) -> asyncio.subprocess.Process:
    command = [str(Path(sys.executable).with_name("py-spy")), "record", "--native"]
    command += ["--format", "raw", "--rate", "250", "--duration", str(max(1, round(seconds)))]
    return await asyncio.create_subprocess_exec(
        *command, "--pid", str(pid), "-o", path, stdout=DEVNULL, stderr=DEVNULL
    )


async def start_pair(
    servers: list[Child], rpc: str, common: list[Any], args: argparse.Namespace
) -> tuple[int, list[int]]:
    """A room and a connector over ``rpc``; returns the connector's TCP port and both PIDs."""
    pids = []
    for role in ROLES:
        profile = ["--profile", f"{args.profile}.{rpc}.{role}"] if args.profile else []
        if role == "room" and rpc == "nats" and args.room_without_framework:
            profile.append("--without-framework")
        child = await Child.start(
            "cluster_server", role, "--rpc", rpc, *common, *profile, *LIFETIME
        )
        servers.append(child)
        ready = await child.expect(timeout=60)
        pids.append(child.pid)
    return int(ready["tcp"]), pids


def column(rpc: str, what: str) -> str:
    """Row keys: NATS keeps the names of earlier results (``forwarded_req_per_s``)."""
    return f"forwarded_{what}" if rpc == "nats" else f"{rpc}_forwarded_{what}"


def ratio_key(rpc: str, what: str = "") -> str:
    return ("" if rpc == "nats" else f"{rpc}_") + (f"{what}_ratio" if what else "ratio")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def median_each(runs: list[dict[str, Any]], processes: int) -> list[float]:
    """CPU µs per request of each measured process (``load``'s ``cpu_us_each``, in the order
    their PIDs were given), the median over ``runs``."""
    return [median([r["cpu_us_each"][i] for r in runs]) for i in range(processes)]


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    nats_server, etcd_server = NatsServer(), EtcdServer()
    await asyncio.to_thread(nats_server.start)
    await asyncio.to_thread(etcd_server.start)
    rows: list[dict[str, Any]] = []
    try:
        common = ["--nats", nats_server.url, "--etcd", etcd_server.endpoint, "--loop", args.loop]
        async with children() as servers:
            pairs = {rpc: await start_pair(servers, rpc, common, args) for rpc in args.transports}
            # The raw pair runs on the servers' loop: its two ends are what our connector
            # and room replace.
            responder = await Child.start(
                "nats_echo", "responder", "--nats", nats_server.url, "--loop", args.loop, *LIFETIME
            )
            servers.append(responder)
            await responder.expect(timeout=30)
            # The client side with no framework: the ceiling's bare echo.
            bare = await Child.start("baseline_server", "--port", 0, "--loop", args.loop, *LIFETIME)
            servers.append(bare)
            bare_port = (await bare.expect(timeout=30))["tcp"]
            grpc_port = None
            if "grpc" in args.transports:  # gRPC's yardstick: raw grpcio unary calls
                grpc_responder = await Child.start(
                    "grpc_echo", "responder", "--loop", args.loop, *LIFETIME
                )
                servers.append(grpc_responder)
                grpc_port = (await grpc_responder.expect(timeout=30))["port"]
            timing = ["--seconds", args.seconds, "--warmup", args.warmup]
            for clients, depth in args.concurrency:
                load_shape = ["--clients", clients, "--depth", depth, *timing]
                shape = [*load_shape, "--loop", client_loop(args)]
                raw_shape = [*load_shape, "--loop", args.loop]  # the requester: a server's end
                runs: dict[str, list[dict[str, Any]]] = {
                    "raw": [],
                    "local": [],
                    "bare": [],
                    "raw_grpc": [],
                }
                runs.update({rpc: [] for rpc in args.transports})
                # Alternate the configurations, so drift of a shared machine hits all alike.
                for _ in range(args.repeat):
                    for rpc in args.transports:
                        port, pids = pairs[rpc]
                        route = f"{room_type(rpc)}.echo.echo"
                        spy = None
                        if args.py_spy and not runs[rpc]:
                            stem = f"{args.py_spy}.{rpc}.{clients}x{depth}"
                            spy = {
                                pid: f"{stem}.{role}.txt"
                                for pid, role in zip(pids, ROLES, strict=True)
                            }
                        loadgen = ("loadgen", "--port", port, "--route", route, *shape)
                        runs[rpc].append(await run_once(loadgen, pids, args, spy=spy))
                    # The connector answering echo.echo itself: the client-facing part of a
                    # forwarded request (its own CPU only), with no forwarding.
                    port, pids = pairs[args.transports[0]]
                    local = ("loadgen", "--port", port, "--route", "echo.echo", *shape)
                    runs["local"].append(await run_once(local, pids[1:], args))
                    bare_echo = ("loadgen", "--port", bare_port, "--route", "echo.echo", *shape)
                    runs["bare"].append(await run_once(bare_echo, [bare.pid], args))
                    # Requester and responder: the two ends our forwarding replaces.
                    raw = ("nats_echo", "requester", "--nats", nats_server.url, *raw_shape)
                    runs["raw"].append(await run_once(raw, [responder.pid], args, with_worker=True))
                    if grpc_port is not None:
                        raw = ("grpc_echo", "requester", "--port", grpc_port, *raw_shape)
                        runs["raw_grpc"].append(
                            await run_once(raw, [grpc_responder.pid], args, with_worker=True)
                        )
                rows.append(summarize(clients, depth, runs, args.transports))
    finally:
        nats_server.close()
        etcd_server.close()
    return rows


def summarize(
    clients: int, depth: int, runs: dict[str, list[dict[str, Any]]], transports: list[str]
) -> dict[str, Any]:
    """One row: medians over the repeats; CPU per request with its range over the repeats."""
    raw = runs["raw"]
    raw_rate = median([r["req_per_s"] for r in raw])
    raw_cpu = median([r["cpu_us"] for r in raw])
    row: dict[str, Any] = {"clients": clients, "depth": depth, "raw_nats_req_per_s": raw_rate}
    row["raw_cpu_us"] = raw_cpu
    local_cpu = median([r["cpu_us"] for r in runs["local"]])
    row["local_cpu_us"] = local_cpu
    floor = raw_cpu + local_cpu
    row["floor_cpu_us"] = floor
    bare_cpu = median([r["cpu_us"] for r in runs["bare"]])
    row["bare_cpu_us"] = bare_cpu
    ceiling = raw_cpu / (raw_cpu + bare_cpu) if raw_cpu + bare_cpu else 0.0
    row["ceiling_cpu_ratio"] = ceiling
    errors = sum(r["errors"] for r in raw + runs["local"] + runs["bare"])
    shown = []
    for rpc in transports:
        ours = runs[rpc]
        rate = median([r["req_per_s"] for r in ours])
        cpu = median([r["cpu_us"] for r in ours])
        row[column(rpc, "req_per_s")] = rate
        row[ratio_key(rpc)] = rate / raw_rate if raw_rate else 0.0
        row[column(rpc, "cpu_us")] = cpu
        row[ratio_key(rpc, "cpu")] = raw_cpu / cpu if cpu else 0.0
        row[ratio_key(rpc, "floor")] = floor / cpu if cpu else 0.0
        row[column(rpc, "p50_ms")] = median([r["p50_ms"] for r in ours])
        row[column(rpc, "p99_ms")] = median([r["p99_ms"] for r in ours])
        errors += sum(r["errors"] for r in ours)
        cpus = sorted(r["cpu_us"] for r in ours)
        each = median_each(ours, len(ROLES))
        row.update({column(rpc, f"{role}_cpu_us"): c for role, c in zip(ROLES, each, strict=True)})
        against_grpcio = ""
        if rpc == "grpc" and runs["raw_grpc"]:
            against_grpcio = ", " + _against_grpcio(row, runs["raw_grpc"], rate, cpu)
            errors += sum(r["errors"] for r in runs["raw_grpc"])
        shown.append(
            f"{rpc} {rate:,.0f}/s ({row[ratio_key(rpc)]:.0%}), "
            f"{cpu:.1f} us CPU/req [{cpus[0]:.1f}-{cpus[-1]:.1f}] "
            f"(room {each[0]:.1f}, connector {each[1]:.1f}) "
            f"(raw/ours {row[ratio_key(rpc, 'cpu')]:.0%}, floor/ours "
            f"{row[ratio_key(rpc, 'floor')]:.0%}{against_grpcio})"
        )
    row["raw_p50_ms"] = median([r["p50_ms"] for r in raw])
    row["raw_p99_ms"] = median([r["p99_ms"] for r in raw])
    row["errors"] = errors
    raw_cpus = sorted(r["cpu_us"] for r in raw)
    raw_each = median_each(raw, 2)
    row["raw_responder_cpu_us"], row["raw_requester_cpu_us"] = raw_each
    print(
        f"{clients}x{depth}: forwarded {'; '.join(shown)}; raw nats {raw_rate:,.0f}/s, "
        f"{raw_cpu:.1f} us CPU/req [{raw_cpus[0]:.1f}-{raw_cpus[-1]:.1f}] "
        f"(responder {raw_each[0]:.1f}, requester {raw_each[1]:.1f}); connector's local echo "
        f"{local_cpu:.1f} us CPU/req; floor (raw + local) {floor:.1f}; bare asyncio echo "
        f"{bare_cpu:.1f} us CPU/req, ceiling raw / (raw + bare) {ceiling:.0%}",
        flush=True,
    )
    return row


def _against_grpcio(row: dict[str, Any], raw: list[dict[str, Any]], rate: float, cpu: float) -> str:
    """Forwarding over gRPC next to raw grpcio unary calls (``grpc_echo``), into ``row``;
    the text for the printed line."""
    raw_rate = median([r["req_per_s"] for r in raw])
    raw_cpu = median([r["cpu_us"] for r in raw])
    responder, requester = median_each(raw, 2)
    row["raw_grpc_req_per_s"] = raw_rate
    row["raw_grpc_cpu_us"] = raw_cpu
    row["raw_grpc_responder_cpu_us"] = responder
    row["raw_grpc_requester_cpu_us"] = requester
    row["grpc_vs_grpcio_ratio"] = rate / raw_rate if raw_rate else 0.0
    row["grpc_vs_grpcio_cpu_ratio"] = raw_cpu / cpu if cpu else 0.0
    return (
        f"raw grpcio {raw_rate:,.0f}/s, {raw_cpu:.1f} us CPU/req (responder {responder:.1f}, "
        f"requester {requester:.1f}): grpcio/ours {row['grpc_vs_grpcio_cpu_ratio']:.0%}, "
        f"throughput {row['grpc_vs_grpcio_ratio']:.0%}"
    )


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
        "--repeat",
        type=int,
        default=3,
        help="runs per configuration, alternated; the table shows medians",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="cProfile the servers into FILE.<transport>.room and FILE.<transport>.connector",
    )
    parser.add_argument(
        "--py-spy",
        default="",
        metavar="PREFIX",
        help="sample connector and room with py-spy (--native) during each shape's first run "
        "into PREFIX.<transport>.<shape>.<role>.txt (collapsed stacks; read them with "
        "tests.bench.spy_report)",
    )
    parser.add_argument(
        "--room-without-framework",
        action="store_true",
        help="the NATS room answers with no framework at all (cluster_server "
        "--without-framework): what forwarding would cost if the room's framework cost nothing",
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
        for key in (ratio_key(rpc), ratio_key(rpc, "cpu"), ratio_key(rpc, "floor")):
            results[f"best_{key}"] = max((r[key] for r in rows), default=0.0)
    if "grpc" in args.transports:
        for key in ("grpc_vs_grpcio_ratio", "grpc_vs_grpcio_cpu_ratio"):
            results[f"best_{key}"] = max((r.get(key, 0.0) for r in rows), default=0.0)
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
