"""A request/response load process: N connections, each keeping ``depth`` requests in flight.

Run by ``bench_reqrep`` (one or more of these per configuration)::

    python -m tests.bench.loadgen --port P [--ws] --clients N --depth K --seconds S

It connects and handshakes every client, prints ``{"ready": ...}``, waits for ``go`` on stdin,
then runs ``--warmup`` seconds unmeasured and ``--seconds`` measured, and prints the number
of responses in the window, the errors, a latency histogram and its own CPU use (to tell
whether the load generator, not the server, was the limit).

Closed loop: a client sends its next request as soon as a response arrives. The request
packets (ids 1..K) are encoded once and reused: ids may repeat because a connection's
responses come back in order and an id is reused only once its response arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from tests.bench.harness import HOST, Histogram, add_common_args, emit, open_stdin, run
from tests.bench.wire import (
    RawConnection,
    close_all,
    connect_many,
    request_packet,
    route_dictionary,
)
from transport.packet import PacketDecoder, PacketType

ROUTE = "echo.echo"
BODY = b'{"msg":"hello, benchmark"}'
_DATA = PacketType.DATA


class Window:
    """The measuring state shared by every client of this process."""

    __slots__ = ("count", "drained", "errors", "histogram", "outstanding", "recording", "running")

    def __init__(self) -> None:
        self.running = True
        self.recording = False
        self.count = 0
        self.errors = 0
        self.histogram = Histogram()
        self.outstanding = 0
        self.drained = asyncio.Event()
        """Set once ``running`` is off and every request in flight was answered."""


class Driver:
    """One client connection in a closed loop; ``receive`` is its packet-stream sink."""

    __slots__ = ("conn", "decoder", "depth", "sent_at", "window", "wire")

    def __init__(self, conn: RawConnection, wire: list[bytes], depth: int, window: Window) -> None:
        self.conn = conn
        self.wire = wire
        self.depth = depth
        self.window = window
        self.decoder = PacketDecoder()
        self.sent_at = [0.0] * (depth + 1)
        conn.attach(self.receive)

    def start(self) -> None:
        now = time.perf_counter()
        for message_id in range(1, self.depth + 1):
            self.sent_at[message_id] = now
        self.window.outstanding += self.depth
        self.conn.write(b"".join(self.wire[1:]))

    def receive(self, data: bytes) -> None:
        now = time.perf_counter()
        window = self.window
        sent_at = self.sent_at
        wire = self.wire
        out: list[bytes] = []
        for packet in self.decoder.feed(data):
            if packet.type is not _DATA:
                continue
            body = packet.body
            message_id = body[1]  # ids <= 127: a one-byte varint
            if body[0] & 0x20:
                window.errors += 1
            if window.recording:
                window.count += 1
                window.histogram.samples.append(now - sent_at[message_id])
            if window.running:
                sent_at[message_id] = now
                out.append(wire[message_id])
            else:
                window.outstanding -= 1
                if not window.outstanding:
                    window.drained.set()
        if out:
            self.conn.write(out[0] if len(out) == 1 else b"".join(out))


async def measure(args: argparse.Namespace) -> None:
    conns = await connect_many(HOST, args.port, args.clients, websocket=args.ws)
    routes = route_dictionary(await conns[0].ready)
    kind = type(conns[0])
    wire = [b""] + [
        kind.wire(request_packet(i, args.route, BODY, routes)) for i in range(1, args.depth + 1)
    ]
    window = Window()
    drivers = [Driver(conn, wire, args.depth, window) for conn in conns]
    stdin = await open_stdin()
    emit({"ready": len(drivers)})
    if (await asyncio.wait_for(stdin.readline(), args.max_seconds)).strip() != b"go":
        await close_all(conns)
        return
    for driver in drivers:
        driver.start()
    await asyncio.sleep(args.warmup)
    window.recording = True
    cpu_start, start = time.process_time(), time.perf_counter()
    await asyncio.sleep(args.seconds)
    window.recording = False
    window.running = False
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # Closing with responses still on their way would only make the server log errors.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(window.drained.wait(), 5.0)
    result = {
        "count": window.count,
        "errors": window.errors,
        "elapsed": elapsed,
        "cpu": cpu / elapsed,
        "histogram": window.histogram.to_json(),
    }
    await close_all(conns)
    emit(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser, seconds=2.0)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", action="store_true", help="WebSocket instead of TCP")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--depth", type=int, default=1, help="requests in flight per client")
    parser.add_argument("--route", default=ROUTE, help="the route requested (body is JSON)")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="hard lifetime")
    args = parser.parse_args()
    if not 1 <= args.depth <= 127:
        parser.error("--depth must be within 1..127 (one-byte message ids)")
    run(asyncio.wait_for(measure(args), args.max_seconds), args.loop)


if __name__ == "__main__":
    main()
