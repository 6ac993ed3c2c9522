"""Ours next to its peers, in one run: the bare asyncio limit, pinus (Node), Go Pitaya v3.

Run: ``python -m tests.bench.bench_peers [--servers ours,asyncio,pinus,go]
[--loads 10x10,100x1,1000x1] [--seconds 3] [--rounds 2] [--sessions 10000]``

Servers (each its own process tree, started once; see ``peers.py`` for how pinus and Go
Pitaya are fetched and built outside the repository):

- ``ours``: the echo sample as it is (``app_server``), one process (``ours-uvloop``: the
  same on uvloop, which ``App.run`` picks when it is installed);
- ``ours-reuseport``: the same in ``--procs`` processes sharing one port (``SO_REUSEPORT``);
- ``asyncio``: ``baseline_server``, a bare ``asyncio.Protocol`` with the same codecs;
- ``pinus``: pinus 1.7.4's template game server (master + connector);
- ``go``: Go Pitaya v3.0.0-beta.6, a standalone frontend (``go-deflate``: its default
  response compression left on).

Every load (``clients x in flight per client``) is driven by the same closed-loop load
process against each server in turn (``--loadgen python``, the default: ``loadgen``;
``--loadgen go``: ``goload``, the same load for less client CPU, see ``loadgens.py``);
servers alternate within a round, in an order that changes each round (``round_order``), so
drift and whatever the server before leaves behind hit all alike; ``--rounds`` repeats the whole
sweep and the table shows medians. Per server and load: requests/s, p50/p99 latency and
**server CPU µs per request**: user + system time of the server's process tree
(``/proc/<pid>/stat``, children included) over the measuring window, divided by the requests
answered in it. Then, per server, a fresh process gets ``--sessions`` idle handshaken
sessions (heartbeating, from a ``members`` process): memory per idle session = (RSS of its
tree after - before) / sessions, read from ``/proc/<pid>/statm`` the same way for all.
With ``ours`` and ``ours-reuseport`` both measured, a second table puts their throughput side
by side with the most the machine allowed in that run (``scaling``).
Writes ``results/<name>.json``, ``.md`` (the markdown table) and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from tests.bench.harness import (
    Child,
    Histogram,
    add_common_args,
    children,
    client_loop,
    raise_fd_limit,
    run,
    tree_cpu_seconds,
    tree_rss,
)
from tests.bench.loadgens import add_loadgen_arg, prepare_loadgen, start_loadgen
from tests.bench.peers import ROUTES, prepare
from tests.bench.report import RESULTS, Panel, machine, plot_bars, write_results

SERVERS = ("ours", "ours-uvloop", "ours-reuseport", "asyncio", "pinus", "go", "go-deflate")
LABELS = {
    "ours": "ours (1 process)",
    "ours-uvloop": "ours, uvloop (1 process)",
    "ours-reuseport": "ours ({procs} processes, one port)",
    "asyncio": "bare asyncio",
    "pinus": "pinus 1.7.4",
    "go": "Go Pitaya v3",
    "go-deflate": "Go Pitaya v3, deflate on",
}


def label(name: str, procs: int) -> str:
    return LABELS[name].format(procs=procs)


def server_command(name: str, args: argparse.Namespace) -> tuple[str, list[Any]]:
    """The benchmark child module and its arguments for server ``name``."""
    if name == "ours":
        return "app_server", ["--port", 0, "--loop", args.loop]
    if name == "ours-uvloop":
        return "app_server", ["--port", 0, "--loop", "uvloop"]
    if name == "ours-reuseport":
        return "app_server", ["--port", 0, "--loop", args.loop, "--procs", args.procs]
    if name == "asyncio":
        return "baseline_server", ["--port", 0, "--loop", args.loop]
    return "peers", [name]


async def start_server(name: str, args: argparse.Namespace) -> tuple[Child, dict[str, Any]]:
    module, server_args = server_command(name, args)
    child = await Child.start(module, *server_args)
    return child, await child.expect(timeout=120)


async def run_load(
    name: str, server: dict[str, Any], clients: int, depth: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One closed-loop load against one server; the table row."""
    pid = server["pid"]
    async with children() as workers:
        worker = await start_loadgen(
            args.loadgen,
            *("--port", server["tcp"], "--route", ROUTES[name]),
            *("--clients", clients, "--depth", depth),
            *("--seconds", args.seconds, "--warmup", args.warmup),
            loop=client_loop(args),
        )
        workers.append(worker)
        await worker.expect(timeout=120)
        worker.send("go")
        await asyncio.sleep(args.warmup)
        cpu_start, start = tree_cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(args.seconds)
        cpu = tree_cpu_seconds(pid) - cpu_start
        elapsed = time.perf_counter() - start
        result = await worker.expect(timeout=args.warmup + args.seconds + 60)
    histogram = Histogram.merged([result["histogram"]])
    rate = result["count"] / result["elapsed"]
    return {
        "server": name,
        "load": f"{clients}x{depth}",
        "req_per_s": rate,
        "p50_ms": histogram.percentile(50),
        "p99_ms": histogram.percentile(99),
        "cpu_us_per_req": cpu / elapsed / rate * 1e6 if rate else float("nan"),
        "server_cpu": cpu / elapsed,
        "client_cpu": result["cpu"],
        "client_us_per_req": result["cpu"] / rate * 1e6 if rate else float("nan"),
        "errors": result["errors"],
    }


