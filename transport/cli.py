"""``pitaya-cli``: a command-line client for Pitaya servers, like Pitaya's own pitaya-cli.

Run ``python -m transport.cli`` (or ``pitaya-cli``) and type commands; pushes are printed as
they arrive::

    >>> connect 127.0.0.1:3250            (or: connect ws://127.0.0.1:3251/)
    connected to 127.0.0.1:3250 (serializer json)
    >>> routes                           (or: routes room, one server type's)
    >>> request room.join {"name": "ann"}
    response room.join {"result":"success","members":["ann"]}
    >>> notify room.message {"content": "hi"}
    push onMessage {"name":"ann","content":"hi"}

With stdin not a terminal it reads one command per line until EOF, so it can be scripted:
``printf 'connect 127.0.0.1:3250\\nroutes\\n' | pitaya-cli``. Commands run one at a time (a
request waits for its response); ``wait <route>`` blocks until a push on that route has
arrived, so a script can check a push before it quits. Lines starting with ``#`` are ignored.
Output lines start with ``response``, ``push``, ``error`` (``error PIT-404: ...`` for an
error response), ``connected`` or ``disconnected``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

from transport.client import Client, HandshakeRejected, RequestError
from transport.errors import ConnectionClosed, TransportError
from transport.serializers import Serializer, get_serializer

__all__ = ["Address", "Cli", "main", "parse_address"]

HELP = """commands:
  connect <host:port>            connect over TCP (ws://host:port/path or wss://... for WebSocket)
  routes [server type]           list the routes of every server type reachable through this
                                 server (sys.docs, <type>.sys.docs), or of one type
  request <route> [json]         send a request and print the response
  notify <route> [json]          send a notify
  wait <route> [seconds]         wait for a push on <route> (default 5 s)
  disconnect                     close the connection
  help                           this text
  quit                           leave (also: exit, end of input)"""


@dataclass(frozen=True, slots=True)
class Address:
    """Where to connect: host, port, and for WebSocket the path and whether TLS is used."""

    host: str
    port: int
    websocket: bool = False
    path: str = "/"
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if not self.websocket:
            return f"{host}:{self.port}"
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}{self.path}"


def parse_address(text: str) -> Address:
    """``host:port``, ``tcp://host:port``, ``ws://host:port/path`` or ``wss://...``.

    Raises ValueError with a message fit for the user.
    """
    scheme, sep, _ = text.partition("://")
    if not sep:
        scheme, text = "tcp", f"tcp://{text}"
    if scheme not in ("tcp", "ws", "wss"):
        raise ValueError(f"unknown scheme {scheme!r}: use host:port, ws:// or wss://")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"expected host:port, got {text.partition('://')[2]!r}")
    return Address(parts.hostname, port, scheme != "tcp", parts.path or "/", scheme == "wss")


def _show(value: Any) -> str:
    """One-line JSON for a body; bytes (e.g. a protobuf payload) as hex."""
    if isinstance(value, bytes):
        return value.hex()
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_plain)
    except (TypeError, ValueError):  # e.g. msgpack maps with non-string keys
        return repr(value)


def _plain(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else str(value)


class Cli:
    """The command interpreter; :meth:`execute` runs one line, output goes to ``out``.

    Usable without a terminal, e.g. from tests::

        cli = Cli(io.StringIO())
        await cli.execute("connect 127.0.0.1:3250")
    """

    def __init__(
        self, out: TextIO, *, serializer: Serializer | None = None, timeout: float = 5.0
    ) -> None:
        self._out = out
        self._serializer = serializer
        self._timeout = timeout
        self._client: Client | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._pushes: Counter[str] = Counter()  # arrived, per route
        self._waited: Counter[str] = Counter()  # consumed by ``wait``, per route
        self._push_arrived = asyncio.Event()

    def print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    async def execute(self, line: str) -> bool:
        """Run one command line; False once the user asked to quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        if command in ("quit", "exit"):
            return False
        try:
            if command == "help":
                self.print(HELP)
            elif command == "connect":
                await self._connect(rest)
            elif command == "disconnect":
                await self._require_client()
                await self.close()
                self.print("disconnected")
            elif command == "routes":
                await self._routes(rest)
            elif command in ("request", "notify"):
                await self._send(command, rest)
            elif command == "wait":
                await self._wait(rest)
            else:
                self.print(f'error: unknown command {command!r} (try "help")')
        except RequestError as exc:
            metadata = f" {_show(exc.metadata)}" if exc.metadata else ""
            self.print(f"error {exc.code}: {exc.msg}{metadata}")
        except _UsageError as exc:
            self.print(f"error: {exc}")
        except ConnectionClosed as exc:
            self.print(f"error: connection closed: {exc}")
        except TimeoutError:
            self.print(f"error: {command} timed out")
        except TransportError as exc:  # SerializationError among them: a body it cannot encode
            self.print(f"error: {exc}")
        return True

    async def close(self) -> None:
        """Close the connection, if any, without printing."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        if self._watcher is not None:
            await self._watcher
            self._watcher = None

    # -- commands ---------------------------------------------------------------------------

    async def _connect(self, text: str) -> None:
        if not text:
            raise _UsageError("usage: connect <host:port> | ws://<host:port>/<path>")
        try:
            address = parse_address(text)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        await self.close()
        try:
            client = await Client.connect(
                address.host,
                address.port,
                websocket=address.websocket,
                path=address.path,
                ssl=ssl.create_default_context() if address.tls else None,
                serializer=self._serializer,
                timeout=self._timeout,
                request_timeout=self._timeout,
            )
        except (OSError, TimeoutError, HandshakeRejected, TransportError) as exc:
            reason = str(exc) or type(exc).__name__
            raise _UsageError(f"cannot connect to {address}: {reason}") from None
        self._client = client
        self._pushes.clear()
        self._waited.clear()
        self._watcher = asyncio.create_task(self._watch(client), name="pitaya-cli-pushes")
        name = client.serializer.name
        self.print(f"connected to {address} (serializer {name})")
        announced = client.handshake_response.serializer
        if announced and announced != name:
            self.print(
                f"note: the server announced {announced}; bodies are sent as {name}, as asked"
            )
        if name not in ("json", "msgpack"):
            self.print(f"note: bodies are typed as JSON; {name} responses are shown as hex")

    async def _routes(self, wanted: str) -> None:
        """The connected server's routes, then those of every other server type it knows
        (cluster mode: ``server_types`` in its ``sys.docs``), asked through it with
        ``<type>.sys.docs`` and shown as a client sends them there (``room.room.join``).
        With a type named, that type's routes only."""
        client = await self._require_client()
        front = await self._docs(client, "sys.docs")
        front_type = str(front.get("server_type", "?"))
        if wanted and wanted != front_type:
            try:
                docs = await self._docs(client, f"{wanted}.sys.docs")
            except RequestError as exc:
                known = ", ".join(str(t) for t in front.get("server_types", [front_type]))
                raise _UsageError(
                    f"no routes of server type {wanted!r} through {front_type!r}"
                    f" ({exc.code}: {exc.msg}; server types: {known})"
                ) from None
            self._print_routes(docs, wanted, f"{wanted}.", front_type)
            return
        self._print_routes(front, front_type, "", front_type)
        if wanted:
            return
        for server_type in front.get("server_types", []):
            if server_type == front_type:
                continue
            try:
                docs = await self._docs(client, f"{server_type}.sys.docs")
            except RequestError as exc:  # e.g. no server of the type is up any more
                self.print(f"error {exc.code}: routes of server type {server_type!r}: {exc.msg}")
                continue
            self._print_routes(docs, str(server_type), f"{server_type}.", front_type)

    async def _docs(self, client: Client, route: str) -> dict[str, Any]:
        docs = await client.request(route)
        if isinstance(docs, bytes):  # protobuf servers answer JSON bytes
            with contextlib.suppress(ValueError):
                docs = json.loads(docs)
        if not isinstance(docs, dict) or not isinstance(docs.get("handlers"), dict):
            raise _UsageError(f"unexpected {route} answer: {_show(docs)}")
        return docs

    def _print_routes(
        self, docs: dict[str, Any], server_type: str, prefix: str, front_type: str
    ) -> None:
        through = f" (through {front_type!r})" if prefix else ""
        self.print(f"routes of server type {server_type!r}{through}:")
        for route, doc in sorted(docs["handlers"].items()):
            doc = doc if isinstance(doc, dict) else {}
            kind = "notify " if doc.get("notify") else "request"
            shapes = f"input {_show(doc.get('input'))}"
            if not doc.get("notify"):
                shapes += f"  output {_show(doc.get('output'))}"
            self.print(f"  {kind} {prefix}{route}  {shapes}")

    async def _send(self, command: str, rest: str) -> None:
        route, _, text = rest.partition(" ")
        if not route:
            raise _UsageError(f"usage: {command} <route> [json]")
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError as exc:
            raise _UsageError(f"invalid JSON body: {exc}") from None
        client = await self._require_client()
        if command == "notify":
            await client.notify(route, body)
            self.print(f"notified {route}")
        else:
            self.print(f"response {route} {_show(await client.request(route, body))}")

    async def _wait(self, rest: str) -> None:
        route, _, text = rest.partition(" ")
        if not route:
            raise _UsageError("usage: wait <route> [seconds]")
        try:
            seconds = float(text) if text.strip() else 5.0
        except ValueError:
            raise _UsageError(f"invalid number of seconds {text.strip()!r}") from None
        try:
            async with asyncio.timeout(seconds):
                while self._pushes[route] <= self._waited[route]:
                    if self._client is None or self._client.closed:
                        raise _UsageError("not connected")
                    self._push_arrived.clear()
                    await self._push_arrived.wait()
        except TimeoutError:
            raise _UsageError(f"no push on {route} within {seconds:g} s") from None
        self._waited[route] += 1

    # -- helpers ----------------------------------------------------------------------------

    async def _require_client(self) -> Client:
        if self._client is None or self._client.closed:
            raise _UsageError('not connected (use "connect <host:port>")')
        return self._client

    async def _watch(self, client: Client) -> None:
        """Print pushes as they arrive; report a connection the server ended."""
        async for push in client.pushes():
            self.print(f"push {push.route} {_show(push.body)}")
            self._pushes[push.route] += 1
            self._push_arrived.set()
        self._push_arrived.set()  # wake ``wait``, which then sees the closed client
        if self._client is client:  # not closed by us
            why = f" ({client.kick_reason})" if client.kick_reason else ""
            self.print(f"disconnected: {client.close_reason}{why}")


class _UsageError(Exception):
    """A command that cannot run; printed as ``error: <message>``."""


class _StdinLines:
    """Lines from stdin without blocking the event loop.

    A thread reads one line each time :meth:`readline` asks for one, so it never sits in a
    read while a command runs: on ``quit`` no thread holds stdin, and in a terminal the prompt
    appears after the previous command's output. Works for terminals, pipes and files alike
    (``loop.connect_read_pipe`` refuses regular files).
    """

    def __init__(self, prompt: str | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._prompt = prompt
        self._wanted = threading.Semaphore(0)
        self._line: asyncio.Future[str | None] | None = None
        threading.Thread(target=self._run, name="pitaya-cli-stdin", daemon=True).start()

    async def readline(self) -> str | None:
        """The next line, or None at end of input."""
        self._line = self._loop.create_future()
        self._wanted.release()
        return await self._line

    def _run(self) -> None:
        line: str | None = ""
        while line is not None:
            self._wanted.acquire()
            try:
                line = input(self._prompt) if self._prompt is not None else sys.stdin.readline()
            except EOFError:
                line = None
            line = line or None  # readline() gives "" at EOF; a blank line is "\n"
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._deliver, line)

    def _deliver(self, line: str | None) -> None:
        if self._line is not None and not self._line.done():
            self._line.set_result(line)


async def _run(args: argparse.Namespace) -> int:
    serializer = get_serializer(args.serializer) if args.serializer else None
    cli = Cli(sys.stdout, serializer=serializer, timeout=args.timeout)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
        cli.print('pitaya-cli: type "help" for the commands')
    if args.connect:
        await cli.execute(f"connect {args.connect}")
    lines = _StdinLines(">>> " if interactive else None)
    try:
        while (line := await lines.readline()) is not None:
            if not await cli.execute(line):
                break
    finally:
        await cli.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pitaya-cli`` and ``python -m transport.cli``."""
    parser = argparse.ArgumentParser(
        prog="pitaya-cli", description="A command-line client for Pitaya servers."
    )
    parser.add_argument("--connect", metavar="ADDRESS", help="host:port or ws://host:port/path")
    parser.add_argument(
        "--serializer",
        choices=["json", "msgpack"],
        help="payload format (default: the one the server announces)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="connect and request timeout in seconds"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print(flush=True)  # end the line the prompt was on
        return 130


if __name__ == "__main__":
    sys.exit(main())
