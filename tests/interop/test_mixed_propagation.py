"""Pitaya's propagated context across a mixed cluster: values a Go server adds to its context
(``pitaya.AddToPropagateCtx``) reach a Python remote, values a Python handler adds reach a Go
remote, and a server of either language passes on what it received to the RPCs it makes, as
Go Pitaya does: a Go frontend's ``request.id`` reaches the Go server behind a Python one."""

from __future__ import annotations

import json

import pytest

from tests.cluster.harness import TRANSPORTS
from tests.interop.mixed import Mixed, direction, mixed

__all__ = ["direction", "mixed"]  # the fixtures, imported

pytestmark = pytest.mark.parametrize("rpc_transport", TRANSPORTS, indirect=True)

VALUES = {"tenant": "t-1", "level": 3, "tags": {"region": "eu"}}


async def test_values_added_by_a_frontend_reach_a_remote(mixed: Mixed) -> None:
    client = await mixed.client()
    for key, value in VALUES.items():
        answer = await client.request(
            "connector.me.rpc",
            {"route": "room.roomremote.ctx", "msg": key, "propagate": VALUES},
        )
        assert json.loads(answer["reply"]) == value, key
    answer = await client.request(
        "connector.me.rpc", {"route": "room.roomremote.ctx", "msg": "tenant"}
    )
    assert json.loads(answer["reply"]) is None  # one request's values are not another's


async def test_a_remote_passes_on_what_it_received(mixed: Mixed) -> None:
    """frontend (adds) -> backend remote ``relay`` -> the frontend's remote ``ctx``: the
    backend, of the other language, handed the values on to the RPC it made."""
    client = await mixed.client()
    call = json.dumps({"route": "connector.connectorremote.ctx", "msg": "tenant"})
    answer = await client.request(
        "connector.me.rpc", {"route": "room.roomremote.relay", "msg": call, "propagate": VALUES}
    )
    assert json.loads(answer["reply"]) == "t-1"


@pytest.mark.parametrize("direction", ["go-py"])
async def test_a_go_request_id_crosses_a_python_server(mixed: Mixed) -> None:
    """The request id a Go frontend gives a client's message (what its servers log as
    ``requestId``) is the one a Go server sees behind a Python one."""
    client = await mixed.client()
    call = json.dumps({"route": "connector.connectorremote.ctx", "msg": "request.id"})
    answer = await client.request(
        "connector.me.rpc", {"route": "room.roomremote.relay", "msg": call}
    )
    assert answer["request_id"]
    assert json.loads(answer["reply"]) == answer["request_id"]
