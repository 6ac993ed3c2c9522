"""Run ``python -m actors.launch`` as a real process and follow its output line by line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def wait_pids_gone(pids: list[int], timeout: float = 15) -> None:
    """Bounded poll of the process table: these PIDs are not our children, no event exists."""

    async def poll() -> None:
        while not all(pid_gone(pid) for pid in pids):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def wait_port_closed(port: int, timeout: float = 10) -> None:
    """Bounded poll until nothing accepts on ``port`` (a Thespian admin closes its socket
    just after answering the shutdown)."""

    async def poll() -> None:
        while not port_closed(port):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


class LauncherProcess:
    """The launcher CLI with stdout and stderr merged (its log, the keepers', the servers')."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "actors.launch", str(config), *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> LauncherProcess:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )
        stream = self.process.stdout
        assert stream is not None

        async def pump() -> None:
            while raw := await stream.readline():
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._changed.set()
            self._changed.set()

        self._pump = asyncio.get_running_loop().create_task(pump())
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def wait_line(self, pattern: str, start: int = 0, timeout: float = 20) -> re.Match[str]:
        """The first line at or after index ``start`` matching the regex ``pattern``."""

        def find() -> re.Match[str] | None:
            for line in self.lines[start:]:
                if found := re.search(pattern, line):
                    return found
            return None

        async def until() -> re.Match[str]:
            while (found := find()) is None:
                if self._pump is not None and self._pump.done():
                    raise AssertionError(f"output ended without {pattern!r}:\n{self.tail()}")
                self._changed.clear()
                await self._changed.wait()
            return found

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise AssertionError(f"no line {pattern!r} within {timeout}s:\n{self.tail()}") from None

    async def server_pid(self, name: str, start: int = 0) -> int:
        found = await self.wait_line(rf"\[launch\] {re.escape(name)} running \(pid (\d+)", start)
        return int(found.group(1))

    async def admin_port(self) -> int:
        return int((await self.wait_line(r"thespian admin port (\d+)")).group(1))

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    async def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pump, 10)
        return code

    async def close(self) -> None:
        """End of test: SIGTERM if still running (the launcher stops its servers), reap."""
        if self.process is not None and self.process.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await self.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._pump is not None:
            self._pump.cancel()

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])
