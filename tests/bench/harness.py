"""What every benchmark process shares: event loops, fd limits, child processes, latencies.

The benchmarks run as several processes on 127.0.0.1: a server, one or more load processes,
and the parent that orchestrates them. They talk over stdin/stdout, one JSON object per line:

- a child prints a line when it is ready (a server prints its bound ports), and its results;
- the parent writes commands to the child's stdin (``go``, ``stats``, ``stop``); a child
  treats end-of-file on stdin as ``stop``, so a parent that dies takes its children along.

Every child also has a hard lifetime (``--max-seconds``) and the parent kills any child that
outlives its own timeout, by PID. Nothing here is collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import pstats
import resource
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: children run ``python -m tests.bench.<module>`` from here."""

LOOPS = ("asyncio", "uvloop")
HOST = "127.0.0.1"


# -- event loops -------------------------------------------------------------------------------


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """``asyncio.run(main)`` on the chosen event loop (``uvloop`` needs the extra)."""
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    if loop != "asyncio":
        raise ValueError(f"unknown event loop {loop!r}; choose from {LOOPS}")
    return asyncio.run(main)


def add_common_args(
    parser: argparse.ArgumentParser, *, seconds: float | None = None, clients: bool = False
) -> None:
    """``--loop``, ``--seconds`` when the benchmark has a measuring window, ``--client-loop``
    when it starts load processes (read it with :func:`client_loop`)."""
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="server event loop")
    if clients:
        parser.add_argument(
            "--client-loop",
            choices=("auto", *LOOPS),
            default="auto",
            help="event loop of the load processes; auto: uvloop when installed (a cheaper "
            "load generator leaves more of the machine to the server under test)",
        )
    if seconds is not None:
        parser.add_argument(
            "--seconds", type=float, default=seconds, help="measuring window per run"
        )


def client_loop(args: argparse.Namespace) -> str:
    """The load processes' event loop: ``--client-loop``, with ``auto`` resolved."""
    chosen: str = args.client_loop
    if chosen == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    return chosen


# -- limits ------------------------------------------------------------------------------------


def raise_fd_limit(wanted: int = 1 << 20) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the child side of the line protocol ---------------------------------------------------------


