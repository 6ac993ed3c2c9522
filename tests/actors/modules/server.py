"""A cluster server with modules, run as its own process by ``tests/cluster/test_modules*.py``.

Same command line as ``tests.cluster.node``; modules come from the environment:
``UNIQUE_SESSION=kick|refuse`` registers the unique session module, ``BINDING_STORAGE=1`` the
binding storage. Extra routes: ``connector.auth.login {"uid"}`` binds on the frontend, and
``room.work.slow {"seconds", "tag"}`` logs ``slow request <tag> started`` before it waits, so
a test knows the request is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from actors.app import App
from actors.handler import Handler, handler
from actors.modules.binding_storage import BindingStorage
from actors.modules.unique_session import UniqueSession
from actors.session import Session
from samples.cluster.servers import build_connector, build_room
from tests.cluster.node import Me, Ops, node_arguments

log = logging.getLogger("tests.modules")


@dataclass(frozen=True, slots=True)
class Login:
    uid: str


@dataclass(frozen=True, slots=True)
class Slow:
    seconds: float
    tag: str


class Auth(Handler):
    service = "auth"

    @handler
    async def login(self, session: Session, body: Login) -> dict[str, Any]:
        await session.bind(body.uid)
        return {"uid": session.uid, "server_id": self.app.server_id}


class Work(Handler):
    service = "work"
    reentrant = True  # the slow requests of several clients wait side by side

    @handler
    async def slow(self, session: Session, body: Slow) -> dict[str, str]:
        log.info("[%s] slow request %s started", self.app.server_id, body.tag)
        await asyncio.sleep(body.seconds)
        return {"server_id": self.app.server_id}


def add_modules(app: App) -> None:
    if os.environ.get("BINDING_STORAGE"):
        app.register_module(BindingStorage(app), "binding_storage")
    mode = os.environ.get("UNIQUE_SESSION")
    if mode:
        app.register_module(UniqueSession(app, on_conflict=mode), "unique_session")  # type: ignore[arg-type]


def main() -> None:
    args = node_arguments()
    if args.role == "room":
        app = build_room(args.id, args.nats, args.etcd)
        app.register(Ops)
        app.register(Work)
    else:
        app = build_connector(
            args.id, args.nats, args.etcd, tcp_port=args.tcp_port, ws_port=args.ws_port
        )
        app.register(Me)
        app.register(Auth)
    add_modules(app)
    app.run()


if __name__ == "__main__":
    main()
