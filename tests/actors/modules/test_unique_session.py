"""The unique session module (``actors.modules.unique_session``): one session per uid, by
kicking the older session or refusing the newer bind, here and on other frontends.

The server is a stand-in (``ModuleHost``) with a real session registry and ``TestSession``s,
which record kicks; the cluster is a fake that hands the module's bind listener to the test;
the binding storage's claim is a fake too (the storage itself: test_binding_storage.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from actors.app import App
from actors.cluster.codec import BindNotice
from actors.config import Config
from actors.errors import PitayaError
from actors.handler import Handler, handler
from actors.modules import binding_storage
from actors.modules.binding_storage import BindingStorage
from actors.modules.unique_session import (
    KICK_REASON,
    OLDER_CLOSE_WAIT,
    UidAlreadyBound,
    UniqueSession,
)
from actors.session import Session, SessionClosed
from actors.sessions.registry import SessionRegistry
from actors.testing import TestClient, TestSession
from tests.actors.modules.etcd_fake import FakeEtcd
from transport.etcd import EtcdUnavailable


class Users:
    def __init__(self) -> None:
        self.listeners: list[Callable[[BindNotice], None]] = []

    async def watch_binds(self, listener: Callable[[BindNotice], None]) -> None:
        self.listeners.append(listener)

    def notice(self, uid: str, frontend_id: str) -> None:
        for listener in self.listeners:
            listener(BindNotice(uid, frontend_id))


class Claims(BindingStorage):
    """The binding storage's claim alone: answers from ``holders``, or fails."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.holders: dict[str, str] = {}
        self.down = False
        self.claimed: list[str] = []

    async def claim(self, uid: str) -> str | None:
        if self.down:
            raise EtcdUnavailable("etcd is down")
        self.claimed.append(uid)
        return self.holders.get(uid)


def host(*, frontend: bool = True, cluster: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        server_id="fe-1",
        server_type="connector",
        config=Config(),
        is_frontend=frontend,
        sessions=SessionRegistry(),
        cluster=SimpleNamespace(users=Users()) if cluster else None,
        modules=[],
    )


def session(app: SimpleNamespace, session_id: int) -> TestSession:
    return TestSession(session_id, registry=app.sessions)


async def started(app: SimpleNamespace, **options: Any) -> UniqueSession:
    module = UniqueSession(app, **options)  # type: ignore[arg-type]
    await module.init()
    return module


def test_the_conflict_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="on_conflict must be 'kick' or 'refuse', not 'drop'"):
        UniqueSession(host(), on_conflict="drop")  # type: ignore[arg-type]
    assert UniqueSession(host()).on_conflict == "kick"  # type: ignore[arg-type]


def test_the_refusal_is_a_pit_409_naming_the_uid_and_the_holder() -> None:
    error = UidAlreadyBound("ann", "fe-2")
    assert isinstance(error, PitayaError)
    assert (error.code, error.msg, error.metadata) == (
        "PIT-409",
        "uid ann is already bound on fe-2",
        {"uid": "ann"},
    )
    assert (error.uid, error.holder) == ("ann", "fe-2")
    assert KICK_REASON == "logged in elsewhere"


# -- on this frontend ----------------------------------------------------------------------------


async def test_kick_mode_kicks_the_older_session_and_the_new_bind_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.modules.unique_session")
    app = host()
    module = await started(app)
    old, new = session(app, 1), session(app, 2)
    await old.bind("ann")
    await new.bind("ann")
    assert old.kicked and old.kick_reason == "logged in elsewhere"
    assert not new.kicked
    assert app.sessions.by_uid("ann") is new
    assert module.kicked == 1
    newest = session(app, 3)
    await newest.bind("ann")
    assert new.kicked and module.kicked == 2  # counted up
    lines = [r for r in caplog.records if r.name == "actors.modules.unique_session"]
    assert [r.getMessage() for r in lines] == [
        "[fe-1] kicking session 1: uid ann bound again by session 2",
        "[fe-1] kicking session 2: uid ann bound again by session 3",
    ]
    assert [getattr(r, "session_id", None) for r in lines] == [1, 2]


