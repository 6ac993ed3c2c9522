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
import time
from typing import Any

import nats

from tests.bench.harness import Histogram, add_common_args, emit, open_stdin, run, serve_commands

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
    histogram = Histogram()
    state = {"recording": False, "running": True, "count": 0, "errors": 0}

    async def loop() -> None:
        while state["running"]:
            sent = time.perf_counter()
            try:
                await nc.request(args.subject, BODY, timeout=5)
            except Exception:
                state["errors"] += 1
                continue
            if state["recording"]:
                state["count"] += 1
                histogram.samples.append(time.perf_counter() - sent)

    stdin = await open_stdin()
    emit({"ready": args.clients * args.depth})
    if (await asyncio.wait_for(stdin.readline(), args.max_seconds)).strip() != b"go":
        return
    tasks = [asyncio.ensure_future(loop()) for _ in range(args.clients * args.depth)]
    await asyncio.sleep(args.warmup)
    state["recording"] = True
    cpu_start, start = time.process_time(), time.perf_counter()
    await asyncio.sleep(args.seconds)
    state["recording"] = False
    state["running"] = False
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    await asyncio.wait(tasks, timeout=10)
    emit(
        {
            "count": state["count"],
            "errors": state["errors"],
            "elapsed": elapsed,
            "cpu": cpu / elapsed,
            "histogram": histogram.to_json(),
        }
    )
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
