"""The launcher's TOML format: expansion of counts, placeholders and overrides; clear errors."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from actors.config import Config
from actors.launch import (
    KeeperSettings,
    LaunchConfigError,
    ServerCommand,
    load_config,
    parse_config,
)

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
        ({"servers": [{"module": "m", "reuse_port": 1}]}, "'reuse_port'"),
        ({"launcher": {"stop_timeot": 5}, "servers": [{"module": "m"}]}, "unknown key"),
        ({"launcher": {"admin_port": 65536}, "servers": [{"module": "m"}]}, "admin_port"),
        ({"launcher": {"cwd": 5}, "servers": [{"module": "m"}]}, "cwd must be a string"),
        ({"vars": "nats", "servers": [{"module": "m"}]}, "\\[vars\\] must be a table"),
        ({"servers": ["m"]}, "#1: must be a table"),
        ({"servers": [{"module": "m", "args": "room"}]}, "'args'"),
        ({"servers": [{"module": "m", "count": "2"}]}, "'count'"),
        ({"servers": [{"module": "m", "ports": [3250]}]}, "'ports'"),
        ({"servers": [{"module": "m", "env": "A=1"}]}, "env: must be a table of strings"),
        ({"servers": [{"module": "m", "stop_timeout": True}]}, "stop_timeout must be"),
        ({"servers": [{"module": "m", "stop_timeout": "5"}]}, "stop_timeout must be"),
        ({"servers": [{"module": "m", "args": ["{n[5]}"]}]}, "bad template"),
        ({"servers": [{"module": "m", "args": ["{"]}]}, "bad template"),
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


@pytest.mark.parametrize(
    ("data", "variables", "launcher_env", "retries"),
    [
        pytest.param({}, {}, "30", [10.0], id="the launcher's own environment"),
        pytest.param({"env": {"PITAYA_ETCD_LEASE_TTL": "15"}}, {}, "30", [5.0], id="[env]"),
        pytest.param(
            {"server_env": {"PITAYA_ETCD_LEASE_TTL": "6"}}, {}, "30", [2.0], id="its own env"
        ),
        pytest.param(
            {"vars": {"ttl": "9"}, "server_env": {"PITAYA_ETCD_LEASE_TTL": "{ttl}"}},
            {},
            None,
            [3.0],
            id="a [vars] placeholder",
        ),
        pytest.param(
            {"vars": {"ttl": "9"}, "env": {"PITAYA_ETCD_LEASE_TTL": "{ttl}"}},
            {"ttl": "12"},
            None,
            [4.0],
            id="a --var placeholder",
        ),
        pytest.param(
            {"count": 2, "server_env": {"PITAYA_ETCD_LEASE_TTL": "{n}5"}},
            {},
            None,
            [5.0, 8.333333333333334],
            id="an instance's placeholder",
        ),
    ],
)
def test_a_held_id_is_retried_at_the_pace_of_the_lease_ttl_the_server_gets(
    monkeypatch: pytest.MonkeyPatch,
    data: dict[str, Any],
    variables: dict[str, str],
    launcher_env: str | None,
    retries: list[float],
) -> None:
    """Each place a server's ``PITAYA_ETCD_LEASE_TTL`` can come from in a launch file sets
    its ``held_id_retry`` (a third of it). A TTL written with a placeholder (``{ttl}`` from
    [vars] or ``--var``, ``{n}``) was read unfilled, refused as a number, and the retry was
    that of the default 60 s TTL (20 s) while the server's lease lasted 9 s."""
    if launcher_env is None:
        monkeypatch.delenv("PITAYA_ETCD_LEASE_TTL", raising=False)
    else:
        monkeypatch.setenv("PITAYA_ETCD_LEASE_TTL", launcher_env)
    entry: dict[str, Any] = {"name": "s-{n}", "module": "m", "count": data.get("count", 1)}
    if "server_env" in data:
        entry["env"] = data["server_env"]
    document = {key: data[key] for key in ("vars", "env") if key in data}
    config = parse_config({**document, "servers": [entry]}, variables)
    assert [s.settings.held_id_retry for s in config.servers] == retries
    told = parse_config({**document, "servers": [{**entry, "held_id_retry": 7}]}, variables)
    assert {s.settings.held_id_retry for s in told.servers} == {7.0}  # set: kept


