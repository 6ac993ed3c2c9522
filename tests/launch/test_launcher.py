"""The launcher with real processes: Thespian keepers, restarts with backoff, graceful stop;
at the end, what it decides on its own, around a fake Thespian system."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors.config import ConfigError
from actors.launch import LaunchConfig, Launcher, LaunchError, parse_config
from actors.launch import launcher as launcher_module
from actors.launch.__main__ import HEALTH_INTERVAL
from actors.launch.launcher import LOG_FORMAT_ENV, thespian_log_defs
from actors.launch.messages import (
    Deploy,
    Deployed,
    DeploymentStatus,
    DeploymentStopped,
    StopDeployment,
)
from actors.launch.orphans import shut_down
from tests.launch.harness import (
    LauncherProcess,
    pid_gone,
    port_closed,
    wait_pids_gone,
    wait_port_closed,
)

DUMMY = "tests.launch.dummy"


@pytest.fixture
async def launchers() -> AsyncIterator[list[LauncherProcess]]:
    started: list[LauncherProcess] = []
    try:
        yield started
    finally:
        for launcher in started:
            await launcher.close()


async def launch(started: list[LauncherProcess], config: Path) -> LauncherProcess:
    launcher = LauncherProcess(config)
    started.append(launcher)
    return await launcher.start()


async def test_restarts_with_backoff_and_stops_everything(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""
        [launcher]
        backoff_initial = 0.1
        backoff_max = 0.4
        stop_timeout = 0.5

        [[servers]]
        name = "serve-{{n}}"
        module = "{DUMMY}"
        args = ["serve-{{n}}", "serve"]
        count = 2

        [[servers]]
        name = "crash"
        module = "{DUMMY}"
        args = ["crash", "crash"]
        restart = "on-failure"

        [[servers]]
        name = "stubborn"
        module = "{DUMMY}"
        args = ["stubborn", "stubborn"]
        """
    )
    launcher = await launch(launchers, config)
    pids = {name: await launcher.server_pid(name) for name in ("serve-1", "serve-2", "stubborn")}
    for name, pid in pids.items():
        await launcher.wait_line(rf"dummy {name} up pid {pid}")
    admin_port = await launcher.admin_port()

    # A server that keeps crashing is restarted after 0.1, 0.2, 0.4, 0.4 s (capped).
    delays = []
    index = 0
    for _ in range(4):
        pattern = r"crash exited with code 3 .* restarting in ([\d.]+)s"
        found = await launcher.wait_line(pattern, index)
        delays.append(float(found.group(1)))
        index = launcher.lines.index(found.string) + 1
    assert delays == [0.1, 0.2, 0.4, 0.4]

    # kill -9 by PID: the keeper notices and starts a new process.
    os.kill(pids["serve-1"], signal.SIGKILL)
    found = await launcher.wait_line(rf"serve-1 killed by SIGKILL \(pid {pids['serve-1']}\)")
    index = launcher.lines.index(found.string)
    new_pid = await launcher.server_pid("serve-1", index)
    assert new_pid != pids["serve-1"]
    await launcher.wait_line(rf"dummy serve-1 up pid {new_pid}", index)

    # The keeper (one for every server) that dies is replaced; the servers it left are
    # stopped before new ones start.
    keeper = await launcher.wait_line(r"serve-2 running \(pid \d+; keeper pid (\d+)\)")
    os.kill(int(keeper.group(1)), signal.SIGKILL)
    found = await launcher.wait_line(
        rf"keeper of serve-2 died \(server pid {pids['serve-2']} is stopped first\)"
    )
    index = launcher.lines.index(found.string)
    replacements = [await launcher.server_pid(name, index) for name in pids]
    await wait_pids_gone([pids["serve-2"], pids["stubborn"], new_pid])

    # SIGTERM to the launcher: every server gets SIGTERM; the stubborn one SIGKILL later.
    launcher.signal(signal.SIGTERM)
    assert await launcher.wait() == 1  # not every server exited cleanly
    output = launcher.tail(60)
    assert "serve-1 stopped (exited with code 0)" in output
    assert "serve-2 stopped (exited with code 0)" in output
    assert "stubborn did not stop within 0.5s; killing it" in output
    assert "stubborn stopped (killed by SIGKILL)" in output
    await wait_pids_gone(replacements)
    await wait_port_closed(admin_port)  # the Thespian admin is gone too


