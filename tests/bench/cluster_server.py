"""A cluster server for ``bench_cluster``: a ``connector`` frontend or a ``room`` backend.

    python -m tests.bench.cluster_server connector --nats URL --etcd HOST:PORT
    python -m tests.bench.cluster_server room --nats URL --etcd HOST:PORT

The room serves ``room.echo.echo`` (the echo sample's handler); the connector forwards it.
Prints ``{"tcp": port, "ws": port, "pid": pid}`` (the room: ``{"pid": pid}``) once it is part
of the cluster and exits on ``stop`` or end of stdin.
"""

from __future__ import annotations

import argparse
import cProfile
import os

from actors.app import App
from samples.echo.server import Echo
from tests.bench.harness import add_common_args, emit, run, serve_commands


async def serve(args: argparse.Namespace) -> None:
    common = {"mode": "cluster", "nats_url": args.nats, "etcd_endpoints": args.etcd}
    if args.role == "room":
        app = App(server_type="room", server_id="room-bench", frontend=False, **common)
        app.register(Echo)
    else:
        app = App(server_type="connector", server_id="connector-bench", **common)
        app.listen_tcp("127.0.0.1", 0)
        app.listen_ws("127.0.0.1", 0)
    profiler = cProfile.Profile() if args.profile else None
    async with app:
        if args.role == "room":
            emit({"pid": os.getpid()})
        else:
            emit({"tcp": app.address("tcp")[1], "ws": app.address("ws")[1], "pid": os.getpid()})
        if profiler is not None:
            profiler.enable()
        try:
            await serve_commands({}, args.max_seconds)
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("role", choices=["connector", "room"])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--profile", default="", help="write cProfile stats to this file")
    args = parser.parse_args()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
