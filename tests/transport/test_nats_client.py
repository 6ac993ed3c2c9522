"""transport/nats_client.py, through the pipe, against a real nats-server on 127.0.0.1: the
direct path delivers and publishes in order with nats-py's own commands, refuses a subject
that would corrupt the protocol, survives a failing handler, hands a backed-up socket to
nats-py's flusher, bounds what it holds, and the pipe works on nats-py's public API when the
direct path is not available."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import nats.errors
import pytest

import transport.nats_client as nats_client
from tests.services import NatsServer, serving
from transport.nats import NatsDown, NatsError, NatsPipe
from transport.nats_client import LeanClient


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    yield from serving(NatsServer())


class Inbox:
    """What a subscription received, with a way to wait for the n-th message."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, str | None]] = []
        self.changed = asyncio.Event()

    def __call__(self, data: bytes, reply: str | None) -> None:
        self.got.append((data, reply))
        self.changed.set()

    async def wait_for(self, count: int) -> list[tuple[bytes, str | None]]:
        async with asyncio.timeout(5):
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.got


def lean(pipe: NatsPipe) -> LeanClient:
    client = pipe._lean
    assert client is not None, "the installed nats-py lacks what the direct path needs"
    return client


async def test_the_installed_nats_py_takes_the_direct_path(pipe: NatsPipe) -> None:
    # If a nats-py release changes its internals, this fails here rather than the cluster
    # silently running on the slower public path.
    assert lean(pipe).direct_ok


async def test_direct_publishes_keep_their_order_with_nats_pys_own(pipe: NatsPipe) -> None:
    inbox = Inbox()
    await pipe.subscribe("order", inbox)
    await pipe.flush(2)
    for n in range(300):
        if n % 7 == 3:
            await pipe.publish_now("order", b"%d" % n)  # nats-py's publish, same buffer
        else:
            pipe.publish("order", b"%d" % n)  # direct
    got = await inbox.wait_for(300)
    assert [data for data, _ in got] == [b"%d" % n for n in range(300)]
    assert all(reply is None for _, reply in got)


async def test_the_reply_subject_reaches_the_handler(pipe: NatsPipe) -> None:
    def answer(data: bytes, reply: str | None) -> None:
        assert reply is not None
        pipe.publish(reply, data.upper())  # published while the parser delivers: see below

    await pipe.subscribe("shout", answer)
    await pipe.flush(2)
    answers = await asyncio.gather(*(pipe.request("shout", b"hey%d" % n, 2) for n in range(50)))
    assert answers == [b"HEY%d" % n for n in range(50)]


async def test_an_answer_goes_to_the_reply_subject_nats_delivered(pipe: NatsPipe) -> None:
    # pipe.answer_to: the reply subject came from the server, so it is not checked again.
    await pipe.subscribe("shout", lambda data, reply: reply and pipe.answer_to(reply, data.upper()))
    await pipe.flush(2)
    answers = await asyncio.gather(*(pipe.request("shout", b"hey%d" % n, 2) for n in range(50)))
    assert answers == [b"HEY%d" % n for n in range(50)]


@pytest.mark.parametrize("subject", ["two words", "line\r\nPUB x 1", "tab\there", "new\nline"])
async def test_a_subject_that_would_corrupt_the_protocol_is_refused(
    pipe: NatsPipe, subject: str, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):  # a subject checked once is remembered only when it passed
        with pytest.raises(nats.errors.BadSubjectError):
            lean(pipe).publish_direct(subject, b"x")
    with pytest.raises(nats.errors.BadSubjectError):
        lean(pipe).publish_direct("fine", b"x", subject)  # as a reply subject too
    caplog.set_level(logging.WARNING, logger="transport.nats")
    pipe.publish(subject, b"x")  # logged, not sent
    assert any("publish to" in r.getMessage() for r in caplog.records)
    with pytest.raises(NatsError):
        await pipe.request(subject, b"x", 1)
    # The connection is intact: nothing reached the server.
    inbox = Inbox()
    await pipe.subscribe("after", inbox)
    await pipe.flush(2)
    pipe.publish("after", b"ok")
    assert await inbox.wait_for(1) == [(b"ok", None)]


