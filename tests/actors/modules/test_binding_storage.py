"""The binding storage module (``actors.modules.binding_storage``) on an in-memory etcd:
the key layout, claims, push/kick delivery through the frontend a uid is bound on, and a
frontend's bookkeeping (store after bind, remove on close, write again after a lost lease).

The server is a stand-in with what the module uses (``ModuleHost``); the cluster's outbound
calls and discovery are recorded fakes. The same module against a real etcd and NATS is in
tests/cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from actors.cluster.control import UidKick, UidPush
from actors.config import Config
from actors.modules import binding_storage
from actors.modules.binding_storage import BindingStorage, binding_key
from actors.sessions.registry import SessionRegistry
from actors.testing import TestSession
from tests.actors.modules.etcd_fake import FakeEtcd
from transport.etcd import EtcdUnavailable


class Outbound:
    """Records each control sent to a frontend; fails for the ids in ``failing``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.failing: set[str] = set()

    async def frontend_call(self, frontend_id: str, message: Any) -> None:
        await asyncio.sleep(0)
        if frontend_id in self.failing:
            raise ConnectionError(f"{frontend_id} unreachable")
        self.sent.append((frontend_id, message))


class Discovery:
    def __init__(self, *alive: str) -> None:
        self.alive = set(alive)

    def server(self, server_id: str) -> object | None:
        return object() if server_id in self.alive else None


def host(
    *, frontend: bool = True, server_id: str = "fe-1", prefix: str = "pitaya/", cluster: bool = True
) -> SimpleNamespace:
    return SimpleNamespace(
        server_id=server_id,
        server_type="connector",
        config=Config(mode="cluster", etcd_prefix=prefix, etcd_lease_ttl=30),
        is_frontend=frontend,
        sessions=SessionRegistry(),
        cluster=SimpleNamespace(
            outbound=Outbound(), discovery=Discovery("fe-1"), users=SimpleNamespace(bindings=None)
        )
        if cluster
        else None,
    )


@pytest.fixture
def etcd(monkeypatch: pytest.MonkeyPatch) -> FakeEtcd:
    store = FakeEtcd()
    monkeypatch.setattr(binding_storage, "etcd_client", lambda config: store)
    return store


@pytest.fixture
async def frontend(etcd: FakeEtcd) -> AsyncIterator[tuple[BindingStorage, SimpleNamespace]]:
    app = host()
    storage = BindingStorage(app)
    await storage.init()
    yield storage, app
    await storage.shutdown()


KEY = "pitaya/bindings/connector/ann"


# -- the key -----------------------------------------------------------------------------------


def test_the_key_layout_is_pitayas() -> None:
    assert binding_key("connector", "ann") == KEY
    assert binding_key("gate", "u 1", "game/") == "game/bindings/gate/u 1"


# -- lifecycle ---------------------------------------------------------------------------------


async def test_init_needs_cluster_mode(etcd: FakeEtcd) -> None:
    with pytest.raises(RuntimeError, match="the binding storage needs cluster mode"):
        await BindingStorage(host(cluster=False)).init()  # type: ignore[arg-type]


