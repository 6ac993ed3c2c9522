"""Discovery on an etcd that requires TLS with client certificates, or users and roles.

Real etcd processes (tests/security/conftest.py): a peer without a certificate signed by the
cluster's CA, or without credentials, is refused; a server configured with them registers and
finds the others; the password never reaches a log line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from etcd3aio import Etcd3Client
from etcd3aio.auth import PermissionType

from actors.app import App
from actors.cluster.rpc import ClusterStartupError
from tests.security.conftest import PASSWORD, Pki, SecureEtcd
from tests.services import EtcdServer, NatsServer
from transport.etcd import EtcdClient, EtcdSecurity, EtcdUnavailable


@asynccontextmanager
async def backend(nats: NatsServer, etcd: EtcdServer, **options: Any) -> AsyncIterator[App]:
    app = App(
        server_type="room",
        mode="cluster",
        frontend=False,
        nats_url=nats.url,
        etcd_endpoints=etcd.endpoint,
        cluster_connect_timeout=3,
        **options,
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def reachable(endpoint: str, security: EtcdSecurity) -> bool:
    etcd = EtcdClient([endpoint], timeout=2, security=security)
    try:
        await etcd.connect()
        await etcd.put("pitaya/probe", b"1")
        return True
    except EtcdUnavailable:
        return False
    finally:
        await etcd.close()


async def test_etcd_with_tls_refuses_peers_without_the_clusters_certificate(
    secure_etcd: SecureEtcd, pki: Pki
) -> None:
    endpoint = secure_etcd.endpoint
    assert not await reachable(endpoint, EtcdSecurity())  # plain text
    assert not await reachable(endpoint, EtcdSecurity(ca_file=pki.ca))  # no client certificate
    rogue = EtcdSecurity(ca_file=pki.ca, cert_file=pki.rogue_cert, key_file=pki.rogue_key)
    assert not await reachable(endpoint, rogue)
    good = EtcdSecurity(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    assert await reachable(endpoint, good)


async def test_servers_register_over_tls_with_client_certificates(
    secure_etcd: SecureEtcd, nats_server: NatsServer, pki: Pki
) -> None:
    tls = {"etcd_tls_ca": pki.ca, "etcd_tls_cert": pki.client_cert, "etcd_tls_key": pki.client_key}
    async with (
        backend(nats_server, secure_etcd, **tls) as one,
        backend(nats_server, secure_etcd, **tls) as two,
    ):
        assert one.cluster is not None and two.cluster is not None
        assert one.cluster.discovery.registered
        assert two.cluster.discovery.server(one.server_id) is not None
    with pytest.raises(ClusterStartupError) as caught:
        async with backend(nats_server, secure_etcd, etcd_tls_ca=pki.ca):
            pass
    assert "cannot reach etcd at " in str(caught.value)


async def enable_auth(endpoint: str) -> None:
    """root (needed to turn auth on), and ``pitaya``: read-write on ``pitaya/`` only."""
    async with Etcd3Client([endpoint]) as client:
        auth = client.auth
        assert auth is not None
        await auth.user_add("root", PASSWORD)
        await auth.user_grant_role("root", "root")
        await auth.role_add("pitaya")
        await auth.role_grant_permission(
            "pitaya", "pitaya/", "pitaya0", perm_type=PermissionType.READWRITE
        )
        await auth.user_add("pitaya", PASSWORD)
        await auth.user_grant_role("pitaya", "pitaya")
        await auth.auth_enable()


async def test_etcd_users_and_roles(
    etcd_server: EtcdServer, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await enable_auth(etcd_server.endpoint)
    # Strangers: no user, a wrong password.
    assert not await reachable(etcd_server.endpoint, EtcdSecurity())
    assert not await reachable(etcd_server.endpoint, EtcdSecurity("pitaya", "wrong"))
    for options in ({}, {"etcd_user": "pitaya", "etcd_password": "x" + PASSWORD}):
        with pytest.raises(ClusterStartupError) as caught:
            async with backend(nats_server, etcd_server, **options):
                pass
        assert "etcd" in str(caught.value) and PASSWORD not in str(caught.value)
    # A user whose role covers the cluster's prefix only: registers, runs groups.
    creds = {"etcd_user": "pitaya", "etcd_password": PASSWORD}
    async with (
        backend(nats_server, etcd_server, **creds) as one,
        backend(nats_server, etcd_server, **creds) as two,
    ):
        assert one.cluster is not None and two.cluster is not None
        assert two.cluster.discovery.server(one.server_id) is not None
        # The watch carries the token too: the first sees the second arrive.
        deadline = asyncio.get_running_loop().time() + 10
        while one.cluster.discovery.server(two.server_id) is None:
            assert asyncio.get_running_loop().time() < deadline, "the watch saw nothing"
            await asyncio.sleep(0.02)
        await one.groups.create("lobby")
        await one.groups.add("lobby", "ann")
        assert await two.groups.members("lobby") == ["ann"]
        await one.groups.delete("lobby")
    # ... and nothing outside it.
    with pytest.raises(ClusterStartupError):
        async with backend(nats_server, etcd_server, etcd_prefix="other/", **creds):
            pass
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


async def test_the_etcd_token_is_renewed_after_etcd_restarts(
    etcd_server: EtcdServer, nats_server: NatsServer
) -> None:
    """etcd's simple tokens die with the etcd process: the lease keep-alive, the watch and
    the groups authenticate again by themselves."""
    await enable_auth(etcd_server.endpoint)
    creds = {"etcd_user": "pitaya", "etcd_password": PASSWORD, "etcd_lease_ttl": 2}
    async with backend(nats_server, etcd_server, **creds) as one:
        assert one.cluster is not None
        etcd_server.restart()
        async with backend(nats_server, etcd_server, **creds) as two:
            assert two.cluster is not None
            deadline = asyncio.get_running_loop().time() + 15
            while one.cluster.discovery.server(two.server_id) is None:  # seen by the watch
                assert asyncio.get_running_loop().time() < deadline, "the watch saw nothing"
                await asyncio.sleep(0.05)
            await one.groups.create("after-restart")  # groups, on a new token
            assert await two.groups.exists("after-restart")
            while not one.cluster.discovery.registered:  # keep-alive, on a new token
                assert asyncio.get_running_loop().time() < deadline, "not registered again"
                await asyncio.sleep(0.05)
            key = f"pitaya/servers/room/{one.server_id}"
            assert await two.cluster.discovery.lookup("room", one.server_id) is not None, key


async def test_authentication_waits_within_its_timeout_for_an_etcd_coming_back(
    etcd_server: EtcdServer,
) -> None:
    """Unreachable is not refused: a client authenticating while etcd restarts (or while
    gRPC's connection to it, shared by the process, backs off) tries again until its timeout."""
    await enable_auth(etcd_server.endpoint)
    security = EtcdSecurity("pitaya", PASSWORD)
    etcd_server.stop()
    early = EtcdClient([etcd_server.endpoint], timeout=15, security=security)
    try:
        # Its first attempt meets the closed port (etcd takes a second to start): without
        # the retry, connecting fails with "refused the credentials" right there.
        connecting = asyncio.ensure_future(early.connect())
        await asyncio.to_thread(etcd_server.start)
        await asyncio.wait_for(connecting, 15)  # authenticated once etcd is back
        await early.put("pitaya/after", b"1")
    finally:
        await early.close()
    etcd_server.stop()
    gone = EtcdClient([etcd_server.endpoint], timeout=1, security=security)
    try:
        with pytest.raises(EtcdUnavailable, match=r"cannot reach etcd at .* within 1s"):
            await gone.connect()
    finally:
        await gone.close()