async def test_a_failing_handler_does_not_stop_the_reading(
    pipe: NatsPipe, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()

    def fails_on_odd(data: bytes, reply: str | None) -> None:
        if int(data) % 2:
            raise ValueError(f"odd {data!r}")
        inbox(data, reply)

    await pipe.subscribe("flaky", fails_on_odd)
    await pipe.flush(2)
    caplog.set_level(logging.ERROR, logger="transport.nats_client")
    for n in range(10):
        pipe.publish("flaky", b"%d" % n)
    got = await inbox.wait_for(5)
    assert [data for data, _ in got] == [b"0", b"2", b"4", b"6", b"8"]
    assert sum("handler failed" in r.getMessage() for r in caplog.records) == 5
    assert pipe.connected


async def test_a_backed_up_socket_leaves_the_writing_to_nats_pys_flusher(
    pipe: NatsPipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_client, "WRITE_BUFFER_LIMIT", -1)  # always "backed up"
    client = lean(pipe)
    written: list[int] = []
    kick = client._kick_flusher
    monkeypatch.setattr(client, "_kick_flusher", lambda: (written.append(1), kick()))
    inbox = Inbox()
    await pipe.subscribe("slow", inbox)
    await pipe.flush(2)
    for n in range(100):
        pipe.publish("slow", b"%d" % n)
    got = await inbox.wait_for(100)
    assert [data for data, _ in got] == [b"%d" % n for n in range(100)]
    assert written  # the flusher wrote them


async def test_what_is_held_is_bounded(pipe: NatsPipe, caplog: pytest.LogCaptureFixture) -> None:
    client = lean(pipe)
    client._max_pending_size = 4096
    caplog.set_level(logging.WARNING, logger="transport.nats")
    for _ in range(100):  # one loop pass: nothing is written in between
        pipe.publish("nobody.listens", b"x" * 100)
    assert client._pending_data_size <= 4096 + 200
    assert any("outbound buffer limit" in r.getMessage() for r in caplog.records)
    failed: list[Exception | None] = []
    pipe.send_request("nobody.listens", b"x", 1, lambda _data, error: failed.append(error))
    assert len(failed) == 1 and isinstance(failed[0], NatsDown)
    await asyncio.sleep(0)  # written out: the pipe takes messages again
    assert client._pending_data_size == 0
    pipe.publish("nobody.listens", b"x")
    assert client._pending_data_size > 0


async def test_an_unsubscribed_group_no_longer_reaches_its_handler(pipe: NatsPipe) -> None:
    inbox, later = Inbox(), Inbox()
    await pipe.subscribe_group("g", ["grp.a"], inbox)
    await pipe.subscribe("grp.a", later)
    await pipe.flush(2)
    pipe.publish("grp.a", b"1")
    await later.wait_for(1)
    await pipe.unsubscribe_group("g")
    await pipe.flush(2)
    pipe.publish("grp.a", b"2")
    await later.wait_for(2)
    assert inbox.got == [(b"1", None)]
    assert len(lean(pipe)._direct) == 2  # the replies' subscription and "later"


async def test_without_the_direct_path_the_pipe_uses_nats_pys_public_api(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(nats_client, "supported", lambda client: False)
    caplog.set_level(logging.WARNING, logger="transport.nats")
    pipe = NatsPipe(nats_server.url, name="public", connect_timeout=5)
    await pipe.connect()
    try:
        assert pipe._lean is None
        assert any("public API" in r.getMessage() for r in caplog.records)
        inbox = Inbox()
        await pipe.subscribe("pub", inbox)

        def answer(data: bytes, reply: str | None) -> None:
            if reply:
                pipe.publish(reply, data[::-1])

        await pipe.subscribe("rev", answer)
        await pipe.flush(2)
        for n in range(20):
            pipe.publish("pub", b"%d" % n)
        assert [d for d, _ in await inbox.wait_for(20)] == [b"%d" % n for n in range(20)]
        assert await pipe.request("rev", b"abc", 2) == b"cba"
    finally:
        await pipe.close()


async def test_reads_on_asyncios_loop_stay_below_glibcs_mapping_threshold() -> None:
    with contextlib.contextmanager(serving)(NatsServer()) as server:
        await reads_stay_small(server)


async def reads_stay_small(server: NatsServer) -> None:
    pipe = NatsPipe(server.url, name="reads", connect_timeout=5)
    try:
        await pipe.connect()
        inbox = Inbox()
        await pipe.subscribe("r", inbox)
        await pipe.flush(2)

        def read_size() -> int | None:
            return getattr(lean(pipe)._transport._io_writer.transport, "max_size", None)

        pipe.publish("r", b"1")
        await inbox.wait_for(1)
        assert read_size() == nats_client.READ_SIZE
        await asyncio.to_thread(server.restart)  # a new connection: tuned again
        for _ in range(100):
            if pipe.connected:
                break
            await asyncio.sleep(0.1)
        await pipe.flush(2)
        pipe.publish("r", b"2")
        await inbox.wait_for(2)
        assert read_size() == nats_client.READ_SIZE
    finally:
        await pipe.close()


async def test_a_payload_larger_than_the_server_takes_fails_alone(
    pipe: NatsPipe, caplog: pytest.LogCaptureFixture
) -> None:
    too_big = b"x" * (lean(pipe)._max_payload + 1)
    caplog.set_level(logging.WARNING, logger="transport.nats")
    pipe.publish("big", too_big)
    assert any("publish to big failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(NatsError):
        await pipe.request("big", too_big, 1)
    # Nothing reached the server (it would have closed the connection): still usable.
    inbox = Inbox()
    await pipe.subscribe("big", inbox)
    await pipe.flush(2)
    pipe.publish("big", b"small")
    assert await inbox.wait_for(1) == [(b"small", None)]
    assert pipe.connected
