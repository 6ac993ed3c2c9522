"""transport/etcd.py: lease keep-alives share one etcd stream, so callers take turns on it
(real etcd). Every operation on a group with a TTL renews its lease, and discovery and the
binding storage renew theirs on their own clocks: keep-alives at the same moment are common.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from actors.cluster.groups import EtcdGroupService
from tests.services import EtcdServer
from transport.etcd import EtcdClient, EtcdUnavailable


class HeldStream:
    """A keep-alive stream whose answer never comes until the test says."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.cancelled = False

    async def write(self, request: object) -> None:
        return None

    async def read(self) -> object:
        self.reading.set()
        await asyncio.Event().wait()

    def cancel(self) -> None:
        self.cancelled = True


async def _nobody(route: str, body: object, uids: list[str]) -> list[str]:
    return uids


async def test_keep_alives_at_the_same_moment_all_renew(etcd_server: EtcdServer) -> None:
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        leases = {await etcd.grant(30): 30, await etcd.grant(60): 60}
        ttls = await asyncio.gather(*(etcd.keep_alive(lease) for lease in [*leases, *leases]))
        assert ttls == [*leases.values(), *leases.values()]  # each its own lease's answer
        assert etcd.outage.since is None  # no outage told for it
    finally:
        await etcd.close()


async def test_members_join_groups_with_a_ttl_at_the_same_moment(
    etcd_server: EtcdServer,
) -> None:
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        groups = EtcdGroupService(etcd, _nobody)
        await groups.create("room:1", ttl=60)
        await groups.create("room:2", ttl=60)
        joins = [groups.add(f"room:{n % 2 + 1}", f"uid-{n}") for n in range(6)]
        # Each raised GroupsUnavailable (PIT-500): the stream refused the writes after one.
        assert await asyncio.gather(*joins, return_exceptions=True) == [None] * 6
        assert await groups.members("room:1") == ["uid-0", "uid-2", "uid-4"]
        assert await groups.members("room:2") == ["uid-1", "uid-3", "uid-5"]
    finally:
        await etcd.close()


async def test_a_keep_alive_cancelled_before_its_answer_drops_the_stream() -> None:
    etcd = EtcdClient(["127.0.0.1:1"])  # never reached: the stream is the test's
    stream = HeldStream()
    etcd._keepalive = stream
    renewal = asyncio.create_task(etcd.keep_alive(7))
    await stream.reading.wait()
    renewal.cancel()
    await asyncio.gather(renewal, return_exceptions=True)
    # Its answer would still come on that stream, read by the next caller as its own
    # (another lease's TTL, or 0: "lease lost").
    assert stream.cancelled
    assert etcd._keepalive is None


@pytest.mark.looptime
async def test_keep_alives_behind_one_etcd_does_not_answer_fail_within_the_timeout() -> None:
    etcd = EtcdClient(["127.0.0.1:1"], timeout=1.0)  # never reached: the streams are held
    etcd._lease = lambda: SimpleNamespace(  # type: ignore[method-assign]
        _stub=SimpleNamespace(LeaseKeepAlive=lambda metadata: HeldStream())
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    renewals = await asyncio.gather(
        *(etcd.keep_alive(lease) for lease in range(10)), return_exceptions=True
    )
    assert all(isinstance(error, EtcdUnavailable) for error in renewals)
    # Not one timeout after another, each in its turn (discovery's renewal behind them).
    assert loop.time() - start <= 2 * etcd.timeout
