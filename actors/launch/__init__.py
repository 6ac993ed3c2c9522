"""Spawn an actor system of servers: several server processes on one machine, supervised.

``python -m actors.launch deploy.toml`` (or :class:`Launcher` from code) starts every server
listed in a TOML file (format: :mod:`actors.launch.config`) as a child process of the
deployment's Thespian keeper actor; a server that dies is restarted with exponential backoff;
SIGTERM or SIGINT to the launcher stops every server gracefully, then the actor system. Only
control messages cross Thespian; game traffic stays in asyncio and NATS.
"""

from actors.launch.config import (
    KeeperSettings,
    LaunchConfig,
    LaunchConfigError,
    ServerCommand,
    load_config,
    parse_config,
)
from actors.launch.launcher import Launcher, LaunchError
from actors.launch.messages import ServerState

__all__ = [
    "KeeperSettings",
    "LaunchConfig",
    "LaunchConfigError",
    "LaunchError",
    "Launcher",
    "ServerCommand",
    "ServerState",
    "load_config",
    "parse_config",
]
