"""A cluster-sample server with a few extra routes for tests, run as its own process.

python -m tests.cluster.node room --id room-1 --nats URL --etcd HOST:PORT
python -m tests.cluster.node connector --id c-1 --nats URL --etcd HOST:PORT --tcp-port P --ws-port P

With ``PITAYA_RPC_TRANSPORT=grpc`` the server also registers the binding storage module, which
the gRPC transport requires.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from actors.handler import Handler, handler
from actors.modules.binding_storage import BindingStorage
from actors.session import Session
from samples.cluster.servers import build_connector, build_room


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Uids:
    uids: list[str]


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float
    tag: str = ""


class Load(Handler):
    """``room.load.wait``: answered after ``seconds``, many at once (a reentrant actor); each
    tagged arrival is logged so a fault test knows the request reached this server."""

    service = "load"
    reentrant = True

    @handler
    async def wait(self, session: Session, body: Wait) -> dict[str, str]:
        if body.tag:
            logging.getLogger(__name__).info("[%s] load %s arrived", self.app.server_id, body.tag)
        await asyncio.sleep(body.seconds)
        return {"server_id": self.app.server_id, "tag": body.tag}


class Ops(Handler):
    """``room.ops.*`` on room servers: slow answers, pushes and kicks by uid, session edits."""

    service = "ops"

    @handler
    async def slow(self, session: Session, body: Sleep) -> dict[str, str]:
        await asyncio.sleep(body.seconds)
        return {"server_id": self.app.server_id}

    @handler
    async def push_to(self, session: Session, body: Uids) -> dict[str, list[str]]:
        failed = await self.app.send_push_to_users(
            "onPoke", {"from": self.app.server_id}, body.uids
        )
        return {"failed": failed}

    @handler
    async def kick(self, session: Session, body: Uids) -> dict[str, list[str]]:
        return {"failed": await self.app.send_kick_to_users(body.uids)}

    @handler
    async def bind_and_store(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(str(body["uid"]))
        session.set("level", body.get("level", 1))
        await session.push_to_front()  # type: ignore[attr-defined]
        session.push("onStored", {"uid": session.uid})
        return {"uid": session.uid, "server_id": self.app.server_id}

    @handler
    def handshake(self, session: Session) -> dict[str, Any]:
        hs = session.handshake
        return {
            "client_version": hs.client_version if hs else None,
            "user": hs.user if hs else None,
        }

    @handler
    def events(self, session: Session) -> list[list[Any]]:
        return [list(e) for e in EVENTS]

    @handler
    def lookup_uid(self, session: Session) -> dict[str, str]:
        try:
            self.app.sessions.by_uid("anyone")
        except Exception as exc:
            return {"error": type(exc).__name__, "msg": str(exc)}
        return {"error": ""}


EVENTS: list[tuple[str, str | None, int]] = []
"""Remote session events this room server received: (event, uid, session id)."""


class Me(Handler):
    """``connector.me.show``: the frontend's own view of the session."""

    service = "me"

    @handler
    def show(self, session: Session) -> dict[str, Any]:
        return {"uid": session.uid, "data": session.data, "server_id": self.app.server_id}


def node_arguments() -> argparse.Namespace:
    """The command line every test server process takes; also sets up logging."""
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["connector", "room"])
    parser.add_argument("--id", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--tcp-port", type=int, default=0)
    parser.add_argument("--ws-port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return args


def main() -> None:
    args = node_arguments()
    if args.role == "room":
        app = build_room(args.id, args.nats, args.etcd)
        app.register(Ops)
        app.register(Load)
        app.on_remote_session_bind(lambda s: EVENTS.append(("bind", s.uid, s.id)))
        app.on_remote_session_close(lambda s: EVENTS.append(("close", s.uid, s.id)))
        app.on_remote_session_close(
            lambda s: EVENTS.append(("close-join", s.uid, s.id)), route="room.room.join"
        )
    else:
        app = build_connector(
            args.id, args.nats, args.etcd, tcp_port=args.tcp_port, ws_port=args.ws_port
        )
        app.register(Me)
        required = os.environ.get("REQUIRE_CLIENT_VERSION")
        if required:

            def check_version(handshake: Any) -> None:
                if handshake.client_version < required:
                    raise ValueError(f"client {handshake.client_version} too old, need {required}")

            app.add_handshake_validator("client-version", check_version)
    if app.config.rpc_transport == "grpc":
        app.register_module(BindingStorage(app), "binding_storage")
    app.run()


if __name__ == "__main__":
    main()
