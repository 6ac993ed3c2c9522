"""The echo sample's handlers and app factory (imported by tests and benchmarks too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session


@dataclass(frozen=True, slots=True)
class Greeting:
    name: str


class Echo(Handler):
    """Routes ``echo.echo`` (request), ``echo.hello`` (typed request), ``echo.count`` (notify)
    and ``echo.total`` (request)."""

    service = "echo"

    def __init__(self) -> None:
        self.notified = 0

    @handler
    def echo(self, session: Session, body: Any) -> Any:
        return body

    @handler
    def hello(self, session: Session, body: Greeting) -> dict[str, str]:
        return {"greeting": f"hello, {body.name}"}

    @handler
    def count(self, session: Session, body: Any) -> None:
        self.notified += 1
        session.push("onCount", {"total": self.notified})

    @handler
    def total(self, session: Session) -> dict[str, int]:
        return {"total": self.notified}


def build_app(
    host: str = "127.0.0.1", tcp_port: int = 3250, ws_port: int = 3251, **options: Any
) -> App:
    """An app serving :class:`Echo` on TCP and WebSocket (port 0 picks a free port)."""
    app = App(server_type="echo", **options)
    app.register(Echo)
    app.listen_tcp(host, tcp_port)
    app.listen_ws(host, ws_port)
    return app
