"""statsd reporter: one UDP datagram per report, tags encoded in the metric name.

Pitaya's statsd reporter uses DataDog's client, which appends tags after the value
(``|#serverType:room,route:r``). Plain statsd has no tags, and the ``statsd`` package writes
``<name>:<value>|<type>`` only, so tags go into the name, InfluxDB style, which both the
Prometheus statsd_exporter (Pitaya's default target, port 9125) and Telegraf parse as tags::

    pitaya.response_time_ns,serverType=room,route=room.join,status=ok,type=handler,code=:81234.000000|ms

Order as in Pitaya: the constant tags (``serverType`` first), then the report's tags. In tag
keys and values every character outside printable ASCII and each of ``,=:|@#`` and space
becomes ``_``, so a tag can never break the line. Like Pitaya, summaries are sent as timings
(``|ms``) carrying the reported value unchanged (nanoseconds for ``*_ns`` metrics) and counts
as integers.

Why this never blocks the loop: the host is resolved asynchronously in :meth:`start`, and the
UDP socket is non-blocking, so a full socket buffer drops the datagram instead of waiting.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
from collections.abc import Mapping

from statsd import StatsClient  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^\x21-\x7e]|[,=:|@#]")


@functools.lru_cache(maxsize=4096)  # routes and tag values repeat; the regex need not
def clean(text: str) -> str:
    """``text`` with every character that would break a statsd line replaced by ``_``."""
    return _UNSAFE.sub("_", text)


class StatsdReporter:
    """Sends every report to a statsd server over UDP. Call :meth:`start` before reporting.

    ``prefix`` is prepended verbatim (default ``pitaya.``, Pitaya's); ``rate`` is the sample
    rate (1.0 sends everything); ``const_tags`` are added to every line.
    """

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 9125,
        prefix: str = "pitaya.",
        rate: float = 1.0,
        const_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.prefix = clean(prefix)
        self.rate = rate
        self._const = "".join(f",{clean(k)}={clean(v)}" for k, v in (const_tags or {}).items())
        self._client: StatsClient | None = None

    async def start(self) -> None:
        """Resolve the host without blocking the loop and open the UDP socket."""
        if self._client is not None:
            return
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        # A numeric address: StatsClient's own getaddrinfo does not touch DNS.
        client = StatsClient(
            host=address[0], port=self.port, prefix=None, ipv6=family == socket.AF_INET6
        )
        client._sock.setblocking(False)  # a full buffer drops the datagram, never waits
        self._client = client
        log.info(
            "statsd metrics to %s:%s (%s), prefix %r", self.host, self.port, address[0], self.prefix
        )

    async def stop(self) -> None:
        """Close the socket. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def name(self, metric: str, tags: Mapping[str, str]) -> str:
        """The statsd metric name carrying ``tags``, e.g. ``pitaya.m,serverType=room,k=v``."""
        encoded = "".join(f",{clean(k)}={clean(str(v))}" for k, v in tags.items())
        return f"{self.prefix}{clean(metric)}{self._const}{encoded}"

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        if self._client is not None:
            count = int(value) if float(value).is_integer() else value
            self._client.incr(self.name(metric, tags), count, self.rate)

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        if self._client is not None:
            self._client.gauge(self.name(metric, tags), value, self.rate)

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        if self._client is not None:
            self._client.timing(self.name(metric, tags), value, self.rate)
