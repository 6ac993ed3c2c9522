"""The README's Python blocks: how ``tests/test_readme.py`` finds them and runs each one.

Every fenced ``python`` block of README.md is one of two kinds, told by an HTML comment on
the line right above its fence (invisible on a rendered page):

* **complete** (no comment, or ``<!-- example: NAME.py -->`` to give it a file name): runs as
  written, as a script, in a fresh interpreter. A block defining ``test_`` functions also runs
  under pytest as a user's test file (a directory with no configuration). A named block is
  saved as ``NAME.py`` beside the others, so a later block may import from it.
* **a fragment** (``<!-- fragment of: NAME.py -->``): a few lines that belong in the named
  earlier block, before its ``app.run()``. It runs in the namespace that block leaves (its
  ``app.run()`` does nothing then), so every name it uses must exist there or be imported by
  the fragment; nothing is started.

A server block ends with ``app.run()``, which would serve until a signal. While the blocks run
(:func:`main`, in the subprocess) ``App.run`` instead starts the app with every listener moved
to a free loopback port, connects one client to each listener (handshake included), and stops
the app gracefully; an exception anywhere fails the block.
"""

from __future__ import annotations

import asyncio
import re
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"<!--\s*(example|fragment of):\s*(\S+)\s*-->")


@dataclass(frozen=True)
class Block:
    """One ``python`` block of the README."""

    line: int
    """Line of its opening fence (1-based), for messages."""
    source: str
    name: str | None
    """File name given by ``example:`` (None: an unnamed complete block)."""
    fragment_of: str | None
    """The block this one is a fragment of (None: complete)."""

    @property
    def label(self) -> str:
        if self.fragment_of:
            return f"line {self.line}: fragment of {self.fragment_of}"
        return f"line {self.line}: {self.name or 'example'}"

    @property
    def defines_tests(self) -> bool:
        return re.search(r"^(async )?def test_", self.source, re.M) is not None


def python_blocks(text: str | None = None) -> list[Block]:
    """Every ``python`` block, in order, with its marker read."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```python":
            index += 1
            continue
        start = index
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
        above = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        found = MARKER.search(above)
        kind, name = found.groups() if found else (None, None)
        blocks.append(
            Block(
                line=start + 1,
                source="\n".join(lines[start + 1 : end]) + "\n",
                name=name if kind == "example" else None,
                fragment_of=name if kind == "fragment of" else None,
            )
        )
        index = end + 1
    return blocks


def markers_in(text: str) -> list[str]:
    """Every marker-like comment, parsed or not (to catch a typo that would go unnoticed)."""
    return re.findall(r"<!--\s*(?:example|fragment)[^>]*-->", text)


# -- in the subprocess --------------------------------------------------------------------------


def _patch_app(serve: bool) -> None:
    from actors.app import App
    from transport.client import Client

    listen_tcp, listen_ws = App.listen_tcp, App.listen_ws

    def free_tcp(self: App, host: str, port: int, **options: Any) -> Any:
        return listen_tcp(self, "127.0.0.1", 0, **options)

    def free_ws(self: App, host: str, port: int, **options: Any) -> Any:
        return listen_ws(self, "127.0.0.1", 0, **options)

    async def serve_once(app: App) -> None:
        async with app:
            for kind, host, port in app.addresses:
                client = await Client.connect(host, port, websocket=kind == "ws", timeout=10)
                await client.close()

    def run(self: App) -> None:
        if serve:
            asyncio.run(serve_once(self))

    App.listen_tcp = free_tcp  # type: ignore[method-assign]
    App.listen_ws = free_ws  # type: ignore[method-assign]
    App.run = run  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    """``python -m tests.readme script FILE`` or ``... fragment PARENT FILE``."""
    _patch_app(serve=argv[0] == "script")
    if argv[0] == "script":
        runpy.run_path(argv[1], run_name="__main__")
    elif argv[0] == "fragment":
        namespace = runpy.run_path(argv[1], run_name="readme_parent")
        code = compile(Path(argv[2]).read_text(encoding="utf-8"), argv[2], "exec")
        exec(code, namespace)
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
