"""Raw nats-py request/reply, the yardstick of ``bench_cluster``.

    python -m tests.bench.nats_echo responder --nats URL
    python -m tests.bench.nats_echo requester --nats URL --clients N --depth K --seconds S

The responder answers every request on ``bench.echo`` with its payload. The requester runs
``clients x depth`` closed loops of ``await nc.request(...)`` (the same concurrency as the
framework's load generator), waits for ``go`` on stdin, then measures like ``loadgen``.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import Any

import nats

from tests.bench.harness import (
    closed_loops,
    emit,
    run_yardstick,
    serve_commands,
    yardstick_parser,
)

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
    parser = yardstick_parser(__doc__)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--subject", default=SUBJECT, help="the subject requested and answered")
    run_yardstick(parser.parse_args(), responder, requester)


if __name__ == "__main__":
    main()
