"""Serve the chat page (``samples/chat/web/``) on the WebSocket port.

The files come from a fixed allow-list and are read once, when the app is built, so a GET
costs a dict lookup on the event loop and no path from a request ever reaches the disk.

Example::

    app.listen_ws("0.0.0.0", 3251, http_handler=static_files(WEB_DIR, WEB_FILES))
    app.listen_ws("0.0.0.0", 3251, http_handler=chat_page("room."))  # on a cluster connector
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from pathlib import Path

from transport.websocket import HttpHandler, HttpResponse

__all__ = ["CONTENT_TYPES", "WEB_DIR", "WEB_FILES", "chat_page", "static_files"]

WEB_DIR = Path(__file__).with_name("web")
#: What the chat page needs; ``/`` serves the first one.
WEB_FILES = ("index.html", "chat.js", "pitaya-client.js")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # ES modules need a JavaScript MIME type
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

_NOT_FOUND = HttpResponse(404, "text/plain; charset=utf-8", b"not found\n")


def static_files(
    directory: Path,
    names: Iterable[str],
    *,
    rewrite: Callable[[str, bytes], bytes] | None = None,
) -> HttpHandler:
    """An HTTP handler serving ``names`` from ``directory``; ``/`` is the first name.

    ``rewrite(name, content)``, if given, changes a file's content once, when it is read.
    Raises ``OSError`` now if a file is missing, and ``ValueError`` for a name with a
    directory part or an unknown extension. Any other path answers 404.
    """
    pages: dict[str, HttpResponse] = {}
    for name in names:
        path = directory / name
        if Path(name).name != name or path.suffix not in CONTENT_TYPES:
            raise ValueError(f"cannot serve {name!r}: plain file names with a known type only")
        content = path.read_bytes()
        if rewrite is not None:
            content = rewrite(name, content)
        response = HttpResponse(200, CONTENT_TYPES[path.suffix], content)
        pages.setdefault("/", response)
        pages["/" + name] = response

    def serve(request_path: str) -> HttpResponse:
        return pages.get(request_path.split("?", 1)[0], _NOT_FOUND)

    return serve


def chat_page(route_prefix: str = "") -> HttpHandler:
    """The chat page, its routes prefixed with ``route_prefix``.

    On a cluster connector, ``chat_page("room.")`` makes the page send ``room.room.join``
    and ``room.room.message`` (forwarded to a room server); the bodies and pushes are the
    standalone chat's. The prefix reaches the page as ``<meta name="pitaya-route-prefix">``.
    """
    meta = f'<meta name="pitaya-route-prefix" content="{html.escape(route_prefix)}">'

    def add_prefix(name: str, content: bytes) -> bytes:
        if name != "index.html" or not route_prefix:
            return content
        return content.replace(b"<head>", b"<head>\n" + meta.encode(), 1)

    return static_files(WEB_DIR, WEB_FILES, rewrite=add_prefix)
