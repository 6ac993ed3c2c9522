"""Options that cannot work stop ``App.run`` with one line and status 1, not a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from actors.app import App
from actors.config import Config, ConfigError, check_config, misspelt_env

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
    app.listen_tcp("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    app.run()
    """
)


def run(
    options: dict[str, object], environ: dict[str, str] | None = None, port: int = 0
) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITAYA_")} | (environ or {})
    done = subprocess.run(
        [sys.executable, "-c", SERVER, repr(options), str(port)],
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
            {"unknown_body_fields": "drop"},
            "unknown_body_fields must be one of refuse, ignore, not 'drop'",
        ),
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


def test_a_port_in_use_is_one_line_and_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = run({}, port=port)
    assert status == 1
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("echo-1 cannot start: ") and "address already in use" in line, line


def test_with_json_logs_the_line_that_stops_the_start_is_json_too() -> None:
    status, stderr = run({"log_format": "json", "mode": "clustered"})
    assert status == 1
    record = json.loads(stderr.strip().splitlines()[-1])
    assert record["level"] == "CRITICAL"
    assert record["message"].startswith("echo-1 cannot start: mode must be 'standalone'")


def test_a_misspelt_environment_variable_is_told() -> None:
    """A typo left the default in place without a word."""
    status, stderr = run(
        {"mode": "clustered"},
        {
            "PITAYA_HEARTBEAT_INTERVALL": "5",
            # Go Pitaya's own, in an environment shared with Go servers: not typos of ours.
            "PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT": "nats://127.0.0.1:4222",
            "PITAYA_GROUPS_ETCD_ENDPOINTS": "x",
            "PITAYA_SERIALIZERTYPE": "1",
        },
    )
    assert status == 1
    warnings = [line for line in stderr.splitlines() if "names no option" in line]
    assert len(warnings) == 1, stderr  # a Go Pitaya variable, far from every option: quiet
    assert warnings[0].endswith(
        "PITAYA_HEARTBEAT_INTERVALL names no option: did you mean PITAYA_HEARTBEAT_INTERVAL?"
    )


