"""Go Pitaya's environment variables set the options they share with ours
(``actors.pitaya_env``): a Python server dropped into a Go Pitaya deployment's environment
joins the same NATS and etcd with the same timings."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import pitaya_env
from actors.app import App
from actors.config import Config, ConfigError, bindings_prefix, groups_prefix, misspelt_env
from actors.pitaya_env import duration_seconds
from actors.testing import TestClient

GO_DEPLOYMENT = {
    "PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT": "nats://nats.internal:4222",
    "PITAYA_CLUSTER_RPC_SERVER_NATS_CONNECT": "nats://nats.internal:4222",
    "PITAYA_CLUSTER_RPC_CLIENT_NATS_REQUESTTIMEOUT": "2500ms",
    "PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECTIONTIMEOUT": "3s",
    "PITAYA_CLUSTER_RPC_SERVER_GRPC_PORT": "3434",
    "PITAYA_CLUSTER_SD_ETCD_ENDPOINTS": "etcd-0:2379,etcd-1:2379",
    "PITAYA_CLUSTER_SD_ETCD_PREFIX": "game/",
    "PITAYA_CLUSTER_SD_ETCD_HEARTBEAT_TTL": "1m30s",
    "PITAYA_CLUSTER_SD_ETCD_SYNCSERVERS_INTERVAL": "2m",
    "PITAYA_HEARTBEAT_INTERVAL": "15s",
    "PITAYA_HANDLER_MESSAGES_COMPRESSION": "true",
    "PITAYA_SERIALIZERTYPE": "2",
    "PITAYA_CONN_RATELIMITING_LIMIT": "40",
    "PITAYA_CONN_RATELIMITING_INTERVAL": "2s",
    "PITAYA_SESSION_DRAIN_ENABLED": "t",
    "PITAYA_SESSION_UNIQUE": "true",
    "PITAYA_SESSION_DRAIN_TIMEOUT": "45s",
    "PITAYA_METRICS_PERIOD": "15s",
    "PITAYA_METRICS_PROMETHEUS_ENABLED": "true",
    "PITAYA_METRICS_PROMETHEUS_PORT": "9191",
    "PITAYA_METRICS_STATSD_HOST": "statsd.internal:8125",
    "PITAYA_METRICS_STATSD_PREFIX": "game.",
    "PITAYA_METRICS_STATSD_RATE": "0.5",
    "PITAYA_ACCEPTOR_PROXYPROTOCOL": "1",
    "PITAYA_WORKER_CONCURRENCY": "4",
    "PITAYA_WORKER_REDIS_URL": "redis.internal:6379",
    "PITAYA_WORKER_RETRY_MINDELAY": "3",
    "PITAYA_WORKER_RETRY_MAXDELAY": "30",
    "PITAYA_WORKER_RETRY_MAXRANDOM": "2",
}


def test_a_go_deployments_environment_sets_the_shared_options() -> None:
    config = Config.from_env(GO_DEPLOYMENT)
    assert config.nats_url == "nats://nats.internal:4222"
    assert config.rpc_timeout == 2.5
    assert config.cluster_connect_timeout == 3.0
    assert config.grpc_port == 3434
    assert config.etcd_endpoints == "etcd-0:2379,etcd-1:2379"
    assert config.etcd_prefix == "game/"
    assert config.etcd_lease_ttl == 90
    assert config.server_sync_interval == 120.0
    assert config.heartbeat_interval == 15.0
    assert config.compress_data is True
    assert config.serializer == "protobuf"
    assert (config.rate_limit_packets, config.rate_limit_interval) == (40, 2.0)
    assert (config.drain_sessions, config.drain_timeout) == (True, 45.0)
    assert config.unique_session is True
    assert config.metrics_period == 15.0
    assert (config.metrics_prometheus_enabled, config.metrics_prometheus_port) == (True, 9191)
    assert (config.metrics_statsd_host, config.metrics_statsd_port) == ("statsd.internal", 8125)
    assert (config.metrics_statsd_prefix, config.metrics_statsd_rate) == ("game.", 0.5)
    assert config.proxy_protocol is True
    assert (config.worker_concurrency, config.worker_redis_url) == (4, "redis.internal:6379")
    assert (
        config.worker_retry_min_delay,
        config.worker_retry_max_delay,
        config.worker_retry_max_random,
    ) == (3, 30, 2)
    assert misspelt_env(GO_DEPLOYMENT) == []  # MAXDELAY is Go's, not a typo of MAX_DELAY


def test_go_etcd_prefixes_keep_go_layout() -> None:
    """Go Pitaya's discovery, groups and binding storage prefixes are three settings, each
    "pitaya/" by default: Go's discovery variable alone leaves the other two there, as a Go
    server does; their own variables move them. Our own option keeps one prefix for all."""
    sd_only = Config.from_env({"PITAYA_CLUSTER_SD_ETCD_PREFIX": "game/"})
    assert (sd_only.etcd_prefix, groups_prefix(sd_only), bindings_prefix(sd_only)) == (
        "game/",
        "pitaya/",
        "pitaya/",
    )
    all_three = Config.from_env(
        {
            "PITAYA_CLUSTER_SD_ETCD_PREFIX": "game/",
            "PITAYA_GROUPS_ETCD_PREFIX": "game-groups/",
            "PITAYA_MODULES_BINDINGSTORAGE_ETCD_PREFIX": "game-bindings/",
        }
    )
    assert (groups_prefix(all_three), bindings_prefix(all_three)) == (
        "game-groups/",
        "game-bindings/",
    )
    ours = Config.from_env({"PITAYA_ETCD_PREFIX": "game/"})
    assert (groups_prefix(ours), bindings_prefix(ours)) == ("game/", "game/")
    in_code = Config.from_env({}, etcd_prefix="game/", groups_etcd_prefix="g/")
    assert (groups_prefix(in_code), bindings_prefix(in_code)) == ("g/", "game/")
    assert pitaya_env.unused({"PITAYA_GROUPS_ETCD_PREFIX": "g/"}) == []


def test_our_own_variables_and_go_ones_agreeing_is_fine_differing_is_an_error() -> None:
    agreeing = {"PITAYA_NATS_URL": "nats://a:4222", "PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT": (
        "nats://a:4222"
    )}  # fmt: skip
    assert Config.from_env(agreeing).nats_url == "nats://a:4222"
    both = {"PITAYA_RPC_TIMEOUT": "5", "PITAYA_CLUSTER_RPC_CLIENT_NATS_REQUESTTIMEOUT": "5s"}
    assert Config.from_env(both).rpc_timeout == 5.0
    differing = {"PITAYA_ETCD_PREFIX": "a/", "PITAYA_CLUSTER_SD_ETCD_PREFIX": "b/"}
    with pytest.raises(ConfigError, match="PITAYA_ETCD_PREFIX='a/' and Go Pitaya's") as caught:
        Config.from_env(differing)
    assert "PITAYA_CLUSTER_SD_ETCD_PREFIX='b/'" in str(caught.value)
    # Go's two NATS URLs are one connection here.
    split = {
        "PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT": "nats://a:4222",
        "PITAYA_CLUSTER_RPC_SERVER_NATS_CONNECT": "nats://b:4222",
    }
    with pytest.raises(ConfigError, match="set nats_url to different values") as caught:
        Config.from_env(split)
    assert str(caught.value).startswith(
        "PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT='nats://a:4222' and "
        "PITAYA_CLUSTER_RPC_SERVER_NATS_CONNECT='nats://b:4222' set nats_url"
    )


def test_environment_wins_over_code_as_our_own_variables_do() -> None:
    config = Config.from_env(
        {"PITAYA_CLUSTER_SD_ETCD_ENDPOINTS": "etcd:2379"}, etcd_endpoints="code:2379"
    )
    assert config.etcd_endpoints == "etcd:2379"
    assert Config.from_env({}, etcd_endpoints="code:2379").etcd_endpoints == "code:2379"


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("PITAYA_CLUSTER_RPC_CLIENT_NATS_REQUESTTIMEOUT", "5", "not a Go duration"),
        ("PITAYA_CLUSTER_SD_ETCD_HEARTBEAT_TTL", "1500ms", "whole seconds"),
        ("PITAYA_SESSION_DRAIN_ENABLED", "yes", "not a Go bool"),
        ("PITAYA_SERIALIZERTYPE", "json", "not a Go serializer type"),
        ("PITAYA_CONN_RATELIMITING_LIMIT", "many", "is not a valid int"),
        ("PITAYA_CLUSTER_SD_ETCD_ENDPOINTS", " , ", "no endpoint"),
    ],
)
def test_a_value_go_would_refuse_is_a_config_error_naming_the_variable(
    variable: str, raw: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Config.from_env({variable: raw})
    assert f"{variable}={raw!r}" in str(caught.value)


def test_go_switches_and_serializer_types_set_what_the_code_chose_otherwise() -> None:
    """Go's false and its serializer 1 (JSON) are values too, not only the true and the 2
    a Go deployment usually sets: they win over the code's choice as our variables would."""
    config = Config.from_env(
        {"PITAYA_HANDLER_MESSAGES_COMPRESSION": "false", "PITAYA_SERIALIZERTYPE": "1"},
        compress_data=True,
        serializer="protobuf",
    )
    assert (config.compress_data, config.serializer) == (False, "json")


