"""Requests over one reply subscription (transport.nats_replies, NatsPipe.send_request):
answers reach the right caller, late answers are dropped, timeouts expire per timeout value
with no timer per request, and requests work again after a reconnection."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from tests.services import NatsServer, serving
from transport.nats import NatsDown, NatsNoResponders, NatsPipe, NatsTimeout
from transport.nats_replies import OnAnswer, PendingReplies

Outcome = tuple[bytes | None, Exception | None]


def recorder() -> tuple[list[Outcome], PendingReplies]:
    got: list[Outcome] = []
    return got, PendingReplies("_INBOX.test.", asyncio.get_running_loop())


def keep(got: list[Outcome]) -> OnAnswer:
    return lambda data, error: got.append((data, error))


# -- without NATS ------------------------------------------------------------------------------


async def test_each_answer_reaches_its_own_request_whatever_the_order() -> None:
    replies = PendingReplies("_INBOX.test.", asyncio.get_running_loop())
    got: dict[int, list[Outcome]] = {i: [] for i in range(100)}
    subjects = [replies.add(keep(got[i]), 5.0, f"s{i}") for i in range(100)]
    assert len(set(subjects)) == 100
    assert all(s.startswith("_INBOX.test.") and "." not in s[12:] for s in subjects)
    order = list(range(100))
    random.Random(7).shuffle(order)
    for i in order:
        assert replies.resolve(subjects[i], b"%d" % i)
    assert all(got[i] == [(b"%d" % i, None)] for i in range(100))
    assert len(replies) == 0
    assert not replies.resolve(subjects[0], b"again")  # answered already: dropped
    assert not replies.resolve("_INBOX.test.nobody", b"x")
    assert got[0] == [(b"0", None)]


async def test_a_late_answer_after_the_timeout_is_dropped() -> None:
    got, replies = recorder()
    subject = replies.add(keep(got), 0.05, "slow.subject")
    await asyncio.sleep(0.1)
    assert len(got) == 1
    data, error = got[0]
    assert data is None
    assert isinstance(error, TimeoutError)
    assert "slow.subject" in str(error) and "0.05" in str(error)
    assert not replies.resolve(subject, b"late")
    assert len(got) == 1 and len(replies) == 0


async def test_timeouts_expire_per_value_in_order_with_one_timer_each() -> None:
    got, replies = recorder()
    order: list[str] = []
    replies.add(lambda d, e: order.append("long"), 0.3)
    answered = replies.add(keep(got), 0.1)
    replies.add(lambda d, e: order.append("short-1"), 0.1)
    await asyncio.sleep(0.02)
    replies.add(lambda d, e: order.append("short-2"), 0.1)
    assert len(replies._timers) == 2  # one per timeout value, not one per request
    assert replies.resolve(answered, b"ok")
    await asyncio.sleep(0.105)
    assert order == ["short-1", "short-2"]
    await asyncio.sleep(0.25)
    assert order == ["short-1", "short-2", "long"]
    assert got == [(b"ok", None)]
    assert not replies._timers and len(replies) == 0


async def test_a_request_made_while_others_expire_gets_its_own_full_timeout() -> None:
    got, replies = recorder()

    def again(data: bytes | None, error: Exception | None) -> None:
        got.append((data, error))
        if len(got) == 1:
            replies.add(again, 0.1)

    loop = asyncio.get_running_loop()
    start = loop.time()
    replies.add(again, 0.1)
    await asyncio.sleep(0.15)
    assert len(got) == 1
    await asyncio.sleep(0.1)
    assert len(got) == 2 and loop.time() - start >= 0.2


async def test_an_error_made_for_the_answer_and_fail_all() -> None:
    got, replies = recorder()
    subject = replies.add(keep(got), 5.0, "x.y")
    assert replies.resolve(subject, None, lambda about: LookupError(f"nobody on {about}"))
    assert isinstance(got[0][1], LookupError) and "x.y" in str(got[0][1])
    replies.add(keep(got), 5.0)
    replies.add(keep(got), 7.0)
    replies.fail_all(ConnectionError("closed"))
    assert [type(e) for _, e in got[1:]] == [ConnectionError, ConnectionError]
    assert not replies._timers and len(replies) == 0


async def test_a_failing_answer_function_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got, replies = recorder()

    def broken(data: bytes | None, error: Exception | None) -> None:
        raise RuntimeError("boom")

    replies.add(broken, 0.05)
    replies.add(keep(got), 0.05)
    await asyncio.sleep(0.1)
    assert len(got) == 1
    (record,) = caplog.records
    assert record.getMessage() == "a NATS request's answer function failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"


@pytest.mark.looptime
@pytest.mark.parametrize("again", [False, True], ids=["closed", "closed-and-sent-again"])
async def test_an_answer_function_may_fail_all_while_its_request_expires(again: bool) -> None:
    """An answer function told of a timeout may close the connection (``fail_all``) and
    send again at once. The expiry running it then raised KeyError in the loop, and forgot
    the request sent again, which waited for ever."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    replies = PendingReplies("_INBOX.test.", loop)
    got: list[tuple[str, float, Exception | None]] = []

    def note(name: str) -> OnAnswer:
        return lambda data, error: got.append((name, loop.time(), error))

    def close_and_send_again(data: bytes | None, error: Exception | None) -> None:
        note("first")(data, error)
        replies.fail_all(ConnectionError("closed"))
        if again:
            replies.add(note("again"), 0.05)

    start = loop.time()
    replies.add(close_and_send_again, 0.05)
    await asyncio.sleep(0.2)
    replies.add(note("later"), 0.05)
    await asyncio.sleep(0.2)
    assert errors == []
    assert [name for name, _, _ in got] == ["first", *(["again"] if again else []), "later"]
    assert all(isinstance(error, TimeoutError) for _, _, error in got)
    times = {name: at - start for name, at, _ in got}
    assert times["first"] == pytest.approx(0.05)
    if again:
        assert times["again"] == pytest.approx(0.1)  # its own full timeout
    assert times["later"] == pytest.approx(0.25)
    assert len(replies) == 0 and not replies._timers and not replies._deadlines


