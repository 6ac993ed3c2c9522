"""Logging (``actors.logs``): the server id on every line and record, JSON lines on demand."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.app import App
from actors.config import ConfigError
from actors.logs import JsonFormatter, ServerLog, Throttle, configure_logging, formatter_for
from actors.testing import TestClient

ROOT = Path(__file__).resolve().parents[2]
LOGGER = "tests.actors.test_logs"


def record_of(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    return record


def test_the_adapter_prefixes_the_server_id_and_sets_the_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = ServerLog(logging.getLogger(LOGGER), "connector-1")
    log.info("%s listening on %s", "tcp", 3250)
    record = record_of(caplog)
    assert record.getMessage() == "[connector-1] tcp listening on 3250"
    assert record.__dict__["server_id"] == "connector-1"
    assert "session_id" not in record.__dict__
    # The record names the line that logged, not the adapter.
    assert record.funcName == "test_the_adapter_prefixes_the_server_id_and_sets_the_fields"
    assert record.pathname == __file__


def test_a_session_logger_adds_the_session_id_and_keeps_the_callers_extra(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = ServerLog(logging.getLogger(LOGGER), "room-2").session(7)
    log.warning("left", extra={"uid": "alice"})
    record = record_of(caplog)
    assert record.getMessage() == "[room-2] left"
    assert (record.levelno, record.__dict__["session_id"]) == (logging.WARNING, 7)
    assert (record.__dict__["server_id"], record.__dict__["uid"]) == ("room-2", "alice")


def test_a_percent_in_the_id_is_not_a_format(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = ServerLog(logging.getLogger(LOGGER), "odd%sid")
    log.info("%d left", 3)
    log.info("100% done")
    assert [r.getMessage() for r in caplog.records] == ["[odd%sid] 3 left", "[odd%sid] 100% done"]


def test_no_server_id_adds_no_prefix_and_no_field(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ServerLog(logging.getLogger(LOGGER), "").info("plain")
    record = record_of(caplog)
    assert record.getMessage() == "plain" and "server_id" not in record.__dict__


def test_a_disabled_level_costs_no_formatting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    class Loud:
        def __str__(self) -> str:
            raise AssertionError("formatted although DEBUG is off")

    ServerLog(logging.getLogger(LOGGER), "s1").debug("%s", Loud())
    assert not caplog.records


async def test_two_apps_in_one_process_log_with_their_own_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors")
    first = App(server_type="chat", server_id="chat-a")
    second = App(server_type="chat", server_id="chat-b")
    async with TestClient(first), TestClient(second):
        pass
    started = {
        r.__dict__["server_id"]: r.getMessage()
        for r in caplog.records
        if r.name == "actors.lifecycle" and "] started (" in r.getMessage()
    }
    assert set(started) == {"chat-a", "chat-b"}
    assert started["chat-a"].startswith("[chat-a] started (chat)")
    assert started["chat-b"].startswith("[chat-b] started (chat)")
    connected = [
        r for r in caplog.records if r.name == "actors.sessions.actor" and "connected" in r.msg
    ]
    assert sorted(r.__dict__["server_id"] for r in connected) == ["chat-a", "chat-b"]
    for record in connected:
        server_id, session_id = record.__dict__["server_id"], record.__dict__["session_id"]
        assert record.getMessage().startswith(f"[{server_id}] session {session_id} connected")


def json_line(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    value: dict[str, Any] = json.loads(line)
    return value


def test_the_json_formatter_writes_the_fields_and_the_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = ServerLog(logging.getLogger(LOGGER), "room-1").session(12)
    try:
        raise ValueError('bad "move"\nline two')
    except ValueError:
        log.exception("move %s failed", "e2e4")
    entry = json_line(record_of(caplog))
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert {k: entry[k] for k in ("level", "logger", "message", "server_id", "session_id")} == {
        "level": "ERROR",
        "logger": LOGGER,
        "message": "move e2e4 failed",  # the [room-1] prefix is the server_id field
        "server_id": "room-1",
        "session_id": 12,
    }
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert 'ValueError: bad "move"\nline two' in entry["exception"]


def test_a_text_line_is_one_line_whatever_text_a_peer_chose(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A kick's reason a NATS peer sends, logged as it came, wrote a line of its own: a
    forged ``... ERROR ...`` line in the server's log."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = ServerLog(logging.getLogger(LOGGER), "room-1")
    log.info("session %s kicked: %s", 7, "bye\n2026-12-07 00:00:00,000 ERROR forged\r")
    text = formatter_for("text")
    line = text.format(record_of(caplog))
    assert line.endswith("[room-1] session 7 kicked: bye\\n2026-12-07 00:00:00,000 ERROR forged\\r")
    assert "\n" not in line and "\r" not in line
    caplog.clear()
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        log.exception("move failed")
    lines = text.format(record_of(caplog)).splitlines()
    assert lines[0].endswith("[room-1] move failed")
    assert lines[1] == "Traceback (most recent call last):"  # Python's, on its own lines
    assert lines[-2:] == ["ValueError: first", "second"]


def test_a_plain_record_has_no_server_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    logging.getLogger(LOGGER).info("[not an id] %s", {"a": 1})
    entry = json_line(record_of(caplog))
    assert entry["message"] == "[not an id] {'a': 1}"
    assert set(entry) == {"time", "level", "logger", "message"}


@contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger with no handler (pytest's own put back afterwards)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_configure_logging_adds_a_stderr_handler_or_turns_existing_ones_to_json() -> None:
    with bare_root() as root:
        configure_logging("text", "info")
        (handler,) = root.handlers
        assert root.level == logging.INFO
        assert handler.formatter is not None
        assert not isinstance(handler.formatter, JsonFormatter)
        configure_logging("text")  # set up already: left alone
        assert root.handlers == [handler]
        configure_logging("json")
        assert root.handlers == [handler] and isinstance(handler.formatter, JsonFormatter)
        with pytest.raises(ValueError, match="log_format must be 'text' or 'json', not 'xml'"):
            configure_logging("xml")


def test_the_default_level_applies_only_where_nothing_chose_one() -> None:
    with bare_root() as root:
        root.setLevel(logging.WARNING)  # Python's default
        configure_logging("text", default_level="info")
        assert root.level == logging.INFO
        root.setLevel(logging.WARNING)
        configure_logging("text", default_level="debug")  # a handler is set up now
        assert root.level == logging.WARNING
    with bare_root() as root:
        root.setLevel(logging.ERROR)  # the program's choice, without a handler
        configure_logging("text", default_level="info")
        assert root.level == logging.ERROR
    with bare_root() as root:
        root.setLevel(logging.WARNING)
        with pytest.raises(ConfigError, match="log_level must be one of debug, info, warning"):
            configure_logging("text", default_level="loud")


async def test_an_unknown_log_level_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"log_level must be one of .*, not 'loud'"):
        async with TestClient(App(log_level="loud")):
            pass


async def test_app_run_says_it_started_when_nothing_set_logging_up() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITAYA_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.actors.logs_app",
        "tiny-8",
        "bare",
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        while raw := await asyncio.wait_for(process.stderr.readline(), 20):
            lines.append(raw.decode())
            if "started (tiny)" in lines[-1]:
                break
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert " INFO actors.lifecycle [tiny-8] " in lines[-1], lines


async def test_an_unknown_log_format_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="log_format"):
        async with TestClient(App(log_format="yaml")):
            pass


async def read_json_until(
    stream: asyncio.StreamReader, message: str, seen: list[dict[str, Any]]
) -> dict[str, Any]:
    """Read JSON lines until one with ``message``; every line must be JSON."""
    while raw := await asyncio.wait_for(stream.readline(), 20):
        entry: dict[str, Any] = json.loads(raw)
        seen.append(entry)
        if entry["message"].startswith(message):
            return entry
    raise AssertionError(f"stderr ended without {message!r}: {seen}")


@pytest.mark.parametrize("mode", ["code", "env"])
async def test_app_run_writes_json_lines(mode: str) -> None:
    """``code``: the program's own handlers turn to JSON (``log_format="json"``); ``env``:
    ``PITAYA_LOG_FORMAT=json`` and no handler set up, so ``App.run`` adds one."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PITAYA_LOG_FORMAT", None)
    if mode == "env":
        env["PITAYA_LOG_FORMAT"] = "json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.actors.logs_app",
        "tiny-7",
        mode,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert process.stderr is not None
    seen: list[dict[str, Any]] = []
    try:
        started = await read_json_until(process.stderr, "started (tiny)", seen)
        process.send_signal(signal.SIGTERM)
        stopped = await read_json_until(process.stderr, "stopped", seen)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert started["server_id"] == stopped["server_id"] == "tiny-7"
    assert (started["level"], started["logger"]) == ("INFO", "actors.lifecycle")


def test_a_throttled_line_is_at_its_level_once_per_interval_and_names_its_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    log = ServerLog(logging.getLogger("test.throttle"), "s1")
    throttle = Throttle(interval=10.0)
    for now in (0.0, 1.0, 2.0, 11.0):
        throttle.log(now, log, logging.WARNING, "peer %s did it", "p")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "[s1] peer p did it"),
        (logging.DEBUG, "[s1] peer p did it"),
        (logging.DEBUG, "[s1] peer p did it"),
        (logging.WARNING, "[s1] peer p did it (2 more since the last such line, not logged)"),
    ]
    assert {r.funcName for r in caplog.records} == {
        "test_a_throttled_line_is_at_its_level_once_per_interval_and_names_its_caller"
    }
    plain = logging.getLogger("test.throttle.plain")
    Throttle().log(0.0, plain, logging.INFO, "once")
    assert caplog.records[-1].funcName == (
        "test_a_throttled_line_is_at_its_level_once_per_interval_and_names_its_caller"
    )
