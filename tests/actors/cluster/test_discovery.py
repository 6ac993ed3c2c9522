"""Discovery without etcd: the entry format, the table, and the discovery actor on a fake etcd.

The fake keeps etcd's data model (keys, leases, revisions, prefix watches) in memory and can
be taken down, so the actor's lease keep-alive, outage, watch-retry and resync loops run on
looptime's virtual clock in milliseconds. The same against a real etcd is in
tests/cluster/test_discovery_rpc.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from actors.cluster import discovery
from actors.cluster.discovery import (
    SERVERS_PREFIX,
    DiscoveryActor,
    EtcdServiceDiscovery,
    Registered,
    Registration,
    ServerInfo,
    ServerTable,
)
from actors.cluster.groups import EtcdGroupService
from actors.kernel import ActorRef
from actors.system import ActorSystem
from transport.etcd import EtcdUnavailable, KeyEvent

LOGGER = "actors.cluster.discovery"


def info(server_id: str, server_type: str = "room", **more: Any) -> ServerInfo:
    return ServerInfo(id=server_id, type=server_type, hostname="h", **more)


# -- the entry -------------------------------------------------------------------------------


def test_an_entry_is_pitayas_json_under_its_key() -> None:
    server = ServerInfo("room-1", "room", True, "host", {"region": "eu"})
    assert server.key() == "pitaya/servers/room/room-1"
    assert json.loads(server.to_json()) == {
        "id": "room-1",
        "type": "room",
        "metadata": {"region": "eu"},
        "frontend": True,
        "hostname": "host",
    }
    assert ServerInfo.from_json(server.to_json()) == server


def test_an_entry_may_omit_everything_but_its_id() -> None:
    assert ServerInfo.from_json(b'{"id": "x"}') == ServerInfo("x", "", False, "", {})
    parsed = ServerInfo.from_json(
        b'{"id": "x", "type": 7, "frontend": 1, "hostname": 5, "metadata": {"n": 1}}'
    )
    assert parsed == ServerInfo("x", "7", True, "5", {"n": "1"})
    assert ServerInfo.from_json(b'{"id": "x", "metadata": null}').metadata == {}


@pytest.mark.parametrize("data", [b"[1]", b'{"id": 1}', b'{"type": "room"}', b'"x"'])
def test_what_is_not_an_entry_says_so(data: bytes) -> None:
    with pytest.raises(ValueError) as caught:
        ServerInfo.from_json(data)
    assert str(caught.value) == f"not a server entry: {data!r}"


def test_a_long_non_entry_is_quoted_up_to_100_bytes() -> None:
    data = b'{"x": "' + b"a" * 200 + b'"}'
    with pytest.raises(ValueError) as caught:
        ServerInfo.from_json(data)
    assert str(caught.value) == f"not a server entry: {data[:100]!r}"


@pytest.fixture(autouse=True)
def no_warned_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(discovery, "_warned_keys", set())
    yield


def test_a_malformed_entry_is_skipped_and_warned_once_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parse = discovery._parse
    assert parse("pitaya/servers/room/a", info("a").to_json()) == info("a")
    assert parse("pitaya/servers/room/bad", b"[1]") is None
    assert parse("pitaya/servers/room/bad", b"[2]") is None
    assert parse("pitaya/servers/room/deep", b"[" * 100_000) is None
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages[0] == (
        "ignoring malformed discovery entry pitaya/servers/room/bad: "
        "ValueError: not a server entry: b'[1]'"
    )
    assert messages[1].startswith("ignoring malformed discovery entry pitaya/servers/room/deep: ")
    assert len(messages) == 2
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_an_entry_under_another_servers_key_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """Written under ``servers/connector/room-1``, an entry claiming to be room-1 replaced the
    real room-1 in every table (and its deletion removed the real one)."""
    assert discovery._parse("pitaya/servers/connector/a", info("a").to_json()) is None
    assert discovery._parse("pitaya/servers/room/b", info("a").to_json()) is None
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "ignoring malformed discovery entry pitaya/servers/connector/a: "
        "ValueError: it names server room/a, not its key's",
        "ignoring malformed discovery entry pitaya/servers/room/b: "
        "ValueError: it names server room/a, not its key's",
    ]


def test_a_warning_quotes_at_most_200_characters_of_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A JSON string is not an entry; its UTF-8 bytes are quoted as \x escapes: a long text.
    data = json.dumps("é" * 100, ensure_ascii=False).encode()
    assert discovery._parse("k", data) is None
    (message,) = caplog.messages
    error = message.removeprefix("ignoring malformed discovery entry k: ValueError: ")
    assert len(error) == 200
    assert error == f"not a server entry: {data[:100]!r}"[:200]


def test_the_warned_keys_are_forgotten_past_1024() -> None:
    for i in range(1024):
        assert discovery._parse(f"k{i}", b"[]") is None
    assert len(discovery._warned_keys) == 1024
    assert discovery._parse("one more", b"[]") is None
    assert discovery._warned_keys == {"one more"}


# -- the table -------------------------------------------------------------------------------


def test_the_table_by_id_and_type_and_its_listeners(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    table = ServerTable()
    heard: list[tuple[str, bool]] = []

    def broken(server: ServerInfo, added: bool) -> None:
        raise RuntimeError("listener bug")

    table.listeners.append(broken)
    table.listeners.append(lambda server, added: heard.append((server.id, added)))
    table.put(info("r1"))
    table.put(info("r2"))
    table.put(info("c1", "connector"))
    assert table.by_type == {
        "room": [info("r1"), info("r2")],
        "connector": [info("c1", "connector")],
    }
    assert heard == [("r1", True), ("r2", True), ("c1", True)]
    table.put(info("r1"))  # the same: nothing happens
    changed = info("r1", metadata={"v": "2"})
    table.put(changed)  # changed: replaced in place of the old, no second "added"
    assert table.by_id["r1"] == changed
    assert table.by_type["room"] == [info("r2"), changed]
    assert heard == [("r1", True), ("r2", True), ("c1", True)]
    table.delete("c1")
    assert "connector" not in table.by_type
    table.delete("r1")
    table.delete("nobody")
    assert table.by_type == {"room": [info("r2")]}
    assert set(table.by_id) == {"r2"}
    assert heard[3:] == [("c1", False), ("r1", False)]
    messages = [r.getMessage() for r in caplog.records]
    assert "server added r1 (room)" in messages
    assert "server removed c1 (connector)" in messages
    failures = [r for r in caplog.records if r.getMessage() == "discovery listener failed"]
    assert len(failures) == 5 and failures[0].exc_info is not None


# -- the discovery actor on a fake etcd ------------------------------------------------------


class FakeEtcd:
    """etcd's data model in memory: keys, leases, revisions and prefix watches."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.leases: dict[int, set[str]] = {}
        self.revision = 0
        self.down = False
        self.calls: list[tuple[Any, ...]] = []
        self.watch_from: list[int] = []
        self.broken_watches = 0
        self.hang = False
        self._watchers: list[tuple[str, asyncio.Queue[KeyEvent | None]]] = []
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if self.down:
            raise EtcdUnavailable("etcd is down")

    async def grant(self, ttl: int) -> int:
        self._check()
        if self.hang:
            await asyncio.Event().wait()
        lease = next(self._ids)
        self.leases[lease] = set()
        self.calls.append(("grant", ttl))
        return lease

    async def keep_alive(self, lease: int) -> int:
        self._check()
        self.calls.append(("keep_alive", lease))
        return 60 if lease in self.leases else 0

    async def revoke(self, lease: int) -> None:
        self._check()
        self.calls.append(("revoke", lease))
        self.expire(lease)

    def expire(self, lease: int) -> None:
        for key in self.leases.pop(lease, set()):
            self.delete(key)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        self._check()
        self.calls.append(("put", key, lease))
        self.data[key] = value
        self.revision += 1
        if lease:
            self.leases[lease].add(key)
        self._publish(KeyEvent(key, value))

    def delete(self, key: str) -> None:
        for keys in self.leases.values():
            keys.discard(key)
        if self.data.pop(key, None) is not None:
            self.revision += 1
            self._publish(KeyEvent(key, None))

    async def put_if_absent(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        self._check()
        if key in self.data:
            return False
        await self.put(key, value, lease=lease)
        return True

    async def get(self, key: str) -> bytes | None:
        self._check()
        self.calls.append(("get", key))
        return self.data.get(key)

    async def get_with_lease(self, key: str) -> tuple[bytes, int] | None:
        self._check()
        if key not in self.data:
            return None
        lease = next((lease for lease, keys in self.leases.items() if key in keys), 0)
        return self.data[key], lease

    async def lease_ttl(self, lease: int) -> tuple[int, int]:
        self._check()
        return (60, 60) if lease in self.leases else (-1, 0)

    async def delete_if_lease(self, key: str, lease: int) -> bool:
        self._check()
        if key not in self.leases.get(lease, set()):
            return False
        self.delete(key)
        return True

    async def get_prefix(self, prefix: str) -> tuple[dict[str, bytes], int]:
        self._check()
        self.calls.append(("get_prefix", prefix))
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}, self.revision

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[KeyEvent]:
        self.watch_from.append(start_revision)
        if self.broken_watches:
            self.broken_watches -= 1
            raise EtcdUnavailable("watch broke")
        queue: asyncio.Queue[KeyEvent | None] = asyncio.Queue()
        watcher = (prefix, queue)
        self._watchers.append(watcher)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.remove(watcher)

    async def close(self) -> None:
        self.calls.append(("close",))

    def end_watches(self) -> None:
        for _, queue in self._watchers:
            queue.put_nowait(None)

    def _publish(self, event: KeyEvent) -> None:
        for prefix, queue in self._watchers:
            if event.key.startswith(prefix):
                queue.put_nowait(event)


