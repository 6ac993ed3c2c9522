"""Record what Go Pitaya puts on NATS, for whoever implements our side of the protocol.

python -m tests.interop.capture [OUT]      (default: stdout)

Starts nats-server, etcd, the Go connector and the Go room (tests/interop/go), listens to
every subject with a NATS wildcard subscription, and drives one scenario with Pitaya's Go
client: a forwarded request, a notify, a backend bind, push to front, a push from the
backend, user RPCs both ways, an error, push and kick by uid, a unique-session bind, a kick.
Each NATS message is written as one JSON line: subject, reply subject, the bytes in hex, and
the bytes decoded with Pitaya's protobuf messages (transport/protos/pitaya.proto) where one
fits the subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import nats
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message

from tests.interop.harness import GoClient, GoServer, RequestFailed, build_programs
from tests.services import EtcdServer, NatsServer
from transport.protos import pitaya_pb2 as pb


def decode(subject: str, data: bytes, replies: dict[str, str]) -> dict[str, Any]:
    """The message the bytes are, guessed from the subject (and from what it answers)."""
    kind: type[Message] | None = None
    if subject.startswith("pitaya/servers/"):
        kind = pb.Request
    elif subject.endswith("/push"):
        kind = pb.Push
    elif subject.endswith("/kick"):
        kind = pb.KickMsg
    elif subject.endswith("/bindings"):
        kind = pb.BindMsg
    elif subject in replies:
        kind = pb.Response
    if kind is None:
        return {}
    try:
        message = kind.FromString(data)
    except DecodeError as exc:
        return {"as": kind.__name__, "error": str(exc)}
    decoded: dict[str, Any] = {
        "as": kind.__name__,
        "fields": MessageToDict(message, preserving_proto_field_name=True),
    }
    if isinstance(message, pb.Request):
        for name in ("metadata",):
            raw = getattr(message, name)
            if raw:
                decoded[f"{name}_text"] = raw.decode(errors="replace")
        if message.session.data:
            decoded["session_data_text"] = message.session.data.decode(errors="replace")
        if message.msg.data:
            decoded["msg_data_text"] = message.msg.data.decode(errors="replace")
    if isinstance(message, pb.Response) and message.data:
        decoded["data_text"] = message.data.decode(errors="replace")
    return decoded


async def scenario(client: GoClient, other: GoClient, connector: GoServer) -> None:
    step = client.request
    await step("room.room.echo", {"n": 1})
    await client.notify("room.room.notify", {"tag": "t"})
    await step("room.room.bind", {"uid": "ann"})
    await step("room.room.setdata", {"data": {"level": 3}})
    await step("room.room.push", {"body": {"x": 1}})
    await step("room.room.rpc", {"route": "connector.connectorremote.echo", "msg": "hi"})
    await step("connector.me.rpc", {"route": "room.roomremote.echo", "msg": "yo"})
    with contextlib.suppress(RequestFailed):
        await step("room.room.fail", {"code": "GAME-7", "msg": "no luck"})
    await other.connect(connector.address("tcp"))
    await other.request("connector.me.bind", {"uid": "bob"})
    await step("room.room.pushto", {"uids": ["bob"], "body": "hi"})
    await step("room.room.kickusers", {"uids": ["bob"]})
    await client.notify("room.room.kick")
    await client.kicked()


async def capture(out: Any) -> None:
    programs = build_programs()
    nats_server, etcd = NatsServer(), EtcdServer()
    nats_server.start()
    etcd.start()
    servers: list[GoServer] = []
    clients: list[GoClient] = []
    try:
        for role, server_id in (("room", "room-go-1"), ("connector", "connector-go-1")):
            server = GoServer(programs, role, server_id, nats_server, etcd)
            servers.append(server)
            await server.start()
        conn = await nats.connect(nats_server.url)
        replies: dict[str, str] = {}

        async def record(msg: Any) -> None:
            if msg.reply:
                replies[msg.reply] = msg.subject
            line = {
                "subject": msg.subject,
                "reply": msg.reply,
                "answers": replies.get(msg.subject, ""),
                "hex": msg.data.hex(),
                **decode(msg.subject, msg.data, replies),
            }
            out.write(json.dumps(line) + "\n")

        await conn.subscribe(">", cb=record)
        await conn.flush()
        clients = [GoClient(programs), GoClient(programs)]
        await clients[0].connect(servers[1].address("tcp"))
        await scenario(clients[0], clients[1], servers[1])
        await conn.flush()
        await conn.drain()
    finally:
        for process in [*clients, *reversed(servers)]:
            await process.stop()
        nats_server.close()
        etcd.close()


def main() -> None:
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as out:
            asyncio.run(capture(out))
    else:
        asyncio.run(capture(sys.stdout))


if __name__ == "__main__":
    main()