async def test_reply_subjects_count_requests_in_hex() -> None:
    """Short subjects (one is sent with every request), each used once."""
    replies = PendingReplies("_INBOX.test.", asyncio.get_running_loop())
    subjects = [replies.add(lambda data, error: None, 5.0) for _ in range(17)]
    assert [s.removeprefix("_INBOX.test.") for s in subjects] == [
        *"123456789abcdef",
        "10",
        "11",
    ]
    replies.fail_all(ConnectionError("closed"))


@pytest.mark.looptime
async def test_a_cancelled_request_is_never_answered() -> None:
    """A request that could not be sent is forgotten: neither its answer nor its timeout
    reaches it, and the others are unaffected."""
    got, replies = recorder()
    cancelled: list[Outcome] = []
    unsent = replies.add(keep(cancelled), 0.05, "unsent")
    sent = replies.add(keep(got), 0.05, "sent")
    replies.cancel(unsent)
    assert len(replies) == 1
    assert not replies.resolve(unsent, b"late")
    replies.cancel(unsent)  # twice, or after its answer: nothing to do
    await asyncio.sleep(0.1)
    assert cancelled == []
    assert len(got) == 1 and isinstance(got[0][1], TimeoutError)
    assert not replies.resolve(sent, b"late")
    replies.cancel(sent)
    assert len(replies) == 0 and not replies._timers


@pytest.mark.looptime
async def test_the_timeout_error_is_made_from_what_add_was_told() -> None:
    loop = asyncio.get_running_loop()
    made: list[tuple[str, float]] = []

    def on_timeout(about: str, timeout: float) -> Exception:
        made.append((about, timeout))
        return TimeoutError(about)

    replies = PendingReplies("_INBOX.test.", loop, on_timeout)
    replies.add(lambda data, error: None, 0.05, "room.join")
    replies.add(lambda data, error: None, 0.07)
    await asyncio.sleep(0.1)
    assert made == [("room.join", 0.05), ("", 0.07)]


@pytest.mark.looptime
async def test_requests_expiring_together_past_a_fail_all_are_told_once() -> None:
    """The first answer function of a batch closes the connection: the other request of the
    batch is told by fail_all, and not again as expired."""
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    got, replies = recorder()
    replies.add(lambda data, error: replies.fail_all(ConnectionError("closed")), 0.05)
    replies.add(keep(got), 0.05)
    await asyncio.sleep(0.1)
    assert [type(error) for _, error in got] == [ConnectionError]
    assert errors == []
    assert len(replies) == 0 and not replies._timers


# -- over a real nats-server -------------------------------------------------------------------


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    yield from serving(NatsServer())


async def answer_later(pipe: NatsPipe, subject: str, delay: dict[bytes, float]) -> None:
    """A responder on ``subject`` that answers each request reversed, after ``delay``."""
    loop = asyncio.get_running_loop()

    def answer(data: bytes, reply: str | None) -> None:
        assert reply is not None
        loop.call_later(delay.get(data, random.random() * 0.05), pipe.publish, reply, data[::-1])

    await pipe.subscribe(subject, answer)
    await pipe.flush(1)


