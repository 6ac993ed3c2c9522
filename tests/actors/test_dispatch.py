"""Typed dispatch: which ``on_*`` method receives which message class (no event loop).

The kernel's use of the table (ordering, errors, async receivers) is in test_kernel.py.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import pytest

from actors.actor import Actor
from actors.dispatch import DispatchTable, dispatch_table


@dataclass(frozen=True)
class Join:
    name: str


@dataclass(frozen=True)
class VipJoin(Join):
    pass


@dataclass(frozen=True)
class Leave:
    name: str


@dataclass(frozen=True)
class Say:
    text: str


class Room(Actor):
    # Not receivers: a non-function "on_" attribute and helpers without a message parameter
    # or annotation. They come first so that skipping them must not end the scan.
    on_config = "not a method"

    def on_nothing(self) -> None: ...

    def on_untyped(self, msg) -> None:  # type: ignore[no-untyped-def]
        ...

    def on_generic(self, msg: list[int]) -> None: ...

    def helper(self, msg: Say) -> None: ...

    def on_join(self, msg: Join) -> str:
        return "join"

    async def on_leave(self, msg: Leave) -> str:
        return "leave"


class Lobby(Room):
    # Overrides on_join with another message type: Room.on_join must not receive Join here.
    def on_join(self, msg: Say) -> str:  # type: ignore[override]
        return "lobby say"


class Either(Actor):
    def on_either(self, msg: Join | Leave) -> str:
        return "either"

    def on_maybe(self, msg: typing.Optional[Say]) -> str:  # noqa: UP045 (the typing form)
        return "maybe"


def test_receivers_are_found_by_prefix_and_annotation() -> None:
    table = DispatchTable(Room)
    join = table.lookup(Join)
    assert join is not None and join.function is Room.on_join and join.is_async is False
    leave = table.lookup(Leave)
    assert leave is not None and leave.function is Room.on_leave and leave.is_async is True
    assert table.lookup(Say) is None  # helper() is not a receiver
    assert table.message_classes() == [Join, Leave]


def test_a_subclass_message_uses_its_bases_receiver_and_is_cached() -> None:
    table = DispatchTable(Room)
    for _ in range(2):
        receiver = table.lookup(VipJoin)
        assert receiver is not None and receiver.function is Room.on_join
    assert table.lookup(int) is None
    assert table.lookup(int) is None
    # A cached miss is not a message class of the actor.
    assert int not in table.message_classes()
    assert {Join, Leave} <= set(table.message_classes())


def test_an_override_replaces_the_base_receiver_by_name() -> None:
    table = DispatchTable(Lobby)
    say = table.lookup(Say)
    assert say is not None and say.function is Lobby.on_join
    assert table.lookup(Join) is None
    leave = table.lookup(Leave)
    assert leave is not None and leave.function is Room.on_leave


def test_union_annotations_register_each_class() -> None:
    table = DispatchTable(Either)
    # Optional[Say] is Say | None: None is a message class like any other.
    assert set(table.message_classes()) == {Join, Leave, Say, type(None)}
    for message_class in (Join, Leave):
        receiver = table.lookup(message_class)
        assert receiver is not None and receiver.function is Either.on_either
    maybe = table.lookup(Say)
    assert maybe is not None and maybe.function is Either.on_maybe


def test_an_unresolvable_annotation_names_the_method() -> None:
    class Broken(Actor):
        def on_ghost(self, msg: Ghost) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError) as info:
        DispatchTable(Broken)
    assert str(info.value) == (
        "cannot resolve the message annotation of "
        "test_an_unresolvable_annotation_names_the_method.<locals>.Broken.on_ghost: "
        "name 'Ghost' is not defined"
    )


def test_dispatch_table_is_built_once_per_class() -> None:
    class Fresh(Actor):
        def on_join(self, msg: Join) -> None: ...

    class Other(Actor):
        def on_leave(self, msg: Leave) -> None: ...

    table = dispatch_table(Fresh)
    assert dispatch_table(Fresh) is table
    assert table.message_classes() == [Join]
    assert dispatch_table(Other) is not table
    assert dispatch_table(Other).message_classes() == [Leave]
