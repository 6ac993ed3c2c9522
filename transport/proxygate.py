"""The opening stages of an acceptor before its connection: a PROXY header, then TLS.

With ``proxy_protocol`` on, or TLS, a listener's factory returns a :class:`ProxyGate` in front
of each connection instead of the connection itself. The gate is the socket's asyncio protocol
until the header (:mod:`transport.proxyheader`) is read; then it steps aside for good:

- without TLS, ``transport.set_protocol(connection)``, and the bytes that came after the
  header in the same read go to the connection as its first bytes;
- with TLS, the header precedes the TLS handshake (the balancer relays the client's bytes
  untouched), so the listener does not let asyncio start TLS at accept: the gate reads only
  the bytes the header still certainly needs (:attr:`ProxyHeaderParser.wanted`), leaving
  the ClientHello on the socket, and then starts TLS with ``loop.start_tls``.

Either way the connection then begins as it would have at accept (the TCP connection is
handed over, the WebSocket waits for its upgrade) with the client's address as its
``remote_address``. Its hot path never sees the gate: with the option off nothing is
wrapped, and with it on the gate is gone after the header.

TLS without the PROXY protocol starts from the gate too (``header=False``: there is none to
read, TLS starts at the accept): asyncio's own TLS at accept makes the protocol only once the
handshake is done, so a socket in its handshake would be neither admitted nor counted, and a
slowloris could hold any number of them for ``open_timeout`` each.

The socket is admitted (``max_connections``) and counted as opening from its accept, by the
connection itself; the header must be whole within ``ConnectionLimits.open_timeout`` of the
accept, and the stages after it (TLS, the WebSocket upgrade) get what is left of it. A
malformed or late header, or one from a peer outside ``trusted``, closes the socket: a
warning names the server, the balancer's address and the reason (never the bytes), at most
one per 10 s with the number not logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl as ssl_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from transport.logs import ServerLog, Throttle
from transport.peer import format_address, format_peer, peer_host
from transport.proxyheader import ProxyHeader, ProxyHeaderError, ProxyHeaderParser
from transport.stats import AcceptorStats

__all__ = ["ProxyGate", "ProxyPolicy", "network"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network(cidr: str) -> Network:
    """A trusted network from its CIDR (``"10.0.0.0/8"``; a bare address is one host; host
    bits allowed); ValueError naming it when it is not one."""
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not a network in CIDR notation: {cidr!r}") from None


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """Whose PROXY headers a listener believes.

    ``trusted``: the networks the balancers connect from; a socket from elsewhere is closed
    before a byte is read. Empty: every peer (then anyone who can reach the port directly
    can claim any address, so firewall it to the balancers, or list them here).
    """

    trusted: tuple[Network, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> ProxyPolicy:
        """From CIDR strings (``"10.0.0.0/8"``, ``"2001:db8::/32"``, a bare address is one
        host); ValueError names the first that is not one."""
        return cls(tuple(map(network, cidrs)))

    def trusts(self, host: str) -> bool:
        """Whether a peer at ``host`` (the socket's own address) may send the header."""
        if not self.trusted:
            return True
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False  # not an IP peer (a UNIX socket): not a listed balancer
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # an IPv4 balancer on a dual-stack socket
        return any(address in network for network in self.trusted)


class ProxyGate(asyncio.BufferedProtocol):
    """The protocol of one socket until its PROXY header is read; see the module.

    ``connection`` is the acceptor's connection (an ``asyncio.BufferedProtocol``) and
    ``accept``/``relayed`` its two steps: admit the socket at accept (False: refused), and
    begin once the header named the client (with the transport to use from then on).
    ``header=False``: no PROXY header comes, only TLS (``ssl``), started at the accept.
    """

    __slots__ = (
        "_accept",
        "_buffer",
        "_connection",
        "_deadline",
        "_early",
        "_kind",
        "_log",
        "_loop",
        "_lost",
        "_parser",
        "_peer",
        "_policy",
        "_relayed",
        "_ssl",
        "_stats",
        "_throttle",
        "_timeout",
        "_timer",
        "_tls_task",
        "_transport",
    )

    def __init__(
        self,
        connection: asyncio.BufferedProtocol,
        accept: Callable[[asyncio.BaseTransport], bool],
        relayed: Callable[[asyncio.BaseTransport, str | None], None],
        *,
        kind: str,
        policy: ProxyPolicy,
        ssl: ssl_module.SSLContext | None,
        timeout: float,
        stats: AcceptorStats,
        log: ServerLog,
        throttle: Throttle,
        loop: asyncio.AbstractEventLoop,
        header: bool = True,
    ) -> None:
        if not header and ssl is None:
            raise ValueError("a gate without a PROXY header is there for TLS")
        self._connection = connection
        self._accept = accept
        self._relayed = relayed
        self._kind = kind
        self._policy = policy
        self._ssl = ssl
        self._timeout = timeout
        self._deadline = loop.time() + timeout
        """The end of the opening budget (made at accept): the header, then TLS, share it."""
        self._stats = stats
        self._log = log
        self._throttle = throttle
        self._loop = loop
        self._parser: ProxyHeaderParser | None = ProxyHeaderParser() if header else None
        """None once the header was read or the socket refused (or with no header to read):
        nothing more is fed."""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._buffer = memoryview(b"")
        self._peer = "?"
        self._early: list[bytes] | None = None
        """Between the header and ``start_tls``'s return: the client's first decrypted bytes."""
        self._lost = False
        self._tls_task: asyncio.Task[None] | None = None
        """``start_tls`` in progress (held: the loop keeps only a weak reference)."""

    # -- asyncio.BufferedProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        header = self._parser is not None
        if not self._accept(transport):
            self._parser = None  # refused at accept (counted as such): not our refusal
            return
        host = peer_host(transport)
        self._peer = format_peer(transport)
        if not header:  # TLS only: it starts now
            self._pass_on(_NO_HEADER)
            return
        if not self._policy.trusts(host):
            self._refuse("the peer is not in the trusted networks")
            return
        self._timer = self._loop.call_at(self._deadline, self._expired)

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._connection.get_buffer(sizehint)
        if self._ssl is not None and self._parser is not None:
            # Not a byte past the header: the TLS layer must read the ClientHello itself.
            buffer = memoryview(buffer)[: self._parser.wanted]
        self._buffer = memoryview(buffer)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        parser = self._parser
        if parser is None:
            if self._early is not None:  # decrypted, before the connection began
                self._early.append(self._buffer[:nbytes].tobytes())
            return
        try:
            header = parser.feed(self._buffer[:nbytes].tobytes())
        except ProxyHeaderError as exc:
            self._refuse(exc.reason)
            return
        if header is not None:
            self._parser = None
            self._cancel_timer()
            self._pass_on(header)

    def eof_received(self) -> bool | None:
        return None  # the peer left before its header was whole: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._parser = None
        self._early = None
        self._cancel_timer()
        self._connection.connection_lost(exc)  # uncounts the opening socket

    # -- internals -----------------------------------------------------------------------

    def _pass_on(self, header: ProxyHeader) -> None:
        transport = self._transport
        assert transport is not None
        source = header.source
        client = None if source is None else format_address(*source)
        if self._ssl is not None:
            # Nothing more is read until start_tls reads it as TLS (uvloop would read on in
            # this very callback, the ClientHello with it). Until start_tls returns, the
            # gate is the TLS layer's protocol: what the client sends right after its
            # handshake is held here, not given to a connection that has not begun (the
            # TLS layer delivers it before the awaiting task resumes).
            transport.pause_reading()
            self._early = []
            self._tls_task = self._loop.create_task(self._start_tls(transport, client))
            return
        transport.set_protocol(self._connection)
        self._relayed(transport, client)
        if header.rest and not transport.is_closing():
            _hand(self._connection, header.rest)

    async def _start_tls(self, transport: asyncio.Transport, client: str | None) -> None:
        assert self._ssl is not None
        try:
            # What the header took of the budget is not given again (at least a moment, as
            # asyncio refuses a timeout of 0: a spent budget fails the handshake at once).
            left = max(self._deadline - self._loop.time(), 0.001)
            tls = await self._loop.start_tls(
                transport, self, self._ssl, server_side=True, ssl_handshake_timeout=left
            )
        except Exception as exc:
            # As a failed TLS handshake at accept without the option: that socket only.
            expected = isinstance(exc, OSError | ssl_module.SSLError | TimeoutError)
            self._log.log(
                logging.DEBUG if expected else logging.ERROR,
                "%s peer %s failed the TLS handshake: %r",
                self._kind,
                self._peer if client is None else f"{client} (relayed by {self._peer})",
                exc,
                exc_info=not expected,
            )
            transport.abort()
            self.connection_lost(exc)
            return
        early, self._early = self._early, None
        if self._lost:  # gone meanwhile (connection_lost was passed on)
            return
        if tls is None:  # no TLS transport to hand over: drop the socket
            transport.abort()
            return
        tls.set_protocol(self._connection)
        self._relayed(tls, client)
        for chunk in early or ():
            if tls.is_closing():
                break
            _hand(self._connection, chunk)

    def _expired(self) -> None:
        self._timer = None
        if self._parser is not None:
            self._refuse(f"no whole header within {self._timeout}s")

    def _refuse(self, reason: str) -> None:
        self._parser = None
        self._cancel_timer()
        self._stats.proxy_refused += 1
        more = self._throttle.allow(self._loop.time())
        if more is not None:
            self._log.warning(
                "%s peer %s closed: PROXY protocol: %s%s", self._kind, self._peer, reason, more
            )
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_NO_HEADER = ProxyHeader(0, None, None)
"""What a gate without a PROXY header goes on with: no client address relayed."""


def _hand(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """Give ``data`` to a buffered protocol as if its socket had just read it (in as many
    reads as its buffers take)."""
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        view = view[size:]
        protocol.buffer_updated(size)
