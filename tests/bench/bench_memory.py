"""Memory per idle connected session: server RSS before and after 10,000 sessions.

Run: ``python -m tests.bench.bench_memory [--sessions 10000] [--transports tcp,ws]
[--servers ours,baseline] [--loop asyncio|uvloop]``

A fresh server process per measurement; ``members`` processes (fd limit raised, as in the
server) open the connections and complete the Pitaya handshake, then stay silent. Once the
server reports every session, its RSS (after ``gc.collect()``) is compared with the RSS it
had before the first connection: ``KiB per session = (after - before) / sessions``. Kernel
socket buffers are not part of RSS. The baseline (a bare asyncio protocol per connection)
shows how much of that Python networking costs by itself. Target (issue 7): <= 20 KiB per
idle session. Writes ``results/memory-<loop>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from tests.bench.harness import (
    Child,
    add_common_args,
    children,
    client_loop,
    raise_fd_limit,
    run,
    split,
)
from tests.bench.report import Panel, plot_bars, write_results

SERVERS = {"ours": "app_server", "baseline": "baseline_server"}
TARGET_KIB = 20.0


async def one(server_name: str, transport: str, args: argparse.Namespace) -> dict[str, Any]:
    async with children(stop_timeout=30) as procs:
        server = await Child.start(SERVERS[server_name], "--port", 0, "--loop", args.loop)
        procs.append(server)
        ports = await server.expect(timeout=30)
        before = await server.ask("stats")
        start = time.monotonic()
        for share in split(args.sessions, args.procs):
            holder_args = [
                "--port",
                ports[transport],
                "--count",
                share,
                "--loop",
                client_loop(args),
            ]
            if transport == "ws":
                holder_args.append("--ws")
            holder = await Child.start("members", *holder_args, "--timeout", args.timeout)
            procs.append(holder)
        for holder in procs[1:]:
            await holder.expect(timeout=args.timeout)
        connect_s = time.monotonic() - start
        after = await server.ask("stats")
        deadline = time.monotonic() + 10
        while after["connections"] < args.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            after = await server.ask("stats")
        await asyncio.sleep(0.5)  # let anything the handshakes scheduled settle
        after = await server.ask("stats")
    sessions = after["connections"] - before["connections"]
    return {
        "server": server_name,
        "transport": transport,
        "sessions": sessions,
        "rss_before_mib": before["rss"] / 2**20,
        "rss_after_mib": after["rss"] / 2**20,
        "kib_per_session": (after["rss"] - before["rss"]) / max(sessions, 1) / 1024,
        "actors": after.get("actors", ""),
        "connect_s": connect_s,
    }


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for transport in args.transports:
        for name in args.servers:
            rows.append(await one(name, transport, args))
            print(
                f"  {name:>8} {transport}: {rows[-1]['kib_per_session']:.1f} KiB/session "
                f"({rows[-1]['sessions']:,} sessions, {rows[-1]['actors']} actors)",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser, clients=True)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--transports", default="tcp,ws")
    parser.add_argument("--servers", default="ours,baseline")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on connecting")
    parser.add_argument("--name", default="", help="results name (default memory-<loop>)")
    args = parser.parse_args()
    args.transports = args.transports.split(",")
    args.servers = args.servers.split(",")
    limit = raise_fd_limit()
    if limit < args.sessions + 100:
        parser.error(f"the fd limit is {limit}; {args.sessions} sessions need more")
    rows = run(measure(args))
    ours = [r for r in rows if r["server"] == "ours"]
    worst = max((r["kib_per_session"] for r in ours), default=float("nan"))
    name = args.name or f"memory-{args.loop}"
    write_results(
        name,
        {
            "loop": args.loop,
            "worst_kib_per_session_ours": worst,
            "target_kib_per_session": TARGET_KIB,
            "target_met": worst <= TARGET_KIB,
        },
        rows=rows,
    )
    plot_bars(
        name,
        [
            Panel(
                f"RSS per idle session at {args.sessions:,} sessions",
                args.transports,
                {
                    server: [
                        next(
                            (
                                r["kib_per_session"]
                                for r in rows
                                if r["server"] == server and r["transport"] == t
                            ),
                            float("nan"),
                        )
                        for t in args.transports
                    ]
                    for server in args.servers
                },
                "KiB per session",
                target=TARGET_KIB,
            )
        ],
        f"memory, {args.loop} loop (dashed: target)",
    )


if __name__ == "__main__":
    main()
