"""A small asyncio etcd v3 client for membership: leases, prefix reads and watches.

It wraps ``etcd3aio`` (grpc.aio, current protobuf) and hides its protobuf types behind plain
values, so the discovery actor deals in keys, bytes and revisions only. The two streams (lease
keep-alive and watch) are driven here directly on etcd3aio's stubs, written to and read from
one coroutine: a watch resumes from the last revision seen after etcd restarts, and a broken
stream leaves no task behind (etcd3aio's own watch feeds its stream from a request iterator
that grpc runs as a task, destroyed pending, with an error logged, at every etcd outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from etcd3aio import Etcd3Client, EtcdError
from etcd3aio._protobuf import Compare, LeaseKeepAliveRequest, WatchCreateRequest, WatchRequest
from etcd3aio.errors import EtcdConnectionError, EtcdUnauthenticatedError
from etcd3aio.kv import prefix_range_end

from transport.errors import TransportError
from transport.logs import ServerLog

log = logging.getLogger(__name__)


class EtcdUnavailable(TransportError):
    """etcd did not answer (down, unreachable, or timed out), or refused us (authentication,
    permissions)."""

    told = False
    """This failure is part of an outage the process logs once (``EtcdOutage``): a caller
    that handles it logs it at debug, not as one more warning."""


class EtcdWatchBroken(EtcdUnavailable):
    """A watch's stream broke (etcd restarted, or went away): read the prefix again and
    watch from that read's revision. Resuming from the last revision seen is not safe: an
    etcd that came back without its data numbers its changes from 1 again, and may be past
    that revision already (its servers registering again), so a resumed watch would miss
    every change below it."""


class EtcdHistoryLost(EtcdWatchBroken):
    """etcd came back without its data (its revision went back): changes since the last
    revision seen cannot be watched; what there is must be read again."""


@dataclass(frozen=True, slots=True)
class EtcdSecurity:
    """How to authenticate to etcd: ``user``/``password`` (etcd's auth, a token renewed
    when etcd rejects it) and TLS: ``ca_file`` (PEM CA that signed etcd's certificate;
    setting it turns TLS on), ``cert_file``/``key_file`` (PEM client certificate and key,
    for etcd's ``--client-cert-auth``), ``server_name`` (the name to check etcd's
    certificate against, when it differs from the endpoints' host).

    ``repr`` never shows the password.
    """

    user: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    def pem_files(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA, client certificate, client key) as PEM bytes; all None without a CA."""
        if not self.ca_file:
            if self.cert_file or self.key_file:
                raise ValueError("etcd client certificates need a CA file (etcd_tls_ca)")
            return None, None, None
        return (
            _read(self.ca_file),
            _read(self.cert_file) if self.cert_file else None,
            _read(self.key_file) if self.key_file else None,
        )


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A change under a watched prefix: ``value`` is None for a deletion."""

    key: str
    value: bytes | None


_WATCH_BACKOFF = 0.25
_WATCH_MAX_BACKOFF = 1.0
_TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
)
"""Watch stream errors that mean "etcd went away" (opened again), not "etcd says no"."""


class EtcdOutage:
    """What this process knows of one etcd cluster's outages, shared by all its clients of
    the same endpoints, so an outage is told once per process however many operations fail:
    a warning when the first operation fails, a summary every ``summary_interval`` seconds
    while operations keep failing, an info line at the first success after it.

    Failures before any operation ever succeeded are start-up failures, not outages: they
    are reported by whoever started the client.
    """

    _by_endpoints: dict[str, EtcdOutage] = {}

    def __init__(self, where: str, summary_interval: float) -> None:
        self.where = where
        self.summary_interval = summary_interval
        self.since: float | None = None
        """When the outage started (``time.monotonic()``); None while etcd answers."""
        self.failed = 0
        """Operations that failed since the outage started."""
        self._summarised_at = 0.0

    @classmethod
    def of(cls, endpoints: Sequence[str], summary_interval: float) -> EtcdOutage:
        where = ", ".join(endpoints)
        outage = cls._by_endpoints.get(where)
        if outage is None:
            outage = cls._by_endpoints[where] = cls(where, summary_interval)
        return outage

    def failure(self, name: str, reason: str) -> None:
        now = time.monotonic()
        self.failed += 1
        if self.since is None:
            self.since = self._summarised_at = now
            ServerLog(log, name).warning(
                "etcd at %s is unreachable (%s): discovery serves from the last known "
                "server table; group operations and binding lookups fail until it is back",
                self.where,
                reason,
            )
        elif now - self._summarised_at >= self.summary_interval:
            self._summarised_at = now
            ServerLog(log, name).warning(
                "etcd at %s still unreachable after %.0f s: %d operation%s failed",
                self.where,
                now - self.since,
                self.failed,
                "" if self.failed == 1 else "s",
            )

    def success(self, name: str) -> None:
        if self.since is None:
            return
        took, failed = time.monotonic() - self.since, self.failed
        self.since, self.failed = None, 0
        ServerLog(log, name).info(
            "etcd at %s is back after %.1f s (%d operation%s failed meanwhile)",
            self.where,
            took,
            failed,
            "" if failed == 1 else "s",
        )


class EtcdClient:
    """Leases, puts, prefix gets and prefix watches against one etcd cluster.

    ``probe_key``: the key :meth:`ping` reads (under the prefix the caller may read, for an
    etcd whose roles grant only that prefix); ``security``: credentials and TLS; ``name``:
    who uses it, in log lines (the server id); ``outage_summary_interval``: seconds between
    the summaries of an outage (see :class:`EtcdOutage`).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5.0,
        probe_key: str = "pitaya/ping",
        security: EtcdSecurity | None = None,
        name: str = "",
        outage_summary_interval: float = 30.0,
    ) -> None:
        self.endpoints = list(endpoints)
        self.name = name
        self.outage = EtcdOutage.of(self.endpoints, outage_summary_interval)
        self._answered_once = False
        self.timeout = timeout
        self.probe_key = probe_key
        self.security = security or EtcdSecurity()
        ca, cert, key = self.security.pem_files()
        self._client = Etcd3Client(
            self.endpoints,
            rpc_max_attempts=1,
            watch_max_reconnect_backoff_seconds=1.0,
            tls_server_name=self.security.server_name or None,
            ca_cert=ca,
            cert_chain=cert,
            cert_key=key,
        )
        self._connected = False
        self._keepalive: Any = None
        self._keepalive_turn = asyncio.Lock()
        """One write and its answer at a time on the shared keep-alive stream: gRPC refuses
        a second write or read while one is pending (every caller failed), and answers carry
        no caller, only the lease id."""
        self._token: str | None = None

    async def connect(self) -> None:
        """Open the channel, authenticate (with a user) and check etcd answers;
        EtcdUnavailable if it does not, or refuses the credentials."""
        if not self._connected:
            await self._client.connect()
            self._connected = True
        if self.security.user and self._token is None:
            await self._authenticate()
        await self.ping()

    async def ping(self) -> None:
        await self._call(self._kv().get, self.probe_key.encode(), timeout=self.timeout)

    async def _authenticate(self) -> None:
        """Get a token for ``security.user`` (etcd's simple tokens die with a restart of etcd
        and after 5 idle minutes: :meth:`_call` gets a new one when etcd rejects it)."""
        auth = self._client.auth
        if auth is None:
            raise EtcdUnavailable("etcd client is not connected")
        # Without the old token: etcd refuses any request carrying an invalid one, even this.
        self._client.set_token(None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = 0.05
        while True:
            try:
                response = await auth.authenticate(
                    self.security.user,
                    self.security.password,
                    timeout=max(0.1, deadline - loop.time()),
                )
                break
            except EtcdConnectionError as exc:
                # Unreachable, not refused: etcd is (re)starting, or gRPC's connection to it,
                # shared by every channel of the process, still backs off from a refused
                # attempt. Try again until the timeout.
                if loop.time() + pause >= deadline:
                    raise EtcdUnavailable(
                        f"cannot reach etcd at {', '.join(self.endpoints)} to authenticate "
                        f"user {self.security.user!r} within {self.timeout}s: {_describe(exc)}"
                    ) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
            except (EtcdError, grpc.aio.AioRpcError, TimeoutError, OSError) as exc:
                raise EtcdUnavailable(
                    f"etcd at {', '.join(self.endpoints)} refused the credentials of user "
                    f"{self.security.user!r}: {_describe(exc)}"
                ) from exc
        self._token = str(response.token)
        self._client.set_token(self._token)
        self._drop_keepalive()  # the stream carries the token it was opened with

    async def close(self) -> None:
        self._drop_keepalive()
        if self._connected:
            self._connected = False
            await self._client.close()

    # -- leases ----------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        response = await self._call(self._lease().grant, ttl, timeout=self.timeout)
        return int(response.ID)

    async def keep_alive(self, lease_id: int) -> int:
        """Refresh ``lease_id`` once; returns the remaining TTL, 0 if the lease is gone.

        One bidirectional keep-alive stream is kept open and reused; it is reopened after
        a failure (etcd restarted), so each refresh costs one write and one read.
        """
        try:
            try:
                ttl = await self._keep_alive_once(lease_id)
            except _Unauthenticated:
                await self._authenticate()  # the token expired or etcd restarted
                ttl = await self._keep_alive_once(lease_id)
        except EtcdUnavailable as exc:
            self._failed(exc)
            raise
        self._answered()
        return ttl

    async def _keep_alive_once(self, lease_id: int) -> int:
        # The wait for the turn is bounded too: behind a caller that waits for a silent
        # etcd, the others fail with it, not one timeout after another.
        turn = self._keepalive_turn
        try:
            async with asyncio.timeout(self.timeout):
                await turn.acquire()
        except TimeoutError:
            raise EtcdUnavailable(
                "etcd lease keep-alive failed: no answer to the one before"
            ) from None
        try:
            return await self._keep_alive_turn(lease_id)
        finally:
            turn.release()

    async def _keep_alive_turn(self, lease_id: int) -> int:
        try:
            if self._keepalive is None:
                metadata = self._token_metadata()
                self._keepalive = self._lease()._stub.LeaseKeepAlive(metadata=metadata)
            call = self._keepalive
            await asyncio.wait_for(call.write(LeaseKeepAliveRequest(ID=lease_id)), self.timeout)
            response = await asyncio.wait_for(call.read(), self.timeout)
        except asyncio.CancelledError:
            # Its answer may still come: the next caller would read it as its own.
            self._drop_keepalive()
            raise
        except (grpc.aio.AioRpcError, TimeoutError, asyncio.InvalidStateError) as exc:
            self._drop_keepalive()
            if (
                self.security.user
                and isinstance(exc, grpc.aio.AioRpcError)
                and exc.code() == grpc.StatusCode.UNAUTHENTICATED
            ):
                raise _Unauthenticated from exc
            raise EtcdUnavailable(f"etcd lease keep-alive failed: {_describe(exc)}") from exc
        if response is grpc.aio.EOF or response is None:
            self._drop_keepalive()
            raise EtcdUnavailable("etcd closed the keep-alive stream")
        return max(0, int(response.TTL))

    def _drop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    async def revoke(self, lease_id: int) -> None:
        await self._call(self._lease().revoke, lease_id, timeout=self.timeout)

    # -- keys ------------------------------------------------------------------------------

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        await self._call(self._kv().put, key, value, lease=lease, timeout=self.timeout)

    async def put_if_absent(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        """Create ``key`` only if it does not exist (one transaction); True if created."""
        kv = self._kv()
        response = await self._call(
            kv.txn,
            [kv.txn_compare_version(key, 0)],
            [kv.txn_op_put(key, value, lease=lease)],
            timeout=self.timeout,
        )
        return bool(response.succeeded)

    async def put_if_absent_while(
        self, key: str, value: bytes, *, present: str, lease: int = 0
    ) -> bool:
        """Create ``key`` only if it does not exist and ``present`` does (one transaction),
        so a key that belongs to another (a group's member) is never written after that one
        was deleted; True if created."""
        kv = self._kv()
        response = await self._call(
            kv.txn,
            [
                kv.txn_compare_version(key, 0),
                kv.txn_compare_version(present, 0, result=Compare.GREATER),
            ],
            [kv.txn_op_put(key, value, lease=lease)],
            timeout=self.timeout,
        )
        return bool(response.succeeded)

    async def put_if_value(
        self, key: str, expected: bytes, value: bytes, *, lease: int = 0
    ) -> bool:
        """Put ``value`` at ``key`` only while it still holds ``expected`` (one transaction:
        a compare-and-swap), so two writers replacing one stale value cannot both succeed;
        True if replaced."""
        kv = self._kv()
        response = await self._call(
            kv.txn,
            [kv.txn_compare_value(key, expected)],
            [kv.txn_op_put(key, value, lease=lease)],
            timeout=self.timeout,
        )
        return bool(response.succeeded)

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        response = await self._call(self._kv().delete, key, timeout=self.timeout)
        return bool(response.deleted)

    async def delete_if_value(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only while it still holds ``value`` (one transaction), so an owner
        never removes an entry someone else has taken over since; True if deleted."""
        kv = self._kv()
        response = await self._call(
            kv.txn,
            [kv.txn_compare_value(key, value)],
            [kv.txn_op_delete(key)],
            timeout=self.timeout,
        )
        return bool(response.succeeded)

    async def delete_with_prefix(self, key: str, prefix: str) -> bool:
        """Delete ``key`` and every key under ``prefix`` (one transaction: nothing can be
        written under it between the two); True if ``key`` existed."""
        kv = self._kv()
        response = await self._call(
            kv.txn,
            [],
            [kv.txn_op_delete(key), kv.txn_op_delete(prefix, range_end=prefix_range_end(prefix))],
            timeout=self.timeout,
        )
        return bool(response.responses[0].response_delete_range.deleted)

    async def delete_prefix(self, prefix: str) -> int:
        response = await self._call(
            self._kv().delete, prefix, range_end=prefix_range_end(prefix), timeout=self.timeout
        )
        return int(response.deleted)

    async def get(self, key: str) -> bytes | None:
        response = await self._call(self._kv().get, key, timeout=self.timeout)
        return bytes(response.kvs[0].value) if response.kvs else None

    async def get_with_lease(self, key: str) -> tuple[bytes, int] | None:
        """``key``'s value and the lease it is attached to (0: none); None if absent."""
        response = await self._call(self._kv().get, key, timeout=self.timeout)
        if not response.kvs:
            return None
        return bytes(response.kvs[0].value), int(response.kvs[0].lease)

    async def lease_ttl(self, lease_id: int) -> tuple[int, int]:
        """Seconds ``lease_id`` has left (-1: expired or unknown) and the TTL it was granted
        with (what a keep-alive brings it back to)."""
        response = await self._call(self._lease().time_to_live, lease_id, timeout=self.timeout)
        return int(response.TTL), int(response.grantedTTL)

    async def delete_if_lease(self, key: str, lease: int) -> bool:
        """Delete ``key`` only while it is still attached to ``lease`` (one transaction);
        True if deleted."""
        kv = self._kv()
        same_lease = Compare(
            key=key.encode(), target=Compare.LEASE, result=Compare.EQUAL, lease=lease
        )
        response = await self._call(
            kv.txn, [same_lease], [kv.txn_op_delete(key)], timeout=self.timeout
        )
        return bool(response.succeeded)

    async def get_prefix(self, prefix: str) -> tuple[dict[str, bytes], int]:
        """Every key under ``prefix`` and the store revision they were read at."""
        response = await self._call(
            self._kv().get, prefix, range_end=prefix_range_end(prefix), timeout=self.timeout
        )
        items = {kv.key.decode(): bytes(kv.value) for kv in response.kvs}
        return items, int(response.header.revision)

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[KeyEvent]:
        """Changes under ``prefix`` from ``start_revision`` on, while the stream lasts.
        Raises :class:`EtcdWatchBroken` when it breaks (etcd restarted or went away; the
        caller reads the prefix again and watches from there), EtcdHistoryLost when etcd's
        revision went back, and EtcdUnavailable if etcd refuses the watch itself. Until the
        stream was created, a transient failure is retried (every second at most)."""
        create = WatchCreateRequest(
            key=prefix.encode(),
            range_end=prefix_range_end(prefix),
            start_revision=start_revision,
        )
        seen = start_revision - 1  # the revision the caller read: etcd's cannot be below it
        backoff = _WATCH_BACKOFF
        while True:
            # One stream written to and read from here (no request iterator: grpc would run
            # it in a task of its own, left pending when the stream breaks).
            call = self._watch_stub().Watch(metadata=self._token_metadata())
            created = False  # a response came: from then on, a break is the caller's to mend
            try:
                await call.write(WatchRequest(create_request=create))
                while (response := await call.read()) is not grpc.aio.EOF:
                    created = True
                    revision = response.header.revision
                    if response.created and revision < seen:
                        # An etcd that lost its data (restarted empty) numbers its changes
                        # from 1 again: a watch from our revision on would see none of them
                        # until its count caught up. The caller must read the prefix again.
                        raise EtcdHistoryLost(
                            f"etcd's revision went back from {seen} to {revision}: "
                            "its data was lost"
                        )
                    for event in response.events:
                        deleted = event.type == 1  # mvccpb.Event.DELETE
                        value = None if deleted else bytes(event.kv.value)
                        yield KeyEvent(event.kv.key.decode(), value)
                    if response.canceled:
                        reason = response.cancel_reason
                        if not (self.security.user and "auth" in reason):
                            raise EtcdUnavailable(f"etcd cancelled the watch: {reason}")
                        # Our token died (etcd restarted): authenticate, then the caller
                        # reads again and watches again.
                        with contextlib.suppress(EtcdUnavailable):
                            await self._authenticate()
                        raise EtcdWatchBroken(f"etcd cancelled the watch: {reason}")
                if created:
                    raise EtcdWatchBroken("etcd ended the watch")
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and self.security.user:
                    with contextlib.suppress(EtcdUnavailable):
                        await self._authenticate()
                elif exc.code() not in _TRANSIENT:
                    raise EtcdUnavailable(f"etcd refused the watch: {_describe(exc)}") from exc
                if created:
                    raise EtcdWatchBroken(f"the watch broke: {_describe(exc)}") from None
            finally:
                call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _WATCH_MAX_BACKOFF)

    def _watch_stub(self) -> Any:
        watch = self._client.watch
        if watch is None:
            raise EtcdUnavailable("etcd client is not connected")
        return watch._stub

    def _token_metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("token", self._token),) if self._token else None

    # -- plumbing --------------------------------------------------------------------------

    def _kv(self) -> Any:
        if self._client.kv is None:
            raise EtcdUnavailable("etcd client is not connected")
        return self._client.kv

    def _lease(self) -> Any:
        if self._client.lease is None:
            raise EtcdUnavailable("etcd client is not connected")
        return self._client.lease

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            try:
                result = await method(*args, **kwargs)
            except EtcdUnauthenticatedError:
                if not self.security.user:
                    raise
                await self._authenticate()  # the token expired or etcd restarted
                result = await method(*args, **kwargs)
        except (EtcdError, grpc.aio.AioRpcError, TimeoutError, OSError) as exc:
            error = EtcdUnavailable(
                f"etcd at {', '.join(self.endpoints)} did not answer: {_describe(exc)}"
            )
            self._failed(error)
            raise error from exc
        self._answered()
        return result

    def _answered(self) -> None:
        self._answered_once = True
        self.outage.success(self.name)

    def _failed(self, error: EtcdUnavailable) -> None:
        if self._answered_once:  # before that, a start-up failure (its caller reports it)
            self.outage.failure(self.name, _cause(error))
            error.told = True


def _cause(error: EtcdUnavailable) -> str:
    """The reason in an EtcdUnavailable, without the address (the outage line has it)."""
    text = str(error)
    return text.partition(" did not answer: ")[2] or text


class _Unauthenticated(Exception):
    """etcd rejected the token of a keep-alive stream (authenticate, then try again)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details() or ''}".strip()
    return str(exc) or type(exc).__name__
