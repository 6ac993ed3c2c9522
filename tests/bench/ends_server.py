"""One end of a forwarded request, alone on a real NATS: a child of ``bench_ends``.

    python -m tests.bench.ends_server room --nats URL        # our room: the echo handler
    python -m tests.bench.ends_server pipe --nats URL        # our NATS pipe, echoing the bytes
    python -m tests.bench.ends_server answer --nats URL      # our pipe, one fixed answer
    python -m tests.bench.ends_server connector --nats URL   # our connector, forwarding

Every responder listens on ``room-1``'s subject (``pitaya/servers/room/room-1``). The room and
the connector are cluster apps on NATS with an in-memory discovery (no etcd: the connector's
discovery holds a ``room-1`` of ours, answered by whatever responder runs). Prints
``{"pid": pid}`` (the connector: and ``"tcp": port``) once subscribed, then serves until
``stop`` or end of stdin.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from actors.app import App
from actors.cluster.codec import EXTRAS_KEY, EXTRAS_VERSION, encode_answer
from actors.cluster.discovery import ServerInfo
from actors.cluster.memory import MemoryCluster
from actors.cluster.nats_rpc import NatsRpc
from actors.cluster.subjects import server_subject
from samples.echo.server import Echo
from tests.bench.harness import add_common_args, emit, run, serve_commands
from transport.nats import NatsPipe

ROOM = ServerInfo(id="room-1", type="room", metadata={EXTRAS_KEY: EXTRAS_VERSION})
SUBJECT = server_subject(ROOM.type, ROOM.id)
BODY = b'{"msg":"hello, benchmark"}'
ANSWER = encode_answer(BODY)
"""What the ``answer`` responder sends back: the room's answer to ``echo.echo``."""


def cluster_app(nats_url: str, network: MemoryCluster, **options: Any) -> App:
    rpc = NatsRpc(nats_url, name=options["server_id"], connect_timeout=5)
    return App(mode="cluster", discovery=network.discovery(), rpc=(rpc, rpc), **options)


async def serve(args: argparse.Namespace) -> None:
    network = MemoryCluster()
    if args.role in ("room", "connector"):
        if args.role == "room":
            app = cluster_app(
                args.nats, network, server_type="room", server_id="room-1", frontend=False
            )
        else:
            placeholder = network.discovery()  # room-1, as a server of ours registers it
            await placeholder.connect()
            await placeholder.start(ROOM)
            app = cluster_app(args.nats, network, server_type="connector", server_id="c-1")
            app.listen_tcp("127.0.0.1", 0)
        app.register(Echo)
        async with app:
            ready: dict[str, Any] = {"pid": os.getpid()}
            if args.role == "connector":
                ready["tcp"] = app.address("tcp")[1]
            emit(ready)
            await serve_commands({}, args.max_seconds)
        return
    pipe = NatsPipe(args.nats, name=args.role, connect_timeout=5)
    await pipe.connect()
    fixed = args.role == "answer"
    await pipe.subscribe(
        SUBJECT, lambda data, reply: reply and pipe.answer_to(reply, ANSWER if fixed else data)
    )
    await pipe.flush(5)
    emit({"pid": os.getpid()})
    await serve_commands({}, args.max_seconds)
    await pipe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("role", choices=["room", "pipe", "answer", "connector"])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    run(serve(args), args.loop)


if __name__ == "__main__":
    main()
