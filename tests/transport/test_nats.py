"""The NATS byte pipe against a real nats-server on 127.0.0.1: requests, ordered publishes,
subscription groups, failures as typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.cycles import left_per_extra_run
from tests.services import NatsServer, free_port, serving
from transport.nats import (
    NatsDown,
    NatsNoResponders,
    NatsPipe,
    NatsTimeout,
    NatsUnreachable,
    OnMessage,
)


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    yield from serving(NatsServer())


async def test_a_request_gets_the_answer_published_on_its_reply_subject(pipe: NatsPipe) -> None:
    def echo(data: bytes, reply: str | None) -> None:
        assert reply is not None
        pipe.publish(reply, data[::-1])

    await pipe.subscribe("echo", echo)
    await pipe.flush(1)
    assert await pipe.request("echo", b"ping", timeout=2) == b"gnip"


async def test_requests_and_answers_leave_no_cycles(pipe: NatsPipe) -> None:
    """Both ends of the direct path (the requester's shared reply subscription, the
    responder's delivery and answer): freed by reference counting (see ``tests.cycles``)."""

    def echo(data: bytes, reply: str | None) -> None:
        assert reply is not None
        pipe.answer_to(reply, data)

    await pipe.subscribe("cycles", echo)
    await pipe.flush(1)

    async def requests(count: int) -> None:
        for i in range(count):
            assert await pipe.request("cycles", b"%d" % i, timeout=2) == b"%d" % i

    async def sent(count: int) -> None:  # the cluster's way: a callback, no future
        answers: asyncio.Queue[bytes | None] = asyncio.Queue()
        for i in range(count):
            pipe.send_request("cycles", b"%d" % i, 2, lambda data, error: answers.put_nowait(data))
            assert await answers.get() == b"%d" % i

    assert await left_per_extra_run(requests) < 1
    assert await left_per_extra_run(sent) < 1


async def test_publishes_arrive_in_order(pipe: NatsPipe) -> None:
    got: list[bytes] = []
    done = asyncio.Event()

    def record(data: bytes, reply: str | None) -> None:
        assert reply is None
        got.append(data)
        if len(got) == 200:
            done.set()

    await pipe.subscribe("ordered", record)
    await pipe.flush(1)
    for i in range(100):
        pipe.publish("ordered", b"%d" % i)
    # publish_now from tasks started in order keeps that order too.
    await asyncio.gather(*(pipe.publish_now("ordered", b"%d" % i) for i in range(100, 200)))
    await asyncio.wait_for(done.wait(), 5)
    assert got[:100] == [b"%d" % i for i in range(100)]
    assert sorted(got[100:], key=int) == got[100:]


async def test_nobody_listening_and_nobody_answering_are_told_apart(pipe: NatsPipe) -> None:
    with pytest.raises(NatsNoResponders, match="nobody-here"):
        await pipe.request("nobody-here", b"x", timeout=1)
    await pipe.subscribe("silent", lambda data, reply: None)
    await pipe.flush(1)
    with pytest.raises(NatsTimeout) as info:
        await pipe.request("silent", b"x", timeout=0.2)
    assert not isinstance(info.value, NatsNoResponders)


async def test_a_group_replaces_its_subscriptions_and_is_dropped_at_once(pipe: NatsPipe) -> None:
    got: list[tuple[str, bytes]] = []

    def taker(name: str) -> OnMessage:
        return lambda data, reply: got.append((name, data))

    await pipe.subscribe_group("ann", ["ann.push", "ann.kick"], taker("first"))
    await pipe.subscribe_group("ann", ["ann.push", "ann.kick"], taker("second"))
    await pipe.flush(1)
    pipe.publish("ann.push", b"1")
    await pipe.flush(1)
    await asyncio.sleep(0.05)
    assert got == [("second", b"1")]
    await pipe.unsubscribe_group("ann")
    await pipe.unsubscribe_group("nobody")  # no group: nothing
    await pipe.flush(1)
    with pytest.raises(NatsNoResponders):
        await pipe.request("ann.kick", b"2", timeout=1)


async def test_an_unreachable_server_and_a_closed_pipe_fail_typed() -> None:
    pipe = NatsPipe(f"nats://127.0.0.1:{free_port()}", name="nobody", connect_timeout=0.5)
    with pytest.raises(NatsUnreachable, match="cannot reach NATS"):
        await pipe.connect()
    assert not pipe.connected
    with pytest.raises(NatsDown):
        await pipe.request("x", b"", timeout=1)
    pipe.publish("x", b"")  # dropped while down, never raises
    await pipe.publish_now("x", b"")
    await pipe.close()  # never connected: nothing to do
