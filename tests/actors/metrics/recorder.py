"""Test doubles for metrics: a reporter that records calls and lets a test await one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Call:
    method: str  # "count", "gauge" or "summary"
    metric: str
    tags: dict[str, str]
    value: float


Predicate = Callable[[Call], bool]


class Recorder:
    """A :class:`~actors.metrics.Reporter` keeping every call; tests await calls they expect."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._waiters: list[tuple[Predicate, asyncio.Future[Call]]] = []

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        self._record(Call("count", metric, dict(tags), value))

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        self._record(Call("gauge", metric, dict(tags), value))

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        self._record(Call("summary", metric, dict(tags), value))

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        for predicate, future in self._waiters:
            if not future.done() and predicate(call):
                future.set_result(call)
        self._waiters = [(p, f) for p, f in self._waiters if not f.done()]

    def find(self, predicate: Predicate) -> list[Call]:
        return [call for call in self.calls if predicate(call)]

    async def next(self, predicate: Predicate, timeout: float = 5.0) -> Call:
        """The next call matching ``predicate`` (calls already recorded do not count)."""
        future: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return await asyncio.wait_for(future, timeout)

    async def wait_for(self, predicate: Predicate, timeout: float = 5.0, since: int = 0) -> Call:
        """A call matching ``predicate`` recorded at index ``since`` or later, or the next one."""
        for call in self.calls[since:]:
            if predicate(call):
                return call
        return await self.next(predicate, timeout)


def is_(method: str, metric: str, **tags: str) -> Predicate:
    """Matches calls of ``method`` on ``metric`` whose tags include ``tags``."""

    def predicate(call: Call) -> bool:
        return (
            call.method == method
            and call.metric == metric
            and all(call.tags.get(k) == v for k, v in tags.items())
        )

    return predicate


async def http_get(
    address: tuple[str, int], path: str = "/metrics", method: str = "GET", accept: str = "*/*"
) -> bytes:
    """The whole raw HTTP response to one request (the server closes the connection)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return data


async def scrape(address: tuple[str, int]) -> str:
    response = await http_get(address)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    return body.decode()


def exposed(text: str) -> dict[str, str]:
    """Each series name as written in the text format, with its family's ``TYPE``: the names
    Prometheus stores. (prometheus-client's parser renames every counter sample ``_total``,
    so it cannot tell ``x`` from ``x_total``.)"""
    types: dict[str, str] = {}
    names: dict[str, str] = {}
    family = ""
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            family, kind = line[len("# TYPE ") :].split(" ")
            types[family] = kind
        elif line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            assert name.startswith(family), f"{name} is outside its family {family}"
            names[name] = types[family]
    return names


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``, or None."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None
