"""Raw nats-py request/reply, the yardstick of ``bench_cluster``.

    python -m tests.bench.nats_echo responder --nats URL
    python -m tests.bench.nats_echo requester --nats URL --clients N --depth K --seconds S

The responder answers every request on ``bench.echo`` with its payload. The requester runs
``clients x depth`` closed loops of ``await nc.request(...)`` (the same concurrency as the
framework's load generator), waits for ``go`` on stdin, then measures like ``loadgen``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from functools import partial
from typing import Any

import nats

from tests.bench.harness import add_common_args, closed_loops, emit, run, serve_commands

SUBJECT = "bench.echo"
BODY = b'{"msg":"hello, benchmark"}'


async def responder(args: argparse.Namespace) -> None:
    nc = await nats.connect(args.nats)

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(args.subject, cb=echo)
    await nc.flush()
    emit({"pid": os.getpid()})
    await serve_commands({}, args.max_seconds)
    await nc.close()


async def requester(args: argparse.Namespace) -> None:
    nc = await nats.connect(args.nats)
    await closed_loops(args, partial(nc.request, args.subject, BODY, timeout=5))
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser, seconds=2.0)
    parser.add_argument("role", choices=["responder", "requester"])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--subject", default=SUBJECT, help="the subject requested and answered")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    run(
        asyncio.wait_for(
            (responder if args.role == "responder" else requester)(args), args.max_seconds
        ),
        args.loop,
    )


if __name__ == "__main__":
    main()
