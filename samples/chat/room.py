"""The chat room: a stateless handler (``room.join``, ``room.message``) in front of one room
actor that holds the members, and the app factory.

Routes and bodies (JSON):

* request ``room.join`` ``{"name": str}`` -> ``{"result": "success", "members": [names]}``;
  the other members get the push ``onNewUser`` ``{"name": str}``;
* notify or request ``room.message`` ``{"content": str}`` -> every member, the sender
  included, gets ``onMessage`` ``{"name": sender, "content": str}``; a request is answered
  ``{"result": "success"}``;
* a member who disconnects: the others get ``onUserLeft`` ``{"name": str}``.

Why two pieces: handler methods run concurrently across sessions (``room.join`` awaits the
bind), so the member list lives in :class:`ChatRoom`, an actor that takes one message at a
time and never waits on the network inside its turn: its pushes are tells
(``app.push_to_users``). The handler validates, binds, then ``ask``s the room.

A browser page using these routes is served on the WebSocket port (see ``static.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.actor import Actor
from actors.app import App
from actors.errors import BadRequest
from actors.handler import Handler, handler
from actors.session import Session, SessionClosed
from samples.chat.static import WEB_DIR, WEB_FILES, static_files

GROUP = "room"
"""The name of the chat's group in the cluster sample (etcd groups)."""

MAX_GONE = 10_000
"""uids a room remembers as left before they joined."""

GONE_FOR = 60.0
"""Seconds a room remembers such a uid: far longer than a join can be on its way (the RPC
timeout, 5 s), short enough that a uid used again later (a connector restarted after a crash
numbers its sessions from 1 again) joins as anyone does."""

MAX_NAME = 40
"""Characters a member's name may have (the page's name field holds as many). Every join is
answered with every member's name: unbounded names let a few members make each newcomer's
answer megabytes long (past a client's packet limit: its connection failed)."""

MAX_CONTENT = 4096
"""Characters a message may have: each is pushed to every member, so one member's 1 MB
message cost the server a megabyte per member, and cut off clients with a 1 MiB packet limit."""

Push = Callable[[str, Any, list[str]], None]
"""Push ``(route, body, uids)`` without waiting: ``App.push_to_users``."""


@dataclass(frozen=True, slots=True)
class JoinRequest:
    name: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    content: str


@dataclass(frozen=True, slots=True)
class Join:
    """To the room: ``uid`` joins as ``name``; answered with the member names, in join
    order. The others are told ``onNewUser``. ``SessionClosed`` if ``uid`` left before its
    join reached the room (within :data:`GONE_FOR`: it is gone)."""

    uid: str
    name: str


@dataclass(frozen=True, slots=True)
class Say:
    """To the room: ``uid`` says ``content`` to everyone (``PIT-400`` if not a member)."""

    uid: str
    content: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """To the room: ``uid``'s connection is gone; the others are told ``onUserLeft``."""

    uid: str


@dataclass(frozen=True, slots=True)
class CountMembers:
    """To the room: how many members it has."""


class ChatRoom(Actor):
    """One chat room's state: its members, changed one message at a time (no lock).

    It gets what it uses: a ``push`` function (a tell). Test it with no app at all::

        pushed = []
        async with ActorSystem() as system:
            room = system.spawn(ChatRoom, lambda *p: pushed.append(p))
            assert await room.ask(Join("1", "ann")) == ["ann"]
    """

    def __init__(self, push: Push) -> None:
        self.push = push
        self.names: dict[str, str] = {}
        """uid -> display name, in join order."""
        self.gone: dict[str, float] = {}
        """uids that left before their join reached the room, with when (at most
        :data:`MAX_GONE`, oldest dropped first): in a cluster the frontend's leave may
        overtake the join."""

    def on_join(self, msg: Join) -> list[str]:
        left_at = self.gone.pop(msg.uid, None)
        if left_at is not None and time.monotonic() - left_at < GONE_FOR:
            raise SessionClosed(f"{msg.uid} left before joining")
        others = list(self.names)
        self.names[msg.uid] = msg.name
        self.push("onNewUser", {"name": msg.name}, others)
        return list(self.names.values())

    def on_say(self, msg: Say) -> None:
        name = self.names.get(msg.uid)
        if name is None:
            raise BadRequest("join the room first")
        self.push("onMessage", {"name": name, "content": msg.content}, list(self.names))

    def on_member_left(self, msg: MemberLeft) -> None:
        name = self.names.pop(msg.uid, None)
        if name is not None:
            self.push("onUserLeft", {"name": name}, list(self.names))
            return
        self.gone[msg.uid] = time.monotonic()  # its join may be on its way: refused then
        if len(self.gone) > MAX_GONE:
            del self.gone[next(iter(self.gone))]

    def on_count_members(self, msg: CountMembers) -> int:
        return len(self.names)


def joining_name(session: Session, body: JoinRequest) -> str:
    """The display name of a join, or ``PIT-400`` (empty or longer than :data:`MAX_NAME`, or
    this session joined)."""
    name = body.name.strip()
    if not name:
        raise BadRequest("name must not be empty")
    if len(name) > MAX_NAME:
        raise BadRequest(f"name must be at most {MAX_NAME} characters")
    if session.uid is not None:
        raise BadRequest("already joined")
    return name


def said_content(body: ChatMessage) -> str:
    """The content of a message, or ``PIT-400`` (longer than :data:`MAX_CONTENT`)."""
    if len(body.content) > MAX_CONTENT:
        raise BadRequest(f"content must be at most {MAX_CONTENT} characters")
    return body.content


class Room(Handler):
    """The chat routes. Stateless: the members live in the :class:`ChatRoom` it spawns."""

    service = "room"

    def started(self) -> None:
        self.room = self.spawn(ChatRoom, self.app.push_to_users, name="chat-room")

    @handler
    async def join(self, session: Session, body: JoinRequest) -> dict[str, Any]:
        name = joining_name(session, body)
        uid = str(session.id)
        await session.bind(uid)
        session.set("name", name)
        room = self.room
        session.on_close(lambda s: room.tell(MemberLeft(uid)))
        members = await room.ask(Join(uid, name))
        return {"result": "success", "members": members}

    @handler
    async def message(self, session: Session, body: ChatMessage) -> dict[str, str]:
        if session.uid is None:
            raise BadRequest("join the room first")
        await self.room.ask(Say(session.uid, said_content(body)))
        return {"result": "success"}


def build_app(
    host: str = "127.0.0.1", tcp_port: int = 3250, ws_port: int = 3251, **options: Any
) -> App:
    """The chat server on TCP and WebSocket (port 0 picks a free port).

    The WebSocket port also serves the chat page: ``http://<host>:<ws_port>/``.
    """
    app = App(server_type="chat", **options)
    app.register(Room)
    app.listen_tcp(host, tcp_port)
    app.listen_ws(host, ws_port, http_handler=static_files(WEB_DIR, WEB_FILES))
    return app