def test_read_splits_go_statsd_host_into_our_host_and_port() -> None:
    """Read alone (without ``own``), Go's ``host:port`` gives both options; Config reads the
    variable itself, since its name is also ours."""
    variable = "PITAYA_METRICS_STATSD_HOST"
    assert pitaya_env.read({variable: "statsd.internal:8125"}) == {
        "metrics_statsd_host": (variable, "statsd.internal"),
        "metrics_statsd_port": (variable, "8125"),
    }
    with pytest.raises(pitaya_env.GoValueError) as caught:
        pitaya_env.read({variable: "statsd.internal"})
    assert str(caught.value) == (
        f"environment variable {variable}='statsd.internal': "
        "'statsd.internal' is not host:port (e.g. localhost:9125)"
    )


@pytest.mark.parametrize(
    ("raw", "split"),
    [
        ("statsd:8125", ("statsd", 8125)),
        (" [::1]:8125 ", ("::1", 8125)),
        ("::1", None),
        (":8125", None),
        ("statsd:", None),
        ("[::1:8125", None),
        ("::1]:8125", None),
    ],
)
def test_host_and_port_splits_only_a_host_with_a_port(
    raw: str, split: tuple[str, int] | None
) -> None:
    assert pitaya_env.host_and_port(raw) == split