ME = info("me")


class Node:
    def __init__(self, etcd: FakeEtcd, ref: ActorRef, table: ServerTable) -> None:
        self.etcd = etcd
        self.ref = ref
        self.table = table
        self.registered: list[Registration] = []

    @property
    def actor(self) -> DiscoveryActor:
        actor = self.ref._cell.actor
        assert isinstance(actor, DiscoveryActor)
        return actor


@asynccontextmanager
async def node(
    etcd: FakeEtcd | None = None, *, ttl: int = 3, sync_interval: float = 1000.0
) -> AsyncIterator[Node]:
    etcd = etcd or FakeEtcd()
    table = ServerTable()
    async with ActorSystem() as system:
        registered: list[Registration] = []
        ref = system.spawn(DiscoveryActor, etcd, ME, table, ttl, sync_interval, registered.append)
        result = Node(etcd, ref, table)
        result.registered = registered
        assert await ref.ask(Registered()) is True
        yield result


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.looptime
async def test_start_registers_under_a_lease_and_loads_the_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    etcd = FakeEtcd()
    await etcd.put(info("other").key(), info("other").to_json())
    await etcd.put(SERVERS_PREFIX + "room/bad", b"garbage")
    await etcd.put("elsewhere/x", info("x").to_json())
    async with node(etcd) as n:
        assert ("grant", 3) in etcd.calls
        assert ("put", ME.key(), 1) in etcd.calls
        assert etcd.data[ME.key()] == ME.to_json()
        assert n.registered == [Registration.REGISTERED]
        assert set(n.table.by_id) == {"me", "other"}
        # The table is read before the registration, and watched from there (our own put
        # included: nothing registered in between is missed).
        assert etcd.watch_from == [etcd.revision]
        assert "[me] registered in etcd (lease 1, ttl 3s)" in caplog.messages


