"""The chat room handler (``room.join``, ``room.message``) and the app factory.

Routes and bodies (JSON):

* request ``room.join`` ``{"name": str}`` -> ``{"result": "success", "members": [names]}``;
  the other members get the push ``onNewUser`` ``{"name": str}``;
* notify or request ``room.message`` ``{"content": str}`` -> every member, the sender
  included, gets ``onMessage`` ``{"name": sender, "content": str}``; a request is answered
  ``{"result": "success"}``;
* a member who disconnects: the others get ``onUserLeft`` ``{"name": str}``.

A browser page using these routes is served on the WebSocket port (see ``static.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.app import App
from actors.errors import BadRequest
from actors.handler import Handler, handler
from actors.session import Session
from samples.chat.static import WEB_DIR, WEB_FILES, static_files

GROUP = "room"


@dataclass(frozen=True, slots=True)
class JoinRequest:
    name: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    content: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """Sent to the room actor by a member's close callback."""

    uid: str


def joining_name(session: Session, body: JoinRequest) -> str:
    """The display name of a join, or ``PIT-400`` (empty name, or this session joined)."""
    name = body.name.strip()
    if not name:
        raise BadRequest("name must not be empty")
    if session.uid is not None:
        raise BadRequest("already joined")
    return name


class Room(Handler):
    service = "room"

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # uid -> display name, in join order

    async def started(self) -> None:
        await self.app.groups.create(GROUP)

    @handler
    async def join(self, session: Session, body: JoinRequest) -> dict[str, Any]:
        name = joining_name(session, body)
        uid = str(session.id)
        await session.bind(uid)
        self.names[uid] = name
        session.set("name", name)
        room = self.ref
        session.on_close(lambda s: room.tell(MemberLeft(uid)))
        await self.app.groups.add(GROUP, uid)
        await self.app.groups.multicast(GROUP, "onNewUser", {"name": name}, where=uid.__ne__)
        return {"result": "success", "members": list(self.names.values())}

    @handler
    async def message(self, session: Session, body: ChatMessage) -> dict[str, str]:
        if session.uid is None or session.uid not in self.names:
            raise BadRequest("join the room first")
        push = {"name": self.names[session.uid], "content": body.content}
        await self.app.groups.broadcast(GROUP, "onMessage", push)
        return {"result": "success"}

    async def on_member_left(self, msg: MemberLeft) -> None:
        name = self.names.pop(msg.uid, None)
        if name is not None:
            await self.app.groups.multicast(
                GROUP, "onUserLeft", {"name": name}, where=msg.uid.__ne__
            )


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
