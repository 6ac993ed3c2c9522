"""One trace across languages: the OpenTelemetry context crosses between Go Pitaya and our
servers (W3C trace context under the request metadata's "otel-span"), on forwarded requests
and user RPCs, both ways. Both sides record spans and export them nowhere; the handlers
answer the trace id they run in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.harness import TRANSPORTS
from tests.interop.harness import GoClient, GoServer, wait_known
from tests.services import EtcdServer, NatsServer

NO_TRACE = "0" * 32


@pytest.mark.parametrize("rpc_transport", TRANSPORTS, indirect=True)
@pytest.mark.parametrize("direction", ["go-py", "py-go"])
async def test_one_trace_across_languages(
    direction: str,
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Callable[..., GoClient],
) -> None:
    front, back = direction.split("-")
    servers: dict[str, Any] = {}
    for lang, role in ((back, "room"), (front, "connector")):
        server_id = f"{role}-{lang}-1"
        if lang == "go":
            servers[role] = await go_servers(
                role, server_id, nats_server, etcd_server, INTEROP_TRACING="1"
            )
        else:
            servers[role] = await py_nodes(
                role, server_id, nats_server, etcd_server, INTEROP_TRACING="1"
            )
    connector = servers["connector"]
    client = go_clients()
    if isinstance(connector, GoServer):
        await client.connect(connector.address("tcp"))
    else:
        await client.connect(("127.0.0.1", connector.ports["tcp"]))
    await wait_known(client, "connector.me.servers", "room-" + back + "-1")
    await wait_known(client, "room.room.servers", "connector-" + front + "-1")

    # frontend handler -> user RPC -> backend remote: one trace
    answer = await client.request("connector.me.trace", {"route": "room.roomremote.trace"})
    assert answer["trace_id"] != NO_TRACE
    assert answer["remote_trace_id"] == answer["trace_id"]

    # forwarded request -> backend handler -> user RPC -> frontend remote: one trace
    answer = await client.request("room.room.trace", {"route": "connector.connectorremote.trace"})
    assert answer["trace_id"] != NO_TRACE
    assert answer["remote_trace_id"] == answer["trace_id"]
