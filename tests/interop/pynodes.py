"""Python servers with the same routes as the Go interop servers (tests/interop/go/servers),
so a test runs the same scenario against a backend or frontend of either language.

python -m tests.interop.pynodes room --id room-py-1 --nats URL --etcd HOST:PORT
python -m tests.interop.pynodes connector --id connector-py-1 --nats URL --etcd HOST:PORT

Routes (README.md has the table): the client service ``room.room.*`` on a room server and
``connector.me.*`` on a connector; the remote ``room.roomremote.*`` /
``connector.connectorremote.*`` with ``google.protobuf.StringValue`` arguments and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

from google.protobuf.wrappers_pb2 import StringValue

from actors.app import App
from actors.errors import PitayaError
from actors.handler import Handler, Remote, handler
from actors.propagation import add_to_propagated, get_propagated
from actors.session import Session


def _who(app: Any) -> dict[str, Any]:
    return {"server": app.server_id, "lang": "py"}


async def call_remote(app: Any, route: str, msg: str, server_id: str = "") -> str:
    """A user RPC with a StringValue argument and answer (by route, or to ``server_id``)."""
    arg = StringValue(value=msg)
    if server_id:
        reply = await app.rpc_to(server_id, route, arg)
    else:
        reply = await app.rpc(route, arg)
    if isinstance(reply, StringValue):
        return reply.value
    if isinstance(reply, bytes):
        return StringValue.FromString(reply).value
    raise TypeError(f"a user RPC answered {type(reply).__name__}, not a StringValue")


def _trace_id() -> str:
    """The current span's trace id, 32 hex digits (zeros without tracing)."""
    from opentelemetry import trace

    return format(trace.get_current_span().get_span_context().trace_id, "032x")


