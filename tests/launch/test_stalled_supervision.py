"""A SIGTERM to a launcher whose supervisor is stalled (SIGSTOP, a paused host) still ends it
within a bound: the launcher stops the servers and the actor system itself, and exits 1.

Before, each Thespian ``tell`` to the stalled supervisor blocked for 60 s (Thespian's
``MAX_TELL_PERIOD``), then returned as if sent; the stop waited that long, Thespian's shutdown
10 s more, and the launcher exited 1 with every server and Thespian process still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from actors.launch.orphans import thespian_processes
from tests.launch.harness import LauncherProcess, wait_pids_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")

DUMMY = "tests.launch.dummy"
STOP_TIMEOUT = 1.0
BOUND = 5.0 + (STOP_TIMEOUT + 10.0) + STOP_TIMEOUT + 3.0
"""The README's bound (a status wait, the stop's deadline, the launcher's own stop of the
servers) and 3 s for a loaded machine."""


def state(pid: int) -> str | None:
    """The process state letter from ``/proc`` (``T``: stopped); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


async def wait_state(pid: int, wanted: str, timeout: float = 5) -> None:
    """Bounded poll of ``/proc``: a signal's effect on another process has no event."""

    async def poll() -> None:
        while state(pid) != wanted:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_a_sigterm_ends_the_launcher_in_bounded_time_though_the_supervisor_is_stalled(
    tmp_path: Path,
) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""
        [launcher]
        stop_timeout = {STOP_TIMEOUT}

        [[servers]]
        name = "serve"
        module = "{DUMMY}"
        args = ["serve", "serve"]

        [[servers]]
        name = "stubborn"
        module = "{DUMMY}"
        args = ["stubborn", "stubborn"]
        """
    )
    launcher = await LauncherProcess(config).start()
    left: list[psutil.Process] = []  # what a failure leaves: a stopped supervisor, servers...
    try:
        servers = {name: await launcher.server_pid(name) for name in ("serve", "stubborn")}
        for name, pid in servers.items():
            await launcher.wait_line(rf"dummy {name} up pid {pid}")
        actors = thespian_processes(await launcher.admin_port())
        left += [psutil.Process(p) for p in [*(a.pid for a in actors), *servers.values()]]
        [supervisor] = [p for p in actors if p.name == "Supervisor"]
        assert {p.name for p in actors} == {
            "MultiProcAdmin",
            "logger",
            "Supervisor",
            "ServerKeeper",
        }

        os.kill(supervisor.pid, signal.SIGSTOP)
        await wait_state(supervisor.pid, "T")
        index = len(launcher.lines)
        began = time.monotonic()
        launcher.signal(signal.SIGTERM)
        try:
            code = await launcher.wait(timeout=BOUND)
        except TimeoutError:
            raise AssertionError(
                f"the launcher still runs {BOUND}s after SIGTERM:\n{launcher.tail()}"
            ) from None
        took = time.monotonic() - began
        assert code == 1, launcher.tail()
        output = "\n".join(launcher.lines[index:])
        assert "the supervisor did not answer 'stop'" in output, output
        assert "stopped the servers itself" in output, output
        assert "stubborn did not stop" not in output  # the keeper was not the one stopping it
        assert "dummy serve stopped" in output  # SIGTERM first: a graceful stop
        await wait_pids_gone(list(servers.values()), timeout=5)
        await wait_pids_gone([p.pid for p in actors], timeout=5)
        assert took < BOUND
    finally:
        # Not close() first: its SIGTERM would wait as long again, and the launcher's output
        # stays open while a Thespian process holds it.
        if launcher.process is not None and launcher.process.returncode is None:
            launcher.process.kill()
        for process in left:  # psutil checks the PID still names the same process
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
                process.kill()
        await launcher.close()
