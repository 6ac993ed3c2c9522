"""A cluster server for ``bench_cluster``: a ``connector`` frontend or a ``room`` backend.

    python -m tests.bench.cluster_server connector --nats URL --etcd HOST:PORT [--rpc grpc]
    python -m tests.bench.cluster_server room --nats URL --etcd HOST:PORT [--rpc grpc]
                                               [--without-framework]

The room serves ``<room type>.echo.echo`` (the echo sample's handler); the connector forwards
it, and answers ``echo.echo`` itself (the same handler, no forwarding). The room type is
``room`` over NATS and ``room_grpc`` over gRPC (:func:`room_type`), so a NATS pair and a gRPC
pair can share one etcd without routing to each other. Prints
``{"tcp": port, "ws": port, "pid": pid}`` (the room: ``{"pid": pid}``) once it is part of the
cluster and exits on ``stop`` or end of stdin.

``--without-framework`` (a NATS room): the room's requests are answered straight from the NATS
reader, with no bridge, session, sequencer or handler: the Pitaya envelope decoded, the body
echoed through JSON, the answer encoded and published. It is what a room with no framework at
all would cost, next to nats-py's bare responder (``bench_cluster --room-without-framework``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
from functools import partial
from typing import Any

from actors.app import App
from actors.cluster.codec import decode_request, encode_answer
from actors.cluster.nats_rpc import NatsRpc
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
            if args.without_framework:
                _without_framework(app)
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


def _without_framework(app: App) -> None:
    """See the module docstring: the room's subscription handed to :func:`_echo_directly`
    (reaching into the NATS pipe: a yardstick, not a way to serve)."""
    assert app.cluster is not None
    rpc = app.cluster.rpc_server
    assert isinstance(rpc, NatsRpc), "--without-framework is for a NATS room"
    lean = rpc.pipe._lean
    assert lean is not None, "the installed nats-py has no direct path"
    direct = lean._direct
    for sid, deliver in list(direct.items()):
        if isinstance(deliver, partial) and deliver.args[:1] == (rpc._inbound,):
            direct[sid] = partial(_echo_directly, lean)
            return
    raise RuntimeError("the room's subscription was not found")


def _echo_directly(lean: Any, _subject: bytes, reply: bytes, data: bytes, _headers: Any) -> None:
    request = decode_request(data)
    body = json.dumps(json.loads(request.data), separators=(",", ":")).encode()
    lean.publish_direct(reply.decode(), encode_answer(body), delivered=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("role", choices=["connector", "room"])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--rpc", choices=["nats", "grpc"], default="nats", help="RPC transport")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--profile", default="", help="write cProfile stats to this file")
    parser.add_argument(
        "--without-framework",
        action="store_true",
        help="room over NATS: answer with no framework at all (see the module docstring)",
    )
    args = parser.parse_args()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
