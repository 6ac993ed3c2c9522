"""Raw grpcio unary calls, the gRPC yardstick of ``bench_cluster``.

    python -m tests.bench.grpc_echo responder
    python -m tests.bench.grpc_echo requester --port PORT --clients N --depth K --seconds S

The responder serves Pitaya's ``/protos.Pitaya/Call`` on 127.0.0.1 (a free port, printed as
``{"pid": ..., "port": ...}``) and answers every call with its request's bytes. The requester
runs ``clients x depth`` closed loops of that call on one channel (as our cluster keeps one
channel per peer), bytes in and out with no (de)serializer, on grpcio's asyncio API (what
``transport.grpc_rpc`` uses); it waits for ``go`` on stdin, then measures like ``loadgen``.
So the pair is what a gRPC forward costs in grpcio alone, with none of our framework.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import grpc
import grpc.aio

from tests.bench.harness import (
    closed_loops,
    emit,
    run_yardstick,
    serve_commands,
    yardstick_parser,
)
from tests.bench.nats_echo import BODY

SERVICE, METHOD = "protos.Pitaya", "Call"


async def responder(args: argparse.Namespace) -> None:
    async def echo(request: bytes, _context: Any) -> bytes:
        return request

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(echo)  # no (de)serializers: bytes
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    emit({"pid": os.getpid(), "port": port})
    try:
        await serve_commands({}, args.max_seconds)
    finally:
        await server.stop(grace=None)


async def requester(args: argparse.Namespace) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{args.port}") as channel:
        call = channel.unary_unary(f"/{SERVICE}/{METHOD}")
        await call(BODY, timeout=5)  # connected before the loops start
        await closed_loops(args, lambda: call(BODY, timeout=5))


def main() -> None:
    parser = yardstick_parser(__doc__)
    parser.add_argument("--port", type=int, default=0, help="the responder's (requester)")
    args = parser.parse_args()
    if args.role == "requester" and not args.port:
        parser.error("the requester needs --port (the responder prints it)")
    run_yardstick(args, responder, requester)


if __name__ == "__main__":
    main()
