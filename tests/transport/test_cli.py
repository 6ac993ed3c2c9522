"""``python -m transport.cli`` against the chat sample: scripted through stdin, and in-process."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.testing import serve
from samples.chat.room import build_app
from transport.cli import Address, Cli, parse_address
from transport.serializers import get_serializer

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(script: str, *args: str, timeout: float = 30.0) -> tuple[int, list[str], str]:
    """Run the CLI with ``script`` on stdin; (exit code, stdout lines, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transport.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(script.encode()), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines(), err.decode()


async def test_scripted_session_over_tcp() -> None:
    async with serve(build_app(tcp_port=0, ws_port=0)) as server:
        host, port = server.app.address("tcp")
        script = "\n".join(
            [
                f"connect {host}:{port}",
                "routes",
                "# a comment, then a blank line",
                "",
                'request room.join {"name": "ann"}',
                'notify room.message {"content": "hello there"}',
                "wait onMessage",
                "request nope.nothing {}",
                "request room.join {not json",
                "dance",
                "quit",
                "request room.join {}",  # after quit: never run
            ]
        )
        code, lines, err = await run_cli(script)
    assert code == 0, err
    assert lines[0] == f"connected to {host}:{port} (serializer json)"
    assert "routes of server type 'chat':" in lines
    assert any(line.split()[:2] == ["request", "room.join"] and "input" in line for line in lines)
    assert any(line.split()[:2] == ["request", "room.message"] for line in lines)
    assert 'response room.join {"result":"success","members":["ann"]}' in lines
    assert "notified room.message" in lines
    assert 'push onMessage {"name":"ann","content":"hello there"}' in lines
    assert 'error PIT-404: pitaya/handler: nope.nothing not found {"route":"nope.nothing"}' in lines
    assert any(line.startswith("error: invalid JSON body") for line in lines)
    assert "error: unknown command 'dance' (try \"help\")" in lines
    assert sum(line.startswith("response room.join") for line in lines) == 1
    assert "Traceback" not in err


async def test_websocket_connect_at_start_ends_at_eof() -> None:
    async with serve(build_app(tcp_port=0, ws_port=0, serializer="msgpack")) as server:
        host, port = server.app.address("ws")
        script = 'request room.join {"name": "bob"}\nrequest room.message {"content": "x"}\n'
        code, lines, err = await run_cli(
            script, "--connect", f"ws://{host}:{port}/any/path", "--serializer", "msgpack"
        )
    assert code == 0, err
    assert lines[0] == f"connected to ws://{host}:{port}/any/path (serializer msgpack)"
    assert 'response room.join {"result":"success","members":["bob"]}' in lines
    assert 'response room.message {"result":"success"}' in lines
    assert "note" not in "".join(lines)


async def test_a_serializer_the_server_does_not_use_is_pointed_out() -> None:
    async with serve(build_app(tcp_port=0, ws_port=0)) as server:
        host, port = server.app.address("tcp")
        code, lines, err = await run_cli(
            "", "--connect", f"{host}:{port}", "--serializer", "msgpack"
        )
    assert code == 0, err
    assert lines == [
        f"connected to {host}:{port} (serializer msgpack)",
        "note: the server announced json; bodies are sent as msgpack, as asked",
    ]


async def test_errors_without_a_server() -> None:
    script = "request room.join {}\nroutes\nconnect nowhere\nconnect 127.0.0.1:1\nwait x 0.1\n"
    code, lines, err = await run_cli(script)
    assert code == 0, err
    assert lines == [
        'error: not connected (use "connect <host:port>")',
        'error: not connected (use "connect <host:port>")',
        "error: expected host:port, got 'nowhere'",
        lines[3],
        "error: not connected",
    ]
    assert lines[3].startswith("error: cannot connect to 127.0.0.1:1: ")


async def test_a_server_that_goes_away_is_reported() -> None:
    out = io.StringIO()
    cli = Cli(out, serializer=get_serializer("json"), timeout=5)
    async with serve(build_app(tcp_port=0, ws_port=0)) as server:
        host, port = server.app.address("tcp")
        assert await cli.execute(f"connect {host}:{port}")
        assert await cli.execute('request room.join {"name": "cy"}')
    # ``wait`` wakes when the connection ends, after the watcher has reported it.
    assert await cli.execute("wait onNothing 5")
    assert await cli.execute("routes")
    assert not await cli.execute("exit")
    await cli.close()
    lines = out.getvalue().splitlines()
    # The app kicks its clients as it stops, saying why.
    assert lines[-3] == "disconnected: kicked by the server (server shutting down)"
    assert lines[-2] == "error: not connected"
    assert lines[-1] == 'error: not connected (use "connect <host:port>")'


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:3250", Address("127.0.0.1", 3250)),
        ("tcp://localhost:1", Address("localhost", 1)),
        ("[::1]:3250", Address("::1", 3250)),
        ("ws://h:3251", Address("h", 3251, websocket=True)),
        ("ws://h:3251/a/b", Address("h", 3251, websocket=True, path="/a/b")),
        ("wss://h:443/", Address("h", 443, websocket=True, tls=True)),
    ],
)
def test_parse_address(text: str, address: Address) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["host", "host:", "host:port", ":3250", "http://h:1", "h:99999"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_address_str() -> None:
    assert str(Address("::1", 3250)) == "[::1]:3250"
    assert str(Address("h", 1, websocket=True, path="/p", tls=True)) == "wss://h:1/p"


async def test_routes_of_every_server_type_through_a_frontend() -> None:
    """In one process (``MemoryCluster``): ``routes`` lists the connector's routes and the
    room's, asked through the connector (``room.sys.docs``); ``routes room`` only the room's."""
    from actors.testing import MemoryCluster
    from samples.cluster.servers import build_connector, build_room

    network = MemoryCluster()
    seams: dict[str, Any] = {"discovery": network.discovery(), "rpc": network.rpc()}
    room = build_room("room-1", "nats://127.0.0.1:1", "127.0.0.1:1", **seams)
    seams = {"discovery": network.discovery(), "rpc": network.rpc()}
    connector = build_connector(
        "c-1", "nats://127.0.0.1:1", "127.0.0.1:1", tcp_port=0, ws_port=0, **seams
    )
    out = io.StringIO()
    cli = Cli(out, timeout=5)
    async with room, serve(connector) as server:
        host, port = server.app.address("tcp")
        for line in (f"connect {host}:{port}", "routes", "routes room", "routes nope"):
            assert await cli.execute(line)
        await cli.close()
    lines = out.getvalue().splitlines()
    everything = lines[1 : lines.index("routes of server type 'room' (through 'connector'):", 2)]
    assert everything[0] == "routes of server type 'connector':"
    assert any(line.split()[:2] == ["request", "entry.info"] for line in everything)
    rooms = lines[len(everything) + 1 :]
    first, second = (i for i, line in enumerate(rooms) if line.startswith("routes of"))
    assert rooms[first] == rooms[second] == "routes of server type 'room' (through 'connector'):"
    assert rooms[first + 1 : second] == rooms[second + 1 : -1]  # `routes` == `routes room`
    listed = [line.split()[1] for line in rooms[first + 1 : second]]
    assert {"room.room.join", "room.room.message", "room.room.whoami", "room.sys.docs"} <= set(
        listed
    ), listed
    assert 'input {"name":"string"}' in rooms[first + 1 + listed.index("room.room.join")]
    assert rooms[-1].startswith("error: no routes of server type 'nope' through 'connector' (")
    assert "server types: connector, room" in rooms[-1]
