"""A process holding many idle or broadcast-receiving connections.

Run by ``bench_broadcast`` and ``bench_memory``::

    python -m tests.bench.members --port P --count N [--ws] [--join PREFIX --expect M]

It opens ``--count`` handshaken connections (raising its fd limit first) and prints
``{"ready": N}``. Without ``--join`` it then just holds them until ``stop`` or end of stdin.
With ``--join`` every connection calls ``bench.join`` with uid ``PREFIX-<i>`` first (the
server answers the size of one broadcast packet), and after ``ready`` the process counts
received bytes per connection until every one has ``--expect`` packets' worth (or
``--timeout`` passes), then prints when the first and the last connection completed.
Counting bytes instead of decoding packets keeps the receiving side cheap, so the server's
fan-out, not this process, is what gets measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from tests.bench.harness import HOST, add_common_args, emit, open_stdin, raise_fd_limit, run
from tests.bench.wire import (
    JOIN_ROUTE,
    RawConnection,
    close_all,
    connect_many,
    request_packet,
    response_id,
    route_dictionary,
)
from transport.packet import PacketDecoder, PacketType


class Joiner:
    """Sink until the join response: resolves with its JSON body."""

    def __init__(self) -> None:
        self.decoder = PacketDecoder()
        self.answer: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()

    def __call__(self, data: bytes) -> None:
        for packet in self.decoder.feed(data):
            if packet.type is PacketType.DATA and not self.answer.done():
                body = packet.body
                if body[0] & 0x20 or response_id(body) != 1:
                    self.answer.set_exception(RuntimeError(f"join failed: {body!r}"))
                else:
                    self.answer.set_result(json.loads(body[2:]))


class Tally:
    """Sink counting bytes; notes when the expected amount has arrived."""

    __slots__ = ("expected", "finished", "first", "last", "received")

    def __init__(self, expected: int, finished: asyncio.Event) -> None:
        self.expected = expected
        self.finished = finished
        self.received = 0
        self.first = 0.0
        self.last = 0.0

    def __call__(self, data: bytes) -> None:
        if not self.received:
            self.first = time.monotonic()
        self.received += len(data)
        if self.received >= self.expected and not self.last:
            self.last = time.monotonic()
            self.finished.set()


async def join(conns: list[RawConnection], prefix: str) -> int:
    """Join every connection to the group; returns the broadcast packet size."""
    joiners = []
    for index, conn in enumerate(conns):
        routes = route_dictionary(await conn.ready)
        joiner = Joiner()
        conn.attach(joiner)
        conn.write(conn.wire(request_packet(1, JOIN_ROUTE, {"uid": f"{prefix}-{index}"}, routes)))
        joiners.append(joiner)
    answers = await asyncio.gather(*(j.answer for j in joiners))
    return answers[0]["packet_size"]


async def count(conns: list[RawConnection], expected: int, timeout: float) -> dict[str, float]:
    tallies = []
    for conn in conns:
        finished = asyncio.Event()
        tally = Tally(expected, finished)
        conn.attach(tally)
        tallies.append(tally)
    emit({"ready": len(conns)})
    cpu_start = time.process_time()
    waits = [asyncio.create_task(t.finished.wait()) for t in tallies]
    await asyncio.wait(waits, timeout=timeout)
    cpu = time.process_time() - cpu_start
    for task in waits:
        task.cancel()
    done = [t for t in tallies if t.last]
    return {
        "complete": len(done),
        "bytes": sum(t.received for t in tallies),
        "first": min((t.first for t in tallies if t.first), default=0.0),
        "last": max((t.last for t in done), default=0.0),
        "cpu_seconds": cpu,
    }


async def hold(args: argparse.Namespace) -> None:
    conns = await connect_many(HOST, args.port, args.count, websocket=args.ws, parallel=200)
    if args.join:
        packet_size = await join(conns, args.join)
        result = await count(conns, packet_size * args.expect, args.timeout)
        emit({**result, "packet_size": packet_size})
    else:
        emit({"ready": len(conns)})
        stdin = await open_stdin()
        await asyncio.wait_for(stdin.readline(), args.timeout)
    await close_all(conns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", action="store_true", help="WebSocket instead of TCP")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--join", default="", help="join the broadcast group, uid prefix")
    parser.add_argument("--expect", type=int, default=0, help="broadcasts to wait for")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on the wait")
    args = parser.parse_args()
    raise_fd_limit()
    run(asyncio.wait_for(hold(args), args.timeout + 120), args.loop)


if __name__ == "__main__":
    main()
