"""The launcher's configuration: a TOML file listing the servers of one machine.

Example (``samples/cluster/launch.toml`` is a complete one)::

    [launcher]
    stop_timeout = 20.0          # seconds a server has after SIGTERM before SIGKILL

    [vars]                       # {name} placeholders usable in names, args and env
    nats = "nats://127.0.0.1:4222"

    [[servers]]
    name = "room-{n}"            # {n}: 1-based instance number, {i}: 0-based
    module = "samples.cluster"   # run as `python -m samples.cluster ...`
    args = ["room", "--id", "room-{n}", "--nats", "{nats}"]
    count = 4
    ports = { tcp = 3250 }       # {tcp} is 3250 + i for instance i

    [[servers]]
    name = "connector-{n}"
    module = "samples.cluster"
    args = ["connector", "--id", "connector-{n}", "--tcp-port", "{tcp}"]
    count = 2                    # one per core
    ports = { tcp = 3250 }
    reuse_port = true            # every instance on 3250 (SO_REUSEPORT); the kernel spreads
                                 # connections across them (PITAYA_REUSE_PORT=1 in their env)

Parsing expands every entry into one :class:`ServerCommand` per instance, so what crosses
Thespian is a plain, picklable description of a process: argv, environment, working directory.
Mistakes (an unknown placeholder, two servers with one name) are :class:`LaunchConfigError`
naming the entry, found before any process starts.
"""

from __future__ import annotations

import logging
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from actors.config import ConfigError, env_option

RESTART_POLICIES = ("always", "on-failure", "never")


class LaunchConfigError(ValueError):
    """The launch configuration is invalid; the message names the entry and the key."""


@dataclass(frozen=True, slots=True)
class KeeperSettings:
    """How one server is supervised (defaults from ``[launcher]``, overridable per server)."""

    stop_timeout: float = 20.0
    """Seconds between SIGTERM and SIGKILL when the server is stopped."""
    backoff_initial: float = 0.5
    """Delay before the first restart; doubles with each consecutive crash."""
    backoff_max: float = 30.0
    """Longest delay between two restarts."""
    stable_after: float = 10.0
    """A server that ran this long before exiting restarts with the initial delay again."""
    restart: str = "always"
    """``always``, ``on-failure`` (exit code not 0) or ``never``."""
    held_id_retry: float = 20.0
    """Seconds between two starts of a server refused because its id is still held in
    discovery (exit status 75, ``actors.startup.EXIT_ID_HELD``): not a crash, so the backoff
    does not grow. Unless set, a third of the server's etcd lease TTL as its environment
    sets it (see :func:`held_id_retry`); 20 s is that of the default 60 s TTL."""

    def backoff(self, consecutive_crashes: int) -> float:
        """Delay before restart number ``consecutive_crashes`` (1 for the first)."""
        exponent = max(0, consecutive_crashes - 1)
        return float(min(self.backoff_max, self.backoff_initial * 2**exponent))

    def should_restart(self, returncode: int) -> bool:
        return self.restart == "always" or (self.restart == "on-failure" and returncode != 0)


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """One supervised process: what a keeper actor receives (picklable)."""

    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    """Added to the launcher's own environment."""
    cwd: str | None = None
    log_file: str | None = None
    """Where stdout and stderr go (appended); None: the launcher's own stdout/stderr."""
    settings: KeeperSettings = field(default_factory=KeeperSettings)

    @property
    def drains(self) -> bool:
        """It drains its sessions when stopped (see :func:`drains`)."""
        return drains(dict(self.env))


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """Every server of a deployment plus the launcher's own options."""

    servers: tuple[ServerCommand, ...]
    admin_port: int = 0
    """Thespian admin port; 0 picks a free one, so two deployments never share an admin."""

    @property
    def names(self) -> list[str]:
        return [server.name for server in self.servers]