class Ops(Handler):
    """``room.room.*``: what the Go room's ``Ops`` serves, answered the same way."""

    service = "room"

    def __init__(self) -> None:
        self.tags: list[str] = []

    @handler
    def echo(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        return {**_who(self.app), "uid": session.uid or "", "body": body}

    @handler
    def show(self, session: Session) -> dict[str, Any]:
        return {
            **_who(self.app),
            "uid": session.uid or "",
            "data": dict(session.data),
            "session_id": session.id,
        }

    @handler
    def servers(self, session: Session) -> dict[str, Any]:
        cluster = getattr(self.app, "cluster", None)
        ids = {self.app.server_id}
        if cluster is not None:
            for server_type in self.app.known_server_types():
                ids.update(s.id for s in cluster.discovery.servers(server_type))
        return {**_who(self.app), "servers": sorted(ids)}

    @handler
    def handshake(self, session: Session) -> dict[str, Any]:
        hs = session.handshake
        if hs is None:  # a backend session of a frontend that does not forward it
            return _who(self.app)
        return {
            **_who(self.app),
            "platform": hs.platform,
            "version": hs.client_version,
            "user": dict(hs.user),
        }

    @handler
    def notify(self, session: Session, body: dict[str, Any]) -> None:
        self.tags.append(str(body.get("tag", "")))

    @handler
    def notified(self, session: Session) -> dict[str, Any]:
        return {**_who(self.app), "tags": list(self.tags)}

    @handler
    async def bind(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(str(body["uid"]))
        return {**_who(self.app), "uid": session.uid}

    @handler
    async def setdata(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        for key, value in sorted(dict(body.get("data") or {}).items()):
            session.set(key, value)
        push_to_front = getattr(session, "push_to_front", None)  # a backend session's
        if push_to_front is not None:
            await push_to_front()
        return {**_who(self.app), "data": dict(session.data)}

    @handler
    def push(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        payload = {"from": self.app.server_id, "lang": "py", "body": body.get("body")}
        session.push(str(body.get("route") or "onPush"), payload)
        return {**_who(self.app), "pushed": True}

    @handler
    def kick(self, session: Session) -> None:
        session.kick()

    @handler
    async def pushto(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        payload = {"from": self.app.server_id, "lang": "py", "body": body.get("body")}
        failed = await self.app.send_push_to_users(
            str(body.get("route") or "onPushTo"),
            payload,
            [str(u) for u in body.get("uids", [])],
            frontend_type=str(body.get("frontend_type") or "connector"),
        )
        return {**_who(self.app), "failed": list(failed)}

    @handler
    async def kickusers(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        failed = await self.app.send_kick_to_users(
            [str(u) for u in body.get("uids", [])],
            frontend_type=str(body.get("frontend_type") or "connector"),
        )
        return {**_who(self.app), "failed": list(failed)}

    @handler
    async def groupadd(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        from actors.groups import GroupAlreadyExists

        name = str(body["group"])
        with contextlib.suppress(GroupAlreadyExists):
            await self.app.groups.create(name)
        await self.app.groups.add(name, str(body["uid"]))
        return await self.groupmembers(session, body)

    @handler
    async def groupmembers(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        members = await self.app.groups.members(str(body["group"]))
        return {**_who(self.app), "members": sorted(members)}

    @handler
    async def groupcast(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        payload = {"from": self.app.server_id, "lang": "py", "body": body.get("body")}
        await self.app.groups.broadcast(str(body["group"]), "onGroup", payload)
        return {**_who(self.app), "sent": True}

    @handler
    async def trace(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        answer = {**_who(self.app), "trace_id": _trace_id()}
        if body.get("route"):
            answer["remote_trace_id"] = await call_remote(self.app, str(body["route"]), "")
        return answer

    @handler
    async def rpc(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        for key, value in dict(body.get("propagate") or {}).items():
            add_to_propagated(str(key), value)
        if body.get("dict"):  # a JSON-style argument: fine between our servers only
            route, target = str(body["route"]), str(body.get("server_id", ""))
            arg = {"msg": body.get("msg", "")}
            answer = await (
                self.app.rpc_to(target, route, arg) if target else self.app.rpc(route, arg)
            )
            return {**_who(self.app), "reply": answer}
        reply = await call_remote(
            self.app, str(body["route"]), str(body.get("msg", "")), str(body.get("server_id", ""))
        )
        return {**_who(self.app), "reply": reply}

    @handler
    def fail(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        metadata = {"lang": "py", **{k: str(v) for k, v in (body.get("metadata") or {}).items()}}
        raise PitayaError(str(body.get("code") or "PIT-500"), str(body.get("msg", "")), metadata)

    @handler
    async def silent(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(body.get("seconds", 30)))
        return _who(self.app)


class Me(Ops):
    """``connector.me.*`` on a connector (the same methods)."""

    service = "me"


class RoomRemote(Remote):
    """``room.roomremote.*``: StringValue in, StringValue out."""

    service = "roomremote"

    @handler
    def echo(self, caller: Session | None, body: StringValue) -> StringValue:
        return StringValue(value=f"py:{self.app.server_id}:{body.value}")

    @handler
    def echodict(self, caller: Session | None, body: dict[str, Any]) -> dict[str, Any]:
        """A remote taking a dict: for callers of ours only (a Go caller gets PIT-400)."""
        return {"echo": body, "server": self.app.server_id}

    @handler
    def trace(self, caller: Session | None, body: StringValue) -> StringValue:
        return StringValue(value=_trace_id())

    @handler
    def ctx(self, caller: Session | None, body: StringValue) -> StringValue:
        """The propagated value named by the value, as JSON (``null`` when absent)."""
        return StringValue(value=json.dumps(get_propagated(body.value), separators=(",", ":")))

    @handler
    async def relay(self, caller: Session | None, body: StringValue) -> StringValue:
        """A user RPC made while handling this one: the value is JSON ``{"route", "msg"}``."""
        call = json.loads(body.value)
        return StringValue(value=await call_remote(self.app, call["route"], call["msg"]))

    @handler
    def fail(self, caller: Session | None, body: StringValue) -> StringValue:
        raise PitayaError(body.value, "remote failed on purpose", {"lang": "py"})

    @handler
    async def silent(self, caller: Session | None, body: StringValue) -> StringValue:
        await asyncio.sleep(float(body.value or 30))
        return StringValue(value="late")


class ConnectorRemote(RoomRemote):
    """``connector.connectorremote.*`` (the same methods)."""

    service = "connectorremote"


def standalone(host: str = "127.0.0.1", tcp_port: int = 0, ws_port: int = 0, **options: Any) -> App:
    """A standalone Python frontend (type ``connector``) with the ``me`` routes."""
    app = App(server_type="connector", server_id="connector-py-standalone", **options)
    app.register(Me)
    app.listen_tcp(host, tcp_port)
    app.listen_ws(host, ws_port)
    return app


def connector(server_id: str, nats_url: str, etcd: str, tcp_port: int, ws_port: int) -> App:
    from actors.modules.unique_session import UniqueSession

    app = App(
        server_type="connector",
        server_id=server_id,
        mode="cluster",
        nats_url=nats_url,
        etcd_endpoints=etcd,
    )
    app.register(Me)
    app.register_remote(ConnectorRemote)
    app.listen_tcp("127.0.0.1", tcp_port)
    app.listen_ws("127.0.0.1", ws_port)
    if os.environ.get("INTEROP_UNIQUE_SESSION", "1") == "1":
        app.register_module(UniqueSession(app), "unique_session")
    return app


def room(server_id: str, nats_url: str, etcd: str) -> App:
    app = App(
        server_type="room",
        server_id=server_id,
        mode="cluster",
        frontend=False,
        nats_url=nats_url,
        etcd_endpoints=etcd,
    )
    app.register(Ops)
    app.register_remote(RoomRemote)
    return app


def main() -> None:
    from tests.cluster.node import node_arguments

    args = node_arguments()
    if args.role == "room":
        app = room(args.id, args.nats, args.etcd)
    else:
        app = connector(args.id, args.nats, args.etcd, args.tcp_port, args.ws_port)
    if os.environ.get("INTEROP_TRACING") == "1":  # spans recorded, exported nowhere
        from opentelemetry.sdk.trace import TracerProvider

        app.enable_tracing(TracerProvider())
    if app.config.rpc_transport == "grpc":
        from actors.modules.binding_storage import BindingStorage

        app.register_module(BindingStorage(app), "binding_storage")
    app.run()


if __name__ == "__main__":
    main()
