"""Options that cannot work stop ``App.run`` with one line and status 1, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from actors.app import App
from actors.config import ConfigError

SERVER = textwrap.dedent(
    """
    import sys
    from actors.app import App
    from actors.handler import Handler, handler

    class Echo(Handler):
        @handler
        def echo(self, session, body):
            return body

    app = App(server_type="echo", server_id="echo-1", **eval(sys.argv[1]))
    app.register(Echo)
    app.listen_tcp("127.0.0.1", 0)
    app.run()
    """
)


def run(options: dict[str, object], environ: dict[str, str] | None = None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITAYA_")} | (environ or {})
    done = subprocess.run(
        [sys.executable, "-c", SERVER, repr(options)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "clustered"}, "mode must be 'standalone' or 'cluster', not 'clustered'"),
        ({"event_loop": "trio"}, "event_loop must be one of auto, asyncio, uvloop, not 'trio'"),
        ({"rate_limit_action": "ban"}, "rate_limit_action must be one of"),
        (
            {"mode": "cluster", "rpc_transport": "grpc", "grpc_tls_ca": "ca.pem"},
            "gRPC mutual TLS needs grpc_tls_ca, grpc_tls_cert and grpc_tls_key together",
        ),
    ],
)
def test_an_option_that_cannot_work_is_one_line_and_status_1(
    options: dict[str, object], message: str
) -> None:
    status, stderr = run(options)
    assert status == 1
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("echo-1 cannot start: ") and message in line


async def test_config_errors_are_value_errors_for_code_that_starts_the_app_itself() -> None:
    app = App(mode="clustered")
    with pytest.raises(ValueError, match="mode must be") as caught:
        await app.start()
    assert isinstance(caught.value, ConfigError)
