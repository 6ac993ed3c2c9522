"""Pitaya's NATS subjects, in one place for whoever publishes or subscribes to them."""

from __future__ import annotations


def server_subject(server_type: str, server_id: str) -> str:
    """Requests to one server: forwarded messages, user RPCs, frontend controls."""
    return f"pitaya/servers/{server_type}/{server_id}"


def user_subject(frontend_type: str, uid: str, what: str) -> str:
    """A uid's ``push`` or ``kick`` subject, taken by the frontend it is bound on."""
    return f"pitaya/{frontend_type}/user/{uid}/{what}"


def bindings_subject(frontend_type: str) -> str:
    """Where the frontends of one type announce every bind (unique session)."""
    return f"pitaya/{frontend_type}/bindings"
