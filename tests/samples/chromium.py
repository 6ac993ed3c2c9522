"""Headless Chromium driven over the DevTools protocol (CDP), for browser tests.

No Playwright and no browser download: the Debian ``chromium`` package is started with
``--remote-debugging-port=0``, its ``DevTools listening on ws://...`` line is read from its
log, and commands travel as JSON over one WebSocket (the ``websockets`` package), with
pages attached in "flatten" mode (each command names its page's ``sessionId``).

Example::

    async with Chromium.launch(tmp_path) as browser:
        page = await browser.new_page("http://127.0.0.1:3251/")
        await page.type("#name", "ann")
        await page.press_enter()
        await page.wait_for("document.querySelectorAll('#members li').length === 1")
        await page.screenshot(tmp_path / "ann.png")

Every wait is bounded; a page's JavaScript exceptions and ``console.error`` calls are kept
in ``page.errors`` so a test can assert there were none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.services import require_binary

START_TIMEOUT = 20.0
CALL_TIMEOUT = 10.0
_DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")


class CdpError(Exception):
    """Chromium answered a command with an error, or a page's script threw."""


class Chromium:
    """One headless browser process and its DevTools connection."""

    def __init__(self, process: asyncio.subprocess.Process, ws: ClientConnection) -> None:
        self.process = process
        self._ws = ws
        self._next_id = 0
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}  # sessionId -> page, for its events
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(
        cls, workdir: Path, *, width: int = 960, height: int = 720
    ) -> AsyncIterator[Chromium]:
        """Start Chromium (profile and log under ``workdir``); stop it by PID on exit."""
        binary = require_binary("chromium", "chromium")
        log_path = workdir / "chromium.log"
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--window-size={width},{height}",
            f"--user-data-dir={workdir / 'profile'}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        with log_path.open("wb") as log:  # a file, not a pipe: Chromium cannot block on it
            process = await asyncio.create_subprocess_exec(
                *args, stdout=log, stderr=log, start_new_session=True
            )
        try:
            url = await _devtools_url(process, log_path)
            ws = await connect(url, max_size=None, ping_interval=None, open_timeout=10)
            browser = cls(process, ws)
            try:
                yield browser
            finally:
                await browser.close()
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.wait_for(process.wait(), 10)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and return its result; raises :class:`CdpError` on an error."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[self._next_id] = future
        await self._ws.send(json.dumps(message))
        try:
            reply = await asyncio.wait_for(future, CALL_TIMEOUT)
        finally:
            self._calls.pop(message["id"], None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def new_page(self, url: str) -> Page:
        """Open a tab on ``url`` and wait until its document has loaded."""
        target = await self.call("Target.createTarget", {"url": "about:blank"})
        attached = await self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, target["targetId"], attached["sessionId"])
        self._pages[page.session] = page
        await page.call("Runtime.enable")
        await page.call("Page.enable")
        await page.call("Page.navigate", {"url": url})
        await page.wait_for(f"location.href === {json.dumps(url)}")
        await page.wait_for("document.readyState === 'complete'")
        return page

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("Browser.close"), 5)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self._ws.close()

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                future = self._calls.get(message["id"])
                if future is not None and not future.done():
                    future.set_result(message)
            elif (page := self._pages.get(message.get("sessionId", ""))) is not None:
                page.on_event(message["method"], message.get("params", {}))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(CdpError("the DevTools connection closed"))


async def _devtools_url(process: asyncio.subprocess.Process, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(log_path.read_text, errors="replace")
        if found := _DEVTOOLS_LINE.search(text):
            return found.group(1)
        if process.returncode is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}:\n{text[-2000:]}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"chromium did not announce DevTools in {START_TIMEOUT} s")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Page:
    """One tab: evaluate JavaScript, type, press keys, wait for conditions, screenshot."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        self.errors: list[str] = []

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description", str(details)))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a)) for a in params.get("args", [])))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.call(method, params, session=self.session)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (promises are awaited)."""
        reply = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> None:
        """Poll until ``expression`` is truthy; on timeout fail with the page's text."""
        deadline = time.monotonic() + timeout
        while not await self.evaluate(expression):
            if time.monotonic() > deadline:
                body = await self.evaluate("document.body && document.body.innerText")
                raise TimeoutError(f"waited {timeout} s for {expression}; the page shows:\n{body}")
            await asyncio.sleep(0.05)

    async def text(self, selector: str) -> str:
        value = await self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")
        return str(value)

    async def texts(self, selector: str) -> list[str]:
        """``innerText`` of every element matching ``selector``."""
        expression = f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.innerText)"
        return list(await self.evaluate(expression))

    async def type(self, selector: str, text: str) -> None:
        """Focus ``selector``, clear it and type ``text`` (as input events, like a keyboard)."""
        await self.evaluate(
            f"(e => {{ e.focus(); e.value = ''; }})(document.querySelector({json.dumps(selector)}))"
        )
        if text:
            await self.call("Input.insertText", {"text": text})

    async def press_enter(self) -> None:
        """Press and release Enter in the focused element (submits its form)."""
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.call("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **key})
        await self.call("Input.dispatchKeyEvent", {"type": "keyUp", **key})

    async def click(self, selector: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path``."""
        reply = await self.call("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(_write, path, base64.b64decode(reply["data"]))
        return path

    async def close(self) -> None:
        """Close the tab, as a person closing it would (its WebSocket goes with it)."""
        await self.browser.call("Target.closeTarget", {"targetId": self.target})