@pytest.mark.looptime
async def test_watched_changes_reach_the_table(caplog: pytest.LogCaptureFixture) -> None:
    async with node() as n:
        etcd = n.etcd
        await etcd.put(info("r2").key(), info("r2").to_json())
        await etcd.put("elsewhere/r9", info("r9").to_json())  # not under the prefix
        await settle()
        assert set(n.table.by_id) == {"me", "r2"}
        await etcd.put(SERVERS_PREFIX + "room/r3", b"[3]")
        etcd.delete(info("r2").key())
        etcd.delete(ME.key())  # my own entry vanishing does not remove me from my table
        await settle()
        assert set(n.table.by_id) == {"me"}
        assert (
            "ignoring malformed discovery entry pitaya/servers/room/r3: "
            "ValueError: not a server entry: b'[3]'"
        ) in caplog.messages


async def test_a_key_naming_another_servers_id_neither_replaces_nor_removes_it() -> None:
    async with node() as n:
        etcd = n.etcd
        await etcd.put(info("r2").key(), info("r2").to_json())
        await settle()
        stray = SERVERS_PREFIX + "connector/r2"  # not r2's key: its type is room
        await etcd.put(stray, info("r2", metadata={"evil": "1"}).to_json())
        etcd.delete(stray)
        await settle()
        assert n.table.by_id["r2"] == info("r2")


