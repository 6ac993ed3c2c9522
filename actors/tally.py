"""A count with an event that is set whenever the count is zero.

The app keeps two: requests in flight (a graceful stop waits for none) and open connections
(a drain or a stop waits for none).
"""

from __future__ import annotations

import asyncio


class Tally:
    """``up``/``down`` a count; ``await tally.zero.wait()`` until nothing is left."""

    __slots__ = ("count", "zero")

    def __init__(self) -> None:
        self.count = 0
        self.zero = asyncio.Event()
        self.zero.set()

    def up(self) -> None:
        if not self.count:
            self.zero.clear()
        self.count += 1

    def down(self) -> None:
        self.count -= 1
        if self.count <= 0:
            self.count = 0
            self.zero.set()