async def measure_loads(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with children(stop_timeout=20) as servers:
        started = {}
        for name in args.servers:
            child, info = await start_server(name, args)
            servers.append(child)
            started[name] = info
        await asyncio.sleep(1.0)  # let start-up work (pinus' master/connector sync) settle
        for round_no in range(args.rounds):
            for clients, depth in args.loads:
                for name in round_order(args.servers, round_no):
                    row = await run_load(name, started[name], clients, depth, args)
                    rows.append({**row, "round": round_no + 1})
                    print(_progress(row), flush=True)
    return rows


def round_order(servers: list[str], round_no: int) -> list[str]:
    """The order of ``servers`` in round ``round_no`` (round 0: as given).

    A server that runs right after another may pay for what that one leaves behind (its
    clients closing, a collection): with a fixed order the same server would pay in every
    round. The rounds follow a Williams design instead: over ``n`` rounds (``2n`` for an odd
    number of servers) each server runs right after every other one equally often, and in
    every position as often."""
    n = len(servers)
    if not n:
        return []
    base = _williams_row(n)
    label = [""] * n  # relabelled so that round 0 keeps the given order
    for position, index in enumerate(base):
        label[index] = servers[position]
    row = base if (round_no // n) % 2 == 0 else base[::-1]
    return [label[(index + round_no) % n] for index in row]


def _williams_row(n: int) -> list[int]:
    """0, 1, n-1, 2, n-2, ...: shifted by one each round, it makes every ordered pair
    adjacent once in ``n`` rounds for an even ``n`` (with its reverse, twice in ``2n`` for an
    odd ``n``)."""
    return [0] + [(i + 1) // 2 if i % 2 else n - i // 2 for i in range(1, n)]


async def measure_memory(name: str, args: argparse.Namespace) -> dict[str, Any]:
    async with children(stop_timeout=30) as procs:
        server, info = await start_server(name, args)
        procs.append(server)
        await asyncio.sleep(2.0)
        before = tree_rss(info["pid"])
        holder = await Child.start(
            "members",
            *("--port", info["tcp"], "--count", args.sessions, "--loop", client_loop(args)),
            *("--timeout", args.connect_timeout),
        )
        procs.append(holder)
        start = time.monotonic()
        ready = await holder.expect(timeout=args.connect_timeout + 30)
        connect_s = time.monotonic() - start
        await asyncio.sleep(3.0)  # what the handshakes scheduled settles, a heartbeat passes
        after = tree_rss(info["pid"])
    sessions = int(ready["ready"])
    row = {
        "server": name,
        "sessions": sessions,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "kib_per_session": (after - before) / max(sessions, 1) / 1024,
        "connect_s": connect_s,
    }
    print(
        f"  {name:>14} memory: {row['kib_per_session']:.1f} KiB/session "
        f"({sessions:,} sessions, {row['rss_before_mib']:.0f} -> {row['rss_after_mib']:.0f} MiB)",
        flush=True,
    )
    return row


def _progress(row: dict[str, Any]) -> str:
    return (
        f"  {row['server']:>14} {row['load']:>7} {row['req_per_s']:>9,.0f} req/s  "
        f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
        f"{row['cpu_us_per_req']:.1f} us CPU/req  server {row['server_cpu']:.0%} "
        f"client {row['client_cpu']:.0%} ({row['client_us_per_req']:.1f} us/req)  "
        f"errors {row['errors']}"
    )


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds, one row per server and load, in the order measured."""
    keys: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        keys.setdefault((row["server"], row["load"]), []).append(row)
    table = []
    for (server, load), group in keys.items():
        summary: dict[str, Any] = {"server": server, "load": load, "rounds": len(group)}
        for column in (
            "req_per_s",
            "p50_ms",
            "p99_ms",
            "cpu_us_per_req",
            "server_cpu",
            "client_us_per_req",
        ):
            summary[column] = statistics.median(r[column] for r in group)
        summary["req_per_s_range"] = (
            min(r["req_per_s"] for r in group),
            max(r["req_per_s"] for r in group),
        )
        summary["errors"] = sum(r["errors"] for r in group)
        table.append(summary)
    return table


def scaling(table: list[dict[str, Any]], cores: int) -> list[dict[str, Any]]:
    """Per load: ``ours-reuseport`` against ``ours`` (one process), and the most that the
    processes could have served on this machine, given what each request cost in that run.

    The servers and the load generator share the ``cores``: at ``S`` µs of server CPU and
    ``L`` µs of load-generator CPU per request, no number of server processes serves more
    than ``cores / (S + L)`` requests per second. ``bound`` is that over one process's
    throughput, from the multi-process row's ``S`` and ``L``; a ``ratio`` close to it says
    the servers used what the load generator left them, and that the machine, not the
    servers, limits the ratio (on loopback ``L`` is mostly the kernel's TCP work)."""
    keyed = {(r["server"], r["load"]): r for r in table}
    rows = []
    for load in dict.fromkeys(r["load"] for r in table):
        one, many = keyed.get(("ours", load)), keyed.get(("ours-reuseport", load))
        if one is None or many is None or not one["req_per_s"]:
            continue
        per_request_us = many["cpu_us_per_req"] + many["client_us_per_req"]
        rows.append(
            {
                "load": load,
                "one_req_per_s": one["req_per_s"],
                "many_req_per_s": many["req_per_s"],
                "ratio": many["req_per_s"] / one["req_per_s"],
                "server_cpu_us": many["cpu_us_per_req"],
                "loadgen_cpu_us": many["client_us_per_req"],
                "bound": cores / per_request_us * 1e6 / one["req_per_s"],
            }
        )
    return rows


def markdown(
    table: list[dict[str, Any]],
    scaled: list[dict[str, Any]],
    memory: list[dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    """The README's tables: one row per load and server, then the :func:`scaling` rows, then
    memory per idle session."""
    info = machine()
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {info['cpus']} "
        f"CPUs ({info['platform']}), Python {info['python']}, load average at the end "
        f"{info.get('load_average', '?')}; {args.rounds} round(s) of {args.seconds:g} s per "
        "load, medians (range of req/s in brackets).",
        "",
        "| load (clients x in flight) | server | req/s | p50 ms | p99 ms | server CPU µs/req |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for load in dict.fromkeys(r["load"] for r in table):
        for row in (r for r in table if r["load"] == load):
            low, high = row["req_per_s_range"]
            spread = f" [{low:,.0f}-{high:,.0f}]" if row["rounds"] > 1 else ""
            lines.append(
                f"| {load.replace('x', ' x ')} | {label(row['server'], args.procs)} | "
                f"{row['req_per_s']:,.0f}{spread} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                f"{row['cpu_us_per_req']:.1f} |"
            )
    if scaled:
        lines += [
            "",
            f"| load | 1 process req/s | {args.procs} processes req/s | ratio | bound on "
            f"{info['cpus']} CPUs | server / load generator CPU µs/req ({args.procs} processes) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in scaled:
            lines.append(
                f"| {row['load'].replace('x', ' x ')} | {row['one_req_per_s']:,.0f} | "
                f"{row['many_req_per_s']:,.0f} | {row['ratio']:.2f}x | {row['bound']:.2f}x | "
                f"{row['server_cpu_us']:.1f} / {row['loadgen_cpu_us']:.1f} |"
            )
    if memory:
        lines += ["", f"| server | memory per idle session ({memory[0]['sessions']:,}) |"]
        lines.append("| --- | --- |")
        for row in memory:
            lines.append(
                f"| {label(row['server'], args.procs)} | {row['kib_per_session']:.1f} KiB |"
            )
    return "\n".join(lines) + "\n"


def plot(name: str, table: list[dict[str, Any]], memory: list[dict[str, Any]], procs: int) -> None:
    loads = list(dict.fromkeys(r["load"] for r in table))
    servers = list(dict.fromkeys(r["server"] for r in table))
    keyed = {(r["server"], r["load"]): r for r in table}

    def series(column: str) -> dict[str, list[float]]:
        return {
            label(s, procs): [
                keyed[(s, load)][column] if (s, load) in keyed else float("nan") for load in loads
            ]
            for s in servers
        }

    labels = [f"{load.replace('x', ' x ')}" for load in loads]
    panels = [
        Panel("throughput", labels, series("req_per_s"), "requests/s"),
        Panel("server CPU per request (process tree)", labels, series("cpu_us_per_req"), "µs"),
        Panel("p99 latency", labels, series("p99_ms"), "ms (log)", log=True),
    ]
    if memory:
        panels.append(
            Panel(
                f"memory per idle session ({memory[0]['sessions']:,} sessions)",
                [label(r["server"], procs) for r in memory],
                {"KiB": [r["kib_per_session"] for r in memory]},
                "KiB per session",
            )
        )
    plot_bars(name, panels, "echo request/response, TCP, closed loop (clients x in flight)")


def parse_loads(text: str) -> list[tuple[int, int]]:
    loads = []
    for item in text.split(","):
        clients, _, depth = item.partition("x")
        loads.append((int(clients), int(depth or 1)))
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser, seconds=3.0, clients=True)
    parser.add_argument("--servers", default="ours,asyncio,pinus,go")
    parser.add_argument("--loads", default="10x10,100x1,1000x1", help="clients x in flight")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--procs", type=int, default=2, help="processes of ours-reuseport")
    parser.add_argument("--sessions", type=int, default=10_000, help="0: skip the memory test")
    parser.add_argument("--connect-timeout", type=float, default=180.0)
    parser.add_argument("--name", default="peers")
    add_loadgen_arg(parser)
    args = parser.parse_args()
    args.servers = args.servers.split(",")
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    args.loads = parse_loads(args.loads)
    limit = raise_fd_limit()
    if args.sessions and limit < args.sessions + 100:
        parser.error(f"the fd limit is {limit}; {args.sessions} sessions need more")
    prepare(args.servers)
    prepare_loadgen(args.loadgen)

    async def everything() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows = await measure_loads(args)
        memory = []
        if args.sessions:
            for name in args.servers:
                memory.append(await measure_memory(name, args))
        return rows, memory

    rows, memory = run(everything())
    table = summarize(rows)
    scaled = scaling(table, os.cpu_count() or 1)
    write_results(
        args.name,
        {
            "loop": args.loop,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "client_loop": client_loop(args),
            "loadgen": args.loadgen,
            "per_round": rows,
            "memory": memory,
            "scaling": scaled,
        },
        rows=table,
        columns=[
            "server",
            "load",
            "req_per_s",
            "p50_ms",
            "p99_ms",
            "cpu_us_per_req",
            "server_cpu",
            "errors",
        ],
    )
    text = markdown(table, scaled, memory, args)
    (RESULTS / f"{args.name}.md").write_text(text)
    print("\n" + text)
    plot(args.name, table, memory, args.procs)


if __name__ == "__main__":
    main()
