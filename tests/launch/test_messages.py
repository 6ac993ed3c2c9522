"""The launcher's control messages (``actors.launch.messages``): what Thespian needs of them.

Thespian pickles every message between processes and dispatches on the bare class name
(``receiveMsg_<ClassName>``), so each message must be a module-level, picklable, frozen
dataclass whose name no other class the supervisor or keeper receives has, and each actor must
have a receiver for the messages sent to it. No process is started here
(test_launcher.py runs the real thing).
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import Any

import pytest
import thespian.actors

import actors.launch.config
import actors.launch.keeper
import actors.launch.launcher
import actors.launch.supervisor
from actors.launch import messages
from actors.launch.config import KeeperSettings, ServerCommand
from actors.launch.keeper import ServerKeeper
from actors.launch.messages import (
    Deploy,
    Deployed,
    DeploymentStatus,
    DeploymentStopped,
    KeepServer,
    QueryDeployment,
    ServerExited,
    ServerSpawned,
    ServerState,
    ServerStopped,
    StopDeployment,
    StopServer,
)
from actors.launch.supervisor import Supervisor

COMMAND = ServerCommand(
    "room-1",
    ("python", "-m", "samples.room"),
    env=(("PITAYA_SERVER_ID", "room-1"),),
    cwd="/srv",
    log_file="room.log",
    settings=KeeperSettings(stop_timeout=3.0, restart="on-failure"),
)

SAMPLES: dict[type, Any] = {
    Deploy: Deploy((COMMAND,), launcher_pid=1234, admin_port=1900),
    Deployed: Deployed({"room-1": 42, "chat-1": None}),
    QueryDeployment: QueryDeployment(),
    ServerState: ServerState("room-1", 42, running=True, restarts=2, last_exit=-9),
    DeploymentStatus: DeploymentStatus((ServerState("room-1", None, False, 1, 3),)),
    StopDeployment: StopDeployment(),
    DeploymentStopped: DeploymentStopped({"room-1": 0, "chat-1": -9}),
    KeepServer: KeepServer(COMMAND, orphan_pid=77),
    ServerSpawned: ServerSpawned("room-1", 42, restarts=0),
    ServerExited: ServerExited("room-1", 42, returncode=1, restart_in=0.5),
    StopServer: StopServer("room-1"),
    ServerStopped: ServerStopped("room-1", None),
}

MESSAGE_CLASSES = [
    value
    for value in vars(messages).values()
    if inspect.isclass(value) and value.__module__ == messages.__name__
]


def test_every_message_has_a_sample() -> None:
    assert set(MESSAGE_CLASSES) == set(SAMPLES)


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_a_message_is_a_frozen_module_level_dataclass(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in vars(cls)
    assert cls.__qualname__ == cls.__name__  # not nested: pickle finds it by module and name
    fields = dataclasses.fields(cls)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(SAMPLES[cls], fields[0].name, None)


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_a_message_crosses_a_process_boundary_unchanged(cls: type) -> None:
    sample = SAMPLES[cls]
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(sample, protocol=protocol))
        assert copy == sample and type(copy) is cls


def test_the_defaults() -> None:
    assert Deploy((), launcher_pid=1).admin_port == 0  # 0: the admin is left running
    assert KeepServer(COMMAND).orphan_pid is None


def test_message_names_are_used_by_no_other_class_the_actors_see() -> None:
    """Dispatch is by bare class name: a clash would route one message to another's handler."""
    names = [cls.__name__ for cls in MESSAGE_CLASSES]
    assert len(names) == len(set(names))
    others = {
        name
        for module in (
            actors.launch.config,
            actors.launch.keeper,
            actors.launch.launcher,
            actors.launch.supervisor,
            thespian.actors,
        )
        for name, value in vars(module).items()
        if inspect.isclass(value) and value.__module__ != messages.__name__
    }
    assert others.isdisjoint(names)


@pytest.mark.parametrize(
    ("actor", "received"),
    [
        (
            Supervisor,
            [Deploy, QueryDeployment, StopDeployment, ServerSpawned, ServerExited, ServerStopped],
        ),
        (ServerKeeper, [KeepServer, StopServer]),
    ],
)
def test_each_actor_has_a_receiver_for_the_messages_sent_to_it(
    actor: type, received: list[type]
) -> None:
    for cls in received:
        assert callable(getattr(actor, f"receiveMsg_{cls.__name__}", None)), cls.__name__