@pytest.mark.looptime
async def test_a_resync_replaces_the_table_but_keeps_me(caplog: pytest.LogCaptureFixture) -> None:
    async with node(ttl=300, sync_interval=10.0) as n:  # keep-alives far apart
        etcd = n.etcd
        n.table.put(info("ghost"))  # missed a deletion
        etcd.data[info("new").key()] = info("new").to_json()  # missed a put
        etcd.data[SERVERS_PREFIX + "room/bad"] = b"[1]"
        del etcd.data[ME.key()]
        await asyncio.sleep(10.5)
        assert set(n.table.by_id) == {"me", "new"}
        assert (
            "ignoring malformed discovery entry pitaya/servers/room/bad: "
            "ValueError: not a server entry: b'[1]'"
        ) in caplog.messages
        etcd.down = True
        await asyncio.sleep(10)  # a failed periodic read changes nothing
        etcd.down = False
        etcd.data[info("later").key()] = info("later").to_json()
        await asyncio.sleep(10)
        assert set(n.table.by_id) == {"me", "new", "later"}


@pytest.mark.looptime
async def test_the_lease_is_kept_alive_every_third_of_its_ttl() -> None:
    async with node(ttl=6) as n:
        start = asyncio.get_running_loop().time()
        await asyncio.sleep(6.5)
        after_start = n.etcd.calls[n.etcd.calls.index(("put", ME.key(), 1)) + 1 :]
        assert after_start == [("keep_alive", 1)] * 3  # at 2, 4 and 6 s, and nothing else
        assert asyncio.get_running_loop().time() - start == pytest.approx(6.5)


@pytest.mark.looptime
async def test_a_very_short_ttl_is_kept_alive_every_200_ms() -> None:
    async with node(ttl=0) as n:
        await asyncio.sleep(1.05)
        assert len([c for c in n.etcd.calls if c[0] == "keep_alive"]) == 5


@pytest.mark.looptime
async def test_a_lost_lease_registers_again(caplog: pytest.LogCaptureFixture) -> None:
    async with node(ttl=3) as n:
        n.etcd.expire(1)
        await asyncio.sleep(1.5)
        assert ("grant", 3) in n.etcd.calls[2:]
        assert n.etcd.data[ME.key()] == ME.to_json()
        assert n.actor.lease == 2
        assert "[me] discovery lease lost; registered again" in caplog.messages


@pytest.mark.looptime
async def test_an_outage_is_ridden_out_and_the_registration_confirmed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with node(ttl=9) as n:  # keep-alive every 3 s; during an outage every 1 s
        etcd = n.etcd
        n.table.put(info("known"))
        etcd.down = True
        await asyncio.sleep(3.5)
        # Still serving from the last table: unreachable, not unregistered (readiness).
        assert n.registered == [Registration.REGISTERED, Registration.UNREACHABLE]
        await asyncio.sleep(2)  # two more failed tries: warned once
        assert n.registered == [Registration.REGISTERED] + [Registration.UNREACHABLE] * 3
        # Noted once, at debug: the etcd client warns about the outage once per process.
        outage = [r for r in caplog.records if "outage" in r.getMessage()]
        assert [(r.levelno, r.getMessage()) for r in outage] == [
            (logging.DEBUG, "[me] discovery rides out an etcd outage: etcd is down")
        ]
        assert "known" in n.table.by_id  # still served from the last table
        etcd.delete(ME.key())  # the lease survived but the key did not
        etcd.data[info("back").key()] = info("back").to_json()
        etcd.down = False
        await asyncio.sleep(1)
        await settle()
        assert n.registered[-1] is Registration.REGISTERED
        assert etcd.data[ME.key()] == ME.to_json()
        assert ME.key() in etcd.leases[n.actor.lease or 0]  # put back under the same lease
        assert "[me] etcd is back; registration confirmed" in caplog.messages
        assert set(n.table.by_id) == {"me", "back"}  # resynced
        calls = len(etcd.calls)
        await asyncio.sleep(2.5)  # back to one keep-alive every 3 s
        assert [c[0] for c in etcd.calls[calls:]] == ["keep_alive"]
        # Another outage, and this time the key survives it: it is not written again.
        etcd.down = True
        await asyncio.sleep(3)
        etcd.down = False
        calls = len(etcd.calls)
        await asyncio.sleep(1)
        assert [c[0] for c in etcd.calls[calls:]] == ["keep_alive", "get", "get_prefix"]


