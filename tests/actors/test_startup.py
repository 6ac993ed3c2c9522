"""``actors.startup``: the one line a server that cannot start prints (see also
``tests/cluster/test_startup_failures.py``, with real processes)."""

from __future__ import annotations

import socket

import pytest

from actors.startup import describe_startup_failure, mask_credentials


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
