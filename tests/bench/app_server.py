"""Our framework's server for the benchmarks: the echo sample plus a ``bench`` service.

Run: ``python -m tests.bench.app_server --port 0 [--ws-port 0] [--loop uvloop]
[--profile FILE] [--procs N]``. It prints ``{"tcp": port, "ws": port, "pid": pid}`` once
listening, then answers ``stats`` on stdin (RSS, actors, sessions) until ``stop`` or end of
stdin, and stops gracefully (with ``--profile``, cProfile data of the whole serving time goes
to FILE).

``--procs N`` serves from N processes sharing the ports with ``SO_REUSEPORT`` (the app's
``reuse_port`` option, what the launcher's ``reuse_port = true`` sets): this process and N-1
children it starts (they stop when its stdin closes); ``pid`` is this process, whose tree
holds them all. ``stats`` reports this process only.

Routes: ``echo.echo`` (the sample: returns the request body), ``slow.nowait``,
``slow.wait10ms`` and ``slow.wait500ms`` (async handlers awaiting 0, 10 or 500 ms, for
``bench_slow_handler``) and, for the broadcast
benchmark, ``bench.join`` (bind the caller to ``{"uid"}`` and add it to one group; answers
the size of the push packet members will receive) and ``bench.fanout`` (``{"messages": n,
"burst": false}`` broadcasts to the group n times, each awaited before the next; with
``"burst": true`` all n are started at once, so their writes to one member can coalesce).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
from typing import Any

import psutil

from actors.app import App
from actors.handler import Handler, handler
from actors.payload import encode_result
from actors.session import Session
from samples.echo.server import build_app
from tests.bench.harness import (
    HOST,
    Child,
    add_common_args,
    children,
    emit,
    raise_fd_limit,
    run,
    serve_commands,
)
from tests.bench.wire import PUSH_ROUTE, TICK

GROUP = "bench"


class Bench(Handler):
    """The broadcast benchmark's routes (see the module docstring)."""

    service = "bench"

    @handler
    async def join(self, session: Session, body: dict[str, Any]) -> dict[str, int]:
        uid = str(body["uid"])
        await session.bind(uid)
        groups = self.app.groups
        if not await groups.exists(GROUP):
            await groups.create(GROUP)
        await groups.add(GROUP, uid)
        packet = self.app.encode_push_packet(PUSH_ROUTE, encode_result(TICK, self.app.serializer))
        return {"packet_size": len(packet)}

    @handler
    async def fanout(self, session: Session, body: dict[str, Any]) -> dict[str, int]:
        messages = int(body["messages"])
        groups = self.app.groups
        if body.get("burst"):
            sent = [groups.broadcast(GROUP, PUSH_ROUTE, TICK) for _ in range(messages)]
            unreached = sum(len(u) for u in await asyncio.gather(*sent))
        else:
            unreached = 0
            for _ in range(messages):
                unreached += len(await groups.broadcast(GROUP, PUSH_ROUTE, TICK))
        return {"sent": messages, "unreached": unreached}


class Slow(Handler):
    """The slow-handler benchmark's routes: handlers that await, standing in for a database
    call. ``nowait`` is the same async handler without the await (the reference)."""

    service = "slow"

    @handler
    async def nowait(self, session: Session, body: Any) -> dict[str, bool]:
        return {"ok": True}

    @handler
    async def wait10ms(self, session: Session, body: Any) -> dict[str, bool]:
        await asyncio.sleep(0.010)
        return {"ok": True}

    @handler
    async def wait500ms(self, session: Session, body: Any) -> dict[str, bool]:
        await asyncio.sleep(0.5)
        return {"ok": True}


def build(port: int, ws_port: int, heartbeat: float, reuse_port: bool = False) -> App:
    app = build_app(HOST, port, ws_port, heartbeat_interval=heartbeat, reuse_port=reuse_port)
    app.register(Bench)
    app.register(Slow)
    return app


def stats(app: App) -> dict[str, Any]:
    gc.collect()
    return {
        "rss": psutil.Process().memory_info().rss,
        "actors": app.system.actor_count,
        "sessions": len(app.sessions),
        "connections": app.connection_count,
    }


async def serve(args: argparse.Namespace) -> None:
    shared = args.procs > 1 or args.reuse_port
    app = build(args.port, args.ws_port, args.heartbeat, reuse_port=shared)
    profiler = cProfile.Profile() if args.profile else None
    async with app, children() as others:
        ports = {"tcp": app.address("tcp")[1], "ws": app.address("ws")[1]}
        for _ in range(args.procs - 1):
            other = await Child.start(
                "app_server",
                *("--port", ports["tcp"], "--ws-port", ports["ws"], "--reuse-port"),
                *("--loop", args.loop, "--heartbeat", args.heartbeat),
                *("--max-seconds", args.max_seconds),
            )
            others.append(other)
            await other.expect(timeout=60)
        emit({**ports, "pid": os.getpid(), "procs": args.procs})
        if profiler is not None:
            profiler.enable()
        try:
            await serve_commands({"stats": lambda: stats(app)}, args.max_seconds)
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--ws-port", type=int, default=0, help="WebSocket port (0: any)")
    parser.add_argument("--heartbeat", type=float, default=30.0, help="heartbeat interval, s")
    parser.add_argument("--profile", default="", help="write cProfile stats to this file")
    parser.add_argument("--procs", type=int, default=1, help="processes sharing the ports")
    parser.add_argument("--reuse-port", action="store_true", help="listen with SO_REUSEPORT")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="hard lifetime")
    args = parser.parse_args()
    raise_fd_limit()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
