"""Credentials out of what may be shown: ``nats://user:secret@host`` becomes
``nats://***@host`` (used for every NATS address in a log line, an error or a config's repr)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_url", "mask_urls_in"]

_CREDENTIALS_IN_URL = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s@/]*@")


def mask_url(url: str) -> str:
    """``nats://user:secret@host:4222`` -> ``nats://***@host:4222`` (a token too); any other
    text unchanged.

    >>> mask_url("tls://ann:s3cret@nats-1:4222")
    'tls://***@nats-1:4222'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def mask_urls_in(text: str) -> str:
    """``text`` with the credentials of every URL in it masked, wherever it stands (quoted,
    in brackets, at a line's end).

    >>> mask_urls_in("cannot connect to 'nats://ann:s3cret@nats-1:4222'")
    "cannot connect to 'nats://***@nats-1:4222'"
    """
    return _CREDENTIALS_IN_URL.sub(r"\1***@", text)
