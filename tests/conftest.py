"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["tcp", "ws"])
def websocket(request: pytest.FixtureRequest) -> bool:
    """Run the test once over TCP (False) and once over WebSocket (True)."""
    return bool(request.param == "ws")
