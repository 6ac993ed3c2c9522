"""Interop harness: Go Pitaya programs built once, started as processes, stopped by PID.

* :func:`build_go_program` builds one package of a Go module into a cache directory, and only
  again when a ``.go`` file, ``go.mod`` or ``go.sum`` of the module changed (any Go module of
  the tests can use it, a benchmark's too). A missing toolchain fails with a message naming
  ``go``.
* :class:`GoServer` runs ``cmd/connector`` or ``cmd/room`` (tests/interop/go) in a cluster on the
  tests' nats-server and etcd; it is ready when it prints its ``ready`` JSON line (with the
  acceptors' real addresses), never after a sleep.
* :class:`GoClient` runs ``cmd/driver``: Pitaya's own Go client, steered by JSON lines.

Python servers of the same routes come from :mod:`tests.interop.pynodes`, run as
:class:`PyNode` (the cluster harness's :class:`~tests.cluster.harness.Node`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.cluster.harness import NODE_ENV, Node
from tests.services import EtcdServer, NatsServer, free_port

GO_MODULE = Path(__file__).parent / "go"
GO_INSTALL = "/usr/local/go/bin/go"
GO_BUILD_TIMEOUT = 600.0
PROGRAMS = ("connector", "room", "driver", "worker")


class GoToolchainMissing(RuntimeError):
    """Neither ``go`` on PATH nor Go's default install: the interop tests cannot build."""


def go_binary() -> str:
    """The ``go`` command: on PATH, or Go's default install dir; else a clear error."""
    found = shutil.which("go") or (GO_INSTALL if os.access(GO_INSTALL, os.X_OK) else None)
    if found is None:
        raise GoToolchainMissing(
            "the interop tests need the Go toolchain: `go` is not on PATH nor at "
            f"{GO_INSTALL} (install Go >= 1.23 from https://go.dev/dl/)"
        )
    return found


