"""Broadcast fan-out: one group of 1,000 members, deliveries per second.

Run: ``python -m tests.bench.bench_broadcast [--members 1000] [--messages 200]
[--member-procs 1] [--ws] [--loop asyncio|uvloop] [--rounds 3]``

The members connect from ``members`` processes and join one group through ``bench.join``.
The parent then asks ``bench.fanout`` (over a separate connection) to broadcast ``messages``
times to the group, and the member processes report when each member had received every
message (counting bytes: all broadcasts are the same packet). Reported per round:
``deliveries/s = members x messages / (last member complete - fanout request sent)``.
Target (issue 7): >= 200,000 deliveries/s. Writes ``results/broadcast-<loop>.json``/``.png``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psutil

from tests.bench.harness import HOST, Child, add_common_args, children, client_loop, run, split
from tests.bench.report import Panel, plot_bars, write_results
from transport.client import Client

TARGET = 200_000
SERVERS = {"ours": "app_server", "baseline": "baseline_server"}


async def one_round(server: dict[str, Any], args: argparse.Namespace, index: int) -> dict[str, Any]:
    port = server["ws" if args.ws else "tcp"]
    async with children() as members:
        for worker, share in enumerate(split(args.members, args.member_procs)):
            member_args = [
                *("--port", port, "--count", share, "--join", f"r{index}w{worker}"),
                *(
                    "--expect",
                    args.messages,
                    "--timeout",
                    args.timeout,
                    "--loop",
                    client_loop(args),
                ),
            ]
            if args.ws:
                member_args.append("--ws")
            members.append(await Child.start("members", *member_args))
        for member in members:
            await member.expect(timeout=120)
        client = await Client.connect(HOST, port, websocket=args.ws)
        try:
            process = psutil.Process(server["pid"])
            cpu_start = sum(process.cpu_times()[:2])
            start = time.monotonic()
            reply = await client.request(
                "bench.fanout", {"messages": args.messages}, timeout=args.timeout
            )
            results = [await m.expect(timeout=args.timeout + 30) for m in members]
            cpu = sum(process.cpu_times()[:2]) - cpu_start
        finally:
            await client.close()
    complete = sum(r["complete"] for r in results)
    last = max(r["last"] for r in results)
    elapsed = last - start if complete == args.members else float("nan")
    delivered = sum(r["bytes"] for r in results) // results[0]["packet_size"]
    return {
        "round": index + 1,
        "members": args.members,
        "messages": args.messages,
        "delivered": delivered,
        "complete_members": complete,
        "unreached": reply["unreached"],
        "elapsed_s": elapsed,
        "first_ms": (min(r["first"] for r in results) - start) * 1000,
        "deliveries_per_s": args.members * args.messages / elapsed,
        "server_cpu": cpu / elapsed,
        "members_cpu": sum(r["cpu_seconds"] for r in results) / elapsed,
    }


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    async with children() as servers:
        ports = {}
        for name in args.servers:
            server = await Child.start(SERVERS[name], "--port", 0, "--loop", args.loop)
            servers.append(server)
            ports[name] = await server.expect(timeout=30)
        for index in range(args.rounds):
            for name in args.servers:  # alternately, so that drift hits both alike
                rows.append({"server": name, **await one_round(ports[name], args, index)})
                print(
                    f"  {name:>8} round {index + 1}: {rows[-1]['deliveries_per_s']:>9,.0f} "
                    f"deliveries/s ({rows[-1]['delivered']:,} in {rows[-1]['elapsed_s']:.3f} s)",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser, clients=True)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200, help="broadcasts per round")
    parser.add_argument("--member-procs", type=int, default=1, help="member processes (max)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh members each round")
    parser.add_argument("--ws", action="store_true", help="members over WebSocket")
    parser.add_argument("--servers", default="ours,baseline")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound per round")
    parser.add_argument("--name", default="", help="results name (default broadcast-<loop>)")
    args = parser.parse_args()
    args.servers = args.servers.split(",")
    rows = run(measure(args))
    best = {
        name: max(r["deliveries_per_s"] for r in rows if r["server"] == name)
        for name in args.servers
    }
    name = args.name or f"broadcast-{args.loop}"
    summary: dict[str, Any] = {
        "loop": args.loop,
        "member_loop": client_loop(args),
        "transport": "ws" if args.ws else "tcp",
    }
    summary.update({f"best_{server}_per_s": value for server, value in best.items()})
    if "ours" in best:
        summary["target_per_s"] = TARGET
        summary["target_met"] = best["ours"] >= TARGET
    if "baseline" in best and "ours" in best:
        summary["ratio"] = best["ours"] / best["baseline"]
    write_results(name, summary, rows=rows)
    rounds = sorted({r["round"] for r in rows})
    plot_bars(
        name,
        [
            Panel(
                f"{args.members} members x {args.messages} messages per round",
                [f"round {r}" for r in rounds],
                {
                    server: [
                        next(
                            r["deliveries_per_s"]
                            for r in rows
                            if r["server"] == server and r["round"] == n
                        )
                        for n in rounds
                    ]
                    for server in args.servers
                },
                "deliveries/s",
                target=TARGET,
            )
        ],
        f"broadcast fan-out, {args.loop} loop (dashed: target)",
    )


if __name__ == "__main__":
    main()
