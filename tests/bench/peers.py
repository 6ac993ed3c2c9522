"""The other frameworks the benchmarks compare with: pinus (Node) and Go Pitaya v3.

Neither is part of the repository. At bench time they are fetched by name into a cache
directory outside it (``$PITAYA_BENCH_CACHE``, default ``~/.cache/pitaya-actors-bench``):

- **pinus** ``1.7.4`` from npm, and the game server its ``pinus init`` template holds (a
  master process that forks one ``connector``, hybrid connector, heartbeat 3 s, route
  dictionary and protobuf on, handler ``connector.entryHandler.entry`` answering a fixed
  ``{code: 200, msg}``), compiled with its own TypeScript. Only the ports in its
  ``config/servers.json`` and ``master.json`` are changed (and the ``--inspect`` debugger
  argument dropped, which would bind a fixed port).
- **Go Pitaya** ``v3.0.0-beta.6``: the small module in ``tests/bench/go`` (a standalone
  frontend serving ``echo.echo`` over TCP), built with the machine's Go toolchain, which
  fetches Pitaya from the Go module proxy.

Run as a benchmark child (same line protocol as ``app_server``)::

    python -m tests.bench.peers pinus|go|go-deflate [--port 0]

It prepares the peer, starts it in its own process group, waits until its client port
accepts connections, prints ``{"tcp": port, "pid": pid}`` (the pid whose process tree is
the server) and stops the whole group on ``stop`` or end of stdin. ``go-deflate`` is Go
Pitaya with its default response compression left on (see ``go/main.go``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.harness import HOST, emit, raise_fd_limit, run, serve_commands, tree_rss

CACHE = Path(os.environ.get("PITAYA_BENCH_CACHE") or Path.home() / ".cache" / "pitaya-actors-bench")
PINUS_VERSION = "1.7.4"
GO_MODULE = Path(__file__).parent / "go"
GO = shutil.which("go") or "/usr/local/go/bin/go"

ROUTES = {
    "ours": "echo.echo",
    "ours-uvloop": "echo.echo",
    "ours-reuseport": "echo.echo",
    "asyncio": "echo.echo",
    "pinus": "connector.entryHandler.entry",
    "go": "echo.echo",
    "go-deflate": "echo.echo",
}
"""The route each server answers (the body sent is the same JSON object for all)."""


def _run(command: list[str], cwd: Path, **env: str) -> None:
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{done.stdout.decode()[-3000:]}")


def prepare_pinus() -> Path:
    """Install pinus and build its template game server (once); returns its ``dist``."""
    root = CACHE / f"pinus-{PINUS_VERSION}"
    server = root / "game-server"
    dist = server / "dist"
    if (dist / "app.js").exists():
        return dist
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text('{"name": "pinus-bench", "private": true}\n')
    _run(["npm", "install", "--no-audit", "--no-fund", f"pinus@{PINUS_VERSION}"], root)
    shutil.rmtree(server, ignore_errors=True)
    shutil.copytree(root / "node_modules" / "pinus" / "template" / "game-server", server)
    package = json.loads((server / "package.json").read_text())
    package["name"] = "pinus-bench-game-server"
    package["bin"] = {}
    package["dependencies"]["pinus"] = PINUS_VERSION
    (server / "package.json").write_text(json.dumps(package, indent=2))
    app = server / "app.ts"  # what `pinus init <name>` does to the template
    app.write_text(app.read_text().replace("app.set('name', '$')", "app.set('name', 'bench')"))
    _run(["npm", "install", "--no-audit", "--no-fund"], server)
    # The template's own build ("tsc && node copy"); skipLibCheck: the type declarations of
    # its pinned dependencies no longer agree with each other (emitting works either way).
    _run(["npx", "tsc", "--skipLibCheck"], server)
    shutil.copytree(server / "config", dist / "config", dirs_exist_ok=True)
    if not (dist / "app.js").exists():
        raise RuntimeError(f"pinus template build left no {dist / 'app.js'}")
    return dist


def build_go() -> Path:
    """Build ``tests/bench/go`` into the cache (Go's build cache makes a rebuild cheap)."""
    binary = CACHE / "go" / "goecho"
    binary.parent.mkdir(parents=True, exist_ok=True)
    _run([GO, "build", "-o", str(binary), "."], GO_MODULE)
    return binary


def prepare(names: list[str]) -> None:
    """Install or build every peer among ``names`` before anything is measured."""
    if "pinus" in names:
        prepare_pinus()
    if any(name.startswith("go") for name in names):
        build_go()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def pinus_command(port: int) -> tuple[list[str], Path]:
    dist = prepare_pinus()
    connector = {
        "id": "connector-server-1",
        "host": HOST,
        "port": free_port(),
        "clientHost": HOST,
        "clientPort": port,
        "frontend": True,
    }
    master = {"id": "master-server-1", "host": HOST, "port": free_port()}
    config = dist / "config"
    (config / "servers.json").write_text(json.dumps({"development": {"connector": [connector]}}))
    (config / "master.json").write_text(json.dumps({"development": master}))
    return ["node", "app.js"], dist


def go_command(port: int, compression: bool) -> tuple[list[str], Path]:
    binary = build_go()
    return [str(binary), "-port", str(port), f"-compression={str(compression).lower()}"], CACHE


async def wait_listening(port: int, process: asyncio.subprocess.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"peer exited with {process.returncode} before listening")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"peer not listening on {port} after {timeout}s")


async def serve(args: argparse.Namespace) -> None:
    port = args.port or free_port()
    if args.peer == "pinus":
        command, cwd = pinus_command(port)
    else:
        command, cwd = go_command(port, compression=args.peer == "go-deflate")
    log = (CACHE / f"{args.peer}.log").open("wb")  # closed in the finally below
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: pinus forks its connector
    )
    try:
        await wait_listening(port, process, timeout=60)
        emit({"tcp": port, "pid": process.pid})
        stats = {"stats": lambda: {"rss": tree_rss(process.pid)}}
        await serve_commands(stats, args.max_seconds)
    finally:
        await stop_group(process)
        log.close()


async def stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the peer's process group, SIGKILL to it after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), wait)
            # The master is gone; the group may still hold its children.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("peer", choices=("pinus", "go", "go-deflate"))
    parser.add_argument("--port", type=int, default=0, help="client TCP port (0: a free one)")
    parser.add_argument("--loop", default="asyncio", help="ignored (peers bring their own)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="hard lifetime")
    parser.add_argument("--prepare", action="store_true", help="only install/build, then exit")
    args = parser.parse_args()
    if args.prepare:
        prepare([args.peer])
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    raise_fd_limit()
    try:
        run(serve(args))
    except RuntimeError as exc:
        emit({"error": str(exc)})
        sys.exit(1)


if __name__ == "__main__":
    main()
