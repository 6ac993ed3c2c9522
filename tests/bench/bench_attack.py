"""Hostile-input attacks of issue 18 (findings 1-4): peak RSS and a bystander's worst latency.

Run: ``python -m tests.bench.bench_attack [--scenario all|decode-json|decode-msgpack|
decode-many|pinned|surrogate|handshake|cluster|cluster-unbudgeted] [--seconds 4]``

Each scenario starts a fresh chat server (``samples.chat``) in its own process. A
well-behaved client (handshaken, then one ``room.message`` request every 10 ms, answered
``PIT-400`` "join the room first", which still goes through the decoder) runs before, during
and after the attack; it reports its worst latency and the requests that failed or got no
answer within 5 s. The server's peak RSS is its ``VmHWM`` (from ``/proc``); ``rss after`` is
its RSS 2 s after the attack ended. Scenarios:

- ``decode-json`` / ``decode-msgpack`` (finding 1): one connection pipelines 24 requests of
  ~1 KiB, zlib-compressed, each inflating to 1 MiB of nested data (``{"content":[[],[],...]}``).
- ``decode-many``: the msgpack attack from 16 connections at once (384 requests).
- ``pinned`` (finding 2): 2 connections x 300 such requests (a 1 MiB string each).
- ``surrogate`` (finding 3): a join named ``"\\ud800evil"``, then 20 ordinary joins over other
  connections; prints the codes they got (``PIT-500`` before the fix).
- ``handshake`` (finding 4): 200 connections, each sending a 1 MiB handshake and staying.
- ``cluster``: the decode attack on a backend (``samples.cluster``: a connector and a room,
  each its own process, on a real nats-server and etcd): 4 connections each pipeline 24
  compressed requests to ``room.room.message`` that the connector inflates and forwards, each
  1,000,000 bytes of JSON numbers (``{"content":[0,0,...]}``, ~20 ms to decode, then
  ``PIT-400``); the bystander sends ``room.room.message`` through the same connector (its
  body decoded on the same room). Peak RSS is the room's. ``cluster-unbudgeted``: the same
  with the room's decode budget off (``actors.cluster.bridge`` budgets no body), as before
  issue 18.1's backend part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import zlib
from typing import Any

import msgpack

from transport.errorbody import ErrorBody
from transport.handshake import decode_handshake_response, encode_handshake_request
from transport.message import Message, MessageType, decode_message, encode_message
from transport.packet import HANDSHAKE_ACK_PACKET, PacketDecoder, PacketType, encode_packet

HOST = "127.0.0.1"
MIB = 1024 * 1024


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


# -- the server process -------------------------------------------------------------------


def serve_cluster(role: str, nats: str, etcd: str) -> None:
    from samples.cluster.servers import build_connector, build_room
    from tests.reliability.support import until

    if role.startswith("room"):
        app = build_room("room-attack", nats, etcd)
        if role == "room-unbudgeted":  # the figure before: no decode budget on a backend
            import actors.cluster.bridge

            actors.cluster.bridge.SMALL_BODY = sys.maxsize  # type: ignore[attr-defined]
    else:
        app = build_connector("connector-attack", nats, etcd, tcp_port=0, ws_port=0)

    async def main() -> None:
        await app.start()
        ready: dict[str, Any] = {"pid": os.getpid()}
        if role == "connector":
            assert app.cluster is not None
            discovery = app.cluster.discovery
            await until(lambda: bool(discovery.servers("room")), timeout=30)
            ready["tcp"] = app.address("tcp")[1]
        print(json.dumps(ready), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await app.stop()

    asyncio.run(main())


def serve(serializer: str) -> None:
    from samples.chat.room import build_app

    app = build_app(HOST, 0, 0, serializer=serializer)

    async def main() -> None:
        await app.start()
        print(json.dumps({"tcp": app.address("tcp")[1], "pid": os.getpid()}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await app.stop()

    asyncio.run(main())


# -- clients ------------------------------------------------------------------------------


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = PacketDecoder(16 * MIB - 1)
        self.serializer = "json"

    @classmethod
    async def open(cls, port: int, handshake: bytes | None = None) -> Peer:
        reader, writer = await asyncio.open_connection(HOST, port)
        peer = cls(reader, writer)
        body = handshake or encode_handshake_request({"platform": "bench"}, {})
        writer.write(encode_packet(PacketType.HANDSHAKE, body))
        for packet in await peer.packets():
            response = decode_handshake_response(packet.body)
            if response.ok:
                peer.serializer = response.serializer
                writer.write(HANDSHAKE_ACK_PACKET)
        return peer

    async def packets(self) -> list[Any]:
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            found = list(self.decoder.feed(chunk))
            if found:
                return found

    def encode(self, value: Any) -> bytes:
        if self.serializer == "msgpack":
            return bytes(msgpack.packb(value))
        return json.dumps(value).encode()

    def decode(self, data: bytes) -> Any:
        if self.serializer == "msgpack":
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        return json.loads(data)

    async def request(self, route: str, body: bytes, message_id: int) -> tuple[bool, Any]:
        message = Message(MessageType.REQUEST, message_id, route, body)
        self.writer.write(encode_packet(PacketType.DATA, encode_message(message)))
        while True:
            for packet in await self.packets():
                if packet.type is PacketType.DATA:
                    answer = decode_message(packet.body)
                    if answer.type is MessageType.RESPONSE and answer.id == message_id:
                        return answer.error, self.decode(answer.data)

    def close(self) -> None:
        self.writer.close()


def compressed_request(route: str, data: bytes, message_id: int) -> bytes:
    head = bytes([0x10 | (MessageType.REQUEST << 1), message_id & 0x7F, len(route)])
    return encode_packet(PacketType.DATA, head + route.encode() + zlib.compress(data, 9))


def nested(serializer: str) -> bytes:
    if serializer == "msgpack":
        return bytes(msgpack.packb({"content": [[] for _ in range(MIB - 20)]}))
    return ('{"content":[' + ",".join(["[]"] * ((MIB - 20) // 3)) + "]}").encode()


class Bystander:
    """One request to ``route`` every 10 ms; worst latency and failures (no answer within
    5 s)."""

    def __init__(self, route: str = "room.message") -> None:
        self.route = route
        self.worst = 0.0
        self.served = 0
        self.failed = 0
        self.stop = asyncio.Event()

    async def run(self, port: int) -> None:
        peer = await Peer.open(port)
        body = peer.encode({"content": "hello"})
        message_id = 0
        try:
            while not self.stop.is_set():
                message_id = message_id % 100 + 1
                start = time.perf_counter()
                try:
                    await asyncio.wait_for(peer.request(self.route, body, message_id), 5)
                    self.served += 1
                except (TimeoutError, ConnectionError):
                    self.failed += 1
                    peer.close()
                    peer = await Peer.open(port)
                self.worst = max(self.worst, time.perf_counter() - start)
                await asyncio.sleep(0.01)
        finally:
            peer.close()


# -- scenarios ----------------------------------------------------------------------------


def numbers(size: int) -> bytes:
    """``{"content":[0,0,...]}`` of ``size`` bytes: within every limit, ~20 ms to decode."""
    return ('{"content":[' + ",".join(["0"] * ((size - 14) // 2)) + "]}").encode()


def decode_attack(serializer: str) -> bytes:
    data = nested(serializer)
    return b"".join(compressed_request("room.join", data, i) for i in range(1, 25))


def pinned_attack() -> bytes:
    data = json.dumps({"name": "x" * MIB}).encode()[: MIB - 8] + b'"}'
    one = compressed_request("room.join", data, 1)
    # The same deflated body under ids 1..127 (compressing 300 MiB here would take seconds).
    return b"".join(one[:5] + bytes([i % 127 + 1]) + one[6:] for i in range(300))


async def attack_decode(port: int, attack: bytes, connections: int = 1) -> dict[str, Any]:
    """``connections`` clients each send ``attack`` (24 requests) and read the 24 answers."""
    if connections > 1:
        results = await asyncio.gather(*(attack_decode(port, attack) for _ in range(connections)))
        return {
            "answers": sorted({code for r in results for code in r["answers"]}),
            "answered": sum(r["answered"] for r in results),
        }
    peer = await Peer.open(port)
    peer.writer.write(attack)
    codes: list[str] = []
    try:
        while len(codes) < 24:
            for packet in await asyncio.wait_for(peer.packets(), 60):
                if packet.type is PacketType.DATA:
                    codes.append(
                        ErrorBody.from_value(peer.decode(decode_message(packet.body).data)).code
                    )
    except (TimeoutError, ConnectionError) as exc:
        codes.append(type(exc).__name__)
    peer.close()
    return {"answers": sorted(set(codes)), "answered": len(codes)}


async def attack_pinned(port: int, packet: bytes) -> dict[str, Any]:

    async def one() -> int:
        peer = await Peer.open(port)
        peer.writer.write(packet)
        answered = 0
        try:
            while answered < 300:
                for p in await asyncio.wait_for(peer.packets(), 30):
                    answered += p.type is PacketType.DATA
        except (TimeoutError, ConnectionError):
            pass
        peer.close()
        return answered

    answered = await asyncio.gather(one(), one())
    return {"answered": sum(answered)}


async def attack_surrogate(port: int) -> dict[str, Any]:
    evil = await Peer.open(port)
    body = b'{"name": "\\ud800evil"}'
    if evil.serializer == "msgpack":
        raise SystemExit("surrogate scenario: json only")
    error, value = await evil.request("room.join", body, 1)
    first = ErrorBody.from_value(value).code if error else "ok"
    codes: list[str] = []
    for i in range(20):
        peer = await Peer.open(port)
        error, value = await peer.request("room.join", peer.encode({"name": f"p{i}"}), 1)
        codes.append(ErrorBody.from_value(value).code if error else "ok")
        peer.close()
    evil.close()
    return {"evil join": first, "other joins": {c: codes.count(c) for c in set(codes)}}


async def attack_handshake(port: int) -> dict[str, Any]:
    big = encode_handshake_request({"platform": "bench"}, {"blob": "x" * (MIB - 64)})
    peers: list[asyncio.StreamWriter] = []
    accepted = 0
    for _ in range(200):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(encode_packet(PacketType.HANDSHAKE, big))
        peers.append(writer)
        head = await reader.read(65536)
        if head:
            decoder = PacketDecoder()
            for packet in decoder.feed(head):
                accepted += decode_handshake_response(packet.body).ok
    await asyncio.sleep(1)
    for writer in peers:
        writer.close()
    return {"accepted handshakes": accepted, "of": 200}


async def scenario(name: str, seconds: float) -> dict[str, Any]:
    serializer = "msgpack" if name in ("decode-msgpack", "decode-many") else "json"
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.bench_attack",
        "--serve",
        serializer,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None and server.stdin is not None
    ready = json.loads(await asyncio.wait_for(server.stdout.readline(), 30))
    port, pid = ready["tcp"], ready["pid"]
    rss_before = _status(pid, "VmRSS")
    # Built before the bystander starts: this process's own work must not count as the
    # server's latency.
    attack = b""
    if name.startswith("decode"):
        attack = decode_attack(serializer)
    elif name == "pinned":
        attack = pinned_attack()
    bystander = Bystander()
    watching = asyncio.ensure_future(bystander.run(port))
    await asyncio.sleep(0.5)
    calm = bystander.worst
    bystander.worst = 0.0
    start = time.perf_counter()
    if name.startswith("decode"):
        result = await attack_decode(port, attack, 16 if name == "decode-many" else 1)
    elif name == "pinned":
        result = await attack_pinned(port, attack)
    elif name == "surrogate":
        result = await attack_surrogate(port)
    else:
        result = await attack_handshake(port)
    attack_s = time.perf_counter() - start
    await asyncio.sleep(max(2.0, seconds - attack_s))
    bystander.stop.set()
    await watching
    result.update(
        {
            "scenario": name,
            "attack s": round(attack_s, 2),
            "rss before": mib(rss_before),
            "peak rss": mib(_status(pid, "VmHWM")),
            "rss after": mib(_status(pid, "VmRSS")),
            "bystander worst ms (calm)": round(calm * 1000, 1),
            "bystander worst ms (attack)": round(bystander.worst * 1000, 1),
            "bystander served": bystander.served,
            "bystander failed": bystander.failed,
        }
    )
    server.stdin.close()
    try:
        await asyncio.wait_for(server.wait(), 10)
    except TimeoutError:
        server.kill()
        await server.wait()
    return result


async def start_server(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.bench_attack",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    return process, json.loads(await asyncio.wait_for(process.stdout.readline(), 60))


async def stop_server(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


async def cluster_scenario(name: str, seconds: float, connections: int = 4) -> dict[str, Any]:
    from tests.services import EtcdServer, NatsServer

    nats, etcd = NatsServer(), EtcdServer()
    servers: list[asyncio.subprocess.Process] = []
    try:
        await asyncio.to_thread(nats.start)
        await asyncio.to_thread(etcd.start)
        where = ("--nats", nats.url, "--etcd", etcd.endpoint)
        role = "room-unbudgeted" if name == "cluster-unbudgeted" else "room"
        room, room_ready = await start_server("--serve-cluster", role, *where)
        servers.append(room)
        connector, ready = await start_server("--serve-cluster", "connector", *where)
        servers.append(connector)
        port, pid = ready["tcp"], room_ready["pid"]
        rss_before = _status(pid, "VmRSS")
        body = numbers(1_000_000)
        attack = b"".join(compressed_request("room.room.message", body, i) for i in range(1, 25))
        bystander = Bystander("room.room.message")
        watching = asyncio.ensure_future(bystander.run(port))
        await asyncio.sleep(1.0)
        calm = bystander.worst
        bystander.worst = 0.0
        start = time.perf_counter()
        result = await attack_decode(port, attack, connections)
        attack_s = time.perf_counter() - start
        await asyncio.sleep(max(2.0, seconds - attack_s))
        bystander.stop.set()
        await watching
        result.update(
            {
                "scenario": name,
                "attack s": round(attack_s, 2),
                "room rss before": mib(rss_before),
                "room peak rss": mib(_status(pid, "VmHWM")),
                "bystander worst ms (calm)": round(calm * 1000, 1),
                "bystander worst ms (attack)": round(bystander.worst * 1000, 1),
                "bystander served": bystander.served,
                "bystander failed": bystander.failed,
            }
        )
        return result
    finally:
        for server in reversed(servers):
            await stop_server(server)
        nats.close()
        etcd.close()


SCENARIOS = [
    "decode-json",
    "decode-msgpack",
    "decode-many",
    "pinned",
    "surrogate",
    "handshake",
    "cluster",
    "cluster-unbudgeted",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--serve-cluster", help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    parser.add_argument("--etcd", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.serve_cluster:
        serve_cluster(args.serve_cluster, args.nats, args.etcd)
        return
    names = SCENARIOS if args.scenario == "all" else [args.scenario]
    for name in names:
        if name.startswith("cluster"):
            result = asyncio.run(cluster_scenario(name, args.seconds))
        else:
            result = asyncio.run(scenario(name, args.seconds))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
