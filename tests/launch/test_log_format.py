"""``python -m actors.launch --log-format json``: the launcher's, the keepers' and the
servers' lines are JSON objects naming who wrote them."""

from __future__ import annotations

import json
import logging.config
import signal
from pathlib import Path
from typing import Any

from actors.launch import parse_config
from actors.launch.launcher import Launcher, thespian_log_defs
from actors.logs import JsonFormatter
from tests.launch.harness import LauncherProcess

APP = "tests.actors.logs_app"  # a tiny App served with App.run until SIGTERM


def test_the_keepers_formatter_is_json() -> None:
    defs = thespian_log_defs("INFO", "json")
    formatter = logging.config.DictConfigurator(defs).configure_formatter(
        defs["formatters"]["plain"]
    )
    assert isinstance(formatter, JsonFormatter)


def test_a_given_format_reaches_every_server_unless_its_entry_sets_one() -> None:
    config = parse_config(
        {
            "servers": [
                {"name": "a", "module": "m"},
                {"name": "b", "module": "m", "env": {"PITAYA_LOG_FORMAT": "text"}},
            ]
        }
    )
    a, b = Launcher(config, log_format="json")._servers()
    assert dict(a.env)["PITAYA_LOG_FORMAT"] == "json"
    assert dict(b.env)["PITAYA_LOG_FORMAT"] == "text"  # later pairs win in the keeper
    assert Launcher(config)._servers() == config.servers  # no format given: environment as is


def entries(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


async def test_launcher_keepers_and_servers_write_json(tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""
        [[servers]]
        name = "tiny-1"
        module = "{APP}"
        args = ["tiny-1"]
        """
    )
    launcher = LauncherProcess(config, "--log-format", "json", env={"PITAYA_LOG_FORMAT": ""})
    await launcher.start()
    try:
        await launcher.wait_line(r'"message": "tiny-1 running \(pid \d+')
        await launcher.wait_line(r'"message": "started \(tiny\)')
        launcher.signal(signal.SIGTERM)
        assert await launcher.wait() == 0
    finally:
        await launcher.close()
    lines = [line for line in launcher.lines if line.strip()]
    assert entries(lines) and all(line.startswith("{") for line in lines), launcher.tail()
    by_message = {entry["message"]: entry for entry in entries(lines)}
    running = next(e for m, e in by_message.items() if m.startswith("tiny-1 running (pid"))
    assert running["server_id"] == "launch"
    assert running["logger"] == "actors.launch.keeper"
    started = next(e for m, e in by_message.items() if m.startswith("started (tiny)"))
    assert (started["server_id"], started["logger"]) == ("tiny-1", "actors.lifecycle")
    assert by_message["every server stopped cleanly"]["server_id"] == "launch"