def test_a_drain_written_with_placeholders_is_checked_as_the_server_gets_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drain warning reads the filled-in environment too (a placeholder read unfilled
    was no switch, and the warning was skipped)."""
    parse_config(
        {
            "vars": {"drain": "1"},
            "servers": [{"module": "m", "count": 2, "env": {"PITAYA_DRAIN_SESSIONS": "{drain}"}}],
        }
    )
    assert caplog.messages == [
        "<config> [[servers]] #1: drains its sessions for up to 73 s (drain_timeout + "
        "shutdown_timeout + 3 s of grace) but is killed 20 s after SIGTERM (stop_timeout): "
        "raise stop_timeout"
    ]


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

    parse_config(servers({"PITAYA_DRAIN_SESSIONS": "1"}))  # 60 + 10 + 3 s against 20 s
    parse_config(servers({"PITAYA_DRAIN_SESSIONS": "1"}, stop_timeout=75))
    parse_config(servers({"PITAYA_DRAIN_SESSIONS": "0"}))
    parse_config(
        servers({"PITAYA_DRAIN_SESSIONS": "yes", "PITAYA_DRAIN_TIMEOUT": "5"}, stop_timeout=18)
    )
    assert caplog.messages == [
        "<config> [[servers]] #1: drains its sessions for up to 73 s (drain_timeout + "
        "shutdown_timeout + 3 s of grace) but is killed 20 s after SIGTERM (stop_timeout): "
        "raise stop_timeout"
    ]


def test_the_drain_warning_counts_the_stops_grace_past_shutdown_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """5 s of drain and 10 s of stop fit in 17 s, but the stop may run its grace (cancelled
    handlers' answers, close callbacks' least time) past shutdown_timeout: 18 s."""
    from actors.launch import config as launch_config
    from actors.lifecycle import STOP_GRACE

    assert launch_config.STOP_GRACE == STOP_GRACE  # the launcher's copy (it loads no server)
    env = {"PITAYA_DRAIN_SESSIONS": "1", "PITAYA_DRAIN_TIMEOUT": "5"}
    parse_config({"servers": [{"name": "c", "module": "m", "env": env, "stop_timeout": 17}]})
    assert caplog.messages == [
        "<config> [[servers]] #1: drains its sessions for up to 18 s (drain_timeout + "
        "shutdown_timeout + 3 s of grace) but is killed 17 s after SIGTERM (stop_timeout): "
        "raise stop_timeout"
    ]


def readme_launch_block() -> dict[str, Any]:
    """The README's launch file, whose ``[launcher]`` lists every option with its default."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = text[text.index("```toml\n[launcher]") + len("```toml\n") :]
    return tomllib.loads(block[: block.index("```")])


def test_the_launcher_defaults_are_those_the_readme_lists() -> None:
    """A server without a [launcher] table gets what the README says it gets (with the
    default lease TTL: the block's own ``[env]`` shortens it, and ``held_id_retry`` follows
    the TTL unless set, as the block says)."""
    documented = {**readme_launch_block(), "env": {}}
    assert set(documented["launcher"]) == {
        "admin_port", "cwd", "log_dir", *KeeperSettings.__dataclass_fields__
    }  # fmt: skip
    without = {**documented, "launcher": {}}
    assert parse_config(documented) == parse_config(without)
    assert parse_config(without).servers[0].settings == KeeperSettings()


@pytest.mark.parametrize("policy", ["always", "on-failure", "never"])
def test_every_restart_policy_is_accepted(policy: str) -> None:
    config = parse_config({"servers": [{"module": "m", "restart": policy}]})
    assert config.servers[0].settings.restart == policy


def test_the_edges_of_what_is_accepted() -> None:
    config = parse_config(
        {
            "launcher": {"admin_port": 65535, "cwd": "/srv/game", "stop_timeout": 0},
            "servers": [{"module": "m", "count": 2, "backoff_initial": 0}],
        }
    )
    assert config.admin_port == 65535
    assert [s.cwd for s in config.servers] == ["/srv/game", "/srv/game"]
    assert config.servers[0].settings.stop_timeout == 0.0
    assert config.servers[0].settings.backoff_initial == 0.0


def test_a_var_cannot_change_the_instance_placeholders() -> None:
    """{n} and {i} number the instances, whatever [vars] or --var define."""
    config = parse_config(
        {"vars": {"n": "x"}, "servers": [{"name": "s-{n}", "module": "m", "args": ["{i}"]}]},
        {"i": "y"},
    )
    assert (config.names, config.servers[0].argv[-1]) == (["s-1"], "0")


@pytest.mark.parametrize("value", ["1", " Yes ", "TRUE", "on", "0", "off", " No ", None])
def test_the_launcher_reads_drain_sessions_as_the_server_does(value: str | None) -> None:
    """The launcher stops the servers that drain first: it must agree with each server on
    which ones do."""
    env = {} if value is None else {"PITAYA_DRAIN_SESSIONS": value}
    command = ServerCommand("s", ("python",), env=tuple(env.items()))
    assert command.drains is Config.from_env(env).drain_sessions


def test_only_a_draining_server_is_warned_about_its_stop_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parse_config(
        {
            "servers": [
                {"module": "a", "stop_timeout": 1},  # drains not: killed at once is fine
                {"module": "b", "stop_timeout": 1, "env": {"PITAYA_DRAIN_SESSIONS": "1"}},
            ]
        }
    )
    assert [m.split(":")[0] for m in caplog.messages] == ["<config> [[servers]] #2"]


@pytest.mark.parametrize(
    ("env", "stop_timeout"),
    [
        ({}, 73),  # 60 + 10 + 3 s of grace: just enough
        ({"PITAYA_DRAIN_TIMEOUT": "5", "PITAYA_SHUTDOWN_TIMEOUT": "2.5"}, 10.5),
        ({"PITAYA_DRAIN_TIMEOUT": "soon"}, 1),  # the server itself refuses it
    ],
)
def test_a_draining_server_given_enough_time_or_unreadable_timeouts_is_not_warned_about(
    caplog: pytest.LogCaptureFixture, env: dict[str, str], stop_timeout: float
) -> None:
    env = {"PITAYA_DRAIN_SESSIONS": "1", **env}
    parse_config({"servers": [{"module": "m", "env": env, "stop_timeout": stop_timeout}]})
    assert caplog.messages == []
