"""A whole cluster on this machine: nats-server, etcd, one connector and two room servers.

Each runs as its own process (the services on free loopback ports, with a temporary etcd data
dir); Ctrl-C (or SIGTERM) stops them all gracefully, servers first, then the services.
Needs the Debian packages ``nats-server`` and ``etcd-server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import sys
import tempfile


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise SystemExit(f"{name} not found: apt-get install {package}")
    return path


async def _start(
    args: list[str], ready: str, seen: list[str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``args`` and relay its output; returns once it logs ``ready`` (the lines until
    then are appended to ``seen``)."""
    process = await asyncio.create_subprocess_exec(*args, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    while True:
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        if not line:
            raise SystemExit(f"{args[0]} exited at start")
        text = line.decode(errors="replace")
        sys.stderr.write(text)
        if seen is not None:
            seen.append(text)
        if ready.encode() in line:
            break

    async def relay(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            sys.stderr.write(line.decode(errors="replace"))

    asyncio.get_running_loop().create_task(relay(process.stderr))
    return process


async def _run(host: str, tcp_port: int, ws_port: int) -> None:
    data_dir = tempfile.mkdtemp(prefix="pitaya-local-etcd-")
    nats_port, etcd_port, peer_port = _free_port(), _free_port(), _free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"
    etcd = f"127.0.0.1:{etcd_port}"
    processes: list[asyncio.subprocess.Process] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        processes.append(
            await _start(
                [_binary("nats-server", "nats-server"), "-a", "127.0.0.1", "-p", str(nats_port)],
                "Server is ready",
            )
        )
        client, peer = f"http://{etcd}", f"http://127.0.0.1:{peer_port}"
        processes.append(
            await _start(
                [
                    _binary("etcd", "etcd-server"),
                    "--name",
                    "local",
                    "--data-dir",
                    data_dir,
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    f"local={peer}",
                ],
                "ready to serve client requests",
            )
        )
        common = ["--nats", nats_url, "--etcd", etcd]
        for room in ("room-1", "room-2"):
            processes.append(
                await _start(
                    [sys.executable, "-m", "samples.cluster", "room", "--id", room, *common],
                    "started",
                )
            )
        connector_log: list[str] = []
        processes.append(
            await _start(
                [
                    sys.executable,
                    "-m",
                    "samples.cluster",
                    "connector",
                    "--id",
                    "connector-1",
                    "--host",
                    host,
                    "--tcp-port",
                    str(tcp_port),
                    "--ws-port",
                    str(ws_port),
                    *common,
                ],
                "started",
                connector_log,
            )
        )
        # Where it listens, as it says: port 0 (any free one) is only known once it listens.
        tcp_port = listening_port(connector_log, "tcp", tcp_port)
        ws_port = listening_port(connector_log, "ws", ws_port)
        print(summary(host, tcp_port, ws_port, nats_url, etcd), file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        for process in reversed(processes):  # servers first, services last
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(data_dir)


def listening_port(log: list[str], kind: str, asked: int) -> int:
    """The port a server's ``<kind> listening on <host>:<port>`` line names, else ``asked``."""
    for line in log:
        found = re.search(rf"\] {kind} listening on \S+:(\d+)", line)
        if found:
            return int(found.group(1))
    return asked


def summary(host: str, tcp_port: int, ws_port: int, nats_url: str, etcd: str) -> str:
    """What the local cluster started, and where: printed once every piece is up."""
    return "\n".join(
        [
            "cluster up (Ctrl-C stops it all):",
            f"  NATS       {nats_url}",
            f"  etcd       {etcd}",
            f"  TCP        {host}:{tcp_port}  (connector-1)",
            f"  WebSocket  ws://{host}:{ws_port}/  (chat page: http://{host}:{ws_port}/)",
            f"  add a room: pitaya-cluster room --id room-3 --nats {nats_url} --etcd {etcd}",
        ]
    )


def run_local(host: str, tcp_port: int, ws_port: int) -> None:
    asyncio.run(_run(host, tcp_port, ws_port))