def test_an_endpoint_list_of_separators_only_is_refused_as_no_endpoint() -> None:
    variable = "PITAYA_CLUSTER_SD_ETCD_ENDPOINTS"
    with pytest.raises(pitaya_env.GoValueError) as caught:
        pitaya_env.read({variable: " , "})
    assert str(caught.value) == f"environment variable {variable}=' , ': no endpoint"


def test_an_empty_go_variable_is_unset_as_in_go() -> None:
    """Viper (Go Pitaya's configuration) takes an empty variable for an unset one (its
    AllowEmptyEnv is off): a chart's ``value: ""`` leaves the default, in Go and here."""
    empty = {
        "PITAYA_ACCEPTOR_PROXYPROTOCOL": "",
        "PITAYA_CLUSTER_RPC_CLIENT_NATS_CONNECT": "",
        "PITAYA_CLUSTER_RPC_CLIENT_NATS_REQUESTTIMEOUT": "",
        "PITAYA_CLUSTER_SD_ETCD_HEARTBEAT_TTL": "",
        "PITAYA_SERIALIZERTYPE": "",
    }
    assert Config.from_env(empty) == Config()


def test_force_disable_turns_rate_limiting_off_and_false_leaves_it() -> None:
    off = {"PITAYA_RATE_LIMIT_ENABLED": "false", "PITAYA_CONN_RATELIMITING_FORCEDISABLE": "1"}
    assert Config.from_env(off).rate_limit_enabled is False
    with pytest.raises(ConfigError, match="rate_limit_enabled differently"):
        Config.from_env(
            {"PITAYA_RATE_LIMIT_ENABLED": "true", "PITAYA_CONN_RATELIMITING_FORCEDISABLE": "t"}
        )
    kept = {"PITAYA_RATE_LIMIT_ENABLED": "true", "PITAYA_CONN_RATELIMITING_FORCEDISABLE": "f"}
    assert Config.from_env(kept).rate_limit_enabled is True


def test_go_variables_named_as_ours_read_go_bools_too() -> None:
    """PITAYA_METRICS_PROMETHEUS_ENABLED and PITAYA_METRICS_STATSD_ENABLED are Go's as well
    as ours: a Go deployment's ``t`` / ``F`` (strconv.ParseBool) must read as Go reads it."""
    config = Config.from_env(
        {"PITAYA_METRICS_PROMETHEUS_ENABLED": "t", "PITAYA_METRICS_STATSD_ENABLED": "T"}
    )
    assert (config.metrics_prometheus_enabled, config.metrics_statsd_enabled) == (True, True)
    off = Config.from_env(
        {"PITAYA_METRICS_PROMETHEUS_ENABLED": "F", "PITAYA_METRICS_STATSD_ENABLED": "f"}
    )
    assert (off.metrics_prometheus_enabled, off.metrics_statsd_enabled) == (False, False)


