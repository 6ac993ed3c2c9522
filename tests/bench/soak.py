"""Soak: the chat sample under a bounded, steady load of users joining, chatting and leaving.

    python -m tests.bench.soak [--seconds 60] [--clients 1000] [--processes 2]

The chat server (``samples.chat``) runs in its own process; the users run in ``--processes``
load processes speaking the wire protocol with the raw connections of ``tests.bench.wire``.
Every user loops over *visits*: connect (a quarter of them over WebSocket), ``room.join``,
``--messages`` requests ``room.message`` with a think time between actions, leave (close), a
short pause, and again. Everyone is in one room, so each join, message and leave is pushed to
every member: the think time sets the load (by default about 25,000 pushes/s with 1,000
users over the first minute, rising towards 50,000/s as visits overlap), chosen to keep a
2-core machine busy but not saturated (the single room actor of the sample saturates near
65,000 pushes/s there), which is what a soak is about: nothing may fail, leak or drift.

It reports the errors (must be 0: error responses, request timeouts, connections closed by
the server, failed connects, wrong answers), the server's RSS at the start and the end of the
load and once every user left (plus a sample every ``--sample`` seconds), and the p50/p99
latency of the requests; a table is printed and ``results/soak.json`` written. The exit
status is 1 when there were errors.

The load processes and the server are children of this one, driven over stdin/stdout (see
``tests.bench.harness``); each has a hard lifetime, so nothing outlives a crashed parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from typing import Any

import psutil

from tests.bench.harness import (
    HOST,
    Child,
    Histogram,
    children,
    client_loop,
    emit,
    open_stdin,
    raise_fd_limit,
    run,
    serve_commands,
    split,
)
from tests.bench.report import write_results
from tests.bench.wire import RawConnection, connect, request_packet, response_id, route_dictionary
from transport.message import decode_message
from transport.packet import HEARTBEAT_PACKET, PacketDecoder, PacketType

JOIN = "room.join"
MESSAGE = "room.message"
REQUEST_TIMEOUT = 10.0
_DATA = PacketType.DATA
_HEARTBEAT = PacketType.HEARTBEAT
_KICK = PacketType.KICK


# -- the server process -----------------------------------------------------------------------


class ErrorCount(logging.Handler):
    """Counts the server's log records at WARNING and above (a soak should log none)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.last = record.getMessage()[:200]


async def serve(args: argparse.Namespace) -> None:
    from samples.chat.room import build_app

    logging.basicConfig(level=logging.WARNING)
    errors = ErrorCount()
    logging.getLogger().addHandler(errors)
    app = build_app(HOST, 0, 0)
    process = psutil.Process()

    def stats() -> dict[str, Any]:
        gc.collect()
        return {
            "rss": process.memory_info().rss,
            "cpu": sum(process.cpu_times()[:2]),
            "sessions": len(app.sessions),
            "connections": app.connection_count,
            "actors": app.system.actor_count,
            "tasks": len(asyncio.all_tasks()),
            "logged_warnings": errors.count,
            "last_warning": errors.last,
        }

    async with app:
        emit({"tcp": app.address("tcp")[1], "ws": app.address("ws")[1], "pid": os.getpid()})
        await serve_commands({"stats": stats}, args.max_seconds)


# -- the load processes -----------------------------------------------------------------------


