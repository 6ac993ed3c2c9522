"""The launcher's TOML format: expansion of counts, placeholders and overrides; clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from actors.launch import KeeperSettings, LaunchConfigError, load_config, parse_config

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "cluster" / "launch.toml"


def test_servers_expand_per_instance_with_ports_vars_and_overrides() -> None:
    config = parse_config(
        {
            "launcher": {"stop_timeout": 7, "backoff_initial": 0.25, "log_dir": "logs"},
            "vars": {"nats": "nats://n:4222"},
            "env": {"COMMON": "1", "NATS": "{nats}"},
            "servers": [
                {
                    "name": "connector-{n}",
                    "module": "samples.cluster",
                    "args": ["connector", "--id", "connector-{n}", "--tcp-port", "{tcp}"],
                    "count": 2,
                    "ports": {"tcp": 3250},
                    "env": {"COMMON": "2"},
                    "restart": "on-failure",
                },
                {"module": "samples.cluster", "args": ["room", "--nats", "{nats}", "--i", "{i}"]},
            ],
        },
        {"nats": "nats://override:4222"},
    )
    first, second, room = config.servers
    assert config.names == ["connector-1", "connector-2", "samples.cluster-1"]
    assert first.argv == (
        sys.executable, "-m", "samples.cluster", "connector", "--id", "connector-1",
        "--tcp-port", "3250",
    )  # fmt: skip
    assert second.argv[-1] == "3251"
    assert dict(first.env) == {"COMMON": "2", "NATS": "nats://override:4222"}
    assert room.argv[-3:] == ("nats://override:4222", "--i", "0")
    assert first.log_file == str(Path("logs") / "connector-1.log")
    assert first.settings == KeeperSettings(
        stop_timeout=7.0, backoff_initial=0.25, restart="on-failure"
    )
    assert room.settings.restart == "always"
    assert config.admin_port == 0


def test_reuse_port_gives_every_instance_the_same_ports_and_the_env_switch() -> None:
    config = parse_config(
        {
            "servers": [
                {
                    "name": "connector-{n}",
                    "module": "samples.cluster",
                    "args": ["connector", "--tcp-port", "{tcp}", "--ws-port", "{ws}"],
                    "count": 3,
                    "ports": {"tcp": 3250, "ws": 3260},
                    "reuse_port": True,
                },
                {"name": "room", "module": "samples.cluster", "ports": {"tcp": 4000}},
            ]
        }
    )
    *connectors, room = config.servers
    assert [c.argv[-3:] for c in connectors] == [("3250", "--ws-port", "3260")] * 3
    assert all(dict(c.env)["PITAYA_REUSE_PORT"] == "1" for c in connectors)
    assert "PITAYA_REUSE_PORT" not in dict(room.env)


def test_backoff_doubles_up_to_the_maximum() -> None:
    settings = KeeperSettings(backoff_initial=0.5, backoff_max=3.0)
    assert [settings.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert KeeperSettings(restart="on-failure").should_restart(0) is False
    assert KeeperSettings(restart="on-failure").should_restart(-9) is True
    assert KeeperSettings(restart="never").should_restart(1) is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"servers": []}, "no \\[\\[servers\\]\\]"),
        ({"servers": [{"args": []}]}, "'module'"),
        ({"servers": [{"module": "m", "args": ["{nope}"]}]}, "unknown placeholder \\{nope\\}"),
        ({"servers": [{"module": "m", "name": "x"}, {"module": "n", "name": "x"}]}, "twice"),
        ({"servers": [{"module": "m", "restart": "sometimes"}]}, "restart must be one of"),
        ({"servers": [{"module": "m", "count": 0}]}, "'count'"),
        ({"servers": [{"module": "m", "colour": "red"}]}, "unknown key"),
        ({"launcher": {"admin_port": -1}, "servers": [{"module": "m"}]}, "admin_port"),
        ({"servers": [{"module": "m", "reuse_port": "yes"}]}, "'reuse_port'"),
        ({"servers": [{"module": "m", "held_id_retry": 0}]}, "held_id_retry must be positive"),
    ],
)
def test_mistakes_name_the_entry(data: dict[str, object], message: str) -> None:
    with pytest.raises(LaunchConfigError, match=message):
        parse_config(data)


def test_a_held_id_is_retried_at_the_pace_of_its_lease_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server refused because its id is still held (exit status 75) is started again every
    third of its etcd lease TTL (its holder's keep-alive period), from its environment, the
    launcher's [env] or the launcher's own; ``held_id_retry`` sets it."""
    monkeypatch.delenv("PITAYA_ETCD_LEASE_TTL", raising=False)
    config = parse_config(
        {
            "env": {"PITAYA_ETCD_LEASE_TTL": "15"},
            "servers": [
                {"name": "common", "module": "m"},
                {"name": "own", "module": "m", "env": {"PITAYA_ETCD_LEASE_TTL": "3"}},
                {"name": "told", "module": "m", "held_id_retry": 2.5},
            ],
        }
    )
    assert [s.settings.held_id_retry for s in config.servers] == [5.0, 1.0, 2.5]
    assert parse_config({"servers": [{"module": "m"}]}).servers[0].settings.held_id_retry == 20.0
    monkeypatch.setenv("PITAYA_ETCD_LEASE_TTL", "30")  # the servers inherit it
    assert parse_config({"servers": [{"module": "m"}]}).servers[0].settings.held_id_retry == 10.0
    told = parse_config({"launcher": {"held_id_retry": 4}, "servers": [{"module": "m"}]})
    assert told.servers[0].settings.held_id_retry == 4.0


def test_the_shipped_sample_config_parses() -> None:
    config = load_config(SAMPLE)
    assert config.names == [
        "connector-1", "connector-2", "room-1", "room-2", "room-3", "room-4",
    ]  # fmt: skip
    assert "--tcp-port" in config.servers[1].argv and "3251" in config.servers[1].argv


def test_a_bad_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[[servers]\n")
    with pytest.raises(LaunchConfigError, match=r"broken\.toml"):
        load_config(path)


def test_a_draining_server_killed_before_its_drain_ends_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def servers(env: dict[str, str], **settings: object) -> dict[str, object]:
        return {"servers": [{"name": "c", "module": "m", "env": env, **settings}]}

    parse_config(servers({"PITAYA_DRAIN_SESSIONS": "1"}))  # 60 + 10 s against 20 s
    parse_config(servers({"PITAYA_DRAIN_SESSIONS": "1"}, stop_timeout=75))
    parse_config(servers({"PITAYA_DRAIN_SESSIONS": "0"}))
    parse_config(
        servers({"PITAYA_DRAIN_SESSIONS": "yes", "PITAYA_DRAIN_TIMEOUT": "5"}, stop_timeout=16)
    )
    assert caplog.messages == [
        "<config> [[servers]] #1: drains its sessions for up to 70 s (drain_timeout + "
        "shutdown_timeout) but is killed 20 s after SIGTERM (stop_timeout): raise stop_timeout"
    ]
