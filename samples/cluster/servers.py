"""The cluster sample's servers.

* ``connector`` (frontend, TCP 3250 / WebSocket 3251): clients connect here. It serves
  ``connector.entry.info`` itself and forwards every ``room.*`` route to a room server. Its
  WebSocket port also serves the chat page (``http://127.0.0.1:3251/``), which sends the
  chat routes as ``room.room.join`` / ``room.room.message``.
* ``room`` (backend): the chat routes ``room.room.join`` / ``room.room.message`` with the same
  bodies and pushes as the standalone chat sample, ``room.room.whoami`` (which server answered:
  random routing spreads it), and the remote ``room.roomremote.*`` for user RPCs.

The chat's member list lives in one room server, in its :class:`ChatRoom` actor (the same
actor as the standalone chat's): a custom router pins chat routes to the room server with
the smallest id, while ``whoami`` keeps the default random choice. The room actor's pushes
are tells (``app.push_to_users``): members leaving together never stall it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from actors.app import App
from actors.cluster.backend_session import BackendSession
from actors.cluster.discovery import ServerInfo
from actors.errors import BadRequest, InternalError
from actors.groups import GroupAlreadyExists, GroupNotFound, MemberAlreadyExists, MemberNotFound
from actors.handler import Handler, Remote, handler
from actors.kernel import ActorRef
from actors.session import Session, SessionClosed
from samples.chat.room import (
    GROUP,
    ChatMessage,
    ChatRoom,
    CountMembers,
    Join,
    JoinRequest,
    MemberLeft,
    Say,
    joining_name,
    said_content,
)
from samples.chat.static import chat_page


@dataclass(frozen=True, slots=True)
class Left:
    """A member's connection closed on its frontend (sent by the connector as a user RPC)."""

    uid: str


ROOM_ACTOR = "chat-room"
"""The name of the room server's :class:`ChatRoom` actor (``system.lookup``)."""


def pin_chat(session: Session | None, route: str, servers: list[ServerInfo]) -> ServerInfo:
    """Custom router: chat state lives on one room server; ``whoami`` goes anywhere."""
    if route.endswith(".whoami"):
        import random

        return random.choice(servers)
    return min(servers, key=lambda s: s.id)


def chat_room(handler: Handler) -> ActorRef:
    """The room server's chat room actor (spawned by :class:`Room`)."""
    ref = handler.system.lookup(ROOM_ACTOR)
    if ref is None:
        raise InternalError("the chat room is not running on this server")
    return ref


class Room(Handler):
    """The chat routes on a room server: stateless, in front of the :class:`ChatRoom` actor
    that holds the members. What awaits the network (the bind on the frontend, etcd groups)
    happens here, never inside the room actor's turn."""

    service = "room"

    async def started(self) -> None:
        self.spawn(ChatRoom, self.app.push_to_users, name=ROOM_ACTOR)
        if not await self.app.groups.exists(GROUP):
            with contextlib.suppress(GroupAlreadyExists):  # another room server was first
                await self.app.groups.create(GROUP)

    @handler
    async def join(self, session: Session, body: JoinRequest) -> dict[str, Any]:
        name = joining_name(session, body)
        uid = f"{getattr(session, 'frontend_id', '')}:{session.id}"
        await session.bind(uid)  # binds on the frontend, across NATS
        session.set("name", name)
        await session.push_to_front()
        await self._add_member(uid)
        try:
            members = await chat_room(self).ask(Join(uid, name))
        except SessionClosed:  # the client left meanwhile, and the room heard it first
            with contextlib.suppress(GroupNotFound, MemberNotFound):
                await self.app.groups.remove(GROUP, uid)
            raise
        return {"result": "success", "members": members}

    async def _add_member(self, uid: str) -> None:
        """Add ``uid`` to the etcd group. A uid already there was left by a frontend that
        crashed (its sessions' close callbacks never ran) and numbers its sessions from 1
        again after its restart: the new session takes it over. A group lost with etcd's
        data is made again (it was made once, when the first room server started)."""
        groups = self.app.groups
        try:
            await groups.add(GROUP, uid)
        except MemberAlreadyExists:
            pass
        except GroupNotFound:
            with contextlib.suppress(GroupAlreadyExists):
                await groups.create(GROUP)
            with contextlib.suppress(MemberAlreadyExists):
                await groups.add(GROUP, uid)

    @handler
    async def message(self, session: Session, body: ChatMessage) -> dict[str, str]:
        if session.uid is None:
            raise BadRequest("join the room first")
        await chat_room(self).ask(Say(session.uid, said_content(body)))
        return {"result": "success"}

    @handler
    def whoami(self, session: Session) -> dict[str, str]:
        return {"server_id": self.app.server_id}

    @handler
    def session_data(self, session: Session) -> dict[str, Any]:
        return {"uid": session.uid, "data": session.data}


class RoomRemote(Remote):
    """User RPCs: ``room.roomremote.count`` and ``room.roomremote.left``."""

    service = "roomremote"

    @handler
    async def count(self, caller: Session | None, body: Any) -> dict[str, Any]:
        members = await chat_room(self).ask(CountMembers())
        asked_by = caller.uid if isinstance(caller, BackendSession) else None
        return {"members": members, "server_id": self.app.server_id, "asked_by": asked_by}

    @handler
    async def left(self, caller: Session | None, body: Left) -> dict[str, bool]:
        chat_room(self).tell(MemberLeft(body.uid))
        with contextlib.suppress(GroupNotFound, MemberNotFound):
            await self.app.groups.remove(GROUP, body.uid)
        return {"ok": True}


class Entry(Handler):
    """The connector's own routes: ``connector.entry.info`` makes a user RPC to a room."""

    service = "entry"

    @handler
    async def info(self, session: Session) -> dict[str, Any]:
        rooms = await self.app.rpc("room.roomremote.count", {}, session=session)
        return {"connector": self.app.server_id, "room": rooms}


def build_connector(
    server_id: str,
    nats_url: str,
    etcd: str,
    *,
    host: str = "127.0.0.1",
    tcp_port: int = 3250,
    ws_port: int = 3251,
    **options: Any,
) -> App:
    app = App(
        server_type="connector",
        server_id=server_id,
        mode="cluster",
        nats_url=nats_url,
        etcd_endpoints=etcd,
        **options,
    )
    app.register(Entry)
    app.add_route("room", pin_chat)
    app.listen_tcp(host, tcp_port)
    app.listen_ws(host, ws_port, http_handler=chat_page("room."))

    async def tell_room(session: Session) -> None:
        if session.uid is not None:
            try:
                await app.rpc("room.roomremote.left", {"uid": session.uid}, session=None)
            except Exception as exc:  # the room may be gone; the client is gone anyway
                import logging

                logging.getLogger(__name__).debug("could not tell the room: %s", exc)

    app.on_session_close(tell_room)
    return app


def build_room(server_id: str, nats_url: str, etcd: str, **options: Any) -> App:
    app = App(
        server_type="room",
        server_id=server_id,
        mode="cluster",
        frontend=False,
        nats_url=nats_url,
        etcd_endpoints=etcd,
        **options,
    )
    app.register(Room)
    app.register_remote(RoomRemote)
    app.add_route("room", pin_chat)
    return app
