"""Failover after a backend's SIGKILL (issue 18, finding 8): how many requests fail, and for
how long.

Run: ``python -m tests.bench.bench_failover [--transport nats|grpc] [--window 6]
[--clients 4]``

The scenario of ``tests/cluster/test_failover.py``: nats-server, etcd (lease TTL 60 s, Pitaya's
default), two room backends and a connector, each in its own process; clients loop
``room.runs.whoami`` (random routing over both rooms; a failed request is followed by a 50 ms
pause); room-1 is killed with SIGKILL by PID and the load goes on for ``--window`` seconds.
Printed: the requests in flight at the kill, the failures (codes), the last failed request's
send time from the kill, the end of the failures, the failures per second after the kill,
and the requests that ran twice (from the rooms' logs). Without failover the failures last
until room-1's lease expires: use ``--window 65`` to see their end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter

from tests.bench.report import write_results
from tests.cluster.harness import Node
from tests.cluster.test_failover import failover_run
from tests.services import EtcdServer, NatsServer


async def bench(transport: str, window: float, clients: int) -> None:
    os.environ["PITAYA_RPC_TRANSPORT"] = transport
    nats, etcd = NatsServer(), EtcdServer()
    nodes: list[Node] = []
    try:
        if transport == "nats":
            nats.start()
        etcd.start()
        run = await failover_run(nats, etcd, nodes, clients=clients, window=window)
    finally:
        for node in reversed(nodes):
            await node.stop()
        nats.close()
        etcd.close()
    print(run.summary())
    failures = run.failures
    per_second = Counter(int(max(r.sent - run.killed, 0.0)) for r in failures)
    rows = [{"second after the kill": f"+{s}", "failed": n} for s, n in sorted(per_second.items())]
    write_results(
        f"failover_{transport}",
        {
            "transport": transport,
            "window_s": window,
            "requests": len(run.requests),
            "in_flight_at_kill": len(run.in_flight_at_kill),
            "failed": len(failures),
            "failed_after_1s": sum(1 for r in failures if r.sent > run.reaped + 1.0),
            "last_failed_sent_s": max((r.sent - run.killed for r in failures), default=0.0),
            "failures_end_s": max((r.done - run.killed for r in failures), default=0.0),
            "ran_twice": sum(1 for n in run.runs.values() if n > 1),
        },
        rows or None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=["nats", "grpc"], default="nats")
    parser.add_argument("--window", type=float, default=6.0, help="seconds of load after the kill")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(bench(args.transport, args.window, args.clients))


if __name__ == "__main__":
    main()