async def test_refuse_mode_refuses_the_newer_bind_and_the_old_session_stays() -> None:
    app = host()
    module = await started(app, on_conflict="refuse")
    old, new = session(app, 1), session(app, 2)
    await old.bind("ann")
    with pytest.raises(UidAlreadyBound, match="uid ann is already bound on fe-1"):
        await new.bind("ann")
    assert new.uid is None and app.sessions.by_uid("ann") is old
    assert not old.kicked and module.kicked == 0


@pytest.mark.parametrize("mode", ["kick", "refuse"])
async def test_a_closing_older_session_is_no_conflict(mode: str) -> None:
    app = host()
    module = await started(app, on_conflict=mode)
    old, new = session(app, 1), session(app, 2)
    await old.bind("ann")
    old.closed = True  # its teardown has begun
    await new.bind("ann")
    assert app.sessions.by_uid("ann") is new
    assert not old.kicked and module.kicked == 0


async def test_different_uids_do_not_conflict() -> None:
    app = host()
    module = await started(app, on_conflict="refuse")
    await session(app, 1).bind("ann")
    await session(app, 2).bind("bob")
    assert module.kicked == 0 and len(app.sessions) == 2


async def test_a_backend_does_nothing() -> None:
    app = host(frontend=False, cluster=True)
    await started(app)
    old, new = session(app, 1), session(app, 2)
    await old.bind("ann")
    await new.bind("ann")
    assert not old.kicked
    assert app.cluster.users.listeners == []


async def test_after_shutdown_nothing_is_kicked() -> None:
    app = host(cluster=True)
    module = await started(app)
    old = session(app, 1)
    await old.bind("ann")
    await module.shutdown()
    await session(app, 2).bind("ann")
    app.cluster.users.notice("ann", "fe-2")
    assert not old.kicked and module.kicked == 0


# -- binds on other frontends ---------------------------------------------------------------------


async def test_a_bind_notice_from_another_frontend_kicks_the_local_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = host(cluster=True)
    module = await started(app)
    ann = session(app, 1)
    await ann.bind("ann")
    app.cluster.users.notice("bob", "fe-2")  # nobody here
    app.cluster.users.notice("ann", "fe-1")  # our own bind
    assert not ann.kicked
    with caplog.at_level(logging.INFO, logger="actors.modules.unique_session"):
        app.cluster.users.notice("ann", "fe-2")
    assert ann.kick_reason == "logged in elsewhere" and module.kicked == 1
    assert caplog.records[-1].getMessage() == "[fe-1] kicking session 1: uid ann bound on fe-2"


async def test_a_notice_for_a_closing_session_kicks_nothing() -> None:
    app = host(cluster=True)
    module = await started(app)
    ann = session(app, 1)
    await ann.bind("ann")
    ann.closed = True
    app.cluster.users.notice("ann", "fe-2")
    assert not ann.kicked and module.kicked == 0


# -- refuse mode across frontends ----------------------------------------------------------------


async def test_refuse_mode_in_a_cluster_needs_the_binding_storage() -> None:
    app = host(cluster=True)
    with pytest.raises(RuntimeError) as caught:
        await started(app, on_conflict="refuse")
    assert str(caught.value) == (
        "unique session with on_conflict='refuse' in cluster mode needs the binding "
        "storage module (app.register_module(BindingStorage(app), 'binding_storage'))"
    )


async def test_refuse_mode_asks_the_storage_who_holds_the_uid() -> None:
    app = host(cluster=True)
    claims = Claims(app)
    app.modules.append(("binding_storage", claims))
    await started(app, on_conflict="refuse")
    claims.holders["ann"] = "fe-2"
    with pytest.raises(UidAlreadyBound, match="uid ann is already bound on fe-2"):
        await session(app, 1).bind("ann")
    assert app.sessions.by_uid("ann") is None
    bob = session(app, 2)
    await bob.bind("bob")
    assert app.sessions.by_uid("bob") is bob
    assert claims.claimed == ["ann", "bob"]


