"""Each end of a forwarded request alone, under a load that does not change with it.

    python -m tests.bench.bench_ends [--rounds 1000] [--clients 100] [--repeat 3]
                                     [--seconds 2] [--loop asyncio]

``bench_cluster`` measures the whole path (client -> connector -> NATS -> room) with four
processes sharing the cores, so how many messages each read or write carries moves with
everything else, and a change of a few per cent at one end is lost in it. Here one end at a
time runs against the same real nats-server (Debian package ``nats-server``), and its CPU per
request is read from ``/proc/<pid>/stat`` (the processes: ``tests.bench.ends_server``, and
``tests.bench.nats_echo``'s responder):

* backend: this process sends closed rounds of ``--clients`` requests, encoded as a connector
  of ours forwards ``room.echo.echo`` (handshake already sent), to ``room-1``'s subject,
  answered by our room (``room``), by our NATS pipe echoing the bytes (``pipe``: the NATS
  part of the room's cost), or by nats-py's bare responder (``nats-py``, the raw responder of
  ``bench_cluster``); ``room - pipe`` is what the framework costs a backend per request;
* frontend: ``loadgen`` drives ``--clients`` x 1 against our connector, which answers
  ``echo.echo`` itself (``local``) and forwards ``room.echo.echo`` to a responder that sends
  one fixed answer (``forwarded``); ``forwarded - local`` is what forwarding costs the
  connector, NATS included.

Each configuration runs ``--repeat`` times, alternated; the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from actors.cluster.codec import SYS, RpcRequest, SessionSnapshot, encode_request
from tests.bench.bench_cluster import load
from tests.bench.ends_server import BODY, SUBJECT
from tests.bench.harness import (
    Child,
    add_common_args,
    children,
    client_loop,
    run,
    tree_cpu_seconds,
)
from tests.bench.report import write_results
from tests.services import NatsServer
from transport.nats import NatsPipe

BACKENDS = ("room", "pipe", "nats-py")
LIFETIME = ("--max-seconds", 3600)
HANDSHAKE = {"sys": {"platform": "bench", "libVersion": "0"}, "user": {}}


def forwarded(session_id: int, first: bool) -> bytes:
    """``room.echo.echo`` as connector ``c-1`` forwards it (the handshake with the first)."""
    snapshot = (
        SessionSnapshot(session_id, "c-1", "connector", None, {}, HANDSHAKE)
        if first
        else SessionSnapshot(session_id, "c-1", "connector", None, {}, None, True, True)
    )
    request = RpcRequest(SYS, "room.echo.echo", BODY, snapshot, mid=1)
    return encode_request(request, "c-1", "connector", 5.0)


async def backend_run(pipe: NatsPipe, pid: int, args: argparse.Namespace) -> float:
    """CPU µs per request of the responder ``pid`` over ``--rounds`` closed rounds."""
    loop = asyncio.get_running_loop()

    async def one_round(requests: list[bytes]) -> None:
        done = loop.create_future()
        left = len(requests)

        def answered(data: bytes | None, error: Exception | None) -> None:
            nonlocal left
            if error is not None and not done.done():
                done.set_exception(error)
            left -= 1
            if not left and not done.done():
                done.set_result(None)

        for request in requests:
            pipe.send_request(SUBJECT, request, 5.0, answered)
        await done

    clients = range(args.clients)
    await one_round([forwarded(s, True) for s in clients])
    later = [forwarded(s, False) for s in clients]
    for _ in range(max(1, args.rounds // 20)):  # warm-up
        await one_round(later)
    cpu = tree_cpu_seconds(pid)
    for _ in range(args.rounds):
        await one_round(later)
    return (tree_cpu_seconds(pid) - cpu) / (args.rounds * args.clients) * 1e6


async def frontend_run(connector: Child, port: int, route: str, args: argparse.Namespace) -> float:
    """CPU µs per request of the connector while ``loadgen`` requests ``route``."""
    async with children() as workers:
        worker = await Child.start(
            "loadgen",
            "--port",
            port,
            "--route",
            route,
            "--clients",
            args.clients,
            "--depth",
            1,
            "--seconds",
            args.seconds,
            "--warmup",
            args.warmup,
            "--loop",
            client_loop(args),
        )
        workers.append(worker)
        result = await load(worker, [connector.pid], args)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} errors requesting {route}")
    cpu_us: float = result["cpu_us"]
    return cpu_us


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    nats_server = NatsServer()
    await asyncio.to_thread(nats_server.start)
    common = ["--nats", nats_server.url, "--loop", args.loop, *LIFETIME]
    backend: dict[str, list[float]] = {kind: [] for kind in BACKENDS}
    frontend: dict[str, list[float]] = {"local": [], "forwarded": []}
    try:
        pipe = NatsPipe(nats_server.url, name="bench-ends", connect_timeout=5)
        await pipe.connect()
        for _ in range(args.repeat):
            for kind in BACKENDS:
                async with children() as servers:
                    server = (
                        await Child.start("nats_echo", "responder", "--subject", SUBJECT, *common)
                        if kind == "nats-py"
                        else await Child.start("ends_server", kind, *common)
                    )
                    servers.append(server)
                    await server.expect(timeout=30)
                    await pipe.flush(5)
                    backend[kind].append(await backend_run(pipe, server.pid, args))
        await pipe.close()
        async with children() as servers:
            answer = await Child.start("ends_server", "answer", *common)
            servers.append(answer)
            await answer.expect(timeout=30)
            connector = await Child.start("ends_server", "connector", *common)
            servers.append(connector)
            port = (await connector.expect(timeout=30))["tcp"]
            for _ in range(args.repeat):
                for name, route in (("local", "echo.echo"), ("forwarded", "room.echo.echo")):
                    frontend[name].append(await frontend_run(connector, port, route, args))
    finally:
        await asyncio.to_thread(nats_server.stop)
    median = {name: statistics.median(values) for name, values in {**backend, **frontend}.items()}
    return {
        "clients": args.clients,
        **{f"{name}_cpu_us": round(value, 2) for name, value in median.items()},
        "room_framework_cpu_us": round(median["room"] - median["pipe"], 2),
        "connector_forwarding_cpu_us": round(median["forwarded"] - median["local"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, seconds=2.0, clients=True)
    parser.add_argument("--clients", type=int, default=100, help="requests in flight")
    parser.add_argument("--warmup", type=float, default=0.5, help="frontend: before measuring")
    parser.add_argument("--rounds", type=int, default=1000, help="backend: closed rounds")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    args = parser.parse_args()
    write_results(f"ends-{args.loop}", run(measure(args)))


if __name__ == "__main__":
    main()