@pytest.mark.looptime
async def test_a_broken_watch_resyncs_and_watches_again_after_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    etcd = FakeEtcd()
    etcd.broken_watches = 2
    async with node(etcd) as n:
        first = etcd.watch_from[0]
        etcd.data[info("missed").key()] = info("missed").to_json()
        etcd.revision += 5
        await asyncio.sleep(0.5)
        assert len(etcd.watch_from) == 1
        await asyncio.sleep(1)
        await settle()
        assert etcd.watch_from == [first, etcd.revision + 1]
        assert "missed" in n.table.by_id
        etcd.down = True
        await asyncio.sleep(1)  # the resync fails: no watch from the stale revision ...
        await settle()
        assert len(etcd.watch_from) == 2
        etcd.down = False
        await asyncio.sleep(1)  # ... but from the next read's
        await settle()
        assert etcd.watch_from[2] == etcd.revision + 1
        assert caplog.messages.count("[me] etcd watch failed (watch broke); retrying") == 2
        etcd.end_watches()  # a watch that ends is not restarted
        await settle()
        assert len(etcd.watch_from) == 3


@pytest.mark.looptime
async def test_revoke_drops_the_lease_and_survives_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with node() as n:
        await n.actor.revoke()
        assert ("revoke", 1) in n.etcd.calls and ME.key() not in n.etcd.data
        assert n.actor.lease is None
        await n.actor.revoke()  # no lease: nothing to do
        assert n.etcd.calls.count(("revoke", 1)) == 1
        assert await n.ref.ask(Registered()) is False
    async with node() as n:
        n.etcd.down = True
        await n.actor.revoke()
        assert n.actor.lease is None
        assert "[me] could not revoke the discovery lease: etcd is down" in caplog.messages


@pytest.mark.looptime
async def test_after_revoke_nothing_puts_the_entry_back_and_the_table_is_still_followed() -> None:
    """A draining server leaves discovery and keeps its watch: its keep-alive, the repair of
    a vanished entry and the resync must not register it again."""
    async with node(ttl=3) as n:
        etcd = n.etcd
        await n.actor.revoke()
        assert n.registered[-1] is Registration.LEFT and ME.key() not in etcd.data
        calls = len(etcd.calls)
        n.actor._own_key_changed(None)  # what the watch says of our key's deletion
        await n.actor._ensure_registered()
        await asyncio.sleep(10)  # keep-alive ticks (every 1 s) and a resync would come
        made = [c for c in etcd.calls[calls:] if c[0] in ("grant", "put", "keep_alive")]
        assert made == [] and ME.key() not in etcd.data
        await etcd.put(info("new").key(), info("new").to_json())
        await settle()
        assert "new" in n.table.by_id  # still following


@pytest.mark.looptime
async def test_revoke_waits_for_a_registration_under_way_and_removes_it() -> None:
    async with node(ttl=3) as n:
        etcd = n.etcd
        gate = asyncio.Event()
        put_if_absent = etcd.put_if_absent

        async def slow_put_if_absent(key: str, value: bytes, *, lease: int = 0) -> bool:
            await gate.wait()
            return await put_if_absent(key, value, lease=lease)

        etcd.put_if_absent = slow_put_if_absent  # type: ignore[method-assign]
        etcd.delete(ME.key())  # vanished: the repair starts, and waits in put_if_absent
        repairing = asyncio.ensure_future(n.actor._ensure_registered())
        await settle()
        revoking = asyncio.ensure_future(n.actor.revoke())
        await settle()
        gate.set()
        await asyncio.gather(repairing, revoking)
        assert ME.key() not in etcd.data and n.actor.lease is None


