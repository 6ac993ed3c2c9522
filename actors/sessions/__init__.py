"""Sessions, by role: what serves a client connection and what keeps track of them all.

* ``actors.session``: the :class:`~actors.session.Session` a handler holds (one client's
  uid, data, push and kick), and the messages that reach its connection;
* :mod:`actors.sessions.registry`: the :class:`SessionRegistry` of one server (lookups by id
  and uid, binds taking turns per uid, the bind and close callbacks);
* :mod:`actors.sessions.actor`: the :class:`~actors.sessions.actor.SessionActor`, one per
  connection (protocol state, per-session order, handing messages to the invocation path or
  forwarding them, writing answers and pushes);
* :mod:`actors.sessions.messages`: the messages a session actor receives and the adapter from
  a connection's callbacks to them;
* :mod:`actors.sessions.host`: what a session actor and a gateway use of their server, as
  Protocols (the app is one).

Backends see a forwarded session as ``actors.cluster.backend_session.BackendSession``.
"""

from actors.sessions.registry import SessionCallback, SessionRegistry

__all__ = ["SessionCallback", "SessionRegistry"]
