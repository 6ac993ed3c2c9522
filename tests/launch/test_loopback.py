"""Thespian's sockets kept on 127.0.0.1 (``actors.launch.loopback``), seen on the addresses
Thespian makes, without starting an actor system (test_launcher.py looks at the sockets of a
real one)."""

from __future__ import annotations

import socket

import pytest
from thespian.system.transport import IPBase

from actors.launch.loopback import LOOPBACK, keep_thespian_local


@pytest.fixture(autouse=True)
def _restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thespian's class and the environment as they were before the test."""
    monkeypatch.setattr(IPBase.IPActorAddress, "__init__", IPBase.IPActorAddress.__init__)
    monkeypatch.delenv("THESPIAN_BASE_IPADDR", raising=False)


def address(host: str | None, *, external: bool = False) -> IPBase.IPActorAddress:
    tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    return IPBase.IPActorAddress(*tcp, host, 1900, external=external)


def test_an_address_meant_for_every_interface_binds_the_loopback_one() -> None:
    keep_thespian_local()
    assert address("0.0.0.0").bindname == (LOOPBACK, 1900)  # listen-any
    assert address(None, external=True).bindname == (LOOPBACK, 1900)  # reachable: ''
    assert address("127.0.0.2").bindname == ("127.0.0.2", 1900)  # chosen: left alone


def test_keeping_thespian_local_twice_wraps_its_addresses_once() -> None:
    keep_thespian_local()
    wrapped = IPBase.IPActorAddress.__init__
    keep_thespian_local()
    assert IPBase.IPActorAddress.__init__ is wrapped
