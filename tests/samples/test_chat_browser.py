"""The chat page in two headless Chromium tabs, against the chat sample served in-process.

Needs the Debian package ``chromium`` (``bash .ci/run`` installs it); without it the test
fails saying so. Screenshots land in ``artifacts/chat-browser/`` (git-ignored; override the
parent directory with ``TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from actors.testing import serve
from samples.chat.room import build_app
from tests.samples.chromium import Chromium, Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "artifacts")) / "chat-browser"


def members_are(names: list[str]) -> str:
    """A JavaScript condition: the member list shows exactly ``names``, in order."""
    shown = "[...document.querySelectorAll('#members li')].map(e => e.innerText)"
    return f"JSON.stringify({shown}) === {json.dumps(json.dumps(names, separators=(',', ':')))}"


def log_has(line: str) -> str:
    """A JavaScript condition: some line of the message log reads ``line``."""
    lines = "[...document.querySelectorAll('#log li')].map(e => e.innerText.trim())"
    return f"{lines}.includes({json.dumps(line)})"


async def join(page: Page, name: str) -> None:
    await page.type("#name", name)
    await page.press_enter()


async def say(page: Page, text: str) -> None:
    await page.type("#text", text)
    await page.press_enter()


async def test_two_pages_join_chat_and_leave(tmp_path: Path) -> None:
    async with (
        serve(build_app(tcp_port=0, ws_port=0)) as server,
        Chromium.launch(tmp_path) as browser,
    ):
        host, port = server.app.address("ws")
        url = f"http://{host}:{port}/"
        ann = await browser.new_page(url)
        bob = await browser.new_page(url)
        assert await ann.text("#status") == "not connected"

        await join(ann, "ann")
        await ann.wait_for(members_are(["ann"]))
        await ann.wait_for(log_has("you joined as ann"))
        assert await ann.text("#status") == f"connected to ws://{host}:{port}/ as ann"

        await join(bob, "   ")  # refused by the server: the page shows Pitaya's error
        await bob.wait_for("document.getElementById('error').innerText.includes('PIT-400')")
        assert await bob.text("#error") == "PIT-400: name must not be empty"
        await bob.screenshot(ARTIFACTS / "1-bob-error.png")

        await join(bob, "bob")
        await bob.wait_for(members_are(["ann", "bob"]))
        assert await bob.text("#error") == ""
        await ann.wait_for(members_are(["ann", "bob"]))
        await ann.wait_for(log_has("bob joined"))

        await say(bob, "hi ann")
        await ann.wait_for(log_has("bob: hi ann"))
        await bob.wait_for(log_has("bob: hi ann"))
        await say(ann, "hello bob, café ☕")
        await bob.wait_for(log_has("ann: hello bob, café ☕"))
        await ann.wait_for(log_has("ann: hello bob, café ☕"))
        assert await bob.texts("#log li") == [
            "you joined as bob",
            "bob: hi ann",
            "ann: hello bob, café ☕",
        ]
        await ann.screenshot(ARTIFACTS / "2-ann-chatting.png")
        await bob.screenshot(ARTIFACTS / "2-bob-chatting.png")

        await bob.click("#leave")  # the Leave button closes bob's connection
        await ann.wait_for(log_has("bob left"))
        await ann.wait_for(members_are(["ann"]))
        await bob.wait_for("!document.getElementById('join-form').hidden")
        assert (await bob.text("#status")).startswith("disconnected")
        await ann.screenshot(ARTIFACTS / "3-ann-after-bob-left.png")

        await join(bob, "bob again")  # and closing the tab leaves the room too
        await ann.wait_for(log_has("bob again joined"))
        await bob.close()
        await ann.wait_for(log_has("bob again left"))
        await ann.wait_for(members_are(["ann"]))
        assert await ann.texts("#log li") == [
            "you joined as ann",
            "bob joined",
            "bob: hi ann",
            "ann: hello bob, café ☕",
            "bob left",
            "bob again joined",
            "bob again left",
        ]
        await ann.screenshot(ARTIFACTS / "4-ann-final.png")
        assert ann.errors == []
        assert bob.errors == []


async def test_the_page_through_a_cluster_connector(tmp_path: Path) -> None:
    """The cluster sample's connector serves the same page; its routes go to a room server
    (``room.room.join``), here an in-process cluster (``MemoryCluster``)."""
    from actors.testing import MemoryCluster
    from samples.cluster.servers import build_connector, build_room

    network = MemoryCluster()
    room = build_room(
        "room-1", "nats://unused:1", "unused:1", discovery=network.discovery(), rpc=network.rpc()
    )
    connector = build_connector(
        "connector-1", "nats://unused:1", "unused:1", tcp_port=0, ws_port=0,
        discovery=network.discovery(), rpc=network.rpc(),
    )  # fmt: skip
    async with room, serve(connector) as server, Chromium.launch(tmp_path) as browser:
        host, port = server.app.address("ws")
        ann = await browser.new_page(f"http://{host}:{port}/")
        bob = await browser.new_page(f"http://{host}:{port}/")
        await join(ann, "ann")
        await ann.wait_for(members_are(["ann"]))
        await join(bob, "bob")
        await bob.wait_for(members_are(["ann", "bob"]))
        await ann.wait_for(log_has("bob joined"))
        await say(bob, "hi from the cluster")
        await ann.wait_for(log_has("bob: hi from the cluster"))
        await bob.click("#leave")
        await ann.wait_for(log_has("bob left"))
        await ann.wait_for(members_are(["ann"]))
        await ann.screenshot(ARTIFACTS / "cluster-ann.png")
        assert ann.errors == []
        assert bob.errors == []
