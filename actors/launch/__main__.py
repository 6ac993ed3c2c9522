"""``python -m actors.launch CONFIG.toml [--var name=value ...]``: run a deployment.

Starts every server of the file, logs their pids, and waits for SIGTERM or SIGINT; then stops
them all gracefully and exits 0 when every server exited cleanly (a server waiting to be
started again because its id is held in discovery counts as one: it did not crash), 1
otherwise, 2 when the deployment could not start. If the supervision dies meanwhile (its
supervisor or Thespian's admin killed: the servers stop with it), it cleans up what is left
and exits 1. If the supervision stalls (SIGSTOP, a paused host) and does not answer the stop
within its deadline, it stops the servers and kills the actor system itself, and exits 1:
SIGTERM to exit takes at most HEALTH_INTERVAL + the stop's deadline + the longest
stop_timeout (see ``Launcher.stop``).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
from types import FrameType

from actors.launch.config import LaunchConfigError, load_config
from actors.launch.launcher import LOG_FORMAT_ENV, Launcher, LaunchError
from actors.logs import LOG_FORMATS, ServerLog, configure_logging
from actors.startup import EXIT_ID_HELD

log = ServerLog(logging.getLogger(__name__), "launch")

HEALTH_INTERVAL = 5.0
"""Seconds between two checks that the supervisor still answers (when idle), and how long
it may take to answer."""


def parse_vars(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--var expects name=value, not {pair!r}")
        values[name] = value
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m actors.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="TOML file listing the servers")
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="override a [vars] entry"
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help=f"text or json lines, for the launcher and every server (sets their {LOG_FORMAT_ENV}"
        f"); default: {LOG_FORMAT_ENV} or text",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_format or os.environ.get(LOG_FORMAT_ENV) or "text", args.log_level)
    try:
        config = load_config(args.config, parse_vars(args.var))
    except LaunchConfigError as exc:
        log.error("%s", exc)
        return 2

    # A signal only sets a flag; the byte written to the wake-up pipe ends the select below,
    # even when the signal lands just before it (no lost wake-up).
    stop_requested: list[int] = []
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    launcher = Launcher(config, log_level=args.log_level, log_format=args.log_format)
    try:
        pids = launcher.start()
    except (LaunchError, OSError) as exc:
        log.error("could not start the deployment: %s", exc)
        return 2
    try:
        log.info("running %s; SIGTERM or Ctrl-C stops them all", ", ".join(pids))
        while not stop_requested:
            if select.select([wake_read], [], [], HEALTH_INTERVAL)[0]:
                os.read(wake_read, 512)
                continue
            try:
                launcher.status(timeout=HEALTH_INTERVAL)
            except LaunchError as exc:
                if launcher.supervision_alive() is not False:
                    # Slow (a stalled VM, a paused process), or gone where /proc cannot say.
                    log.warning("%s; it still runs: asking again", exc)
                    continue
                log.error(
                    "the deployment's supervision is gone (%s), and its servers with it: exiting",
                    exc,
                )
                killed = launcher.abandon()
                if killed:
                    log.warning("killed what was left of the actor system: pids %s", killed)
                return 1
        log.info("%s received: stopping", signal.Signals(stop_requested[0]).name)
    finally:
        returncodes: dict[str, int | None] | None = None
        try:
            returncodes = launcher.stop()
        except LaunchError as exc:  # the actor system is shut down regardless
            log.error("%s", exc)
    if returncodes is None:
        return 1
    # A server waiting to be started again because its id was held in discovery did not
    # crash (the keeper counts no crash for it): nothing of it ran to stop.
    held = sorted(name for name, code in returncodes.items() if code == EXIT_ID_HELD)
    if held:
        log.warning("not running at the stop, their server id held in discovery: %s", held)
    unclean = {name: code for name, code in returncodes.items() if code not in (0, EXIT_ID_HELD)}
    if unclean:
        log.warning("not every server exited cleanly: %s", unclean)
        return 1
    log.info("every server stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