def test_our_own_seconds_options_read_go_durations_too() -> None:
    config = Config.from_env(
        {
            "PITAYA_HANDSHAKE_TIMEOUT": "1m",
            "PITAYA_SHUTDOWN_TIMEOUT": "2.5",
            "PITAYA_ETCD_LEASE_TTL": "30s",
        }
    )
    assert (config.handshake_timeout, config.shutdown_timeout) == (60.0, 2.5)
    assert config.etcd_lease_ttl == 30
    with pytest.raises(ConfigError, match=r"Go duration: 5s, 500ms"):
        Config.from_env({"PITAYA_DRAIN_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="PITAYA_ETCD_LEASE_TTL='2500ms'"):
        Config.from_env({"PITAYA_ETCD_LEASE_TTL": "2500ms"})


def test_statsd_host_and_port_from_one_variable_must_agree_with_the_port_variable() -> None:
    v6 = Config.from_env({"PITAYA_METRICS_STATSD_HOST": "[::1]:8125"})
    assert (v6.metrics_statsd_host, v6.metrics_statsd_port) == ("::1", 8125)
    bare = Config.from_env({"PITAYA_METRICS_STATSD_HOST": "::1"})
    assert (bare.metrics_statsd_host, bare.metrics_statsd_port) == ("::1", 9125)
    with pytest.raises(ConfigError, match="name different ports"):
        Config.from_env(
            {"PITAYA_METRICS_STATSD_HOST": "s:8125", "PITAYA_METRICS_STATSD_PORT": "9125"}
        )
    # Not a port (str.isdigit says yes to '²', int() says no): no crash, the host as given.
    odd = Config.from_env({"PITAYA_METRICS_STATSD_HOST": "s:²"})
    assert (odd.metrics_statsd_host, odd.metrics_statsd_port) == ("s:²", 9125)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("0", 0.0),
        ("5s", 5.0),
        ("300ms", 0.3),
        ("1h2m3.5s", 3723.5),
        ("1.5h", 5400.0),
        ("-2s", -2.0),
        ("10us", 1e-5),
        ("10µs", 1e-5),
        ("7ns", 7e-9),
        ("5", None),
        ("", None),
        ("s", None),
        ("5s5", None),
        ("5 s", None),
        ("5d", None),
        # Go's time.ParseDuration, checked with Go: one sign at most, a fraction's digits
        # may be missing on either side of the point (not on both).
        ("1.s", 1.0),
        (".5s", 0.5),
        ("+0", 0.0),
        ("-0", 0.0),
        (".s", None),
        ("--5s", None),
        ("+-5s", None),
        ("-+5s", None),
        ("--0", None),
    ],
)
def test_go_durations(raw: str, seconds: float | None) -> None:
    assert duration_seconds(raw) == (pytest.approx(seconds) if seconds is not None else None)


@given(st.lists(st.tuples(st.integers(0, 999), st.sampled_from(["h", "m", "s", "ms"])), min_size=1))
def test_any_sum_of_duration_parts_reads_as_its_seconds(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    unit_seconds = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    assert duration_seconds(text) == pytest.approx(sum(n * unit_seconds[u] for n, u in parts))


def test_go_only_variables_are_not_typos_and_are_listed_apart() -> None:
    environ = {
        "PITAYA_CONCURRENCY_HANDLER_DISPATCH": "25",
        "PITAYA_BUFFER_AGENT_MESSAGES": "100",
        "PITAYA_CLUSTER_SD_ETCD_ENDPOINTS": "etcd:2379",
    }
    assert misspelt_env(environ) == []
    assert pitaya_env.unused(environ) == [
        "PITAYA_BUFFER_AGENT_MESSAGES",
        "PITAYA_CONCURRENCY_HANDLER_DISPATCH",
    ]


async def test_the_start_up_names_the_go_settings_it_leaves_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PITAYA_CONCURRENCY_HANDLER_DISPATCH", "25")
    monkeypatch.setenv("PITAYA_SESSION_DRAIN_PERIOD", "5s")
    caplog.set_level(logging.INFO, logger="actors")
    app = App(server_type="chat", server_id="chat-1")
    async with TestClient(app):
        pass
    lines = [r.getMessage() for r in caplog.records if "no counterpart" in r.getMessage()]
    assert lines == [
        "[chat-1] Go Pitaya settings with no counterpart here, left alone: "
        "PITAYA_CONCURRENCY_HANDLER_DISPATCH, PITAYA_SESSION_DRAIN_PERIOD"
    ]


def test_the_launcher_reads_a_servers_lease_ttl_from_go_pitayas_variable_too() -> None:
    from actors.launch.config import held_id_retry

    assert held_id_retry({"PITAYA_CLUSTER_SD_ETCD_HEARTBEAT_TTL": "30s"}) == 10.0
    assert held_id_retry({"PITAYA_ETCD_LEASE_TTL": "45s"}) == 15.0