class Tally:
    """What one load process counts."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.pushes = 0
        self.visits = 0
        self.histogram = Histogram()
        self.by_route = {JOIN: Histogram(), MESSAGE: Histogram()}
        self.windows: dict[int, Histogram] = {}
        """Latencies by window of ``--sample`` seconds since the start: drift shows here."""
        self.began = time.perf_counter()
        self.window = 5.0


class Visit:
    """One user's connection: the packet sink, requests in flight, pushes counted."""

    __slots__ = ("conn", "decoder", "leaving", "next_id", "pending", "routes", "tally")

    def __init__(self, conn: RawConnection, tally: Tally) -> None:
        self.conn = conn
        self.tally = tally
        self.decoder = PacketDecoder()
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0
        self.leaving = False
        assert conn.ready.done()
        self.routes = route_dictionary(conn.ready.result())
        conn.attach(self.receive)

    def receive(self, data: bytes) -> None:
        for kind, body in self.decoder.feed_raw(data):
            if kind is _DATA:
                if (body[0] >> 1) & 0x07 == 2:  # a response
                    future = self.pending.pop(response_id(body), None)
                    if future is not None and not future.done():
                        future.set_result(body)
                else:
                    self.tally.pushes += 1
            elif kind is _HEARTBEAT:
                self.conn.write(self.conn.wire(HEARTBEAT_PACKET))
            elif kind is _KICK:
                self.tally.errors["kicked"] += 1

    async def request(self, route: str, body: dict[str, Any]) -> Any:
        """The decoded answer, or None after counting what went wrong."""
        self.next_id += 1
        message_id = self.next_id
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        started = time.perf_counter()
        self.conn.write(self.conn.wire(request_packet(message_id, route, body, self.routes)))
        done, _ = await asyncio.wait(
            {future, self.conn.lost}, timeout=REQUEST_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        self.tally.requests[route] += 1
        if future not in done:
            self.pending.pop(message_id, None)
            self.tally.errors["closed by server" if done else f"timeout {route}"] += 1
            return None
        now = time.perf_counter()
        latency = now - started
        tally = self.tally
        tally.histogram.samples.append(latency)
        tally.by_route[route].samples.append(latency)
        window = int((now - tally.began) / tally.window)
        tally.windows.setdefault(window, Histogram()).samples.append(latency)
        message = decode_message(future.result(), routes=self.routes)
        answer = json.loads(message.data)
        if message.error:
            self.tally.errors[f"{route} {answer.get('code')}"] += 1
            return None
        return answer

    async def leave(self) -> None:
        self.leaving = True
        self.conn.close()
        await asyncio.wait_for(self.conn.lost, 10)


async def user(
    index: int, args: argparse.Namespace, tally: Tally, stop: asyncio.Event, rng: random.Random
) -> None:
    websocket = index % 4 == 0
    port = args.ws_port if websocket else args.port

    async def think(mean: float) -> bool:
        """Sleep about ``mean`` seconds; False once the soak is over."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(0.5 * mean, 1.5 * mean))
        return not stop.is_set()

    # The first joins are spread over the ramp-up (1,000 joins at once is another test).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), rng.uniform(0, args.ramp))
    while not stop.is_set():
        try:
            conn = await connect(HOST, port, websocket=websocket)
        except (OSError, TimeoutError) as exc:
            tally.errors[f"connect: {type(exc).__name__}"] += 1
            await think(1.0)
            continue
        visit = Visit(conn, tally)
        tally.visits += 1
        joined = await visit.request(JOIN, {"name": f"user-{args.seed}-{index}"})
        if joined is not None and joined.get("result") != "success":
            tally.errors["wrong join answer"] += 1
        for n in range(args.messages):
            if joined is None or not await think(args.think):
                break
            answer = await visit.request(MESSAGE, {"content": f"message {n} from {index}"})
            if answer is not None and answer != {"result": "success"}:
                tally.errors["wrong message answer"] += 1
        with contextlib.suppress(TimeoutError):
            await visit.leave()
        await think(args.pause)


async def load(args: argparse.Namespace) -> None:
    raise_fd_limit()
    tally = Tally()
    tally.window = args.sample
    stop = asyncio.Event()
    rng = random.Random(args.seed)
    stdin = await open_stdin()
    emit({"ready": args.clients})
    if (await asyncio.wait_for(stdin.readline(), args.max_seconds)).strip() != b"go":
        return
    users = [
        asyncio.ensure_future(user(i, args, tally, stop, random.Random(rng.random())))
        for i in range(args.clients)
    ]
    cpu_start = time.process_time()
    tally.began = time.perf_counter()
    await asyncio.wait_for(stdin.readline(), args.max_seconds)  # "stop" or end of stdin
    stop.set()
    done, pending = await asyncio.wait(users, timeout=REQUEST_TIMEOUT + 10)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            tally.errors[f"crash: {task.exception()!r}"] += 1
    emit(
        {
            "errors": dict(tally.errors),
            "requests": dict(tally.requests),
            "pushes": tally.pushes,
            "visits": tally.visits,
            "unfinished_users": len(pending),
            "cpu": time.process_time() - cpu_start,
            "histogram": tally.histogram.to_json(),
            "by_route": {route: h.to_json() for route, h in tally.by_route.items()},
            "windows": {str(w): h.to_json() for w, h in tally.windows.items()},
        }
    )


# -- the parent -------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> int:
    budget = args.seconds + 120
    async with children() as started:
        server = await Child.start("soak", "server", "--max-seconds", budget)
        started.append(server)
        ports = await server.expect(30)
        idle = await server.ask("stats")
        loop = client_loop(args)
        loads = []
        for part, clients in enumerate(split(args.clients, args.processes)):
            child = await Child.start(
                "soak", "load", "--port", ports["tcp"], "--ws-port", ports["ws"],
                "--clients", clients, "--seed", part, "--think", args.think,
                "--messages", args.messages, "--pause", args.pause, "--ramp", args.ramp,
                "--sample", args.sample,
                "--max-seconds", budget, "--loop", loop,
            )  # fmt: skip
            started.append(child)
            loads.append(child)
        for child in loads:
            await child.expect(30)
        print(f"soak: {args.clients} users for {args.seconds:.0f}s ...", file=sys.stderr)
        for child in loads:
            child.send("go")
        began = time.monotonic()
        samples: list[dict[str, Any]] = []
        while (elapsed := time.monotonic() - began) < args.seconds:
            await asyncio.sleep(min(args.sample, args.seconds - elapsed))
            stats = await server.ask("stats")
            samples.append(
                {
                    "t_s": round(time.monotonic() - began, 1),
                    "rss_mib": stats["rss"] / 2**20,
                    "sessions": stats["sessions"],
                    "actors": stats["actors"],
                    "tasks": stats["tasks"],
                    "server_cpu_%": 0.0,
                    "cpu": stats["cpu"],
                }
            )
        end = samples[-1]
        for child in loads:
            child.send("stop")
        parts = [await child.expect(REQUEST_TIMEOUT + 30) for child in loads]
        for child in loads:
            await child.stop()
        after = await settle(server)

    previous_cpu, previous_t = idle["cpu"], 0.0
    for index, sample in enumerate(samples):
        window = Histogram.merged(part["windows"].get(str(index), {}) for part in parts)
        sample["requests"] = window.count
        sample["p50_ms"] = window.percentile(50)
        sample["p99_ms"] = window.percentile(99)
        cpu = sample.pop("cpu")
        sample["server_cpu_%"] = 100 * (cpu - previous_cpu) / max(sample["t_s"] - previous_t, 0.1)
        previous_cpu, previous_t = cpu, sample["t_s"]
    errors: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    for part in parts:
        errors.update(part["errors"])
        requests.update(part["requests"])
    histogram = Histogram.merged(part["histogram"] for part in parts)
    warm = samples[min(len(samples) - 1, max(0, len(samples) // 4))]
    results: dict[str, Any] = {
        "users": args.clients,
        "seconds": args.seconds,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "unfinished_users": sum(p["unfinished_users"] for p in parts),
        "visits": sum(p["visits"] for p in parts),
        "joins": requests[JOIN],
        "messages": requests[MESSAGE],
        "requests_per_s": sum(requests.values()) / args.seconds,
        "pushes_received": sum(p["pushes"] for p in parts),
        "pushes_per_s": sum(p["pushes"] for p in parts) / args.seconds,
        "latency_p50_ms": histogram.percentile(50),
        "latency_p99_ms": histogram.percentile(99),
        "latency_max_ms": histogram.percentile(100),
        **{
            f"{route.split('.')[1]}_latency_p{p}_ms": Histogram.merged(
                part["by_route"][route] for part in parts
            ).percentile(p)
            for route in (JOIN, MESSAGE)
            for p in (50, 99)
        },
        "rss_idle_mib": idle["rss"] / 2**20,
        f"rss_at_{warm['t_s']}s_mib": warm["rss_mib"],
        "rss_end_mib": end["rss_mib"],
        "rss_growth_warm_to_end_mib": end["rss_mib"] - warm["rss_mib"],
        "rss_after_all_left_mib": after["rss"] / 2**20,
        "sessions_after_all_left": after["sessions"],
        "server_warnings_logged": after["logged_warnings"],
        "last_server_warning": after["last_warning"],
        "load_cpu_s": sum(p["cpu"] for p in parts),
    }
    write_results("soak", results, samples)
    failed = (
        results["errors"]
        or results["unfinished_users"]
        or after["sessions"]
        or not results["messages"]  # a soak that did nothing proves nothing
    )
    print("soak:", "FAILED" if failed else "ok (0 errors)", file=sys.stderr)
    return 1 if failed else 0


async def settle(server: Child, timeout: float = 15) -> dict[str, Any]:
    """The server's stats once every user's session is gone (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await server.ask("stats")
        if stats["sessions"] == 0 or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", choices=("soak", "server", "load"), default="soak")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--clients", type=int, default=1000, help="simulated users")
    parser.add_argument("--processes", type=int, default=2, help="load processes")
    parser.add_argument("--think", type=float, default=40.0, help="mean s between actions")
    parser.add_argument("--messages", type=int, default=2, help="chat messages per visit")
    parser.add_argument("--pause", type=float, default=2.0, help="mean s between visits")
    parser.add_argument("--ramp", type=float, default=20.0, help="s over which users arrive")
    parser.add_argument("--sample", type=float, default=5.0, help="s between server samples")
    parser.add_argument("--client-loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    # Internal: how the parent starts its children.
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ws-port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    if args.role == "server":
        raise_fd_limit()
        run(serve(args))
    elif args.role == "load":
        run(load(args), args.loop)
    else:
        raise_fd_limit()
        sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
