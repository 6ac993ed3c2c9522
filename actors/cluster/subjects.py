"""Pitaya's NATS subjects, in one place for whoever publishes or subscribes to them."""

from __future__ import annotations

MAX_UID_BYTES = 512
"""Longest uid (UTF-8 bytes) that goes into a subject: NATS refuses a command line longer
than 4 KiB (``max_control_line``) with an error that ends the connection for good."""

MAX_LOGGED_ID = 100
"""Characters of a server id a log line shows (one a request names may be any length)."""


def server_subject(server_type: str, server_id: str) -> str:
    """Requests to one server: forwarded messages, user RPCs, frontend controls."""
    return f"pitaya/servers/{server_type}/{server_id}"


def user_subject(frontend_type: str, uid: str, what: str) -> str:
    """A uid's ``push`` or ``kick`` subject, taken by the frontend it is bound on."""
    return f"pitaya/{frontend_type}/user/{uid}/{what}"


def bindings_subject(frontend_type: str) -> str:
    """Where the frontends of one type announce every bind (unique session)."""
    return f"pitaya/{frontend_type}/bindings"


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` cannot be a token of Pitaya's per-uid subjects (None: it can). A uid is
    the client's choice in many games (``session.bind(body["name"])``), and a subject NATS
    refuses ends the connection that sent it, for every player of the server: longer than
    :data:`MAX_UID_BYTES`, whitespace or control characters (which end a protocol line), an
    empty dot-separated part (``a..b``), or a part that is a wildcard (``*``, ``>``: the
    subject would take other uids' messages)."""
    if len(uid.encode("utf-8", "surrogatepass")) > MAX_UID_BYTES:
        return f"longer than {MAX_UID_BYTES} bytes"
    if any(ch.isspace() or not ch.isprintable() for ch in uid):
        return "it holds whitespace or control characters"
    for part in uid.split("."):
        if not part:
            return "it has an empty dot-separated part"
        if part in ("*", ">"):
            return f"it has {part!r} as a dot-separated part (a NATS wildcard)"
    return None


def server_problem(server_type: str, server_id: str) -> str | None:
    """Why a server cannot be sent to over NATS (None: it can): its subject is made of its
    type and id, which come from peers (an entry in etcd; a request naming its frontend,
    before discovery lists it). A type or id of 5,000 characters made a server send a command
    line NATS refuses, which ended that server's connection for good, and it stopped. The
    rules are a uid's (:func:`uid_problem`)."""
    for what, text in (("type", server_type), ("id", server_id)):
        problem = uid_problem(text)
        if problem is not None:
            return f"its {what} cannot be in a subject: {problem}"
    return None
