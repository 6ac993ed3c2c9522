"""Logging: every line names its server, as text or as JSON for log collectors.

Each component logs through a :class:`ServerLog` built from its module's logger and its
server id, so one process may run several servers (tests run many: ``MemoryCluster``,
``TestClient``) and each line still names its own::

    log = ServerLog(logging.getLogger(__name__), "connector-1")
    log.info("%s listening on %s:%s", "tcp", "0.0.0.0", 3250)
    # text: ... INFO actors.gateway [connector-1] tcp listening on 0.0.0.0:3250
    session_log = log.session(42)   # records carry session_id=42 too

The ``[server-id]`` prefix is what a reader of plain text sees; the same id is on the record
as ``server_id`` (and ``session_id`` when given) for formatters. :class:`JsonFormatter` writes
one JSON object per line with those fields (Pitaya's structured logging, for collectors):

    {"time": "2026-12-06T17:05:01.123Z", "level": "INFO", "logger": "actors.gateway",
     "message": "tcp listening on 0.0.0.0:3250", "server_id": "connector-1"}

:func:`configure_logging` picks one of the two formats (the ``log_format`` option,
``PITAYA_LOG_FORMAT``); ``App.run`` and the launcher call it. :class:`ServerLog` is defined in
``transport.logs``, below every layer, so the NATS and etcd clients use it too; so is
:class:`Throttle`, for lines a peer can repeat at will.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from actors.config import ConfigError
from transport.logs import ServerLog, Throttle

__all__ = [
    "LOG_FORMATS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "ServerLog",
    "TextFormatter",
    "Throttle",
    "check_log_format",
    "configure_logging",
    "formatter_for",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
"""The plain-text line (what ``logging.basicConfig`` gets from the launcher and samples)."""

LOG_FORMATS = ("text", "json")


# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, ``server_id`` and ``session_id`` when the record has them, ``exception``
    (the traceback text) and ``stack`` when present, and any other ``extra`` field.

    The ``[server-id]`` prefix a :class:`ServerLog` adds is left out of ``message``: it is
    the ``server_id`` field already.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        server_id = getattr(record, "server_id", None)
        if server_id is not None:
            prefix = f"[{server_id}] "
            if message.startswith(prefix):
                message = message[len(prefix) :]
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, one line per record: a line break in the message is written
    ``\\n`` (``\\r``), so text a peer chose (a kick's reason from NATS, a route, a uid) cannot
    forge a line of its own; a traceback follows on its lines, as Python writes it."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        if "\n" in message or "\r" in message:
            record.message = message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format``: ``text`` (:class:`TextFormatter`) or ``json``."""
    check_log_format(log_format)
    return JsonFormatter() if log_format == "json" else TextFormatter()


def check_log_format(log_format: str) -> None:
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be 'text' or 'json', not {log_format!r}")


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def check_log_level(log_level: str) -> None:
    if not isinstance(log_level, str) or log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")


def configure_logging(
    log_format: str = "text", level: str | int | None = None, default_level: str | None = None
) -> None:
    """Log in ``log_format`` (``text`` or ``json``); ``level`` (when given) on the root logger.

    When the root logger has no handler yet, one writing to stderr is added in that format,
    and ``default_level`` (when given, and ``level`` is not) becomes the root's level if it
    still has Python's default (``WARNING``).
    When the program already set logging up, its handlers and level are kept: with ``json``
    they format as JSON from now on; with ``text`` they are left as they are.
    """
    check_log_format(log_format)
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level.upper() if isinstance(level, str) else level)
    if not root.handlers:
        if level is None and default_level is not None and root.level == logging.WARNING:
            check_log_level(default_level)  # Python's default level: nobody chose one
            root.setLevel(default_level.upper())
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(formatter_for(log_format))
        root.addHandler(stderr)
    elif log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
