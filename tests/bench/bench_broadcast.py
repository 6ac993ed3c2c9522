"""Broadcast fan-out: one group of 1,000 members, deliveries per second.

Run: ``python -m tests.bench.bench_broadcast [--members 1000] [--messages 200]
[--member-procs 1] [--ws] [--loop asyncio|uvloop] [--rounds 3]``

The members connect from ``members`` processes and join one group through ``bench.join``.
The parent then asks ``bench.fanout`` (over a separate connection) to broadcast ``messages``
times to the group, and the member processes report when each member had received every
message (counting bytes: all broadcasts are the same packet). Reported per round:
``deliveries/s = members x messages / (last member complete - fanout request sent)``.

Two modes: ``sequential`` awaits each broadcast before starting the next, so every broadcast
leaves in its own event-loop iteration — one socket write per member per message, as when
broadcasts answer separate events; ``burst`` starts them all at once, so the writes to one
member coalesce (the best case). The baseline server does the same with bare transports.
Target (issue 7): >= 200,000 deliveries/s (judged on ``sequential``).
Writes ``results/broadcast-<loop>.json`` and ``.png``. Fresh members every round.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import psutil

from tests.bench.harness import (
    HOST,
    Child,
    add_common_args,
    children,
    client_loop,
    profile_report,
    run,
    split,
)
from tests.bench.report import Panel, plot_bars, write_results
from tests.bench.wire import FANOUT_ROUTE
from transport.client import Client

TARGET = 200_000
SERVERS = {"ours": "app_server", "baseline": "baseline_server"}


async def one_round(
    server: dict[str, Any], mode: str, args: argparse.Namespace, index: int
) -> dict[str, Any]:
    port = server["ws" if args.ws else "tcp"]
    async with children() as members:
        for worker, share in enumerate(split(args.members, args.member_procs)):
            member_args = ["--port", port, "--count", share, "--join", f"{mode}{index}w{worker}"]
            member_args += ["--expect", args.messages, "--timeout", args.timeout]
            member_args += ["--loop", client_loop(args)]
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
                FANOUT_ROUTE,
                {"messages": args.messages, "burst": mode == "burst"},
                timeout=args.timeout,
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
        "mode": mode,
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
            extra = ["--profile", args.profile] if name == "ours" and args.profile else []
            server = await Child.start(SERVERS[name], "--port", 0, "--loop", args.loop, *extra)
            servers.append(server)
            ports[name] = await server.expect(timeout=30)
        for mode in args.modes:
            for index in range(args.rounds):
                for name in args.servers:  # alternately, so that drift hits both alike
                    row = await one_round(ports[name], mode, args, index)
                    rows.append({"server": name, **row})
                    print(
                        f"  {name:>8} {mode:>10} round {index + 1}: "
                        f"{row['deliveries_per_s']:>9,.0f} deliveries/s "
                        f"({row['delivered']:,} in {row['elapsed_s']:.3f} s)",
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
    parser.add_argument(
        "--modes",
        default="sequential,burst",
        help="sequential: each broadcast awaited before the next; burst: all started at once",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="bound per round")
    parser.add_argument("--name", default="", help="results name (default broadcast-<loop>)")
    parser.add_argument("--profile", default="", help="cProfile our server into this file")
    args = parser.parse_args()
    args.servers = args.servers.split(",")
    args.modes = args.modes.split(",")
    if args.profile:
        args.profile = str(Path(args.profile).resolve())  # the server runs elsewhere
    rows = run(measure(args))
    best = {  # an incomplete round (NaN) never counts as the best
        (server, mode): max(
            (
                r["deliveries_per_s"]
                for r in rows
                if r["server"] == server
                and r["mode"] == mode
                and r["complete_members"] == r["members"]
            ),
            default=0.0,
        )
        for server in args.servers
        for mode in args.modes
    }
    name = args.name or f"broadcast-{args.loop}"
    summary: dict[str, Any] = {
        "loop": args.loop,
        "member_loop": client_loop(args),
        "transport": "ws" if args.ws else "tcp",
    }
    summary.update({f"best_{s}_{m}_per_s": value for (s, m), value in best.items()})
    if ("ours", "sequential") in best:
        summary["target_per_s"] = TARGET
        summary["target_met_sequential"] = best["ours", "sequential"] >= TARGET
    if ("baseline", "sequential") in best and ("ours", "sequential") in best:
        # Only here: the baseline's burst is one write of all messages per member, a bound
        # no server that frames messages one by one approaches.
        summary["ratio_sequential"] = best["ours", "sequential"] / best["baseline", "sequential"]
    write_results(name, summary, rows=rows)
    if args.profile:
        print("\ncProfile of our server, top functions by own time:")
        print(profile_report(Path(args.profile)))
    plot_bars(
        name,
        [
            Panel(
                f"{mode}: {args.members} members x {args.messages} messages",
                [f"round {n + 1}" for n in range(args.rounds)],
                {
                    server: [
                        next(
                            r["deliveries_per_s"]
                            for r in rows
                            if (r["server"], r["mode"], r["round"]) == (server, mode, n + 1)
                        )
                        for n in range(args.rounds)
                    ]
                    for server in args.servers
                },
                "deliveries/s" + (" (log)" if mode == "burst" else ""),
                log=mode == "burst",  # the baseline's burst is an order of magnitude above
                target=TARGET,
            )
            for mode in args.modes
        ],
        f"broadcast fan-out, {args.loop} loop (dashed: target)",
    )


if __name__ == "__main__":
    main()
