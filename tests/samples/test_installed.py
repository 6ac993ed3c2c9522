"""The samples from an installed package: console scripts run outside the repository.

One virtualenv per module: the package is built from a copy of the checkout and installed
with ``--no-deps``; the dependencies come from the running interpreter's site-packages (a
``.pth`` line, which does not pull in its editable install of this checkout). Every process
runs in a temporary directory with no ``PYTHONPATH``, so nothing is imported from the tree.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from transport.client import Client

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("actors", "transport", "samples", "pyproject.toml", "README.md")


@dataclass(frozen=True)
class Installed:
    venv: Path
    cwd: Path  # not the repository: nothing importable from here
    env: dict[str, str]

    def script(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("installed")
    source = base / "src"
    source.mkdir()
    for name in SHIPPED:  # a copy: the build writes build/ and *.egg-info next to the sources
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (site / "site-packages" / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(source)],
        check=True,
        cwd=base,
    )
    cwd = base / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    yield Installed(venv, cwd, env)


def test_samples_are_imported_from_the_installed_package(installed: Installed) -> None:
    where = subprocess.run(
        [
            installed.script("python"),
            "-c",
            "import samples.chat.static as s, samples.cluster as c; "
            "print(s.WEB_DIR); print(c.__file__)",
        ],
        cwd=installed.cwd,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(installed.venv)) for path in where), where
    web = Path(where[0])
    assert {"index.html", "chat.js", "pitaya-client.js"} <= {p.name for p in web.iterdir()}
    assert (Path(where[1]).parent / "launch.toml").is_file()
    for script in ("pitaya-chat", "pitaya-cluster", "pitaya-echo", "pitaya-cli"):
        usage = subprocess.run(
            [installed.script(script), "--help"],
            cwd=installed.cwd,
            env=installed.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert usage.startswith(f"usage: {script} "), usage


async def start(installed: Installed, *argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        installed.script(argv[0]),
        *argv[1:],
        cwd=installed.cwd,
        env=installed.env,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # a kill at the end reaches what it started, too
    )


async def read_until(process: asyncio.subprocess.Process, text: str, seen: list[str]) -> None:
    assert process.stderr is not None
    while True:
        raw = await asyncio.wait_for(process.stderr.readline(), 30)
        assert raw, "exited early:\n" + "\n".join(seen[-30:])
        seen.append(raw.decode(errors="replace").rstrip())
        if text in seen[-1]:
            return


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    assert process.returncode is not None
    return process.returncode


def get(port: int, path: str = "/") -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


async def test_pitaya_chat_runs_outside_the_repository(installed: Installed) -> None:
    tcp_port, ws_port = free_port(), free_port()
    process = await start(
        installed, "pitaya-chat", "--tcp-port", str(tcp_port), "--ws-port", str(ws_port)
    )
    try:
        await read_until(process, "] started (", [])
        status, page = await asyncio.to_thread(get, ws_port)
        assert status == 200 and "<title>pitaya-actors chat</title>" in page
        assert "pitaya-route-prefix" not in page  # standalone: the routes as they are
        client = await Client.connect("127.0.0.1", tcp_port)
        assert await client.request("room.join", {"name": "ann"}) == {
            "result": "success",
            "members": ["ann"],
        }
        await client.close()
        assert await stop(process) == 0
    finally:
        await stop(process)


@pytest.mark.skipif(not shutil.which("nats-server"), reason="needs nats-server")
async def test_pitaya_cluster_local_runs_outside_the_repository(installed: Installed) -> None:
    """``pitaya-cluster local``: prints where NATS and etcd are, serves the chat page on the
    connector, forwards the chat routes, and leaves no process behind on SIGTERM."""
    tcp_port, ws_port = free_port(), free_port()
    process = await start(
        installed, "pitaya-cluster", "local", "--tcp-port", str(tcp_port), "--ws-port", str(ws_port)
    )
    children: list[psutil.Process] = []
    try:
        log: list[str] = []
        await read_until(process, "add a room:", log)
        text = "\n".join(log)
        nats = re.search(r"^  NATS +(nats://127\.0\.0\.1:\d+)$", text, re.M)
        etcd = re.search(r"^  etcd +(127\.0\.0\.1:\d+)$", text, re.M)
        assert nats and etcd, text
        children = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert nats.group(1).rsplit(":", 1)[1] in names  # the addresses it started
        assert etcd.group(1) in names

        status, page = await asyncio.to_thread(get, ws_port)
        assert status == 200 and '<meta name="pitaya-route-prefix" content="room.">' in page
        status, script = await asyncio.to_thread(get, ws_port, "/chat.js")
        assert status == 200 and "${routePrefix}room.join" in script

        ann = await Client.connect("127.0.0.1", ws_port, websocket=True)
        joined = await ann.request("room.room.join", {"name": "ann"})
        assert joined == {"result": "success", "members": ["ann"]}
        await ann.notify("room.room.message", {"content": "hi"})
        async with asyncio.timeout(10):
            async for push in ann.pushes():
                if push.route == "onMessage":
                    assert push.body == {"name": "ann", "content": "hi"}
                    break
        await ann.close()
        assert await stop(process) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, alive
    finally:
        await stop(process)
        for child in children:
            if child.is_running():
                child.kill()
