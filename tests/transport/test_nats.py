"""The NATS byte pipe against a real nats-server on 127.0.0.1: requests, ordered publishes,
subscription groups, failures as typed errors."""

from __future__ import annotations

import asyncio
import logging
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


async def _hostile_peer(url: str, commands: bytes) -> None:
    """Another NATS client, speaking the protocol by hand: what nats-py would refuse to
    send, the server relays as it is."""
    host, port = url.removeprefix("nats://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
        writer.write(commands + b"PING\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == b"PONG\r\n"
    finally:
        writer.close()


async def test_a_reply_subject_that_is_not_utf8_drops_its_message_with_one_line(
    pipe: NatsPipe, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer may name any bytes as the reply subject: the server relays them. Such a
    message cannot be answered; it is dropped, the others are delivered, and a flood of
    them writes no traceback per message."""
    got: list[tuple[bytes, str | None]] = []
    arrived = asyncio.Event()

    def record(data: bytes, reply: str | None) -> None:
        got.append((data, reply))
        if data == b"last":
            arrived.set()

    await pipe.subscribe("hostile", record)
    await pipe.flush(1)
    bad = b"".join(b"PUB hostile \xffbad.%d 3\r\nbad\r\n" % i for i in range(5))
    with_headers = b"HPUB hostile \xfe.reply 12 15\r\nNATS/1.0\r\n\r\nbad\r\n"
    good = b"PUB hostile ok.reply 2\r\nok\r\nPUB hostile 4\r\nlast\r\n"
    assert pipe._replies is not None  # answers to no request of ours, on our inbox
    inbox = pipe._replies.prefix.encode()
    stray = b"PUB %s\xff 3\r\nbad\r\nPUB %sffff 3\r\nbad\r\n" % (inbox, inbox)
    await _hostile_peer(nats_server.url, bad + with_headers + stray + good)
    await asyncio.wait_for(arrived.wait(), 5)
    assert got == [(b"ok", "ok.reply"), (b"last", None)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    lines = [r for r in caplog.records if "reply subject" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert pipe.connected
