"""The logger of one server: its id on every line and on every record.

:class:`ServerLog` lives here, at the bottom of the layers, so the transport's clients (NATS,
etcd) log like the actors above them; ``actors.logs`` (the place to import it from) adds the
JSON formatter and the set-up. Example::

    log = ServerLog(logging.getLogger(__name__), "connector-1")
    log.info("%s listening on %s:%s", "tcp", "0.0.0.0", 3250)
    # ... INFO actors.gateway [connector-1] tcp listening on 0.0.0.0:3250
    log.session(42).info("kicked")   # the record carries session_id=42 too
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["ServerLog", "Throttle"]


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """A logger of one server (and optionally one session): prefixes ``[server-id]`` to the
    message and puts ``server_id`` (and ``session_id``) into the record. An empty server id
    (a component used on its own, outside a server) adds neither.

    Build one per component from its module's logger; calls look like a logger's
    (``log.info("stopping")``, ``log.exception(...)``), and a caller's own ``extra`` is kept.
    """

    def __init__(
        self, logger: logging.Logger, server_id: str, session_id: int | str | None = None
    ) -> None:
        fields: dict[str, object] = {"server_id": server_id} if server_id else {}
        if session_id is not None:
            fields["session_id"] = session_id
        super().__init__(logger, fields)
        self.server_id = server_id
        self._prefix = f"[{server_id}] " if server_id else ""
        # With arguments the message is a %-format: a '%' in the id must not be read as one.
        self._prefix_with_args = self._prefix.replace("%", "%%")

    def session(self, session_id: int | str) -> ServerLog:
        """The same server's logger, its records carrying ``session_id`` too."""
        return ServerLog(self.logger, self.server_id, session_id)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        # Every level method (debug ... exception) ends here; the prefix depends on ``args``,
        # which ``process`` does not see.
        if self.isEnabledFor(level):
            prefix = self._prefix_with_args if args else self._prefix
            msg, options = self.process(f"{prefix}{msg}", kwargs)
            # This frame is not logging's own: skip it so the record names the caller's line.
            options["stacklevel"] = options.get("stacklevel", 1) + 1
            self.logger.log(level, msg, *args, **options)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**extra, **self.fields} if extra else self.fields
        return msg, kwargs

    @property
    def fields(self) -> Mapping[str, object]:
        """``server_id`` and, when set, ``session_id``."""
        assert self.extra is not None
        return self.extra


class Throttle:
    """At most one log line per ``interval`` seconds for one kind of event that a peer can
    repeat at will (a malformed message per NATS message: a flood of lines otherwise); the
    line after a quiet spell says how many were not logged."""

    __slots__ = ("_last", "_skipped", "interval")

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: float | None = None
        self._skipped = 0

    def allow(self, now: float) -> str | None:
        """None when this event is not to be logged; else what to append to its line (the
        number of events not logged since the last line, or nothing)."""
        if self._last is not None and now - self._last < self.interval:
            self._skipped += 1
            return None
        self._last = now
        skipped, self._skipped = self._skipped, 0
        return f" ({skipped} more since the last such line, not logged)" if skipped else ""

    def log(
        self,
        now: float,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        level: int,
        message: str,
        *args: object,
    ) -> None:
        """Log ``message % args`` at ``level`` when :meth:`allow` lets it (with the count of
        those that were not), else at debug: the line every such event may write."""
        more = self.allow(now)
        level = logging.DEBUG if more is None else level
        # stacklevel: the record names the caller's line, not this one.
        logger.log(level, message + "%s", *args, more or "", stacklevel=2)
