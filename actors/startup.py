"""One clear line for a server that cannot start: the service, the address and the cause.

``App.run`` turns a :class:`~actors.cluster.rpc.ClusterStartupError` into this line (and exit
status 1) instead of a long traceback::

    room-1 cannot start: cannot reach NATS at nats://***@10.0.0.5:4222: no connection within
    5 s (10.0.0.5:4222: connection refused)

Credentials in a URL (``user:pass@``, ``token@``) never reach the line.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

__all__ = ["EXIT_ID_HELD", "describe_startup_failure", "mask_credentials"]

EXIT_ID_HELD = 75
"""Exit status of a server refused because its id is still held in discovery
(:class:`~actors.cluster.rpc.ServerIdTaken`): the lease of a previous process with that id
has not expired (it crashed moments ago), or another server runs with it. Every other
start-up failure exits 1. 75 is ``EX_TEMPFAIL`` of BSD's sysexits ("try again later"): the
launcher starts such a server again at a steady pace, without counting a crash
(``actors.launch.keeper``); a supervisor of your own can do the same."""

# ``scheme://anything@`` and a bare ``user:pass@host`` (an etcd endpoint has no scheme).
_CREDENTIALS = re.compile(r"(?<=://)[^\s/@,]+@|(?<![\w/@.:%~+-])[\w.%~+-]+:[^\s/@,]+@")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s,]+", re.IGNORECASE)
PROBE_TIMEOUT = 1.0


def mask_credentials(text: str) -> str:
    """``nats://user:secret@host:4222`` -> ``nats://***@host:4222``, anywhere in ``text``
    (also ``user:secret@host:2379`` with no scheme)."""
    return _CREDENTIALS.sub("***@", text)


def describe_startup_failure(error: BaseException, connect_timeout: float) -> str:
    """The failure as one line, its cause filled in when the error gave none.

    A connection attempt that timed out carries no message, so the reason then says how long
    was waited and what a plain TCP connection to each address in the message finds now.
    """
    text = " ".join(str(error).split())  # one line, whatever the error's text holds
    if not text or text.endswith(":"):
        cause = error.__cause__ or error.__context__
        reason = _reason(cause, connect_timeout, _addresses(text))
        text = f"{text} {reason}" if text else reason
    return mask_credentials(text)


def _reason(cause: BaseException | None, connect_timeout: float, addresses: list[str]) -> str:
    if cause is None:
        return "no reason given"
    if isinstance(cause, TimeoutError):
        reason = f"no connection within {connect_timeout:g} s"
        probes = [f"{address}: {_probe(address)}" for address in addresses]
        return f"{reason} ({'; '.join(probes)})" if probes else reason
    return " ".join(str(cause).split()) or type(cause).__name__


def _addresses(text: str) -> list[str]:
    """``host:port`` of each URL in ``text`` (a trailing ``:`` of the sentence dropped)."""
    found = []
    for url in _URL.findall(text):
        try:
            parts = urlsplit(url.rstrip(":"))
            port = parts.port
        except ValueError:
            continue
        if parts.hostname and port:
            found.append(f"{parts.hostname}:{port}")
    return found


def _probe(address: str) -> str:
    """What a TCP connection to ``host:port`` finds (called once, on the way out)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT):
            return "the port accepts connections; the service did not answer as expected"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer to a TCP connect within {PROBE_TIMEOUT:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
