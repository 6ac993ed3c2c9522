"""The raw yardsticks of ``bench_cluster`` (``nats_echo``, ``grpc_echo``), briefly: each pair
answers its calls and its requester reports in ``loadgen``'s format. A yardstick whose calls
failed would report a rate of nothing, and a ratio against it would mean nothing."""

from __future__ import annotations

from typing import Any

from tests.bench.harness import Child, Histogram, children
from tests.services import NatsServer

SHORT = ("--clients", 3, "--depth", 2, "--seconds", 0.3, "--warmup", 0.1, "--max-seconds", 60)


async def closed_loop(responder: tuple[Any, ...], requester: tuple[Any, ...]) -> dict[str, Any]:
    """Start ``python -m tests.bench.<responder...>``, then one short requester run against
    it (``requester`` may name the responder's ``{port}``): the requester's result line."""
    async with children() as started:
        answering = await Child.start(*responder)
        started.append(answering)
        ready = await answering.expect(timeout=30)
        args = [str(a).format(port=ready.get("port")) for a in requester]
        worker = await Child.start(*args, *SHORT)
        started.append(worker)
        assert (await worker.expect(timeout=30)) == {"ready": 6}
        worker.send("go")
        return await worker.expect(timeout=30)


def assert_measured(result: dict[str, Any]) -> None:
    assert set(result) == {"count", "errors", "elapsed", "cpu", "histogram"}
    assert result["count"] > 0
    assert result["errors"] == 0
    assert result["elapsed"] >= 0.29  # the loop may wake a timer up to its clock resolution early
    assert Histogram.merged([result["histogram"]]).count == result["count"]


async def test_grpc_echo_answers_its_requester() -> None:
    result = await closed_loop(
        ("grpc_echo", "responder"), ("grpc_echo", "requester", "--port", "{port}")
    )
    assert_measured(result)


async def test_nats_echo_answers_its_requester() -> None:
    server = NatsServer()
    server.start()
    try:
        result = await closed_loop(
            ("nats_echo", "responder", "--nats", server.url),
            ("nats_echo", "requester", "--nats", server.url),
        )
    finally:
        server.stop()
    assert_measured(result)


async def test_a_requester_with_nobody_answering_counts_errors() -> None:
    """No responder on the subject: every call fails (no responders), none is counted."""
    server = NatsServer()
    server.start()
    try:
        async with children() as started:
            worker = await Child.start(
                "nats_echo", "requester", "--nats", server.url, "--subject", "nobody.here", *SHORT
            )
            started.append(worker)
            await worker.expect(timeout=30)
            worker.send("go")
            result = await worker.expect(timeout=30)
    finally:
        server.stop()
    assert result["count"] == 0
    assert result["errors"] > 0