async def test_a_frontend_takes_a_lease_and_registers_for_bind_and_close(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    storage, app = frontend
    assert etcd.connected
    assert storage.lease is not None and storage.lease_ttl == 30
    assert app.cluster.users.bindings is storage
    ann = TestSession(1, registry=app.sessions)
    await ann.bind("ann")
    assert etcd.data == {KEY: b"fe-1"}
    assert (await etcd.get_with_lease(KEY)) == (b"fe-1", storage.lease)
    await ann.disconnect()
    assert etcd.data == {}


async def test_a_backend_only_reads(etcd: FakeEtcd) -> None:
    app = host(frontend=False, server_id="room-1")
    storage = BindingStorage(app, lease_ttl=5)  # type: ignore[arg-type]
    await storage.init()
    assert storage.lease is None and storage.lease_ttl == 5
    assert app.cluster.users.bindings is storage
    ann = TestSession(1, registry=app.sessions)
    await ann.bind("ann")
    assert etcd.data == {}  # nothing stored by a backend
    await storage.shutdown()
    assert etcd.revoked == [] and etcd.closed


async def test_shutdown_revokes_the_lease_closes_and_steps_aside(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    storage, app = frontend
    lease = storage.lease
    await TestSession(1, registry=app.sessions).bind("ann")
    await storage.shutdown()
    assert etcd.revoked == [lease] and etcd.data == {}  # the lease took the bindings along
    assert etcd.closed and storage.etcd is None and storage.lease is None
    assert app.cluster.users.bindings is None
    await storage.shutdown()  # twice is harmless
    with pytest.raises(EtcdUnavailable, match="the binding storage is not started"):
        await storage.frontend_of("ann", ["connector"])


async def test_shutdown_with_etcd_down_still_closes(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    storage, _ = frontend
    etcd.down = True
    await storage.shutdown()
    assert etcd.closed and storage.lease is None


# -- lookups and claims ------------------------------------------------------------------------


async def test_frontend_of_reads_the_first_type_that_has_the_uid(etcd: FakeEtcd) -> None:
    storage = BindingStorage(host(frontend=False))  # type: ignore[arg-type]
    await storage.init()
    await etcd.put("pitaya/bindings/gate/ann", b"gate-1")
    await etcd.put(KEY, b"fe-2")
    assert await storage.frontend_of("ann", ["connector", "gate"]) == "fe-2"
    assert await storage.frontend_of("ann", ["other", "gate"]) == "gate-1"
    assert await storage.frontend_of("bob", ["connector", "gate"]) is None
    etcd.down = True
    with pytest.raises(EtcdUnavailable):
        await storage.frontend_of("ann", ["connector"])
    await storage.shutdown()


async def test_the_prefix_is_the_configured_one(etcd: FakeEtcd) -> None:
    app = host(prefix="game/")
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    await TestSession(1, registry=app.sessions).bind("ann")
    assert list(etcd.data) == ["game/bindings/connector/ann"]
    assert await storage.frontend_of("ann", ["connector"]) == "fe-1"
    await storage.shutdown()


async def test_claim_takes_a_free_uid_or_ours(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    storage, _ = frontend
    assert await storage.claim("ann") is None
    assert etcd.data == {KEY: b"fe-1"}
    assert await storage.claim("ann") is None  # already ours
    assert etcd.data == {KEY: b"fe-1"}


async def test_claim_refuses_a_uid_a_live_frontend_holds_and_takes_a_dead_ones(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    storage, app = frontend
    app.cluster.discovery.alive.add("fe-2")
    await etcd.put(KEY, b"fe-2")
    assert await storage.claim("ann") == "fe-2"
    assert etcd.data == {KEY: b"fe-2"}
    app.cluster.discovery.alive.discard("fe-2")  # fe-2 left discovery; its lease lingers
    assert await storage.claim("ann") is None
    assert await etcd.get_with_lease(KEY) == (b"fe-1", storage.lease)


# -- delivery ----------------------------------------------------------------------------------


async def test_push_goes_to_the_frontend_each_uid_is_bound_on(etcd: FakeEtcd) -> None:
    app = host(frontend=False, server_id="room-1")
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    await etcd.put(KEY, b"fe-1")
    await etcd.put("pitaya/bindings/connector/bob", b"fe-2")
    failed, unknown = await storage.push_to_users(
        "onChat", b"{}", ["ann", "bob", "nobody"], ["connector"]
    )
    assert (failed, unknown) == (["nobody"], [])
    sent = sorted(app.cluster.outbound.sent, key=lambda s: s[0])
    assert sent == [
        ("fe-1", UidPush("ann", "onChat", b"{}")),
        ("fe-2", UidPush("bob", "onChat", b"{}")),
    ]
    await storage.shutdown()


async def test_kick_goes_to_the_frontend_and_a_failed_call_is_a_failure(etcd: FakeEtcd) -> None:
    app = host(frontend=False, server_id="room-1")
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    await etcd.put(KEY, b"fe-1")
    await etcd.put("pitaya/bindings/connector/bob", b"fe-2")
    app.cluster.outbound.failing.add("fe-2")
    failed, unknown = await storage.kick_users("bye", ["ann", "bob"], ["connector"])
    assert (failed, unknown) == (["bob"], [])
    assert app.cluster.outbound.sent == [("fe-1", UidKick("ann", "bye"))]
    await storage.shutdown()


async def test_uids_etcd_cannot_tell_about_are_unknown(
    etcd: FakeEtcd, caplog: pytest.LogCaptureFixture
) -> None:
    app = host(frontend=False, server_id="room-1")
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    etcd.down = True
    assert await storage.push_to_users("r", b"", ["ann", "bob"], ["connector"]) == (
        [],
        ["ann", "bob"],
    )
    assert "binding lookup of ann failed: etcd is down" in caplog.text
    assert app.cluster.outbound.sent == []
    etcd.down = False
    await storage.shutdown()


async def test_before_init_every_uid_is_unknown() -> None:
    storage = BindingStorage(host())  # type: ignore[arg-type]
    assert await storage.push_to_users("r", b"", ["ann"], ["connector"]) == ([], ["ann"])
    assert await storage.kick_users("", ["ann"], ["connector"]) == ([], ["ann"])


# -- a frontend's bookkeeping ------------------------------------------------------------------


async def test_closing_an_older_session_keeps_the_newer_sessions_binding(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    _, app = frontend
    old, new = TestSession(1, registry=app.sessions), TestSession(2, registry=app.sessions)
    await old.bind("ann")
    await new.bind("ann")
    await old.disconnect()
    assert etcd.data == {KEY: b"fe-1"}
    await new.disconnect()
    assert etcd.data == {}


async def test_a_close_does_not_remove_another_frontends_binding(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    _, app = frontend
    ann = TestSession(1, registry=app.sessions)
    await ann.bind("ann")
    await etcd.put(KEY, b"fe-2")  # ann bound on fe-2 since
    await ann.disconnect()
    assert etcd.data == {KEY: b"fe-2"}


async def test_a_failed_store_or_remove_is_logged_and_the_bind_stands(
    frontend: tuple[BindingStorage, SimpleNamespace],
    etcd: FakeEtcd,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, app = frontend
    ann = TestSession(1, registry=app.sessions)
    etcd.down = True
    await ann.bind("ann")
    assert app.sessions.by_uid("ann") is ann
    await ann.disconnect()
    etcd.down = False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "[fe-1] could not store the binding of ann (retried): etcd is down" in warnings
    assert any(w.startswith("[fe-1] could not remove the binding of ann") for w in warnings)


async def test_during_a_known_etcd_outage_failures_are_logged_at_debug_only(
    frontend: tuple[BindingStorage, SimpleNamespace],
    etcd: FakeEtcd,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.modules.binding_storage")
    _, app = frontend
    etcd.down = True
    etcd.outage.since = 1.0  # the etcd client has told the outage already
    await TestSession(1, registry=app.sessions).bind("ann")
    records = [r for r in caplog.records if "could not store" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, "[fe-1] could not store the binding of ann (retried): etcd is down")
    ]
    etcd.down = False


@pytest.mark.looptime
async def test_the_lease_is_kept_alive_and_a_failed_store_is_written_again(
    etcd: FakeEtcd,
) -> None:
    # Started in the test, not a fixture: its timers must run on the virtual clock.
    app = host()
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    lease = storage.lease
    etcd.down = True
    await TestSession(1, registry=app.sessions).bind("ann")
    assert etcd.data == {}
    await asyncio.sleep(15)  # the refresh at 10 s fails (ttl 30 s: every 10 s)
    etcd.down = False
    await asyncio.sleep(10)  # the one at 20 s succeeds and writes the binding again
    assert await etcd.get_with_lease(KEY) == (b"fe-1", lease)
    await asyncio.sleep(100)  # kept alive past its 30 s ttl
    assert storage.lease == lease and KEY in etcd.data
    await storage.shutdown()


@pytest.mark.looptime
async def test_a_lost_lease_is_granted_again_and_every_binding_rewritten(
    etcd: FakeEtcd, caplog: pytest.LogCaptureFixture
) -> None:
    app = host()
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    old_lease = storage.lease
    await TestSession(1, registry=app.sessions).bind("ann")
    await TestSession(2, registry=app.sessions).bind("bob")
    closed = TestSession(3, registry=app.sessions)
    await closed.bind("cid")
    closed.closed = True  # closing: not written again
    assert old_lease is not None
    etcd._end(old_lease)  # etcd forgot the lease (restarted): the keys went with it
    assert etcd.data == {}
    await asyncio.sleep(11)
    assert storage.lease != old_lease
    assert {k: v for k, v in etcd.data.items()} == {
        KEY: b"fe-1",
        "pitaya/bindings/connector/bob": b"fe-1",
    }
    assert (await etcd.get_with_lease(KEY))[1] == storage.lease  # type: ignore[index]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "[fe-1] binding lease lost; storing again" in warnings
    await storage.shutdown()


class SlowEtcd(FakeEtcd):
    """Each call yields to the loop first, as a network round trip does."""

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(0)
        return await super().get(key)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        await asyncio.sleep(0)
        await super().put(key, value, lease=lease)


async def test_two_frontends_claiming_a_dead_ones_uid_at_once_cannot_both_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = SlowEtcd()
    monkeypatch.setattr(binding_storage, "etcd_client", lambda config: etcd)
    one, two = host(server_id="fe-1"), host(server_id="fe-2")
    for app in (one, two):
        app.cluster.discovery.alive.update({"fe-1", "fe-2"})  # fe-9 is dead
    first, second = BindingStorage(one), BindingStorage(two)  # type: ignore[arg-type]
    await first.init()
    await second.init()
    await etcd.put(KEY, b"fe-9")
    holders = list(await asyncio.gather(first.claim("ann"), second.claim("ann")))
    stored = await etcd.get(KEY)
    await first.shutdown()
    await second.shutdown()
    # One wins (None) and holds the key; the other is told the winner's id.
    assert holders in ([None, "fe-1"], ["fe-2", None])
    assert stored == (b"fe-1" if holders[0] is None else b"fe-2")


class Contended(FakeEtcd):
    """An etcd where other frontends write the key between each of our reads and writes:
    ``gets`` are the values each read returns (None: deleted meanwhile); creating the key
    succeeds only once ``gets`` is used up; each compare-and-swap loses."""

    def __init__(self, gets: list[bytes | None], *, absent_after: bool = False) -> None:
        super().__init__()
        self.gets = gets
        self.absent_after = absent_after
        self.calls: list[str] = []
        self.claimed: dict[str, bytes] = {}

    async def put_if_absent(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        self.calls.append("create")
        if not self.gets and self.absent_after:
            return await super().put_if_absent(key, value, lease=lease)
        return False

    async def get(self, key: str) -> bytes | None:
        self.calls.append("read")
        return self.gets.pop(0) if self.gets else None

    async def put_if_value(
        self, key: str, expected: bytes, value: bytes, *, lease: int = 0
    ) -> bool:
        self.calls.append("swap")
        return False


async def contended_claim(etcd: Contended, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """``claim("ann")`` on fe-1 over ``etcd``; ``etcd.claimed`` keeps the keys it left."""
    monkeypatch.setattr(binding_storage, "etcd_client", lambda config: etcd)
    storage = BindingStorage(host())  # type: ignore[arg-type]
    await storage.init()
    try:
        return await storage.claim("ann")
    finally:
        etcd.claimed = dict(etcd.data)
        await storage.shutdown()


async def test_a_key_deleted_between_create_and_read_is_created_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = Contended([None], absent_after=True)
    assert await contended_claim(etcd, monkeypatch) is None
    assert etcd.calls == ["create", "read", "create"]
    assert etcd.claimed == {KEY: b"fe-1"}


async def test_a_claim_still_contended_after_its_attempts_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A dead frontend's entry rewritten by others each time we try to take it over.
    etcd = Contended([b"fe-8", b"fe-9", b"fe-8", b"fe-9", b"fe-8"])
    assert await contended_claim(etcd, monkeypatch) == "fe-9"  # the last holder read
    assert etcd.calls == ["create", "read", "swap"] * binding_storage.CLAIM_ATTEMPTS
    # Created and deleted by others every time: nobody to name.
    assert await contended_claim(Contended([]), monkeypatch) == "unknown"


async def test_init_builds_the_etcd_client_from_the_apps_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs: list[Config] = []
    store = FakeEtcd()

    def client(config: Config) -> FakeEtcd:
        configs.append(config)
        return store

    monkeypatch.setattr(binding_storage, "etcd_client", client)
    app = host()
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    await storage.shutdown()
    assert configs == [app.config]


async def test_a_claim_is_under_the_frontends_lease_and_its_prefix(etcd: FakeEtcd) -> None:
    app = host(prefix="game/")
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    assert await storage.claim("ann") is None
    assert await etcd.get_with_lease("game/bindings/connector/ann") == (b"fe-1", storage.lease)
    await storage.shutdown()


async def test_shutdown_leaves_another_delivery_in_place(
    frontend: tuple[BindingStorage, SimpleNamespace],
) -> None:
    storage, app = frontend
    other = object()
    app.cluster.users.bindings = other  # replaced since (another storage registered)
    await storage.shutdown()
    assert app.cluster.users.bindings is other


# -- releasing a claim whose bind did not complete ---------------------------------------------


async def test_release_removes_our_entry_when_no_live_session_here_holds_the_uid(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    storage, _ = frontend
    assert await storage.claim("ann") is None
    await storage.release("ann")
    assert etcd.data == {}
    await etcd.put(KEY, b"fe-2")  # another frontend's entry
    await storage.release("ann")
    assert etcd.data == {KEY: b"fe-2"}


async def test_release_keeps_the_entry_of_a_live_session_here(
    frontend: tuple[BindingStorage, SimpleNamespace], etcd: FakeEtcd
) -> None:
    storage, app = frontend
    ann = TestSession(1, registry=app.sessions)
    await ann.bind("ann")
    await storage.release("ann")
    assert etcd.data == {KEY: b"fe-1"}
    ann.closed = True  # closing: its entry may go
    await storage.release("ann")
    assert etcd.data == {}


async def test_release_under_the_configured_prefix(etcd: FakeEtcd) -> None:
    storage = BindingStorage(host(prefix="game/"))  # type: ignore[arg-type]
    await storage.init()
    assert await storage.claim("ann") is None
    await storage.release("ann")
    assert etcd.data == {}
    await storage.shutdown()


async def test_release_never_raises(
    frontend: tuple[BindingStorage, SimpleNamespace],
    etcd: FakeEtcd,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, _ = frontend
    etcd.down = True
    await storage.release("ann")
    etcd.down = False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["[fe-1] could not release the claim on ann: etcd is down"]
    await storage.shutdown()
    await storage.release("ann")  # stopped: nothing to release from


async def test_binds_and_closes_after_shutdown_touch_nothing(
    frontend: tuple[BindingStorage, SimpleNamespace],
    etcd: FakeEtcd,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, app = frontend
    ann = TestSession(1, registry=app.sessions)
    await ann.bind("ann")
    await storage.shutdown()
    await TestSession(2, registry=app.sessions).bind("bob")
    await ann.disconnect()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- the lease's pace --------------------------------------------------------------------------


class Counting(FakeEtcd):
    def __init__(self) -> None:
        super().__init__()
        self.refreshes: list[float] = []
        self.puts = 0

    async def keep_alive(self, lease_id: int) -> int:
        self.refreshes.append(asyncio.get_running_loop().time())
        return await super().keep_alive(lease_id)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        self.puts += 1
        await super().put(key, value, lease=lease)


@pytest.mark.looptime
@pytest.mark.parametrize(("ttl", "every"), [(30, 10.0), (0.3, 0.2)])  # ttl / 3, at least 0.2 s
async def test_the_lease_is_refreshed_every_third_of_its_ttl(
    ttl: float, every: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    etcd = Counting()
    monkeypatch.setattr(binding_storage, "etcd_client", lambda config: etcd)
    storage = BindingStorage(host(), lease_ttl=ttl)  # type: ignore[arg-type]
    start = asyncio.get_running_loop().time()
    await storage.init()
    await asyncio.sleep(every * 3.5)
    await storage.shutdown()
    assert [t - start for t in etcd.refreshes] == pytest.approx([every, every * 2, every * 3])


@pytest.mark.looptime
async def test_bindings_are_written_again_once_not_at_every_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = Counting()
    monkeypatch.setattr(binding_storage, "etcd_client", lambda config: etcd)
    app = host()
    storage = BindingStorage(app)  # type: ignore[arg-type]
    await storage.init()
    etcd.down = True
    await TestSession(1, registry=app.sessions).bind("ann")  # the store fails
    etcd.down = False
    await asyncio.sleep(10.5)  # the refresh writes it again
    assert etcd.data == {KEY: b"fe-1"}
    puts = etcd.puts
    await asyncio.sleep(60)  # later refreshes write nothing
    assert etcd.puts == puts
    await storage.shutdown()
