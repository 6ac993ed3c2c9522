"""A cluster server for the SO_REUSEPORT test, run by the launcher as its own process.

python -m tests.launch.reuseport_node connector|room --id ID --nats URL --etcd HOST:PORT
    [--tcp-port P --ws-port P]

The cluster sample's servers (``samples.cluster``) plus what the test asks: on connectors
``connector.me.show`` (which process holds the session), on rooms ``room.ops.push_to`` (push
by uid) and ``room.fanout.group`` (a broadcast to the chat's group, whose members joined
through either connector).
"""

from __future__ import annotations

from typing import Any

from actors.handler import Handler, handler
from actors.session import Session
from samples.chat.room import GROUP
from samples.cluster.servers import build_connector, build_room
from tests.cluster.node import Me, Ops, node_arguments


class Fanout(Handler):
    """``room.fanout.group``: push ``onFanout`` to every member of the chat's group."""

    service = "fanout"

    @handler
    async def group(self, session: Session, body: Any) -> dict[str, Any]:
        unreached = await self.app.groups.broadcast(GROUP, "onFanout", {"n": body["n"]})
        return {"unreached": unreached, "server_id": self.app.server_id}


def main() -> None:
    args = node_arguments()
    if args.role == "room":
        app = build_room(args.id, args.nats, args.etcd)
        app.register(Ops)
        app.register(Fanout)
    else:
        app = build_connector(
            args.id, args.nats, args.etcd, tcp_port=args.tcp_port, ws_port=args.ws_port
        )
        app.register(Me)
    app.run()


if __name__ == "__main__":
    main()
