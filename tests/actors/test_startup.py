"""``actors.startup``: the one line a server that cannot start prints (see also
``tests/cluster/test_startup_failures.py``, with real processes)."""

from __future__ import annotations

import socket

import pytest

from actors.cluster.discovery import ServerInfo
from actors.startup import EXIT_ID_HELD, describe_startup_failure, mask_credentials
from actors.testing import MemoryCluster, cluster_app


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("nats://ann:s3cret@h:4222", "nats://***@h:4222"),
        ("nats://u:p@a:1,nats://token@b:2", "nats://***@a:1,nats://***@b:2"),
        ("at root:pw@127.0.0.1:2379: refused", "at ***@127.0.0.1:2379: refused"),
        ("(tls://u:p@h:1)", "(tls://***@h:1)"),
        ("mail ann@example.com, path http://h:1/a@b", "mail ann@example.com, path http://h:1/a@b"),
        ("etcd at 127.0.0.1:2379: no", "etcd at 127.0.0.1:2379: no"),
    ],
)
def test_mask_credentials(text: str, masked: str) -> None:
    assert mask_credentials(text) == masked


def raised(message: str, cause: BaseException | None) -> Exception:
    try:
        raise RuntimeError(message) from cause
    except RuntimeError as exc:
        return exc


def test_an_empty_reason_is_filled_in_from_a_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        error = raised(f"cannot reach NATS at nats://u:p@127.0.0.1:{port}: ", TimeoutError())
        assert describe_startup_failure(error, 2.5) == (
            f"cannot reach NATS at nats://***@127.0.0.1:{port}: no connection within 2.5 s "
            f"(127.0.0.1:{port}: connection refused)"
        )


def test_other_causes_and_none() -> None:
    assert describe_startup_failure(raised("x at y:", OSError("boom\nagain")), 1) == (
        "x at y: boom again"
    )
    assert describe_startup_failure(raised("x:", KeyError()), 1) == "x: KeyError"
    assert describe_startup_failure(raised("", None), 1) == "no reason given"
    assert describe_startup_failure(raised("a\n  b: c", None), 1) == "a b: c"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_refused_server_id_exits_75_with_its_line(
    log_format: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Every start-up failure exited 1, so a supervisor could not tell "the id is still held
    (the lease of the process this one replaces): try again soon" from a crash. 75
    (EX_TEMPFAIL) says it; the line is the same."""
    network = MemoryCluster()
    network.servers["room-1"] = ServerInfo("room-1", "room")  # held by another server
    app = cluster_app(network, "room", server_id="room-1", frontend=False, log_format=log_format)
    with pytest.raises(SystemExit) as exited:
        app.run()
    line = "room-1 cannot start: a server with id room-1 is already registered"
    if log_format == "text":
        assert exited.value.code == EXIT_ID_HELD == 75
        assert capsys.readouterr().err.splitlines()[-1] == line
    else:  # the line went out as a log record (one JSON line)
        assert exited.value.code == EXIT_ID_HELD
        assert line in caplog.messages
