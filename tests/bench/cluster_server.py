"""A cluster server for ``bench_cluster``: a ``connector`` frontend or a ``room`` backend.

    python -m tests.bench.cluster_server connector --nats URL --etcd HOST:PORT [--rpc grpc]
    python -m tests.bench.cluster_server room --nats URL --etcd HOST:PORT [--rpc grpc]

The room serves ``<room type>.echo.echo`` (the echo sample's handler); the connector forwards
it, and answers ``echo.echo`` itself (the same handler, no forwarding). The room type is
``room`` over NATS and ``room_grpc`` over gRPC (:func:`room_type`), so a NATS pair and a gRPC
pair can share one etcd without routing to each other. Prints
``{"tcp": port, "ws": port, "pid": pid}`` (the room: ``{"pid": pid}``) once it is part of the
cluster and exits on ``stop`` or end of stdin.
"""

from __future__ import annotations

import argparse
import cProfile
import os

from actors.app import App
from actors.modules.binding_storage import BindingStorage
from samples.echo.server import Echo
from tests.bench.harness import add_common_args, emit, run, serve_commands


def room_type(rpc: str) -> str:
    return "room" if rpc == "nats" else f"room_{rpc}"


async def serve(args: argparse.Namespace) -> None:
    common = {
        "mode": "cluster",
        "nats_url": args.nats,
        "etcd_endpoints": args.etcd,
        "rpc_transport": args.rpc,
    }
    if args.role == "room":
        server_type = room_type(args.rpc)
        app = App(
            server_type=server_type, server_id=f"{server_type}-bench", frontend=False, **common
        )
        app.register(Echo)
    else:
        app = App(server_type="connector", server_id=f"connector-{args.rpc}-bench", **common)
        app.register(Echo)  # echo.echo answered here: the client-facing part alone
        app.listen_tcp("127.0.0.1", 0)
        app.listen_ws("127.0.0.1", 0)
    if args.rpc == "grpc":  # the gRPC transport requires it (pushes and kicks by uid)
        app.register_module(BindingStorage(app), "binding_storage")
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
    parser.add_argument("--rpc", choices=["nats", "grpc"], default="nats", help="RPC transport")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--profile", default="", help="write cProfile stats to this file")
    args = parser.parse_args()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
