"""A cluster server that cannot reach NATS or etcd at start-up: one clear line, exit 1.

Real server processes (the cluster sample's ``room``) pointed at closed ports; the line names
the service, the address and the cause, never a password, and there is no traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys

from tests.services import NatsServer, free_port


async def start_room(nats: str, etcd: str) -> tuple[int, list[str]]:
    """Run ``python -m samples.cluster room``; (exit code, stderr lines)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "samples.cluster", "room", "--id", "room-9",
        "--nats", nats, "--etcd", etcd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PITAYA_CLUSTER_CONNECT_TIMEOUT": "1", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace").splitlines()


async def test_nats_unreachable() -> None:
    nats_port, etcd_port = free_port(), free_port()  # nothing listens on either
    code, lines = await start_room(
        f"nats://ann:s3cret@127.0.0.1:{nats_port}", f"127.0.0.1:{etcd_port}"
    )
    assert code == 1, lines
    assert lines[-1] == (
        f"room-9 cannot start: cannot reach NATS at nats://***@127.0.0.1:{nats_port}: no "
        f"connection within 1 s (127.0.0.1:{nats_port}: connection refused)"
    ), lines
    assert not any("Traceback" in line or "s3cret" in line for line in lines), lines


async def test_etcd_unreachable(nats_server: NatsServer) -> None:
    etcd_port = free_port()
    code, lines = await start_room(nats_server.url, f"127.0.0.1:{etcd_port}")
    assert code == 1, lines
    prefix = f"room-9 cannot start: cannot reach etcd at 127.0.0.1:{etcd_port}: "
    assert lines[-1].startswith(prefix), lines
    assert "connection refused" in lines[-1].lower(), lines[-1]  # the cause etcd's client gave
    assert not any("Traceback" in line for line in lines), lines
