"""transport/etcd.py: a failure inside an outage the process already tells is marked so, and
callers log it at debug instead of one more warning (tests with a real etcd, stopped by PID)."""

from __future__ import annotations

import pytest

from tests.services import EtcdServer
from transport.etcd import EtcdClient, EtcdUnavailable


async def test_a_failure_is_told_once_etcd_has_answered_before(etcd_server: EtcdServer) -> None:
    etcd = EtcdClient([etcd_server.endpoint], timeout=1.0)
    await etcd.connect()
    try:
        await etcd.put("t/told", b"1")  # etcd answered once: later failures are an outage
        etcd_server.stop()
        with pytest.raises(EtcdUnavailable) as caught:
            await etcd.get("t/told")
        assert caught.value.told
    finally:
        etcd_server.start()
        await etcd.close()


async def test_a_failure_before_etcd_ever_answered_is_not_told(etcd_server: EtcdServer) -> None:
    etcd = EtcdClient([etcd_server.endpoint], timeout=1.0)
    etcd_server.stop()
    try:
        with pytest.raises(EtcdUnavailable) as caught:
            await etcd.connect()
            await etcd.get("t/never")
        assert not caught.value.told  # a start-up failure: its caller reports it
    finally:
        etcd_server.start()
        await etcd.close()
