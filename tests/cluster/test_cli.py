"""``pitaya-cli routes`` against a real cluster: nats-server, etcd, a connector and a room
server, each in its own process; the CLI too (scripted through stdin)."""

from __future__ import annotations

from tests.cluster.harness import Node, start_node
from tests.services import EtcdServer, NatsServer
from tests.transport.test_cli import run_cli


async def test_routes_lists_every_server_type_through_the_connector(
    nodes: list[Node], nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server)
    script = "\n".join(
        [
            f"connect 127.0.0.1:{connector.ports['tcp']}",
            "routes",
            "routes room",
            "routes connector",
            "routes nope",
            "request room.room.whoami",
        ]
    )
    code, lines, err = await run_cli(script)
    assert code == 0, err
    headers = [i for i, line in enumerate(lines) if line.startswith("routes of server type")]
    assert [lines[i] for i in headers] == [
        "routes of server type 'connector':",
        "routes of server type 'room' (through 'connector'):",
        "routes of server type 'room' (through 'connector'):",
        "routes of server type 'connector':",
    ], lines
    connector_routes = lines[headers[0] + 1 : headers[1]]
    room_routes = lines[headers[1] + 1 : headers[2]]
    assert any(line.split()[1] == "entry.info" for line in connector_routes)
    assert lines[headers[2] + 1 : headers[3]] == room_routes  # `routes room`: the room's only
    assert lines[headers[3] + 1 : headers[3] + 1 + len(connector_routes)] == connector_routes
    room_listed = {line.split()[1] for line in room_routes}
    assert {"room.room.join", "room.room.message", "room.ops.kick"} <= room_listed, room_routes
    # Each route listed is one the client can send through the connector.
    assert any(line.startswith("error: no routes of server type 'nope'") for line in lines)
    assert lines[-1] == 'response room.room.whoami {"server_id":"room-1"}'
    assert "Traceback" not in err