async def test_refuse_mode_lets_the_bind_stand_when_etcd_cannot_tell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = host(cluster=True)
    claims = Claims(app)
    app.modules.append(("binding_storage", claims))
    await started(app, on_conflict="refuse")
    claims.down = True
    ann = session(app, 1)
    await ann.bind("ann")
    assert app.sessions.by_uid("ann") is ann
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "[fe-1] cannot check uid ann in etcd: etcd is down"
    ]


async def test_kick_mode_never_asks_the_storage() -> None:
    app = host(cluster=True)
    claims = Claims(app)
    app.modules.append(("binding_storage", claims))
    await started(app)
    claims.holders["ann"] = "fe-2"
    await session(app, 1).bind("ann")
    assert claims.claimed == []


async def frontend_with_storage(
    etcd: FakeEtcd, server_id: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[SimpleNamespace, BindingStorage]:
    """A frontend with the real binding storage on ``etcd`` and refusing unique sessions."""
    monkeypatch.setattr(binding_storage, "etcd_client", lambda config: etcd)
    app = host(cluster=True)
    app.server_id = server_id
    app.config = Config(mode="cluster", etcd_lease_ttl=30)
    app.cluster.outbound = None
    app.cluster.discovery = SimpleNamespace(
        server=lambda sid: object() if sid in {"fe-1", "fe-2"} else None
    )
    storage = BindingStorage(app)  # type: ignore[arg-type]
    app.modules.append(("binding_storage", storage))
    await storage.init()
    app.modules.append(("unique_session", await started(app, on_conflict="refuse")))
    return app, storage


async def test_refuse_mode_across_frontends_with_the_binding_storage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    etcd = FakeEtcd()
    one, first = await frontend_with_storage(etcd, "fe-1", monkeypatch)
    two, second = await frontend_with_storage(etcd, "fe-2", monkeypatch)
    ann = session(one, 1)
    await ann.bind("ann")
    with pytest.raises(UidAlreadyBound, match="uid ann is already bound on fe-1"):
        await session(two, 1).bind("ann")
    await ann.disconnect()  # its binding is removed: the uid is free again
    elsewhere = session(two, 2)
    await elsewhere.bind("ann")
    assert two.sessions.by_uid("ann") is elsewhere
    await first.shutdown()
    await second.shutdown()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    # No claim is left pending once each bind stood or was refused.
    assert [m._claims for _, m in (*one.modules, *two.modules) if isinstance(m, UniqueSession)] == [
        set(),
        set(),
    ]


async def test_a_bind_refused_after_the_claim_leaves_the_uid_free_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = FakeEtcd()
    one, first = await frontend_with_storage(etcd, "fe-1", monkeypatch)
    two, second = await frontend_with_storage(etcd, "fe-2", monkeypatch)

    def banned_here(s: Any) -> None:  # the app's own check, after the unique session's
        raise PitayaError("PIT-403", "banned on this frontend")

    one.sessions.on_session_bind(banned_here)

    ann = session(one, 1)
    with pytest.raises(PitayaError, match="banned"):
        await ann.bind("ann")
    assert one.sessions.by_uid("ann") is None  # not bound on fe-1
    try:
        await session(two, 1).bind("ann")  # so fe-2 may bind it
        assert two.sessions.by_uid("ann") is not None
    finally:
        await first.shutdown()
        await second.shutdown()


@pytest.mark.parametrize("mode", ["kick", "refuse"])
async def test_two_binds_of_one_uid_at_once_leave_one_session_with_it(mode: str) -> None:
    app = host()
    await started(app, on_conflict=mode)
    gate = asyncio.Event()

    async def load_profile(s: Any) -> None:
        await gate.wait()

    app.sessions.on_session_bind(load_profile)

    ann, again = session(app, 1), session(app, 2)
    binds = asyncio.gather(ann.bind("ann"), again.bind("ann"), return_exceptions=True)
    await asyncio.sleep(0)
    gate.set()
    outcomes = list(await binds)
    holders = [s for s in (ann, again) if s.uid == "ann" and not s.kicked]
    assert len(holders) == 1
    # As if one after the other: kick keeps the later, refuse the earlier.
    if mode == "kick":
        assert outcomes == [None, None] and holders == [again] and ann.kicked
    else:
        assert outcomes[0] is None and isinstance(outcomes[1], UidAlreadyBound)
        assert holders == [ann] and again.uid is None
    assert app.sessions.by_uid("ann") is holders[0]


async def test_a_bind_whose_connection_goes_away_after_the_claim_releases_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = FakeEtcd()
    one, first = await frontend_with_storage(etcd, "fe-1", monkeypatch)
    two, second = await frontend_with_storage(etcd, "fe-2", monkeypatch)
    gate = asyncio.Event()

    async def load_profile(s: Any) -> None:  # after the unique session's claim
        await gate.wait()

    one.sessions.on_session_bind(load_profile)

    ann = session(one, 1)
    binding = asyncio.ensure_future(ann.bind("ann"))
    await asyncio.sleep(0)
    assert await etcd.get("pitaya/bindings/connector/ann") == b"fe-1"  # claimed
    await ann.disconnect()
    gate.set()
    with pytest.raises(SessionClosed):
        await binding
    assert await etcd.get("pitaya/bindings/connector/ann") is None
    try:
        await session(two, 1).bind("ann")
        assert await etcd.get("pitaya/bindings/connector/ann") == b"fe-2"
    finally:
        await first.shutdown()
        await second.shutdown()


async def test_a_refused_bind_keeps_the_claim_of_the_session_that_holds_the_uid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = FakeEtcd()
    one, first = await frontend_with_storage(etcd, "fe-1", monkeypatch)
    ann = session(one, 1)
    await ann.bind("ann")
    with pytest.raises(UidAlreadyBound):
        await session(one, 2).bind("ann")  # refused here, before any claim
    assert await etcd.get("pitaya/bindings/connector/ann") == b"fe-1"
    await first.shutdown()


# -- a bind waits for the older session's close callbacks ----------------------------------


class Login(Handler):
    """``login.enter``: bind the uid, mark it online until this session closes."""

    service = "login"

    def __init__(self) -> None:
        self.online: set[str] = set()
        self.hang_closes = False

    @handler
    async def enter(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        uid = body["uid"]
        await session.bind(uid)  # kicks the older session of uid
        online = self.online

        async def offline(_: Session) -> None:
            if self.hang_closes:
                await asyncio.Event().wait()  # a database that does not answer
            online.discard(uid)

        session.on_close(offline)
        online.add(uid)
        return {"online": sorted(online)}

    @handler
    def who(self, session: Session) -> dict[str, Any]:
        return {"online": sorted(self.online)}


def login_app() -> App:
    app = App(server_type="connector", unique_session=True, shutdown_timeout=0.1)
    app.register(Login)
    return app


async def test_a_relogin_is_not_undone_by_the_older_session_s_close_callbacks() -> None:
    """The bind returned once the kick was sent; the older session's close callback (mark
    the uid offline) ran afterwards and undid the new login."""
    app = login_app()
    test = TestClient(app)
    async with test as old:
        assert await old.request("login.enter", {"uid": "ann"}) == {"online": ["ann"]}
        new = await test.connect()
        assert await new.request("login.enter", {"uid": "ann"}) == {"online": ["ann"]}
        await old.wait_closed(timeout=2)
        assert old.kicked
        assert await new.request("login.who") == {"online": ["ann"]}


@pytest.mark.looptime
async def test_a_bind_waits_for_a_hung_close_callback_only_so_long(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = login_app()
    login = None
    test = TestClient(app)
    loop = asyncio.get_running_loop()
    async with test as old:
        await old.request("login.enter", {"uid": "ann"})
        login = app.handler_instance("login")
        assert isinstance(login, Login)
        login.hang_closes = True
        new = await test.connect()
        start = loop.time()
        assert await new.request("login.enter", {"uid": "ann"}, timeout=60) == {"online": ["ann"]}
        assert loop.time() - start == pytest.approx(OLDER_CLOSE_WAIT)
    assert (
        f"the older session 1 of uid ann is still closing after {OLDER_CLOSE_WAIT}s: the bind "
        "goes on (its close callbacks may run after it)"
    ) in caplog.text
