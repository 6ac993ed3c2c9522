"""A cluster-sample server for the failover test and benchmark, run as its own process.

python -m tests.cluster.failover_node room|connector --id ID --nats URL --etcd HOST:PORT

Room servers add ``room.runs.whoami`` (routed at random by the sample's router, as every
``*.whoami``): it takes ``{"id": ...}``, logs ``ran <id>`` (so the test counts how many times
each request ran, on every server, from the logs) and answers the server's id after
``PAUSE`` seconds (so requests are in flight when a server is killed).
"""

from __future__ import annotations

import asyncio
import logging

from actors.handler import Handler, handler
from actors.modules.binding_storage import BindingStorage
from actors.session import Session
from samples.cluster.servers import build_connector, build_room
from tests.cluster.node import node_arguments

PAUSE = 0.01

log = logging.getLogger(__name__)


class Runs(Handler):
    service = "runs"

    @handler
    async def whoami(self, session: Session, body: dict[str, str]) -> dict[str, str]:
        log.info("[%s] ran %s", self.app.server_id, body["id"])
        await asyncio.sleep(PAUSE)
        return {"server_id": self.app.server_id}


def main() -> None:
    args = node_arguments()
    if args.role == "room":
        app = build_room(args.id, args.nats, args.etcd)
        app.register(Runs)
    else:
        app = build_connector(
            args.id, args.nats, args.etcd, tcp_port=args.tcp_port, ws_port=args.ws_port
        )
    if app.config.rpc_transport == "grpc":
        app.register_module(BindingStorage(app), "binding_storage")
    app.run()


if __name__ == "__main__":
    main()
