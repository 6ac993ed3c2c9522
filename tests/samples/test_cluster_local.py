"""``python -m samples.cluster local``: the whole sample cluster on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

from transport.client import Client

ROOT = Path(__file__).resolve().parents[2]


async def test_the_local_cluster_says_where_it_listens_when_given_port_0() -> None:
    """With ``--tcp-port 0 --ws-port 0`` (any free ports) the banner said ``127.0.0.1:0``
    and ``http://127.0.0.1:0/``: the ports asked for, not the connector's."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "samples.cluster", "local", "--tcp-port", "0", "--ws-port", "0",
        cwd=ROOT, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert process.stderr is not None
    lines: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(60):
            while not lines or "add a room:" not in lines[-1]:
                raw = await process.stderr.readline()
                assert raw, "exited early:\n" + "\n".join(lines[-30:])
                lines.append(raw.decode(errors="replace").rstrip())

        async def keep_reading(stream: asyncio.StreamReader) -> None:
            while await stream.readline():  # the servers keep logging: never a full pipe
                pass

        drain = asyncio.get_running_loop().create_task(keep_reading(process.stderr))
        banner = "\n".join(lines[-6:])
        tcp = re.search(r"^  TCP +127\.0\.0\.1:(\d+) ", banner, re.M)
        page = r"^  WebSocket +ws://127\.0\.0\.1:(\d+)/ +\(chat page: (\S+)\)"
        ws = re.search(page, banner, re.M)
        assert tcp and ws, banner
        assert int(tcp.group(1)) != 0 and int(ws.group(1)) != 0, banner
        assert ws.group(2) == f"http://127.0.0.1:{ws.group(1)}/"
        for port, websocket in ((int(tcp.group(1)), False), (int(ws.group(1)), True)):
            client = await Client.connect("127.0.0.1", port, websocket=websocket)
            assert (await client.request("room.room.whoami"))["server_id"].startswith("room-")
            await client.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        if drain is not None:
            await drain