def source_hash(module_dir: Path) -> str:
    """A digest of every file a build of ``module_dir`` reads (.go, go.mod, go.sum)."""
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in module_dir.rglob("*")
        if p.is_file()
        and (p.suffix == ".go" or p.name in ("go.mod", "go.sum"))
        and ".bin" not in p.parts
    )
    for path in files:
        digest.update(str(path.relative_to(module_dir)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def build_go_program(module_dir: Path, package: str, out: Path) -> Path:
    """``go build -o out ./package`` in ``module_dir``, skipped when ``out`` was built from
    the same sources (a ``<out>.src`` stamp holds their digest). Returns ``out``.

    Example: ``build_go_program(GO_MODULE, "cmd/room", cache / "room")``.
    """
    stamp = out.with_name(out.name + ".src")
    digest = source_hash(module_dir)
    if out.exists() and stamp.exists() and stamp.read_text() == digest:
        return out
    go = go_binary()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")  # builds may run at once
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    result = subprocess.run(
        [go, "build", "-o", str(partial), f"./{package}"],
        cwd=module_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=GO_BUILD_TIMEOUT,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`go build ./{package}` in {module_dir} failed ({go}):\n{result.stderr[-4000:]}"
        )
    partial.replace(out)
    stamp.write_text(digest)
    return out


def bin_dir() -> Path:
    """Where the interop programs are built (``INTEROP_BIN_DIR``, else ``go/.bin``, ignored)."""
    return Path(os.environ.get("INTEROP_BIN_DIR", GO_MODULE / ".bin"))


def build_programs() -> dict[str, Path]:
    """Build (or reuse) the connector, room and driver programs."""
    return {name: build_go_program(GO_MODULE, f"cmd/{name}", bin_dir() / name) for name in PROGRAMS}


class PyNode(Node):
    """A Python server of tests.interop.pynodes (the same routes as the Go servers), run by
    the cluster harness's :class:`~tests.cluster.harness.Node`."""

    module = "tests.interop.pynodes"


class GoProcess:
    """A Go program of ours reading JSON lines from us and printing JSON lines to us."""

    def __init__(self, binary: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.process: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self.log: list[str] = []
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._stdout_closed = False

    async def spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(self.binary), *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.env, start_new_session=True,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stderr is not None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump(self.process.stdout, events=True)),
            loop.create_task(self._pump(self.process.stderr, events=False)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, *, events: bool) -> None:
        while raw := await stream.readline():
            line = raw.decode(errors="replace").rstrip()
            if events:
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    self.log.append(line)
            else:
                self.log.append(line)
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            if events:
                self._stdout_closed = True
            self._changed.notify_all()

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    async def wait_event(self, match: Any, timeout: float = 10, start: int = 0) -> dict[str, Any]:
        """The first event from index ``start`` for which ``match(event)`` is true."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[start:] if match(e)), None)

        async def until() -> dict[str, Any]:
            async with self._changed:
                while (event := found()) is None:
                    if self._stdout_closed:
                        raise RuntimeError(f"{self.binary.name} exited:\n{self.tail()}")
                    await self._changed.wait()
                return event

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.binary.name}: no matching event in {timeout}s; events: "
                f"{self.events[start:][-10:]}\nlog:\n{self.tail()}"
            ) from None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log[-lines:])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM by PID and wait (SIGKILL past ``timeout``); returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                await self.kill()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        return process.returncode

    async def kill(self) -> None:
        """SIGKILL by PID (a crash), then reap."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()


class GoServer(GoProcess):
    """One Go Pitaya server (``connector`` or ``room``) of tests/interop/go."""

    def __init__(
        self,
        programs: dict[str, Path],
        role: str,
        server_id: str,
        nats: NatsServer,
        etcd: EtcdServer,
        *,
        rpc: str = "nats",
        prefix: str = "pitaya/",
        args: list[str] | None = None,
        **env: str,
    ) -> None:
        self.role = role
        self.server_id = server_id
        self.rpc = rpc
        self.grpc_port = free_port() if rpc == "grpc" else 0
        argv = [
            "-id", server_id, "-nats", nats.url, "-etcd", etcd.endpoint, "-prefix", prefix,
            "-rpc", rpc, "-grpc-port", str(self.grpc_port),
            "-rpc-timeout", f"{NODE_ENV['PITAYA_RPC_TIMEOUT']}s",
            "-lease-ttl", f"{NODE_ENV['PITAYA_ETCD_LEASE_TTL']}s",
            "-sync", f"{NODE_ENV['PITAYA_SERVER_SYNC_INTERVAL']}s",
            *(args or []),
        ]  # fmt: skip
        super().__init__(programs[role], argv, env)
        self.ready: dict[str, Any] = {}

    async def start(self, timeout: float = 30) -> GoServer:
        await self.spawn()
        self.ready = await self.wait_event(lambda e: e.get("event") == "ready", timeout)
        return self

    def address(self, kind: str) -> tuple[str, int]:
        """The ``tcp`` or ``ws`` acceptor's address, as the server reported it."""
        host, _, port = str(self.ready[kind]).rpartition(":")
        return host or "127.0.0.1", int(port)


class RequestFailed(Exception):
    """A request answered with an error: ``body`` is the error body the client got."""

    def __init__(self, body: Any) -> None:
        super().__init__(body)
        self.body = body

    @property
    def code(self) -> str:
        return str(self.body.get("code")) if isinstance(self.body, dict) else ""


class GoClient(GoProcess):
    """Pitaya's Go client (``pkg/client``) in a driver process of ours."""

    def __init__(self, programs: dict[str, Path], *, request_timeout: float = 5) -> None:
        super().__init__(programs["driver"], ["-timeout", f"{request_timeout}s"])
        self._seq = 0

    async def _command(self, op: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        if self.process is None:
            await self.spawn()
        assert self.process is not None and self.process.stdin is not None
        self._seq += 1
        seq = self._seq
        line = json.dumps({"seq": seq, "op": op, **fields}) + "\n"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()
        event = await self.wait_event(lambda e: e.get("seq") == seq, timeout)
        if event["event"] == "error":
            raise ConnectionError(f"driver {op}: {event['error']}")
        return event

    async def connect(
        self,
        address: tuple[str, int],
        *,
        websocket: bool = False,
        user: dict[str, Any] | None = None,
        version: str = "",
    ) -> dict[str, int]:
        """Connect and handshake; returns the route dictionary the server announced."""
        fields: dict[str, Any] = {"addr": f"{address[0]}:{address[1]}", "ws": websocket}
        if websocket:
            fields["path"] = "/"
        if user is not None or version:
            fields["user"] = user or {}
            fields["version"] = version
        event = await self._command("connect", **fields)
        return dict(event["dict"])

    async def request(self, route: str, data: Any = None, timeout: float = 10) -> Any:
        """The answer's data; an error answer raises :class:`RequestFailed`."""
        mark = len(self.events)
        sent = await self._command("request", route=route, data=_json(data))
        rid = sent["id"]
        answer = await self.wait_event(
            lambda e: e.get("event") == "response" and e.get("id") == rid, timeout, start=mark
        )
        if answer["err"]:
            raise RequestFailed(answer["data"])
        return answer["data"]

    async def notify(self, route: str, data: Any = None) -> None:
        await self._command("notify", route=route, data=_json(data))

    async def push(self, route: str, timeout: float = 10, start: int = 0) -> Any:
        """The data of the first push on ``route`` (from event index ``start``)."""
        event = await self.wait_event(
            lambda e: e.get("event") == "push" and e.get("route") == route, timeout, start
        )
        return event["data"]

    def pushes(self, route: str) -> list[Any]:
        return [e["data"] for e in self.events if e.get("event") == "push" and e["route"] == route]

    async def kicked(self, timeout: float = 10) -> None:
        """Waits for a kick packet and the connection's end."""
        await self.wait_event(lambda e: e.get("event") == "kicked", timeout)
        await self.wait_event(lambda e: e.get("event") == "closed", timeout)

    @property
    def was_kicked(self) -> bool:
        return any(e.get("event") == "kicked" for e in self.events)

    async def disconnect(self) -> None:
        await self._command("disconnect")


def _json(data: Any) -> Any:
    """The driver sends ``data`` as the JSON it is (None: an empty body)."""
    return data if data is not None else {}


async def wait_known(client: GoClient, route: str, server_id: str, timeout: float = 10) -> None:
    """Polls ``route`` (a ``servers`` route) until its server lists ``server_id`` in its
    discovery: a server learns of another through an etcd watch, a moment after it starts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = await client.request(route)
        if server_id in answer["servers"]:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"{answer['server']} never saw {server_id}: {answer['servers']}")
        await asyncio.sleep(0.05)  # the next poll; the request above is the synchronisation


def main() -> None:
    """``python -m tests.interop.harness``: build (or reuse) the programs; .ci/run's Go step."""
    import time

    started = time.monotonic()
    for name, path in build_programs().items():
        print(f"{name}: {path}")
    print(f"go programs ready in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
