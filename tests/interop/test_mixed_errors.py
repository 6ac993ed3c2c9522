"""Errors across a mixed cluster (a Go Pitaya frontend with a Python backend, and the other
way), over NATS and gRPC: custom codes and PIT-404 cross intact, remotes' errors reach the
client, dict arguments are refused with a reason, and a silent or dead peer is answered the
way each frontend answers it (Go Pitaya's own codes for a Go frontend)."""

from __future__ import annotations

import pytest

from tests.cluster.harness import TRANSPORTS
from tests.interop.mixed import Mixed, direction, failure, mixed

__all__ = ["direction", "mixed"]  # the fixtures, imported

pytestmark = pytest.mark.parametrize("rpc_transport", TRANSPORTS, indirect=True)


async def test_errors_cross_intact(mixed: Mixed) -> None:
    client = await mixed.client()
    back, front = mixed.lang(mixed.backend), mixed.lang(mixed.frontend)
    body = await failure(
        client, "room.room.fail", {"code": "GAME-7", "msg": "no luck", "metadata": {"k": "v"}}
    )
    assert body == {"code": "GAME-7", "msg": "no luck", "metadata": {"lang": back, "k": "v"}}

    body = await failure(client, "room.room.nothing")
    assert body["code"] == "PIT-404"

    # A remote's error reaches the caller's client as the remote raised it, both ways.
    body = await failure(
        client, "connector.me.rpc", {"route": "room.roomremote.fail", "msg": "R-1"}
    )
    assert body["code"] == "R-1"
    assert body["metadata"]["lang"] == back
    body = await failure(
        client, "room.room.rpc", {"route": "connector.connectorremote.fail", "msg": "R-2"}
    )
    assert body["code"] == "R-2"
    assert body["metadata"]["lang"] == front


async def test_json_rpc_arguments_refused_across_languages(mixed: Mixed) -> None:
    """Dict arguments are for user RPCs between our servers: our server refuses to send one to
    a Go remote, and a remote of ours taking a dict refuses a Go caller's protobuf; both say
    PIT-400 with a reason, never garbage."""
    client = await mixed.client()
    py_is_front = mixed.lang(mixed.frontend) == "py"
    py_route, go_route = (
        ("connector.me.rpc", "room.room.rpc")
        if py_is_front
        else ("room.room.rpc", "connector.me.rpc")
    )
    go_remote = "room.roomremote.echo" if py_is_front else "connector.connectorremote.echo"
    py_remote = "connector.connectorremote.echodict" if py_is_front else "room.roomremote.echodict"

    body = await failure(client, py_route, {"route": go_remote, "msg": "x", "dict": True})
    assert body["code"] == "PIT-400", body
    assert "protobuf" in body["msg"], body

    body = await failure(client, go_route, {"route": py_remote, "msg": "x"})
    assert body["code"] == "PIT-400", body
    assert "protobuf" in body["msg"], body


def timeout_code(frontend: str, transport: str) -> tuple[str, str]:
    """What a frontend answers when its RPC to a backend gets no answer in time: ours say
    PIT-408; Go Pitaya says PIT-408 over NATS, but over gRPC passes on gRPC's own error as
    PIT-000 (checked against Go Pitaya v3.0.0-beta.6, Go<->Go)."""
    if frontend == "go" and transport == "grpc":
        return "PIT-000", "DeadlineExceeded"
    return "PIT-408", ""


def dead_peer_code(frontend: str, transport: str) -> tuple[str, str]:
    """What a frontend answers when the backend it routes to is dead (SIGKILL, still in
    discovery): ours say PIT-408 (at once: nobody answers); Go Pitaya passes on the transport's
    error as PIT-000 ("nats: no responders available for request", or gRPC's Unavailable)."""
    if frontend == "go":
        return "PIT-000", "no responders" if transport == "nats" else "Unavailable"
    return "PIT-408", ""


async def test_silent_peer_times_out(mixed: Mixed) -> None:
    client = await mixed.client()
    code, text = timeout_code(mixed.lang(mixed.frontend), mixed.transport)
    # The RPC timeout is 2 s for both languages (tests.cluster.harness.NODE_ENV).
    body = await failure(client, "room.room.silent", {"seconds": 3})
    assert body["code"] == code and text in body["msg"], body
    body = await failure(
        client, "connector.me.rpc", {"route": "room.roomremote.silent", "msg": "3"}
    )
    assert body["code"] == code and text in body["msg"], body


async def test_dead_backend(mixed: Mixed) -> None:
    client = await mixed.client()
    assert (await client.request("room.room.echo", {}))["server"] == mixed.backend_id
    await mixed.backend.kill()  # SIGKILL: it stays in discovery until its lease ends
    code, text = dead_peer_code(mixed.lang(mixed.frontend), mixed.transport)
    body = await failure(client, "room.room.echo", {})
    assert body["code"] == code and text in body["msg"], body