async def test_config_errors_are_value_errors_for_code_that_starts_the_app_itself() -> None:
    app = App(mode="clustered")
    with pytest.raises(ValueError, match="mode must be") as caught:
        await app.start()
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"heartbeat_interval": -1}, "heartbeat_interval must be a number >= 0, not -1"),
        ({"heartbeat_interval": "abc"}, "heartbeat_interval must be a number >= 0, not 'abc'"),
        ({"rpc_timeout": 0}, "rpc_timeout must be a number > 0, not 0"),
        ({"shutdown_timeout": float("nan")}, "shutdown_timeout must be a number >= 0, not nan"),
        ({"max_pending_requests": 0}, "max_pending_requests must be a whole number > 0, not 0"),
        ({"max_packet_size": 1.5}, "max_packet_size must be a whole number > 0, not 1.5"),
        ({"max_connections": True}, "max_connections must be a whole number > 0, not True"),
        (
            {"metrics_prometheus_port": 70000},
            "metrics_prometheus_port must be a whole number >= 0 and <= 65535 (a port), not 70000",
        ),
        ({"metrics_statsd_rate": 2.0}, "metrics_statsd_rate is the fraction of reports sent"),
        (
            {"max_packet_size": 4096, "max_partial_bytes": 8199},
            "max_partial_bytes (8199) must be at least twice max_packet_size + 4 (8200)",
        ),
        ({"max_partial_bytes": 0}, "max_partial_bytes must be a whole number > 0, not 0"),
    ],
)
async def test_a_number_out_of_its_range_or_of_another_type_stops_the_start(
    options: dict[str, object], message: str
) -> None:
    app = App(**options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        await app.start()
    assert str(caught.value).startswith(message)
    assert not app.ready_now()


async def test_the_environment_is_checked_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITAYA_HEARTBEAT_INTERVAL", "-1")
    app = App()
    with pytest.raises(ConfigError, match=r"heartbeat_interval must be a number >= 0, not -1\.0"):
        await app.start()


def test_options_in_seconds_take_go_durations_in_code_as_in_the_environment() -> None:
    config = App(heartbeat_interval="10s", rpc_timeout="500ms", etcd_lease_ttl="1m").config
    assert (config.heartbeat_interval, config.rpc_timeout) == (10.0, 0.5)
    assert config.etcd_lease_ttl == 60 and type(config.etcd_lease_ttl) is int
    check_config(config)


async def test_a_go_duration_an_option_cannot_hold_stops_the_start() -> None:
    app = App(etcd_lease_ttl="1.5s")  # a whole number of seconds
    with pytest.raises(ConfigError) as caught:
        await app.start()
    assert str(caught.value) == "etcd_lease_ttl must be a whole number > 0, not '1.5s'"


@pytest.mark.parametrize(
    ("server_type", "message"),
    [
        (
            "game.eu",
            "server_type 'game.eu' has a dot: routes are [serverType.]service.method, split "
            "at the dots, so no route would reach its servers (name it 'game_eu', say)",
        ),
        ("", "server_type must not be empty: routes name a server type ([serverType.]...)"),
    ],
)
async def test_a_server_type_no_route_could_name_stops_the_start(
    server_type: str, message: str
) -> None:
    app = App(server_type=server_type)
    with pytest.raises(ConfigError) as caught:
        await app.start()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (
            {"region": "eu", "capacity": 100},
            "metadata 'capacity': 100 is not a string: keys and values are strings, as Go "
            "Pitaya reads them (a Go server would skip this server)",
        ),
        (
            {"beta": True},
            "metadata 'beta': True is not a string: keys and values are strings, as Go "
            "Pitaya reads them (a Go server would skip this server)",
        ),
        (
            {1: "one"},
            "metadata 1: 'one' is not a string: keys and values are strings, as Go Pitaya "
            "reads them (a Go server would skip this server)",
        ),
    ],
)
async def test_discovery_metadata_go_cannot_read_stops_the_start(
    metadata: dict[object, object], message: str
) -> None:
    """Go Pitaya reads a server's etcd entry into map[string]string: a number or a bool in
    it fails the whole entry, and every Go server skips ours (its log says so, ours nothing)."""
    app = App(server_type="room", metadata=metadata)
    with pytest.raises(ConfigError) as caught:
        await app.start()
    assert str(caught.value) == message
    check_config(Config(server_type="room", metadata={"region": "eu", "grpcPort": "3434"}))


async def test_zero_is_taken_where_it_means_something() -> None:
    app = App(heartbeat_interval=0, shutdown_timeout=0, drain_timeout=0, gc_threshold=0)
    app.listen_tcp("127.0.0.1", 0)
    await app.start()
    try:
        assert app.ready_now()
    finally:
        await app.stop()


def test_misspelt_env_names_near_misses_only() -> None:
    assert misspelt_env(
        {
            "PITAYA_HEARTBEAT_INTERVAL": "5",  # right
            "HEARTBEAT_INTERVALL": "5",  # not ours: no prefix
            "PITAYA_HEARTBEAT_INTERVL_": "5",  # two letters off a long name
            "PITAYA_MDE": "x",  # one letter off a short name
            "PITAYA_MOOD": "x",  # two letters off a short name: not taken for it
            "PITAYA_RPC_TIMEOUTS": "1",  # nearest of several options
        }
    ) == [
        ("PITAYA_HEARTBEAT_INTERVL_", "PITAYA_HEARTBEAT_INTERVAL"),
        ("PITAYA_MDE", "PITAYA_MODE"),
        ("PITAYA_RPC_TIMEOUTS", "PITAYA_RPC_TIMEOUT"),
    ]


def test_max_partial_bytes_may_be_exactly_twice_a_packet_and_its_header() -> None:
    check_config(Config(max_packet_size=4096, max_partial_bytes=2 * (4096 + 4)))
