"""The server's timers, from both sides: nothing happens before its time, and it happens by it.

The session actor reads ``loop.time()`` and schedules with ``loop.call_later``; these tests
run on looptime's virtual clock (``pytest.mark.looptime``): the loop's time moves only when
nothing is ready to run, straight to the next timer, and socket I/O on loopback takes no time
at all. So a test can say "the close came 2.5 intervals after the last packet" exactly, with
no wall-clock slack and no flake on a loaded machine.

Rules under test (Pitaya's, see DESIGN.md "Wire protocol"):

* heartbeat: the server sends one every ``heartbeat_interval``; a client silent for more than
  2 x the interval and a slack (1 s, as Go Pitaya's whole-second check allows at most; half
  an interval if shorter) is disconnected. The check runs on the heartbeat tick, so the close
  comes between 2 and 3 intervals (and the slack) after the client's last packet. Any packet
  resets the silence.
* handshake: a connection that has not finished the handshake (handshake and ack) within
  ``handshake_timeout`` of its accept is closed, at that moment.
* rate limit: ``rate_limit_packets`` per ``rate_limit_interval``, refilled continuously (one
  token per interval / packets), a burst capped at ``rate_limit_packets``.
* request timeout (the client's, ``PIT-504``) against a slow handler: an answer just in time
  is delivered, a late one is not waited for.

The client's own timers against a scripted server are in ``tests/transport/test_client.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.sessions.actor import heartbeat_slack
from actors.testing import serve
from samples.echo.server import Echo
from tests.rawclient import RawClient
from transport.client import RequestError, RequestTimeout
from transport.packet import HANDSHAKE_ACK_PACKET, HEARTBEAT_PACKET, PacketType, encode_packet

pytestmark = pytest.mark.looptime

INTERVAL = 10.0
"""A heartbeat interval far above any real I/O latency, so windows are unmistakable."""
NEVER = 1000 * INTERVAL
"""A virtual-time bound for waits that must end; reaching it is a failure, and cheap."""


class Slow(Handler):
    """``slow.wait``: answers its body (seconds) after sleeping that long."""

    service = "slow"

    @handler
    async def wait(self, session: Session, body: float) -> float:
        await asyncio.sleep(body)
        return body


def make_app(**options: float | int | str | bool) -> App:
    app = App(server_type="timing", **options)  # type: ignore[arg-type]
    app.register(Echo)
    app.register(Slow)
    return app


def now() -> float:
    return asyncio.get_running_loop().time()


async def heartbeats_until_closed(raw: RawClient) -> tuple[list[float], float]:
    """When each server heartbeat arrived, and when the server closed the connection."""
    arrivals: list[float] = []
    while True:
        try:
            packet = await raw.read_packet(timeout=NEVER)
        except ConnectionError:
            return arrivals, now()
        if packet.type is PacketType.HEARTBEAT:
            arrivals.append(now())


async def silent_after(raw: RawClient, offset: float) -> float:
    """Sleep ``offset``, send one heartbeat, return its time: the start of the silence."""
    await asyncio.sleep(offset)
    await raw.send(HEARTBEAT_PACKET)
    return now()


# -- heartbeat timeout ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "silence"),
    [
        # Silent from the ack on: the ticks at 1 and 2 intervals see no more than 2 x
        # interval of silence; the third closes.
        (0.0, 3 * INTERVAL),
        # Last packet half an interval after the ack: closed on the tick at 3 intervals,
        # 2.5 intervals of silence. (A 1 x interval rule would close at 1.5, a 3 x rule at
        # 3.5: both outside the window below.)
        (0.5 * INTERVAL, 2.5 * INTERVAL),
    ],
)
async def test_a_silent_client_is_closed_between_2_and_3_intervals_after_its_last_packet(
    offset: float, silence: float
) -> None:
    async with serve(make_app(heartbeat_interval=INTERVAL)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        response = await raw.handshake()
        assert response.heartbeat == INTERVAL
        acked = now()
        last_packet = await silent_after(raw, offset) if offset else acked
        arrivals, closed = await heartbeats_until_closed(raw)

        assert 2 * INTERVAL <= closed - last_packet <= 3 * INTERVAL
        assert closed - last_packet == pytest.approx(silence)
        # The server heartbeats on every tick before it gives up, one interval apart.
        assert arrivals == pytest.approx([acked + k * INTERVAL for k in (1, 2)])
        await asyncio.wait_for(server.app.connections.zero.wait(), NEVER)
        assert len(server.app.sessions) == 0


async def test_a_client_silent_for_just_under_2_intervals_is_never_closed() -> None:
    async with serve(make_app(heartbeat_interval=INTERVAL)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake()
        # Slower than the interval, yet always within the 2 x interval timeout: served for
        # 50 intervals (a 1 x interval rule would close it on the second tick).
        for _ in range(25):
            await silent_after(raw, 1.99 * INTERVAL)
            assert len(server.app.sessions) == 1
        response = await raw.request("echo.echo", b'"alive"')
        assert response.data == b'"alive"'
        assert len(server.app.sessions) == 1
        await raw.close()


async def test_a_client_2_intervals_and_a_few_ms_apart_is_kept() -> None:
    """A pomelo client sends its heartbeat one interval after ours and ignores ours while its
    own is pending, so it often sends one for two of ours: 2 intervals apart, a few ms more
    when our ticks run late (a busy loop). Go Pitaya's whole-second check keeps it; a rule of
    exactly 2 intervals dropped it."""
    async with serve(make_app(heartbeat_interval=INTERVAL)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake()
        # Just before the tick at 2 intervals, then just after every other tick: each of those
        # ticks sees 2 intervals and 10 ms of silence.
        await silent_after(raw, 2 * INTERVAL - 0.005)
        for _ in range(10):
            await silent_after(raw, 2 * INTERVAL + 0.01)
            assert len(server.app.sessions) == 1
        response = await raw.request("echo.echo", b'"kept"')
        assert response.data == b'"kept"'
        await raw.close()


async def test_a_client_silent_past_the_slack_is_closed_on_the_next_tick() -> None:
    assert heartbeat_slack(INTERVAL) == 1.0
    assert heartbeat_slack(0.3) == 0.15  # half the interval when that is shorter
    async with serve(make_app(heartbeat_interval=INTERVAL)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake()
        last_packet = await silent_after(raw, 0.95 * INTERVAL)
        arrivals, closed = await heartbeats_until_closed(raw)
        # The tick at 3 intervals sees 2 intervals and half a second of silence (within the
        # slack): it heartbeats; the one at 4 closes.
        assert closed - last_packet == pytest.approx(3.05 * INTERVAL)
        assert len(arrivals) == 3


async def test_any_packet_resets_the_silence() -> None:
    async with serve(make_app(heartbeat_interval=INTERVAL)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake()
        await asyncio.sleep(1.5 * INTERVAL)
        response = await raw.request("echo.echo", b"1")  # a data packet, not a heartbeat
        assert response.data == b"1"
        last_packet = now()
        _, closed = await heartbeats_until_closed(raw)
        assert 2 * INTERVAL <= closed - last_packet <= 3 * INTERVAL


# -- handshake timeout ------------------------------------------------------------------------

HANDSHAKE_TIMEOUT = 5.0


async def closed_at(raw: RawClient) -> float:
    await raw.read_until_closed(timeout=NEVER)
    return now()


async def test_a_connection_without_handshake_is_closed_at_the_handshake_timeout() -> None:
    app = make_app(handshake_timeout=HANDSHAKE_TIMEOUT, heartbeat_interval=INTERVAL)
    async with serve(app) as server:
        connected = now()
        raw = await RawClient.connect(*server.app.address("tcp"))
        assert await closed_at(raw) - connected == pytest.approx(HANDSHAKE_TIMEOUT)


async def test_a_handshake_without_ack_is_closed_at_the_handshake_timeout() -> None:
    app = make_app(handshake_timeout=HANDSHAKE_TIMEOUT, heartbeat_interval=INTERVAL)
    async with serve(app) as server:
        connected = now()
        raw = await RawClient.connect(*server.app.address("tcp"))
        await asyncio.sleep(0.5 * HANDSHAKE_TIMEOUT)
        await raw.handshake(ack=False)
        assert await closed_at(raw) - connected == pytest.approx(HANDSHAKE_TIMEOUT)


async def test_a_handshake_finished_just_before_the_timeout_stands() -> None:
    app = make_app(handshake_timeout=HANDSHAKE_TIMEOUT, heartbeat_interval=INTERVAL)
    async with serve(app) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await asyncio.sleep(0.99 * HANDSHAKE_TIMEOUT)
        await raw.handshake(ack=False)
        await raw.send(HANDSHAKE_ACK_PACKET)
        await asyncio.sleep(2 * HANDSHAKE_TIMEOUT)  # well past the deadline: no close
        response = await raw.request("echo.echo", b'"late but in time"')
        assert response.data == b'"late but in time"'
        await raw.close()


async def test_an_unfinished_websocket_upgrade_is_closed_at_the_handshake_timeout() -> None:
    # The upgrade request is part of the handshake's time (the listener's open timeout).
    app = make_app(handshake_timeout=HANDSHAKE_TIMEOUT, heartbeat_interval=INTERVAL)
    async with serve(app) as server:
        connected = now()
        reader, writer = await asyncio.open_connection(*server.app.address("ws"))
        await asyncio.sleep(0.9 * HANDSHAKE_TIMEOUT)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        assert await asyncio.wait_for(reader.read(), NEVER) == b""
        assert now() - connected == pytest.approx(HANDSHAKE_TIMEOUT)
        writer.close()


async def test_heartbeats_before_the_handshake_do_not_buy_time() -> None:
    app = make_app(handshake_timeout=HANDSHAKE_TIMEOUT, heartbeat_interval=INTERVAL)
    async with serve(app) as server:
        connected = now()
        raw = await RawClient.connect(*server.app.address("tcp"))
        await asyncio.sleep(0.9 * HANDSHAKE_TIMEOUT)
        await raw.send(encode_packet(PacketType.HEARTBEAT, b""))
        assert await closed_at(raw) - connected == pytest.approx(HANDSHAKE_TIMEOUT)


# -- rate-limit window ------------------------------------------------------------------------


async def test_rate_limit_refills_one_token_per_interval_over_packets() -> None:
    # 4 per 2 s: a burst of 4, then one more every 0.5 s, never more than 4 at once.
    app = make_app(
        rate_limit_enabled=True,
        rate_limit_packets=4,
        rate_limit_interval=2.0,
        rate_limit_action="error",
        heartbeat_interval=INTERVAL,
    )
    async with serve(app) as server:
        client = await server.connect()

        async def served(n: int) -> list[bool]:
            """Send ``n`` requests at this instant; which ones were served."""
            results = await asyncio.gather(
                *(client.request("echo.echo", i) for i in range(n)), return_exceptions=True
            )
            for result in results:
                assert not isinstance(result, RequestError) or result.code == "PIT-429"
            return [not isinstance(r, BaseException) for r in results]

        start = now()
        assert await served(5) == [True] * 4 + [False]
        await asyncio.sleep(start + 0.49 - now())
        assert await served(1) == [False]  # 0.98 of a token: not before its time
        await asyncio.sleep(start + 0.51 - now())
        assert await served(2) == [True, False]  # one token by its time, only one
        await asyncio.sleep(start + 0.51 + 1.02 - now())
        assert await served(3) == [True, True, False]  # 2.04 tokens
        await asyncio.sleep(100.0)
        assert await served(5) == [True] * 4 + [False]  # the burst is capped
        assert app.stats.rate_limited == 5


# -- request timeout, the client's, against a slow handler ------------------------------------


async def test_an_answer_in_time_is_delivered_a_late_one_times_out_at_the_deadline() -> None:
    async with serve(make_app(heartbeat_interval=INTERVAL)) as server:
        client = await server.connect(request_timeout=3.0)
        assert await client.request("slow.wait", 2.97) == 2.97  # not before its time
        started = now()
        with pytest.raises(RequestTimeout) as info:
            await client.request("slow.wait", 3.03)
        assert now() - started == pytest.approx(3.0)  # by its time, not at the answer
        assert info.value.code == "PIT-504"
        # The late answer arrives 0.03 s later and is dropped; the session goes on.
        assert await client.request("echo.echo", "next") == "next"
