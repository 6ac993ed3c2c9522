"""The session a handler sees on a backend (``actors.cluster.backend_session``): a copy of the
frontend's session whose writes reach the frontend as controls, through the link it is given
(here a fake that records them)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from actors.cluster.backend_session import BackendSession
from actors.cluster.codec import SessionSnapshot
from actors.cluster.control import SessionBind, SessionData, SessionKick, SessionPush
from actors.errors import FrontendOnly, PitayaError
from actors.session import Session, SessionAlreadyBound
from transport.serializers import JsonSerializer


class Link:
    """The frontend link: every control sent, as (how, frontend, control, type, extras)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any, str | None, bool | None]] = []
        self.error: Exception | None = None

    async def frontend_call(
        self, frontend_id: str, control: Any, frontend_type: Any = None, extras: Any = None
    ) -> None:
        self.sent.append(("call", frontend_id, control, frontend_type, extras))
        if self.error is not None:
            raise self.error

    def frontend_notify(
        self, frontend_id: str, control: Any, frontend_type: Any = None, extras: Any = None
    ) -> None:
        self.sent.append(("notify", frontend_id, control, frontend_type, extras))


def backend(
    *, uid: str | None = None, read_only: bool = False, extras: bool = True, **kw: Any
) -> tuple[BackendSession, Link]:
    link = Link()
    snapshot = SessionSnapshot(7, "c-1", "connector", uid, extras=extras, **kw)
    return BackendSession(snapshot, link, JsonSerializer(), read_only=read_only), link  # type: ignore[arg-type]


def test_every_attribute_of_a_session_is_set() -> None:
    """A backend's copy has every attribute of a session and of its own: reading one never
    raises AttributeError."""
    session, _ = backend()
    slots = [*Session.__slots__, *BackendSession.__slots__]
    assert [name for name in slots if not hasattr(session, name)] == []
    assert (session.closed, session.served_by, session.remote_address) == (False, None, "")


def test_it_is_a_copy_of_the_frontends_session() -> None:
    data = {"level": 3}
    hs = {"sys": {"platform": "mac"}, "user": {"a": 1}}
    session, link = backend(uid="ann", data=data, handshake=hs, extras=False)
    assert (session.id, session.uid, session.data) == (7, "ann", {"level": 3})
    assert (session.frontend_id, session.frontend_type, session.frontend_extras) == (
        "c-1",
        "connector",
        False,
    )
    assert session.handshake is not None
    assert (session.handshake.sys, session.handshake.user) == ({"platform": "mac"}, {"a": 1})
    session.set("level", 4)
    assert data == {"level": 3}  # the snapshot's data is not the session's
    assert link.sent == []  # nothing reaches the frontend until asked
    assert repr(session) == "<BackendSession id=7 uid='ann' frontend=c-1>"
    assert backend()[0].handshake is None


def exactly(text: str) -> str:
    return f"^{re.escape(text)}$"


async def test_bind_binds_on_the_frontend_then_here() -> None:
    link = Link()
    snapshot = SessionSnapshot(7, "c-1", "connector", extras=True)
    session = BackendSession(snapshot, link, JsonSerializer())  # type: ignore[arg-type]
    await session.bind("ann")  # writable unless told otherwise
    assert link.sent == [("call", "c-1", SessionBind(7, "ann"), "connector", True)]
    assert session.uid == "ann"
    with pytest.raises(SessionAlreadyBound) as caught:
        await session.bind("bob")
    assert caught.value.code == "PIT-409"
    assert caught.value.msg == "session 7 is already bound to uid 'ann'"
    assert len(link.sent) == 1


async def test_a_bind_the_frontend_refused_leaves_the_session_unbound() -> None:
    session, link = backend()
    link.error = PitayaError("PIT-409", "uid taken")
    with pytest.raises(PitayaError, match="uid taken"):
        await session.bind("ann")
    assert session.uid is None
    with pytest.raises(ValueError, match=exactly("uid must be a non-empty string")):
        await session.bind("")


async def test_push_to_front_sends_this_copys_data() -> None:
    session, link = backend(uid="ann", data={"level": 3})
    session.set("level", 5)
    await session.push_to_front()
    assert link.sent == [("call", "c-1", SessionData(7, "ann", {"level": 5}), "connector", True)]


def test_push_and_kick_reach_the_client_through_its_frontend() -> None:
    session, link = backend(uid="ann", extras=False)
    session.push("onMsg", {"text": "hi"})
    session.kick("bye")
    (push, kick) = link.sent
    # The frontend's type and whether it is ours go along: a Go frontend gets Go's controls.
    assert push[:2] == ("notify", "c-1") and push[3:] == ("connector", False)
    assert kick == ("notify", "c-1", SessionKick(7, "ann", "bye"), "connector", False)
    assert isinstance(push[2], SessionPush)
    assert (push[2].sid, push[2].uid, push[2].push_route) == (7, "ann", "onMsg")
    assert JsonSerializer().unmarshal(push[2].data) == {"text": "hi"}
    assert kick[2] == SessionKick(7, "ann", "bye")


async def test_an_rpc_callers_session_is_read_only_but_may_push() -> None:
    session, link = backend(uid="ann", read_only=True)
    with pytest.raises(
        FrontendOnly, match=exactly("bind on the read-only caller session of an RPC")
    ):
        await session.bind("bob")
    with pytest.raises(
        FrontendOnly, match=exactly("push_to_front on the read-only caller session of an RPC")
    ):
        await session.push_to_front()
    with pytest.raises(
        FrontendOnly, match=exactly("kick on the read-only caller session of an RPC")
    ):
        session.kick()
    assert link.sent == []
    session.push("onMsg", {})
    assert [how for how, *_ in link.sent] == ["notify"]


def test_lifecycle_callbacks_and_the_session_actor_are_the_frontends() -> None:
    session, _ = backend()
    message = (
        "on_close is only available on frontend servers; on a backend, observe session "
        "events with app.on_remote_session_close"
    )
    with pytest.raises(FrontendOnly, match=exactly(message)):
        session.on_close(lambda s: None)
    with pytest.raises(FrontendOnly):
        _ = session.ref


async def test_binding_through_the_session_base_class_path_is_refused() -> None:
    session, _ = backend()
    message = "a backend session binds through its frontend (BackendSession.bind)"
    with pytest.raises(FrontendOnly, match=exactly(message)):
        await session._bind(session, "ann")