async def test_many_concurrent_requests_each_get_their_own_answer(pipe: NatsPipe) -> None:
    await answer_later(pipe, "echo", {})
    asks = [b"request-%d" % i for i in range(500)]
    answers = await asyncio.gather(*(pipe.request("echo", ask, timeout=5) for ask in asks))
    assert answers == [ask[::-1] for ask in asks]
    assert pipe._replies is not None and len(pipe._replies) == 0


async def test_a_late_answer_is_dropped_and_the_next_request_is_unaffected(pipe: NatsPipe) -> None:
    await answer_later(pipe, "echo", {b"slow": 0.3, b"fast": 0.0})
    with pytest.raises(NatsTimeout, match="echo"):
        await pipe.request("echo", b"slow", timeout=0.1)
    assert await pipe.request("echo", b"fast", timeout=2) == b"tsaf"
    await asyncio.sleep(0.3)  # the slow answer arrives now, for nobody
    assert await pipe.request("echo", b"fast", timeout=2) == b"tsaf"


async def test_send_request_calls_back_and_tells_no_responders(pipe: NatsPipe) -> None:
    await answer_later(pipe, "echo", {})
    got: list[Outcome] = []
    done = asyncio.Event()

    def answered(data: bytes | None, error: Exception | None) -> None:
        got.append((data, error))
        if len(got) == 2:
            done.set()

    pipe.send_request("echo", b"abc", 2, answered)
    pipe.send_request("nobody.here", b"abc", 2, answered)
    await asyncio.wait_for(done.wait(), 3)
    assert (b"cba", None) in got
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1 and isinstance(errors[0], NatsNoResponders)
    assert "nobody.here" in str(errors[0])


async def test_requests_work_again_after_a_reconnection(
    pipe: NatsPipe, nats_server: NatsServer
) -> None:
    await answer_later(pipe, "echo", {})
    assert await pipe.request("echo", b"one", timeout=2) == b"eno"
    await asyncio.to_thread(nats_server.restart)
    for _ in range(100):  # nats-py reconnects every 0.5 s
        if pipe.connected:
            break
        with pytest.raises(NatsDown):  # at once while down, not after the timeout
            await pipe.request("echo", b"x", timeout=5)
        await asyncio.sleep(0.1)
    await pipe.flush(2)  # the subscriptions (the reply one too) are back
    assert await pipe.request("echo", b"two", timeout=2) == b"owt"


async def test_close_fails_the_requests_still_waiting(nats_server: NatsServer) -> None:
    pipe = NatsPipe(nats_server.url, name="closing", connect_timeout=2)
    await pipe.connect()
    await pipe.subscribe("silent", lambda data, reply: None)
    await pipe.flush(1)
    waiting = asyncio.ensure_future(pipe.request("silent", b"x", timeout=30))
    await asyncio.sleep(0.05)
    await pipe.close()
    with pytest.raises(NatsDown):
        await asyncio.wait_for(waiting, 2)


@pytest.mark.looptime  # a virtual clock: timers fire exactly at their time, not late
async def test_no_request_times_out_before_its_own_timeout() -> None:
    """Requests sharing one timeout value share a timer armed for the oldest: one added half
    a millisecond later must not expire with it (a caller measures PIT-408)."""
    loop = asyncio.get_running_loop()
    added: dict[str, float] = {}
    expired: dict[str, float] = {}

    def note(name: str) -> OnAnswer:
        return lambda data, error: expired.setdefault(name, loop.time())

    replies = PendingReplies("_INBOX.test.", loop)
    added["first"] = loop.time()
    replies.add(note("first"), 0.05)
    await asyncio.sleep(0.0005)
    added["second"] = loop.time()
    replies.add(note("second"), 0.05)
    await asyncio.sleep(0.1)
    assert set(expired) == {"first", "second"}
    for name in ("first", "second"):
        assert expired[name] - added[name] >= 0.05, name


async def test_requests_failed_by_a_connection_closed_for_good_do_not_carry_its_cause() -> None:
    """The cause (nats-py's text: an address, a refusal) went into the error every waiting
    request got, which reaches game clients as PIT-500; it is logged, not told them."""
    pipe = NatsPipe("nats://10.1.2.3:4222", name="room-1", connect_timeout=1)
    pipe.nc = object()  # type: ignore[assignment]  # connected once: not a failed first try
    pipe._last_error = "Connect call failed ('10.1.2.3', 4222)"
    pipe._replies = PendingReplies("_INBOX.t.", asyncio.get_running_loop())
    outcomes: list[Exception | None] = []
    pipe._replies.add(lambda data, error: outcomes.append(error), 5.0, about="room.r.join")
    await pipe._closed_cb()
    assert len(outcomes) == 1 and isinstance(outcomes[0], NatsDown)
    assert str(outcomes[0]) == "the NATS connection is closed"
