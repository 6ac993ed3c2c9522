"""The test services themselves: a port taken between choosing it and binding it is chosen
again on the first start (it made a test fail now and then: etcd's ``bind: address already in
use``); a restart keeps its ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import tests.services as services
from tests.services import EtcdServer, NatsServer, PortTaken, RedisServer, ServiceProcess


@pytest.fixture
def taken_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A port something listens on, handed out as the next "free" port (once)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port: int = holder.getsockname()[1]
        handed = iter([port])
        real = services.free_port
        monkeypatch.setattr(services, "free_port", lambda: next(handed, None) or real())
        yield port


@pytest.mark.parametrize("kind", [NatsServer, EtcdServer, RedisServer])
def test_a_taken_port_is_chosen_again_on_first_start(
    kind: type[ServiceProcess], taken_port: int
) -> None:
    server = kind()
    assert server.ready_port == taken_port  # the port its clients use
    try:
        server.start()
        assert server.running
        now = server.ready_port
        assert now is not None and now != taken_port
        with socket.create_connection(("127.0.0.1", now), timeout=2):
            pass
    finally:
        server.close()


def test_a_stopped_service_leaves_no_pipe_open() -> None:
    """Its stderr pipe was left to the collector: a ResourceWarning in whichever test ran
    when it was collected."""
    server = NatsServer()
    try:
        server.start()
        process, pump = server.process, server.pump
        assert process is not None and process.stderr is not None and pump is not None
        server.stop()
        pump.join(10)  # it reads until the process's end of the pipe is gone
        assert not pump.is_alive() and process.stderr.closed
    finally:
        server.close()


def test_a_restart_keeps_its_port_and_says_when_it_is_taken() -> None:
    server = NatsServer()
    try:
        server.start()
        port = server.port
        server.stop()
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", port))
            holder.listen()
            with pytest.raises(PortTaken, match="address already in use"):
                server.start()
        assert server.port == port
        server.start()
        assert server.running and server.port == port
    finally:
        server.close()


def test_a_missing_redis_server_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    monkeypatch.setattr(services.os.path, "exists", lambda path: False)
    with pytest.raises(RuntimeError, match=r"apt-get install redis-server"):
        RedisServer()


def test_redis_takes_a_password_and_keeps_nothing_on_disk() -> None:
    server = RedisServer(password="s3cret")
    try:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(100).startswith(b"-NOAUTH")
            sock.sendall(b"AUTH s3cret\r\nCONFIG GET save\r\n")
            answer = b""
            while b"save" not in answer or not answer.endswith(b"\r\n"):
                answer += sock.recv(100)
            assert answer.startswith(b"+OK") and answer.endswith(b"$0\r\n\r\n")
    finally:
        server.close()
