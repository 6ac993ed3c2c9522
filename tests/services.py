"""Real ``nats-server``, ``etcd`` and ``redis-server`` processes for tests and benchmarks.

Each runs on a free loopback port with its own temporary data dir, is ready when it logs that
it serves clients (no polling of ports), can be stopped (SIGTERM, or SIGKILL by PID) and
restarted on the *same* port and data dir mid-test, and is always stopped by PID at the end.
A missing binary fails with a message naming the Debian package, never a silent skip.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

START_TIMEOUT = 20.0
PORT_ATTEMPTS = 3
"""Ports chosen per first start: a free port can be taken before the server binds it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        raise RuntimeError(
            f"{name} is not installed: `apt-get install {package}` (bash .ci/run does it)"
        )
    return path


class PortTaken(RuntimeError):
    """The server could not bind a port chosen for it: something else took it meanwhile."""


class ServiceProcess:
    """One external server process, restartable on the same ports."""

    name = "service"
    ready_marker = ""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.pump: threading.Thread | None = None
        """The thread reading the process's stderr into :attr:`log`, until it exits."""
        self.log: list[str] = []
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"pitaya-{self.name}-"))
        self._served = False
        """Started once: from then on its ports are kept (clients reconnect to them)."""
        self.choose_ports()

    def choose_ports(self) -> None:
        """Pick free loopback ports for the server (none by default)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it serves. A free port is only free when it is
        chosen: another process (a client's connection, say) may get it from the kernel
        before the server binds it. On the first start such ports are chosen again, a few
        times; a restart keeps its ports."""
        if self.running:
            return
        attempts = 1 if self._served else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
            except PortTaken:
                if attempt == attempts:
                    raise
                self.choose_ports()
            else:
                self._served = True
                return

    def _start_once(self) -> None:
        lines: queue.Queue[str | None] = queue.Queue()
        self.process = process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        stream = process.stderr
        assert stream is not None

        def pump() -> None:
            with stream:  # closed at its end (the process exited), not left to the collector
                for line in stream:
                    self.log.append(line.rstrip())
                    lines.put(line)
            lines.put(None)

        self.pump = threading.Thread(target=pump, daemon=True, name=f"{self.name}-log")
        self.pump.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop(kill=True)
                raise RuntimeError(f"{self.name} not ready in {START_TIMEOUT}s:\n" + self.tail())
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                process.wait(timeout=10)
                taken = "address already in use" in self.tail().lower()
                error = PortTaken if taken else RuntimeError
                raise error(f"{self.name} exited at start:\n" + self.tail())
            if self.ready_marker in line:
                self._until_accepting(deadline)
                return

    @property
    def ready_port(self) -> int | None:
        """The port clients connect to, checked after the ready line (None: not checked)."""
        return None

    def _until_accepting(self, deadline: float) -> None:
        """Some servers print their ready line a moment before their listener accepts (etcd
        just restarted refused a connection right after it): connect until one is taken."""
        port = self.ready_port
        if port is None:
            return
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop(kill=True)
                    raise RuntimeError(
                        f"{self.name} printed it was ready but refuses connections on "
                        f"{port}:\n" + self.tail()
                    ) from None
                time.sleep(0.02)  # a bounded poll of the port itself

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) by PID, then wait; idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log[-lines:])


class NatsServer(ServiceProcess):
    name = "nats"
    ready_marker = "Server is ready"

    def __init__(self) -> None:
        self.binary = require_binary("nats-server", "nats-server")
        super().__init__()

    def choose_ports(self) -> None:
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def ready_port(self) -> int | None:
        return self.port

    def command(self) -> list[str]:
        return [self.binary, "-a", "127.0.0.1", "-p", str(self.port)]


class EtcdServer(ServiceProcess):
    name = "etcd"
    ready_marker = "ready to serve client requests"

    def __init__(self) -> None:
        self.binary = require_binary("etcd", "etcd-server")
        super().__init__()

    def choose_ports(self) -> None:
        self.client_port = free_port()
        self.peer_port = free_port()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def ready_port(self) -> int | None:
        return self.client_port

    def command(self) -> list[str]:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            self.binary,
            "--name", "test",
            "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}",
        ]  # fmt: skip


class RedisServer(ServiceProcess):
    """``redis-server`` on a free loopback port, nothing saved to disk (no RDB, no AOF),
    optionally with a password (``requirepass``)."""

    name = "redis"
    ready_marker = "Ready to accept connections"

    def __init__(self, password: str = "") -> None:
        self.binary = require_binary("redis-server", "redis-server")
        self.password = password
        super().__init__()

    def choose_ports(self) -> None:
        self.port = free_port()

    @property
    def address(self) -> str:
        """Pitaya's form of the worker's Redis address (``worker.redis.url``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def ready_port(self) -> int | None:
        return self.port

    def command(self) -> list[str]:
        # Options on the command line (no config file); the log to stderr, which is read.
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--logfile", "/dev/stderr",
            *(["--requirepass", self.password] if self.password else []),
        ]  # fmt: skip


ServiceT = TypeVar("ServiceT", bound=ServiceProcess)


def serving(server: ServiceT) -> Iterator[ServiceT]:
    """``server`` started, stopped by PID when the generator ends: the body of a fixture
    (``yield from serving(NatsServer())``, in the scope it needs)."""
    server.start()
    try:
        yield server
    finally:
        server.close()
