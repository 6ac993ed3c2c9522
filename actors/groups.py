"""Groups: named sets of users (uids) to broadcast to, one actor per group.

``app.groups`` is a :class:`GroupService`; the in-memory :class:`MemoryGroupService` is the
standalone default (a cluster swaps in a shared one). Every group is a :class:`GroupActor`, so
the operations on one group are serialized without locks, and a broadcast serializes the body
and frames the packet *once*, then hands the same bytes to every member's session actor::

    await app.groups.create("room:1", ttl=600)
    await app.groups.add("room:1", session.uid)
    await app.groups.broadcast("room:1", "onMessage", {"text": "hi"})
    await app.groups.multicast("room:1", "onTeam", body, where=lambda uid: uid in red_team)

A uid whose session disconnects leaves every group it was in, unless another session still
holds it (bound twice, without the unique session module).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from actors.actor import Actor
from actors.errors import ActorStopped, PitayaError
from actors.kernel import ActorRef
from actors.logs import ServerLog
from actors.session import SendFrame

if TYPE_CHECKING:
    from actors.session import Session
    from actors.sessions.registry import SessionRegistry
    from actors.system import ActorSystem

log = logging.getLogger(__name__)

DEFAULT_TTL_TICK = 30.0
"""Longest interval between two expiry checks of a group with a TTL (Pitaya's default tick)."""


class GroupError(PitayaError):
    """Base of group errors; a handler that lets one escape answers the client with it."""


class GroupNotFound(GroupError):
    def __init__(self, name: str) -> None:
        super().__init__("PIT-404", f"group {name!r} not found", {"group": name})


class GroupAlreadyExists(GroupError):
    def __init__(self, name: str) -> None:
        super().__init__("PIT-409", f"group {name!r} already exists", {"group": name})


class MemberAlreadyExists(GroupError):
    def __init__(self, name: str, uid: str) -> None:
        super().__init__("PIT-409", f"uid {uid!r} is already in group {name!r}", {"group": name})


class MemberNotFound(GroupError):
    def __init__(self, name: str, uid: str) -> None:
        super().__init__("PIT-404", f"uid {uid!r} is not in group {name!r}", {"group": name})


UidPredicate = Callable[[str], bool]
PushPacket = Callable[[str, Any], bytes]
"""``(route, body) -> packet``: a push encoded once, to write to every member."""


def select_members(
    members: Iterable[str], uids: Iterable[str] | None, where: UidPredicate | None
) -> list[str]:
    """The members a multicast targets: in ``uids`` (if given) and accepted by ``where``."""
    if uids is not None:
        wanted = uids if isinstance(uids, set | frozenset) else set(uids)
        members = [uid for uid in members if uid in wanted]
    if where is not None:
        members = [uid for uid in members if where(uid)]
    return list(members)


class GroupService(Protocol):
    """What any group backend offers (Pitaya's GroupService, plus broadcast/multicast)."""

    async def create(self, name: str, *, ttl: float | None = None) -> None: ...
    async def delete(self, name: str) -> None: ...
    async def exists(self, name: str) -> bool: ...
    async def add(self, name: str, uid: str) -> None: ...
    async def remove(self, name: str, uid: str) -> None: ...
    async def remove_all(self, name: str) -> None: ...
    async def contains(self, name: str, uid: str) -> bool: ...
    async def members(self, name: str) -> list[str]: ...
    async def count(self, name: str) -> int: ...
    async def renew_ttl(self, name: str) -> None: ...
    async def broadcast(self, name: str, route: str, body: Any) -> list[str]: ...
    async def multicast(
        self,
        name: str,
        route: str,
        body: Any,
        *,
        uids: Iterable[str] | None = None,
        where: UidPredicate | None = None,
    ) -> list[str]: ...
    async def leave_all(self, uid: str) -> None: ...
    def on_group_expired(self, listener: Callable[[str], None]) -> None: ...


# -- messages of GroupActor -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddMember:
    uid: str


@dataclass(frozen=True, slots=True)
class RemoveMember:
    uid: str
    missing_ok: bool = False


@dataclass(frozen=True, slots=True)
class RemoveAll:
    pass


@dataclass(frozen=True, slots=True)
class Contains:
    uid: str


@dataclass(frozen=True, slots=True)
class ListMembers:
    pass


@dataclass(frozen=True, slots=True)
class Renew:
    pass


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send ``packet`` to the members selected by ``uids``/``where`` (all when both None)."""

    packet: bytes
    uids: frozenset[str] | None
    where: UidPredicate | None


@dataclass(frozen=True, slots=True)
class CheckExpiry:
    pass


class GroupActor(Actor):
    """One group: its members, its TTL, its fan-out."""

    def __init__(
        self,
        name: str,
        sessions: SessionRegistry,
        server_id: str,
        ttl: float | None,
        on_member_change: Callable[[str, str, bool], None],
        on_expired: Callable[[str], None],
    ) -> None:
        self.group = name
        self.sessions = sessions
        self.log = ServerLog(log, server_id)
        self.ttl = ttl
        self.members: set[str] = set()
        self.on_member_change = on_member_change
        self.on_expired = on_expired
        self.last_used = 0.0

    def started(self) -> None:
        self.last_used = self.system.loop.time()
        if self.ttl is not None:
            self.every(min(self.ttl / 2, DEFAULT_TTL_TICK), CheckExpiry())

    def _touch(self) -> None:
        self.last_used = self.system.loop.time()

    def on_add_member(self, msg: AddMember) -> None:
        self._touch()
        if msg.uid in self.members:
            raise MemberAlreadyExists(self.group, msg.uid)
        self.members.add(msg.uid)
        self.on_member_change(self.group, msg.uid, True)

    def on_remove_member(self, msg: RemoveMember) -> None:
        self._touch()
        if msg.uid not in self.members:
            if msg.missing_ok:
                return
            raise MemberNotFound(self.group, msg.uid)
        self.members.discard(msg.uid)
        self.on_member_change(self.group, msg.uid, False)

    def on_remove_all(self, msg: RemoveAll) -> None:
        self._touch()
        for uid in self.members:
            self.on_member_change(self.group, uid, False)
        self.members.clear()

    def on_contains(self, msg: Contains) -> bool:
        self._touch()
        return msg.uid in self.members

    def on_list_members(self, msg: ListMembers) -> list[str]:
        self._touch()
        return sorted(self.members)

    def on_renew(self, msg: Renew) -> None:
        self._touch()

    def on_deliver(self, msg: Deliver) -> list[str]:
        """Fan one pre-encoded packet out; returns the selected uids with no local session."""
        self._touch()
        targets = select_members(self.members, msg.uids, msg.where)
        frame = SendFrame(msg.packet)
        by_uid = self.sessions.by_uid
        unreached: list[str] = []
        for uid in targets:
            session = by_uid(uid)
            if session is None:
                unreached.append(uid)
            else:
                session.ref.tell(frame)
        return unreached

    def on_check_expiry(self, msg: CheckExpiry) -> None:
        assert self.ttl is not None
        if self.system.loop.time() - self.last_used >= self.ttl:
            self.log.info("group %s expired after %ss idle", self.group, self.ttl)
            self.on_expired(self.group)
            self.stop()


class MemoryGroupService:
    """In-process groups for a standalone server (members must be local sessions)."""

    def __init__(
        self,
        system: ActorSystem,
        sessions: SessionRegistry,
        push_packet: PushPacket,
        server_id: str = "",
    ) -> None:
        """``push_packet(route, body)``: the whole packet a push of ``body`` is, encoded once
        per broadcast (``App`` passes its own, with its serializer and route dictionary)."""
        self.system = system
        self.sessions = sessions
        self.push_packet = push_packet
        self.server_id = server_id
        self._groups: dict[str, ActorRef] = {}
        self._of_uid: dict[str, set[str]] = {}
        self._expiry_listeners: list[Callable[[str], None]] = []
        sessions.on_session_close(self._session_closed)

    def on_group_expired(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` when a group with a TTL expires."""
        self._expiry_listeners.append(listener)

    def _ref(self, name: str) -> ActorRef:
        ref = self._groups.get(name)
        if ref is None or not ref.alive:
            raise GroupNotFound(name)
        return ref

    async def _ask(self, name: str, message: object) -> Any:
        try:
            return await self._ref(name).ask(message)
        except ActorStopped as exc:  # deleted or expired meanwhile
            raise GroupNotFound(name) from exc

    def _member_changed(self, group: str, uid: str, added: bool) -> None:
        if added:
            self._of_uid.setdefault(uid, set()).add(group)
        else:
            groups = self._of_uid.get(uid)
            if groups is not None:
                groups.discard(group)
                if not groups:
                    del self._of_uid[uid]

    def _forget(self, name: str) -> None:
        ref = self._groups.pop(name, None)
        if ref is None:
            return
        actor = ref._cell.actor
        assert isinstance(actor, GroupActor)
        for uid in actor.members:
            self._member_changed(name, uid, False)

    async def create(self, name: str, *, ttl: float | None = None) -> None:
        if name in self._groups:
            raise GroupAlreadyExists(name)
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive")
        self._groups[name] = self.system.spawn(
            GroupActor,
            name,
            self.sessions,
            self.server_id,
            ttl,
            self._member_changed,
            self._expired,
        )

    def _expired(self, name: str) -> None:
        self._forget(name)
        for listener in self._expiry_listeners:
            try:
                listener(name)
            except Exception:
                log.exception("group expiry listener failed for %s", name)

    async def delete(self, name: str) -> None:
        ref = self._ref(name)
        self._forget(name)
        await ref.stop()

    async def exists(self, name: str) -> bool:
        return name in self._groups

    async def add(self, name: str, uid: str) -> None:
        await self._ask(name, AddMember(uid))

    async def remove(self, name: str, uid: str) -> None:
        await self._ask(name, RemoveMember(uid))

    async def remove_all(self, name: str) -> None:
        await self._ask(name, RemoveAll())

    async def contains(self, name: str, uid: str) -> bool:
        result: bool = await self._ask(name, Contains(uid))
        return result

    async def members(self, name: str) -> list[str]:
        result: list[str] = await self._ask(name, ListMembers())
        return result

    async def count(self, name: str) -> int:
        return len(await self.members(name))

    async def renew_ttl(self, name: str) -> None:
        await self._ask(name, Renew())

    async def groups_of(self, uid: str) -> list[str]:
        """Names of the groups ``uid`` belongs to."""
        return sorted(self._of_uid.get(uid, ()))

    async def broadcast(self, name: str, route: str, body: Any) -> list[str]:
        """Push to every member; returns the uids that could not be reached."""
        return await self.multicast(name, route, body)

    async def multicast(
        self,
        name: str,
        route: str,
        body: Any,
        *,
        uids: Iterable[str] | None = None,
        where: UidPredicate | None = None,
    ) -> list[str]:
        """Push to the members in ``uids`` and/or accepted by ``where``; returns unreached."""
        packet = self.push_packet(route, body)
        selected = frozenset(uids) if uids is not None else None
        result: list[str] = await self._ask(name, Deliver(packet, selected, where))
        return result

    async def leave_all(self, uid: str) -> None:
        for group in list(self._of_uid.get(uid, ())):
            ref = self._groups.get(group)
            if ref is not None and ref.alive:
                ref.tell(RemoveMember(uid, missing_ok=True))
        self._of_uid.pop(uid, None)

    async def _session_closed(self, session: Session) -> None:
        # The registry forgot the closed session first: a uid found still is connected.
        if session.uid is not None and self.sessions.by_uid(session.uid) is None:
            await self.leave_all(session.uid)