# -- the service around it -------------------------------------------------------------------


@pytest.mark.looptime
async def test_the_service_reads_its_table_and_stops_by_revoking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    etcd = FakeEtcd()
    await etcd.put(info("r1").key(), info("r1").to_json())
    await etcd.put(info("c1", "connector").key(), info("c1", "connector").to_json())
    async with ActorSystem() as system:
        service = EtcdServiceDiscovery(
            system, ["127.0.0.1:1"], timeout=1.0, lease_ttl=5, sync_interval=30.0
        )
        real = service.etcd
        assert (real.endpoints, real.timeout) == (["127.0.0.1:1"], 1.0)
        assert service.registered is False
        await service.stop()  # before start: nothing to stop
        service.etcd = etcd  # type: ignore[assignment]
        heard: list[str] = []
        service.add_listener(lambda server, added: heard.append(server.id))
        assert service.registered is False
        await service.start(ME)
        assert service.registered is True
        assert ("grant", 5) in etcd.calls
        assert system.lookup("discovery") is not None
        assert service.servers("room") == [info("r1"), ME]
        assert service.servers("nothing") == []
        assert service.server("c1") == info("c1", "connector")
        assert service.server("nobody") is None
        assert service.server_types() == {"room", "connector"}
        assert sorted(heard) == ["c1", "me", "r1"]
        assert await service.lookup("room", "r1") == info("r1")
        assert await service.lookup("room", "nobody") is None
        assert not caplog.messages  # a missing entry is not a malformed one
        etcd.data[SERVERS_PREFIX + "room/bad"] = b"[1]"
        assert await service.lookup("room", "bad") is None
        assert caplog.messages == [
            "ignoring malformed discovery entry pitaya/servers/room/bad: "
            "ValueError: not a server entry: b'[1]'"
        ]
        etcd.data[info("late").key()] = info("late").to_json()
        await asyncio.sleep(31)  # the periodic resync, every 30 s
        assert service.server("late") == info("late")
        etcd.down = True
        assert await service.lookup("room", "r1") is None
        etcd.down = False
        push: Any = object()
        groups = service.group_service(push)
        assert isinstance(groups, EtcdGroupService)
        assert (groups.etcd, groups.push) == (etcd, push)
        await service.stop()
        assert service.registered is False
        assert ME.key() not in etcd.data
        await service.stop()  # idempotent
        actor = system.lookup("discovery")
        assert actor is not None and actor.alive  # still following the table
        await service.close()
        assert not actor.alive


@pytest.mark.looptime
async def test_the_service_fails_to_start_when_etcd_is_down() -> None:
    etcd = FakeEtcd()
    etcd.down = True
    async with ActorSystem() as system:
        service = EtcdServiceDiscovery(
            system, ["127.0.0.1:1"], timeout=1.0, lease_ttl=5, sync_interval=30.0
        )
        service.etcd = etcd  # type: ignore[assignment]
        with pytest.raises(EtcdUnavailable) as caught:
            await service.start(ME)
        assert str(caught.value).startswith("discovery could not register in etcd: ")
        assert not service.registered


@pytest.mark.looptime
async def test_the_service_tells_an_outage_from_not_being_registered() -> None:
    """Readiness reads ``registration``: a server that registered once rides out an etcd
    outage (UNREACHABLE: still serving, ready), one that never registered is UNREGISTERED,
    one whose id another server took is DISPLACED, outage or not, one that left is LEFT."""
    etcd = FakeEtcd()
    async with ActorSystem() as system:
        service = EtcdServiceDiscovery(
            system, ["127.0.0.1:1"], timeout=1.0, lease_ttl=3, sync_interval=30.0
        )
        service.etcd = etcd  # type: ignore[assignment]
        assert service.registration is Registration.UNREGISTERED
        await service.start(ME)
        assert service.registration is Registration.REGISTERED and service.registered
        etcd.down = True
        await asyncio.sleep(1.5)  # a keep-alive (every second) fails
        assert service.registration is Registration.UNREACHABLE
        assert not service.registered  # not confirmed: ``registered`` alone says no
        etcd.down = False
        await asyncio.sleep(1)
        assert service.registration is Registration.REGISTERED
        # Another server takes the id; then etcd goes away: still displaced, not ready.
        await etcd.put(ME.key(), info("me", metadata={"other": "1"}).to_json())
        await settle()
        assert service.registration is Registration.DISPLACED
        etcd.down = True
        await asyncio.sleep(1.5)
        assert service.registration is Registration.DISPLACED
        etcd.down = False
        await service.stop()
        assert service.registration is Registration.LEFT
        await service.close()


