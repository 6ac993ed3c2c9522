"""One kept server's restart bookkeeping (``KeptServer``), with real short-lived processes and
no Thespian: crashes grow the backoff, a start refused because the server id is still held in
discovery (exit status 75) does not."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from actors.launch.config import KeeperSettings, ServerCommand
from actors.launch.keeper import KeptServer
from actors.launch.messages import ServerExited
from actors.startup import EXIT_ID_HELD

LOGGER = "actors.launch.keeper"


def exiting(code: int) -> tuple[str, ...]:
    return (sys.executable, "-c", f"raise SystemExit({code})")


def kept(argv: tuple[str, ...], **settings: Any) -> KeptServer:
    options = {"backoff_initial": 0.5, "backoff_max": 30.0, "held_id_retry": 3.0, **settings}
    return KeptServer(ServerCommand("room-1", argv, settings=KeeperSettings(**options)))


def exit_of(server: KeptServer, argv: tuple[str, ...]) -> ServerExited:
    """Run ``argv`` as the server's next process and report its exit (as the poll does)."""
    server.command = ServerCommand(server.command.name, argv, settings=server.command.settings)
    server.spawn()
    assert server.process is not None
    server.process.wait()
    report = server.check_running()
    assert isinstance(report, ServerExited)
    return report


def test_a_held_id_is_retried_at_a_steady_pace_and_is_no_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A crash (a SIGKILL, say) leaves the server's lease in etcd; its restart is refused
    until the lease goes stale. Those refusals were crashes: each doubled the backoff, so the
    server came back long after its id was free. Now: every ``held_id_retry``, told once."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server = kept(exiting(3))
    assert [exit_of(server, exiting(3)).restart_in for _ in range(2)] == [0.5, 1.0]
    held = [exit_of(server, exiting(EXIT_ID_HELD)) for _ in range(4)]
    assert [(r.returncode, r.restart_in) for r in held] == [(EXIT_ID_HELD, 3.0)] * 4
    assert server.crashes == 2  # untouched: the backoff goes on where the crashes left it
    assert exit_of(server, exiting(3)).restart_in == 2.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    refused = [m for m in warnings if "server id is still held" in m]
    assert len(refused) == 1, warnings  # told once, not at every try
    assert "starting it every 3.0s until the id is free, not counted as a crash" in refused[0]
    # The tries while it is held are at debug: their refusals, and the starts after the
    # first refusal (the last, which crashed, included).
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum("server id still held after" in m for m in debug) == 3
    assert sum("room-1 running (pid" in m for m in debug) == 4
    # A crash after the streak is a crash again, told as one.
    assert "room-1 exited with code 3" in warnings[-1]


def test_a_server_that_runs_after_its_id_was_held_is_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = kept(exiting(EXIT_ID_HELD), stable_after=0.0)
    exit_of(server, exiting(EXIT_ID_HELD))
    server.command = ServerCommand(
        "room-1",
        (sys.executable, "-c", "import time; time.sleep(60)"),
        settings=server.command.settings,
    )
    server.spawn()
    try:
        assert server.check_running() is None  # running (as long as stable_after: 0 s)
        assert server.held_since is None
        assert server.check_running() is None
        runs = [m for m in caplog.messages if "its server id was held in discovery for" in m]
        assert len(runs) == 1 and runs[0].startswith("[launch] room-1 runs (pid "), runs
    finally:
        assert server.process is not None
        server.process.kill()
        server.process.wait()


def test_a_held_id_follows_the_restart_policy() -> None:
    never = kept(exiting(EXIT_ID_HELD), restart="never")
    assert exit_of(never, exiting(EXIT_ID_HELD)).restart_in is None


@pytest.mark.parametrize("code", [EXIT_ID_HELD, 3])
def test_a_server_waiting_for_its_restart_stops_with_its_last_exit_status(code: int) -> None:
    """Stopped while it waited to be started again, a server was reported with no status
    (None), which the launcher counts as unclean: a deployment stopped while a server waited
    for its id held in discovery exited 1 though nothing crashed."""
    server = kept(exiting(code))
    exit_of(server, exiting(code))
    assert server.process is None and server.restart_at is not None
    stopped = server.begin_stop(requester=None)
    assert stopped is not None and stopped.returncode == code
    assert kept(exiting(0)).begin_stop(requester=None).returncode is None  # never ran
    given_up = kept(exiting(code), restart="never")  # not waiting: nothing to say, as before
    exit_of(given_up, exiting(code))
    assert given_up.begin_stop(requester=None).returncode is None