def load_config(path: str | Path, variables: Mapping[str, str] | None = None) -> LaunchConfig:
    """Read a TOML launch file; ``variables`` override its ``[vars]`` (``--var k=v``)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LaunchConfigError(f"{path}: {exc}") from exc
    return parse_config(data, variables, source=str(path))


def parse_config(
    data: Mapping[str, Any],
    variables: Mapping[str, str] | None = None,
    *,
    source: str = "<config>",
) -> LaunchConfig:
    """Build a :class:`LaunchConfig` from an already parsed TOML document."""
    unknown = set(data) - {"launcher", "vars", "env", "servers"}
    if unknown:
        raise LaunchConfigError(f"{source}: unknown section(s) {sorted(unknown)}")
    launcher = _table(data, "launcher", source)
    _only(launcher, {"admin_port", "cwd", "log_dir", *KeeperSettings.__dataclass_fields__}, source)
    defaults = _settings(launcher, KeeperSettings(), f"{source} [launcher]")
    held_id_retry_set = "held_id_retry" in launcher
    values = {str(k): str(v) for k, v in _table(data, "vars", source).items()}
    values.update(variables or {})
    common_env = _str_table(_table(data, "env", source), f"{source} [env]")
    cwd = _opt_str(launcher, "cwd", source)
    log_dir = _opt_str(launcher, "log_dir", source)
    entries = data.get("servers")
    if not isinstance(entries, list) or not entries:
        raise LaunchConfigError(f"{source}: no [[servers]] entries")
    commands: list[ServerCommand] = []
    for index, entry in enumerate(entries):
        where = f"{source} [[servers]] #{index + 1}"
        if not isinstance(entry, dict):
            raise LaunchConfigError(f"{where}: must be a table")
        commands.extend(
            _expand(entry, values, common_env, defaults, held_id_retry_set, cwd, log_dir, where)
        )
    names = [c.name for c in commands]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LaunchConfigError(f"{source}: server name(s) used twice: {duplicates}")
    admin_port = launcher.get("admin_port", 0)
    if not isinstance(admin_port, int) or not 0 <= admin_port < 65536:
        raise LaunchConfigError(f"{source} [launcher]: admin_port must be a port number")
    return LaunchConfig(tuple(commands), admin_port)


def _expand(
    entry: dict[str, Any],
    values: dict[str, str],
    common_env: dict[str, str],
    defaults: KeeperSettings,
    held_id_retry_set: bool,
    cwd: str | None,
    log_dir: str | None,
    where: str,
) -> list[ServerCommand]:
    _only(
        entry,
        {"name", "module", "args", "env", "count", "ports", "reuse_port", *_OVERRIDES},
        where,
    )
    module = entry.get("module")
    if not isinstance(module, str) or not module:
        raise LaunchConfigError(f"{where}: 'module' (a Python module to run with -m) is required")
    name = entry.get("name", module + "-{n}")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise LaunchConfigError(f"{where}: 'args' must be a list of strings")
    count = entry.get("count", 1)
    if not isinstance(count, int) or count < 1:
        raise LaunchConfigError(f"{where}: 'count' must be a positive integer")
    ports = entry.get("ports", {})
    if not isinstance(ports, dict) or not all(isinstance(p, int) for p in ports.values()):
        raise LaunchConfigError(f"{where}: 'ports' must map names to base port numbers")
    reuse_port = entry.get("reuse_port", False)
    if not isinstance(reuse_port, bool):
        raise LaunchConfigError(f"{where}: 'reuse_port' must be true or false")
    env = {**common_env, **_str_table(entry.get("env", {}), f"{where} env")}
    if reuse_port:
        env["PITAYA_REUSE_PORT"] = "1"  # actors.config.Config.reuse_port
    settings = _settings(entry, defaults, where)
    follows_ttl = not (held_id_retry_set or "held_id_retry" in entry)
    commands = []
    for i in range(count):
        slots = {**values, "n": str(i + 1), "i": str(i)}
        # Shared ports: every instance listens on the base port itself.
        offset = 0 if reuse_port else i
        slots.update({key: str(base + offset) for key, base in ports.items()})
        server_name = _fill(str(name), slots, f"{where} name")
        # What the server gets: its placeholders filled ({vars}, --var, {n}, ports).
        filled = {k: _fill(v, slots, f"{where} env") for k, v in env.items()}
        commands.append(
            ServerCommand(
                name=server_name,
                argv=(sys.executable, "-m", module, *(_fill(str(a), slots, where) for a in args)),
                env=tuple(filled.items()),
                cwd=cwd,
                log_file=str(Path(log_dir) / f"{server_name}.log") if log_dir else None,
                settings=_server_settings(settings, filled, follows_ttl),
            )
        )
    # Once per entry, for the first instance it concerns (the instances differ by their
    # placeholders at most).
    for command in commands:
        if _warn_if_killed_while_draining(dict(command.env), settings.stop_timeout, where):
            break
    return commands


def _server_settings(
    settings: KeeperSettings, env: Mapping[str, str], follows_ttl: bool
) -> KeeperSettings:
    """``settings`` for a server started with ``env`` (filled in): ``held_id_retry``, unless
    set, follows the lease TTL that server reads (:func:`held_id_retry`)."""
    if not follows_ttl:
        return settings
    # The servers inherit the launcher's environment, under their own.
    return replace(settings, held_id_retry=held_id_retry({**os.environ, **env}))


def held_id_retry(env: Mapping[str, str]) -> float:
    """The pace at which a server whose id is still held in discovery is started again: a
    keep-alive period of its etcd lease (a third of ``PITAYA_ETCD_LEASE_TTL`` in ``env``, the
    environment it is started with, placeholders filled; 60 s unless set), at least 1 s.
    A TTL its code sets (``App(etcd_lease_ttl=...)``) is beyond the launcher's sight: it
    reads commands and environments and never runs the servers' code, so such a server
    needs ``held_id_retry`` set. A live holder refreshes the lease at that
    pace; a crashed one's id is taken over once its lease went unrefreshed for that long
    plus 2 s (``actors.cluster.discovery``), so the second start at the latest finds it
    free, and an id that another running server holds is tried no faster than that."""
    try:
        ttl = float(env_option(env, "etcd_lease_ttl"))
    except ConfigError:  # the server itself says what is wrong with it
        ttl = float(env_option({}, "etcd_lease_ttl"))
    return max(1.0, ttl / 3)


def drains(env: Mapping[str, str]) -> bool:
    """A server with this environment drains its sessions when stopped
    (``PITAYA_DRAIN_SESSIONS``): the launcher stops such servers first, and the others once
    they are gone, so that their clients are served through the drain."""
    try:
        return bool(env_option(env, "drain_sessions"))
    except ConfigError:  # not a switch: the server itself refuses it
        return False


STOP_GRACE = 3.0
"""Seconds a server's graceful stop may run past ``shutdown_timeout`` (``STOP_GRACE`` of
``actors.lifecycle``, which the launcher does not import: it would load the whole server)."""


def _warn_if_killed_while_draining(env: Mapping[str, str], stop_timeout: float, where: str) -> bool:
    """A server told to drain its sessions (``PITAYA_DRAIN_SESSIONS``) may take
    ``drain_timeout`` and then ``shutdown_timeout`` (and :data:`STOP_GRACE`) to stop: a
    shorter ``stop_timeout`` has the launcher SIGKILL it halfway, its clients left without
    their kick. True if warned."""
    if not drains(env):
        return False
    try:
        needs = env_option(env, "drain_timeout") + env_option(env, "shutdown_timeout") + STOP_GRACE
    except ConfigError:
        return False  # the server itself says what is wrong with them
    if stop_timeout < needs:
        logging.getLogger(__name__).warning(
            "%s: drains its sessions for up to %g s (drain_timeout + shutdown_timeout + "
            "%g s of grace) but is killed %g s after SIGTERM (stop_timeout): raise stop_timeout",
            where,
            needs,
            STOP_GRACE,
            stop_timeout,
        )
        return True
    return False


_OVERRIDES = (
    "stop_timeout",
    "restart",
    "backoff_initial",
    "backoff_max",
    "stable_after",
    "held_id_retry",
)


def _settings(table: Mapping[str, Any], base: KeeperSettings, where: str) -> KeeperSettings:
    values: dict[str, Any] = {}
    for key in _OVERRIDES:
        if key not in table:
            continue
        value = table[key]
        if key == "restart":
            if value not in RESTART_POLICIES:
                raise LaunchConfigError(f"{where}: restart must be one of {RESTART_POLICIES}")
        elif not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise LaunchConfigError(f"{where}: {key} must be a non-negative number of seconds")
        elif key == "held_id_retry" and value <= 0:
            # 0 would start a server whose id stays held again and again, as fast as it exits.
            raise LaunchConfigError(f"{where}: held_id_retry must be positive (seconds)")
        values[key] = value if key == "restart" else float(value)
    merged = {k: getattr(base, k) for k in KeeperSettings.__dataclass_fields__}
    merged.update(values)
    return KeeperSettings(**merged)


def _fill(template: str, slots: Mapping[str, str], where: str) -> str:
    try:
        return template.format_map(slots)
    except KeyError as exc:
        raise LaunchConfigError(
            f"{where}: unknown placeholder {{{exc.args[0]}}} in {template!r} "
            f"(known: n, i, ports and [vars] names)"
        ) from None
    except (ValueError, IndexError) as exc:
        raise LaunchConfigError(f"{where}: bad template {template!r}: {exc}") from None


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise LaunchConfigError(f"{where}: [{key}] must be a table")
    return value


def _str_table(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise LaunchConfigError(f"{where}: must be a table of strings")
    return {str(k): str(v) for k, v in value.items()}


def _opt_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LaunchConfigError(f"{where} [launcher]: {key} must be a string")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise LaunchConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