@pytest.mark.looptime
async def test_a_service_that_never_registered_is_not_taken_for_one_in_an_outage() -> None:
    etcd = FakeEtcd()
    etcd.down = True
    async with ActorSystem() as system:
        service = EtcdServiceDiscovery(
            system, ["127.0.0.1:1"], timeout=1.0, lease_ttl=3, sync_interval=30.0
        )
        service.etcd = etcd  # type: ignore[assignment]
        with pytest.raises(EtcdUnavailable):
            await service.start(ME)
        assert service.registration is Registration.UNREGISTERED


@pytest.mark.looptime
async def test_a_revoke_during_an_outage_stays_left() -> None:
    """A keep-alive that fails after the revoke must not make a server that left look
    registered-but-unreachable (ready) again."""
    async with node(ttl=3) as n:
        etcd = n.etcd
        gate = asyncio.Event()
        refreshing = asyncio.Event()

        async def keep_alive_that_fails_late(lease: int) -> int:
            refreshing.set()
            await gate.wait()
            raise EtcdUnavailable("etcd is down")

        etcd.keep_alive = keep_alive_that_fails_late  # type: ignore[method-assign]
        await refreshing.wait()  # a keep-alive is under way ...
        await n.actor.revoke()  # ... when the server leaves
        assert n.registered[-1] is Registration.LEFT
        gate.set()  # and then it fails
        await asyncio.sleep(3)  # more keep-alive ticks would come
        assert n.registered[-1] is Registration.LEFT


@pytest.mark.looptime
@pytest.mark.parametrize("when", ["granting", "registered"])
async def test_a_start_cancelled_leaves_no_entry_behind(when: str) -> None:
    """A stop during the start-up cancels the registration: one under way (the lease being
    granted) or one just done (its answer not yet seen) leaves no entry holding the id for
    a TTL (a restart would be refused as a duplicate meanwhile)."""
    etcd = FakeEtcd()
    reached = asyncio.Event()
    put_if_absent = etcd.put_if_absent

    async def put_and_tell(key: str, value: bytes, *, lease: int = 0) -> bool:
        created = await put_if_absent(key, value, lease=lease)
        reached.set()
        return created

    etcd.put_if_absent = put_and_tell  # type: ignore[method-assign]
    if when == "granting":
        etcd.hang = True
    async with ActorSystem() as system:
        service = EtcdServiceDiscovery(
            system, ["127.0.0.1:1"], timeout=1.0, lease_ttl=3, sync_interval=30.0
        )
        service.etcd = etcd  # type: ignore[assignment]
        starting = asyncio.ensure_future(service.start(ME))
        if when == "granting":
            await settle()
        else:
            await reached.wait()
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        assert ME.key() not in etcd.data
        assert not [lease for lease, keys in etcd.leases.items() if keys]
        assert service.registration is Registration.UNREGISTERED
        assert system.lookup("discovery") is None  # its actor stopped too


@pytest.mark.looptime
async def test_the_service_waits_twice_its_timeout_for_the_registration() -> None:
    etcd = FakeEtcd()
    etcd.hang = True
    async with ActorSystem() as system:
        service = EtcdServiceDiscovery(
            system, ["127.0.0.1:1"], timeout=1.0, lease_ttl=5, sync_interval=30.0
        )
        service.etcd = etcd  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(EtcdUnavailable):
            await service.start(ME)
        assert loop.time() - start == pytest.approx(2.0)