async def test_a_server_whose_id_is_held_is_started_again_soon_not_backed_off(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    """A server refused because its id is still held in discovery (exit status 75: the
    lease of the process it replaces has not expired) is started again every
    ``held_id_retry``, told once; counted as crashes, its refusals had doubled the backoff
    (here 2 s, 4 s, 8 s) while the id was about to be free."""
    config = tmp_path / "deploy.toml"
    counter = tmp_path / "starts"
    config.write_text(
        f"""
        [launcher]
        backoff_initial = 2.0
        held_id_retry = 0.2
        stable_after = 0.5
        stop_timeout = 2.0

        [[servers]]
        name = "held"
        module = "{DUMMY}"
        args = ["held", "held", "{counter}", "3"]
        """
    )
    launcher = await launch(launchers, config)
    found = await launcher.wait_line(r"dummy held up pid (\d+)", timeout=10)
    assert counter.read_text() == "4"  # three refusals, then it runs
    output = "\n".join(launcher.lines)
    refused = [line for line in launcher.lines if "its server id is still held" in line]
    assert len(refused) == 1 and "starting it every 0.2s" in refused[0], output
    assert "restarting in" not in output  # no crash, no backoff
    await launcher.wait_line(r"held runs \(pid \d+\): its server id was held in discovery")
    launcher.signal(signal.SIGTERM)
    assert await launcher.wait() == 0
    await wait_pids_gone([int(found.group(1))])


def test_api_start_status_stop(tmp_path: Path) -> None:
    # Synchronous like Thespian's own API, and on the main thread: the actor system forks,
    # which must not happen in a process running other threads.
    config = parse_config(
        {
            "launcher": {"log_dir": str(tmp_path)},
            "servers": [{"name": "d", "module": DUMMY, "args": ["d", "serve"]}],
        }
    )
    with Launcher(config) as launcher:
        pid = launcher.start()["d"]
        assert pid is not None
        [state] = launcher.status()
        assert (state.name, state.pid, state.running, state.restarts) == ("d", pid, True, 0)
        poll_until(lambda: f"dummy d up pid {pid}" in (tmp_path / "d.log").read_text())
        assert launcher.stop() == {"d": 0}  # it handled SIGTERM and exited 0
        assert not launcher.running
    poll_until(lambda: pid_gone(pid))
    poll_until(lambda: port_closed(launcher.admin_port))


def poll_until(check: Callable[[], bool], timeout: float = 10) -> None:
    """Bounded poll of state owned by other processes (a log file, a PID, a port)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{check} still false after {timeout}s"
        time.sleep(0.05)


def deployment_processes(admin_port: int, timeout: float = 10) -> list[psutil.Process]:
    """Thespian's admin on ``admin_port`` and every process under it (logger, supervisor,
    keepers, servers). A bounded poll: the admin names itself in its command line a moment
    after it starts, later on a loaded machine."""
    deadline = time.monotonic() + timeout
    admin_address = re.compile(rf"ActorAddr-\(T\|[^)]*:{admin_port}\)")
    while True:
        for process in psutil.process_iter(["cmdline"]):
            # "ActorAddr-(T|:PORT)", or with the address Thespian chose: "(T|HOST:PORT)".
            if admin_address.search(" ".join(process.info["cmdline"] or [])):
                return [process, *process.children(recursive=True)]
        if time.monotonic() > deadline:
            raise AssertionError(f"no Thespian admin on port {admin_port}")
        time.sleep(0.05)


async def test_nothing_is_left_when_the_launcher_is_killed(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    """SIGKILL of the launcher: the supervisor stops the servers, then shuts the actor system
    down; the admin, its logger, the supervisor and the keepers all exit by themselves. While
    it ran, the launcher had no defunct child (Thespian's admin starter is reaped)."""
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""
        [[servers]]
        name = "serve-{{n}}"
        module = "{DUMMY}"
        args = ["serve-{{n}}", "serve"]
        count = 2
        """
    )
    launcher = await launch(launchers, config)
    pids = [await launcher.server_pid(f"serve-{n}") for n in (1, 2)]
    admin_port = await launcher.admin_port()
    children = psutil.Process(launcher.pid).children()
    assert [c.pid for c in children if c.status() == psutil.STATUS_ZOMBIE] == []
    processes = deployment_processes(admin_port)
    assert set(pids) <= {p.pid for p in processes}
    names = sorted(program(p) for p in processes if p.pid not in pids)
    assert names == ["MultiProcAdmin", "ServerKeeper", "Supervisor", "logger"]  # one keeper

    launcher.signal(signal.SIGKILL)
    await launcher.wait_line(r"the launcher \(pid \d+\) is gone without stopping")
    await wait_pids_gone(pids)
    _, alive = await asyncio.to_thread(psutil.wait_procs, processes, 15)
    assert alive == [], alive
    assert port_closed(admin_port)


async def one_server(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> tuple[LauncherProcess, int]:
    """A deployment of one dummy server: its launcher and the server's pid."""
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""
        [[servers]]
        name = "serve"
        module = "{DUMMY}"
        args = ["serve", "serve"]
        """
    )
    launcher = await launch(launchers, config)
    return launcher, await launcher.server_pid("serve")


def program(process: psutil.Process) -> str:
    """What a Thespian process calls itself (``Supervisor ActorAddr-...``: ``Supervisor``)."""
    return " ".join(process.cmdline()).split(" ")[0]


async def test_thespian_listens_on_the_loopback_interface_only(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    """Thespian unpickles whatever reaches its sockets: on all interfaces (its default), any
    machine that could reach a port ran code as the launcher's user."""
    launcher, server = await one_server(tmp_path, launchers)
    processes = [p for p in deployment_processes(await launcher.admin_port()) if p.pid != server]
    listening = [
        (program(process), connection.laddr.ip)
        for process in processes
        for connection in process.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN
    ]
    assert {name for name, _ in listening} == {
        "MultiProcAdmin",
        "ServerKeeper",
        "Supervisor",
        "logger",
    }
    assert {ip for _, ip in listening} == {"127.0.0.1"}, listening
    launcher.signal(signal.SIGTERM)
    assert await launcher.wait() == 0


@pytest.mark.parametrize("killed", ["Supervisor", "MultiProcAdmin"])
async def test_a_launcher_whose_supervision_dies_cleans_up_and_exits_1(
    killed: str, tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    """The servers stop with their supervision (parent-death signals); the launcher used to
    run on with none, silent, and a dead admin's logger stayed behind (it ignores SIGTERM)."""
    launcher, server = await one_server(tmp_path, launchers)
    processes = deployment_processes(await launcher.admin_port())
    [victim] = [p for p in processes if program(p) == killed]
    victim.kill()
    assert await asyncio.wait_for(launcher.wait(), 60) == 1
    assert "the deployment's supervision is gone" in launcher.tail(20)
    await wait_pids_gone([server])
    _, alive = await asyncio.to_thread(psutil.wait_procs, processes, 15)
    assert alive == [], alive


async def test_a_supervisor_slow_to_answer_is_asked_again_not_given_up(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    """A stalled supervisor (a paused VM, SIGSTOP) that misses a status answer still runs:
    the deployment goes on; only a supervision that is gone is given up."""
    launcher, server = await one_server(tmp_path, launchers)
    processes = deployment_processes(await launcher.admin_port())
    [supervisor] = [p for p in processes if program(p) == "Supervisor"]
    supervisor.suspend()
    try:
        # The stall itself, longer than a check's wait (Thespian's tell blocks meanwhile).
        await asyncio.sleep(2 * HEALTH_INTERVAL + 1)
    finally:
        supervisor.resume()
    await launcher.wait_line(r"it still runs: asking again", timeout=30)
    assert launcher.process is not None and launcher.process.returncode is None
    assert psutil.pid_exists(server)
    launcher.signal(signal.SIGTERM)
    assert await launcher.wait() == 0


async def test_servers_that_drain_are_stopped_before_the_others(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    """All at once, the backends were gone while the frontends drained: their clients'
    messages failed for the whole drain."""
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""
        [[servers]]
        name = "back"
        module = "{DUMMY}"
        args = ["back", "serve"]

        [[servers]]
        name = "front"
        module = "{DUMMY}"
        args = ["front", "drain"]
        env = {{ PITAYA_DRAIN_SESSIONS = "1", PITAYA_DRAIN_TIMEOUT = "5" }}
        """
    )
    launcher = await launch(launchers, config)
    for name in ("back", "front"):
        await launcher.wait_line(rf"dummy {name} up pid \d+")
    launcher.signal(signal.SIGTERM)
    assert await launcher.wait() == 0
    output = launcher.tail(40)
    assert output.index("dummy front stopped") < output.index("dummy back got SIGTERM"), output


async def test_a_server_stops_when_its_keeper_is_killed_and_not_replaced(
    tmp_path: Path, launchers: list[LauncherProcess]
) -> None:
    """A keeper and its supervisor both gone (SIGKILL): the server gets SIGTERM from the
    kernel (parent-death signal) instead of running on unsupervised."""
    launcher, _ = await one_server(tmp_path, launchers)
    found = await launcher.wait_line(r"serve running \(pid (\d+); keeper pid (\d+)\)")
    server, keeper = int(found.group(1)), int(found.group(2))
    await launcher.wait_line(rf"dummy serve up pid {server}")
    supervisor = psutil.Process(keeper).ppid()
    os.kill(supervisor, signal.SIGKILL)  # nobody left to replace the keeper
    os.kill(keeper, signal.SIGKILL)
    await wait_pids_gone([server], timeout=10)
    # No supervisor to stop the deployment: end the launcher and the admin directly.
    admin_port = await launcher.admin_port()
    launcher.signal(signal.SIGKILL)
    await asyncio.to_thread(shut_down, admin_port)
    await wait_port_closed(admin_port)
    await launcher.wait()  # its output pipe closes with the admin's processes


# -- without processes: a fake Thespian system ------------------------------------------------


class FakeActorSystem:
    """Thespian's ``ActorSystem`` as the launcher uses it: what it was made with and every
    wait recorded; ``replies`` answer each request (a late one first, if given)."""

    made: list[FakeActorSystem] = []

    def __init__(self, base: str, *, capabilities: dict[str, Any], logDefs: Any, **_: Any) -> None:
        self.capabilities = capabilities
        self.log_defs = logDefs
        self.waits: list[float] = []
        self.replies: list[object] = []
        FakeActorSystem.made.append(self)

    def createActor(self, actor_class: type) -> str:
        return actor_class.__name__

    def tell(self, address: str, message: object) -> None:
        if isinstance(message, Deploy):
            self.replies.append(
                Deployed({s.name: 1000 + n for n, s in enumerate(message.commands)})
            )
        elif isinstance(message, StopDeployment):
            self.replies.append(DeploymentStopped({"a": 0}))

    def ask(self, address: str, message: object, timeout: timedelta) -> object:
        self.tell(address, message)
        return self.listen(timeout)

    def listen(self, timeout: timedelta) -> object:
        self.waits.append(timeout.total_seconds())
        return self.replies.pop(0)

    def shutdown(self) -> None:
        pass


@pytest.fixture
def fake_thespian(monkeypatch: pytest.MonkeyPatch) -> list[FakeActorSystem]:
    """The actor systems made by the launcher, fake ones (and Thespian's classes untouched)."""
    FakeActorSystem.made = []
    monkeypatch.setattr(launcher_module, "ActorSystem", FakeActorSystem)
    monkeypatch.setattr(launcher_module, "keep_thespian_local", lambda: None)
    monkeypatch.delenv(LOG_FORMAT_ENV, raising=False)
    return FakeActorSystem.made


def servers(*entries: tuple[float, bool], **launcher: object) -> LaunchConfig:
    """One server per entry: its stop_timeout, and whether it drains its sessions."""
    return parse_config(
        {
            "launcher": launcher,
            "servers": [
                {
                    "name": f"s{n}",
                    "module": DUMMY,
                    "stop_timeout": stop_timeout,
                    "env": {"PITAYA_DRAIN_SESSIONS": "1" if drains else "0"},
                }
                for n, (stop_timeout, drains) in enumerate(entries)
            ],
        }
    )


def test_the_stop_waits_for_the_longest_stop_of_each_wave_one_after_the_other(
    fake_thespian: list[FakeActorSystem],
) -> None:
    """The servers that drain are stopped first, the others once they are gone: the stop
    may take the longest stop_timeout of each wave in turn, plus 10 s to report back."""
    launcher = Launcher(servers((30, True), (5, True), (7, False), (2, False)))
    launcher.start()
    [system] = fake_thespian
    system.replies.insert(0, DeploymentStatus(()))  # a late answer to a status: skipped
    assert launcher.stop() == {"a": 0}
    assert system.waits[-2] == pytest.approx(30 + 7 + 10, abs=0.5)
    assert len(system.waits) == 3  # Deploy, then the late status and the stop's own answer


def test_the_keepers_log_at_the_launchers_level_in_the_format_of_its_environment(
    fake_thespian: list[FakeActorSystem], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOG_FORMAT_ENV, "json")
    Launcher(servers((1, False)), log_level="DEBUG").start()
    [system] = fake_thespian
    assert system.log_defs["formatters"]["plain"] == {"()": "actors.logs.JsonFormatter"}
    assert system.log_defs["loggers"]["actors.launch"]["level"] == "DEBUG"


def test_an_unknown_log_format_is_refused_before_anything_starts(
    fake_thespian: list[FakeActorSystem], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="log_format"):
        Launcher(servers((1, False)), log_format="xml")
    monkeypatch.setenv(LOG_FORMAT_ENV, "yaml")
    with pytest.raises(ConfigError, match="log_format"):
        Launcher(servers((1, False)))
    with pytest.raises(ConfigError, match="log_format"):
        thespian_log_defs("INFO", "xml")
    assert fake_thespian == []


def test_an_admin_port_in_use_is_refused_before_anything_starts(
    fake_thespian: list[FakeActorSystem],
) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        launcher = Launcher(servers((1, False), admin_port=taken.getsockname()[1]))
        with pytest.raises(LaunchError, match="is in use"):
            launcher.start()
    assert fake_thespian == []
    assert not launcher.running


def test_without_processes_recorded_the_supervision_is_not_known_dead_or_alive(
    fake_thespian: list[FakeActorSystem],
) -> None:
    """No /proc (or nothing found there): the launcher must not give the deployment up."""
    launcher = Launcher(servers((1, False)))
    assert launcher.supervision_alive() is None
    launcher.start()  # the fake system has no processes
    assert launcher.supervision_alive() is None