def emit(value: dict[str, Any]) -> None:
    """Write one JSON line to the parent."""
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def open_stdin() -> asyncio.StreamReader:
    """The parent's commands, read without a thread (works on asyncio and uvloop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve_commands(
    commands: dict[str, Callable[[], dict[str, Any]]], max_seconds: float
) -> None:
    """Answer the parent's commands until ``stop``, end of stdin or ``max_seconds``.

    Each command name maps to a function whose result is emitted as one JSON line.
    """
    reader = await open_stdin()
    try:
        async with asyncio.timeout(max_seconds):
            while True:
                line = (await reader.readline()).decode().strip()
                if not line or line == "stop":
                    return
                command = commands.get(line)
                emit(command() if command is not None else {"error": f"unknown {line!r}"})
    except TimeoutError:
        print(f"{sys.argv[0]}: lifetime of {max_seconds}s reached, exiting", file=sys.stderr)


async def closed_loops(args: argparse.Namespace, request: Callable[[], Awaitable[Any]]) -> None:
    """Drive ``args.clients x args.depth`` closed loops of ``await request()`` as a load
    process does: say ``ready``, wait for ``go``, warm up, then measure for ``args.seconds``
    and emit the count, errors, wall time, this process's CPU (share of a core) and the
    latency histogram. The raw yardsticks (``nats_echo``, ``grpc_echo``) use it."""
    histogram = Histogram()
    state = {"recording": False, "running": True, "count": 0, "errors": 0}

    async def loop() -> None:
        while state["running"]:
            sent = time.perf_counter()
            try:
                await request()
            except Exception:
                state["errors"] += 1
                continue
            if state["recording"]:
                state["count"] += 1
                histogram.samples.append(time.perf_counter() - sent)

    stdin = await open_stdin()
    emit({"ready": args.clients * args.depth})
    if (await asyncio.wait_for(stdin.readline(), args.max_seconds)).strip() != b"go":
        return
    tasks = [asyncio.ensure_future(loop()) for _ in range(args.clients * args.depth)]
    await asyncio.sleep(args.warmup)
    state["recording"] = True
    cpu_start, start = time.process_time(), time.perf_counter()
    await asyncio.sleep(args.seconds)
    state["recording"] = False
    state["running"] = False
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    await asyncio.wait(tasks, timeout=10)
    emit(
        {
            "count": state["count"],
            "errors": state["errors"],
            "elapsed": elapsed,
            "cpu": cpu / elapsed,
            "histogram": histogram.to_json(),
        }
    )


def yardstick_parser(description: str | None) -> argparse.ArgumentParser:
    """The arguments of a raw pair (``nats_echo``, ``grpc_echo``): its role, the load shape
    of its requester and a lifetime; the caller adds how to reach the responder."""
    parser = argparse.ArgumentParser(description=description)
    add_common_args(parser, seconds=2.0)
    parser.add_argument("role", choices=["responder", "requester"])
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    return parser


def run_yardstick(
    args: argparse.Namespace,
    responder: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
    requester: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> None:
    """Run the role ``args.role`` of a raw pair on ``args.loop``, for ``args.max_seconds``
    at most."""
    role = responder if args.role == "responder" else requester
    run(asyncio.wait_for(role(args), args.max_seconds), args.loop)


# -- the parent side -----------------------------------------------------------------------------


class Child:
    """One benchmark process, driven over its stdin/stdout (see the module docstring)."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, module: str, *args: Any) -> Child:
        """``python -m tests.bench.<module> args...``."""
        return await cls.run_program(module, sys.executable, "-m", f"tests.bench.{module}", *args)

    @classmethod
    async def run_program(cls, name: str, program: Any, *args: Any) -> Child:
        """Any program speaking this module's stdin/stdout protocol (the Go load generator)."""
        process = await asyncio.create_subprocess_exec(
            program,
            *(str(a) for a in args),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,  # result lines carry latency histograms
        )
        return cls(name, process)

    async def expect(self, timeout: float) -> dict[str, Any]:
        """The child's next JSON line; raises if it exits or stays silent for ``timeout``."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(f"{self.name} (pid {self.pid}) silent for {timeout}s") from None
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"{self.name} (pid {self.pid}) exited with {code}")
        value: dict[str, Any] = json.loads(line)
        if "error" in value:
            raise RuntimeError(f"{self.name} (pid {self.pid}): {value['error']}")
        return value

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        if not self.process.stdin.is_closing():
            self.process.stdin.write(command.encode() + b"\n")

    async def ask(self, command: str, timeout: float = 10.0) -> dict[str, Any]:
        self.send(command)
        return await self.expect(timeout)

    async def stop(self, timeout: float = 10.0) -> int | None:
        """Close its stdin (= ``stop``), wait up to ``timeout``, then kill it by PID."""
        process = self.process
        if process.returncode is not None:
            return process.returncode
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            print(f"killing {self.name} (pid {self.pid}) after {timeout}s", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
            return await process.wait()


@contextlib.asynccontextmanager
async def children(stop_timeout: float = 10.0) -> AsyncIterator[list[Child]]:
    """A list to put started children in; all of them are stopped (or killed) on exit."""
    started: list[Child] = []
    try:
        yield started
    finally:
        await asyncio.gather(*(child.stop(stop_timeout) for child in started))


def split(total: int, parts: int) -> list[int]:
    """``total`` items over at most ``parts`` processes, as evenly as possible, none empty."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def profile_report(path: Path, top: int = 25) -> str:
    """The ``top`` functions by own time, with their share of the profiled total."""
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines = [f"{'own %':>6} {'cum %':>6} {'calls':>10}  function"]
    for (filename, line, function), (_, calls, own, cumulative, _) in ranked:
        where = Path(filename).name if filename != "~" else ""
        lines.append(
            f"{own / total:>6.1%} {cumulative / total:>6.1%} {calls:>10}  "
            f"{function} ({where}:{line})"
        )
    return "\n".join(lines)


# -- a server's cost, read from /proc -----------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (pinus runs its connector as a child of its master)."""
    import psutil

    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        return stat.read().rpartition(")")[2].split()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live children, from ``/proc/<pid>/stat``
    (utime, stime: fields 14 and 15, here 11 and 12 counted after the name)."""
    ticks = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = _stat_fields(member)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its live children, from ``/proc/<pid>/statm``."""
    pages = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/statm") as statm:
            pages += int(statm.read().split()[1])
    return pages * _PAGE


# -- latencies -----------------------------------------------------------------------------------

_BUCKETS_PER_E = 100  # bucket width: 1% of the value


class Histogram:
    """Latencies in logarithmic buckets (1% wide), mergeable across processes.

    Recording appends to an array (cheap on the hot path); :meth:`buckets` folds it.
    """

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.samples = array("d")
        self.counts: dict[int, int] = dict(counts or {})

    def buckets(self) -> dict[int, int]:
        counts = self.counts
        for seconds in self.samples:
            us = seconds * 1e6
            key = int(math.log(us) * _BUCKETS_PER_E) if us > 1 else 0
            counts[key] = counts.get(key, 0) + 1
        self.samples = array("d")
        return counts

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.buckets().items()}

    @classmethod
    def merged(cls, parts: Iterable[dict[str, int]]) -> Histogram:
        merged = cls()
        for part in parts:
            for key, count in part.items():
                merged.counts[int(key)] = merged.counts.get(int(key), 0) + count
        return merged

    @property
    def count(self) -> int:
        return sum(self.buckets().values())

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile in milliseconds (bucket midpoint), NaN when empty."""
        counts = self.buckets()
        total = sum(counts.values())
        if total == 0:
            return math.nan
        rank = p / 100 * total
        seen = 0
        for key in sorted(counts):
            seen += counts[key]
            if seen >= rank:
                return math.exp((key + 0.5) / _BUCKETS_PER_E) / 1000
        return math.exp((max(counts) + 0.5) / _BUCKETS_PER_E) / 1000
