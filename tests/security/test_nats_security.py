"""Cluster RPC over a NATS that requires TLS with client certificates and authentication.

A real nats-server (tests/security/conftest.py): peers without a certificate signed by the
cluster's CA, or without valid credentials, are refused; servers configured with them (from
the environment, as any option) form a cluster that serves clients; no password or token ever
reaches a log line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import nats
import nats.errors
import pytest

from actors.app import App
from actors.cluster.rpc import ClusterStartupError
from actors.config import Config
from tests.cluster.harness import Node, start_node
from tests.reliability.support import until
from tests.security.conftest import PASSWORD, TOKEN, Creds, NKey, Pki, SecureNats
from tests.services import EtcdServer, NatsServer
from transport.client import Client


def tls_context(pki: Pki, *, cert: bool = True, rogue: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if cert:
        context.load_cert_chain(
            *((pki.rogue_cert, pki.rogue_key) if rogue else (pki.client_cert, pki.client_key))
        )
    return context


async def refused(url: str, **options: Any) -> str:
    """Connect with nats-py as a stranger would; the error it gets (fails if it connects)."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(f"{type(exc).__name__}: {exc}")

    try:
        nc = await nats.connect(
            servers=[url], allow_reconnect=False, connect_timeout=2, error_cb=on_error, **options
        )
    except Exception as exc:
        return f"{type(exc).__name__}: {exc} {errors}"
    await nc.close()
    raise AssertionError(f"{url} accepted {sorted(options)}")


async def test_nats_refuses_peers_without_certificate_or_credentials(
    secure_nats: SecureNats, pki: Pki, nkey: NKey
) -> None:
    url = secure_nats.url
    # Plain TCP, a certificate from another CA, no certificate: refused at TLS.
    await refused(url, user="ann", password=PASSWORD)
    await refused(url, tls=tls_context(pki, rogue=True), user="ann", password=PASSWORD)
    await refused(url, tls=tls_context(pki, cert=False), user="ann", password=PASSWORD)
    # A good certificate but no or wrong credentials: Authorization Violation.
    assert "uthorization" in await refused(url, tls=tls_context(pki))
    assert "uthorization" in await refused(url, tls=tls_context(pki), user="ann", password="no")
    # All of it: accepted (the server really is usable).
    for credentials in ({"user": "ann", "password": PASSWORD}, {"nkeys_seed": nkey.seed_file}):
        nc = await nats.connect(
            servers=[url], allow_reconnect=False, tls=tls_context(pki), **credentials
        )
        await nc.close()


@asynccontextmanager
async def backend(nats_url: str, etcd: EtcdServer, **options: Any) -> AsyncIterator[App]:
    app = App(
        server_type="room",
        mode="cluster",
        frontend=False,
        nats_url=nats_url,
        etcd_endpoints=etcd.endpoint,
        cluster_connect_timeout=3,
        **options,
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def tls_options(pki: Pki) -> dict[str, str]:
    return {"nats_tls_ca": pki.ca, "nats_tls_cert": pki.client_cert, "nats_tls_key": pki.client_key}


async def test_a_server_authenticates_with_an_nkey_seed_or_a_password(
    secure_nats: SecureNats, etcd_server: EtcdServer, pki: Pki, nkey: NKey
) -> None:
    for credentials in (
        {"nats_nkey_seed": nkey.seed_file},
        {"nats_user": "ann", "nats_password": PASSWORD},
    ):
        async with backend(secure_nats.url, etcd_server, **tls_options(pki), **credentials) as app:
            assert app.cluster is not None and app.cluster.connected


async def test_a_server_authenticates_with_a_token(
    token_nats: SecureNats, etcd_server: EtcdServer
) -> None:
    assert "uthorization" in await refused(token_nats.url)
    async with backend(token_nats.url, etcd_server, nats_token=TOKEN) as app:
        assert app.cluster is not None and app.cluster.connected


async def test_credentials_refused_at_reconnection_are_told_at_once(
    token_nats: SecureNats, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """NATS restarted with a rotated token: the attempts to reconnect, twice a second, were
    counted and never said why they failed; the cluster stayed cut off without a word."""
    caplog.set_level(logging.INFO)
    async with backend(token_nats.url, etcd_server, nats_token=TOKEN) as app:
        await asyncio.to_thread(token_nats.stop)
        token_nats.config_file.write_text(
            token_nats.config_file.read_text().replace(TOKEN, "rotated-" + TOKEN)
        )
        await asyncio.to_thread(token_nats.start)

        def refusals() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.ERROR and "refuses this server" in r.getMessage()
            ]

        await until(lambda: bool(refusals()), timeout=15)
        (line,) = refusals()
        assert "uthorization" in line and TOKEN not in line
        assert app.cluster is not None and not app.cluster.connected


async def test_a_server_authenticates_with_a_creds_file(
    creds_nats: Creds, etcd_server: EtcdServer
) -> None:
    """Decentralised auth: an operator-mode nats-server and a user's .creds (JWT + seed)."""
    url = creds_nats.server.url
    assert "uthorization" in await refused(url)
    async with backend(url, etcd_server, nats_creds=creds_nats.creds_file) as app:
        assert app.cluster is not None and app.cluster.connected


async def test_wrong_credentials_fail_the_start_without_showing_them(
    secure_nats: SecureNats, etcd_server: EtcdServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = secure_nats.url.removeprefix("nats://")
    for url, options in (
        (f"nats://ann:wrong-{PASSWORD}@{host}", tls_options(pki)),  # wrong password in the URL
        (
            secure_nats.url,
            {**tls_options(pki), "nats_user": "ann", "nats_password": "x" + PASSWORD},
        ),
        (f"nats://ann:{PASSWORD}@{host}", {}),  # no client certificate
    ):
        with pytest.raises(ClusterStartupError) as caught:
            async with backend(url, etcd_server, **options):
                pass
        assert "cannot reach NATS at nats://***@" in str(caught.value) or (
            "cannot reach NATS at nats://127.0.0.1" in str(caught.value)
        ), caught.value
        assert PASSWORD not in str(caught.value)
        if options:  # the certificate was accepted: the credentials were refused, said so
            assert str(caught.value).endswith(": refused: nats: 'Authorization Violation'")
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


@dataclass(frozen=True, slots=True)
class Url:
    """A NATS address with credentials in it, as Node takes a NatsServer (its ``url``)."""

    url: str


async def test_a_cluster_serves_over_tls_and_credentials_and_never_logs_them(
    secure_nats: SecureNats, etcd_server: EtcdServer, pki: Pki, nodes: list[Node]
) -> None:
    """Real server processes, configured from the environment; the password is in the URL."""
    nats_with_password = cast(
        NatsServer, Url(secure_nats.url.replace("nats://", f"nats://ann:{PASSWORD}@"))
    )
    env = {
        "PITAYA_NATS_TLS_CA": pki.ca,
        "PITAYA_NATS_TLS_CERT": pki.client_cert,
        "PITAYA_NATS_TLS_KEY": pki.client_key,
        "LOG_LEVEL": "DEBUG",
    }
    room = await start_node(nodes, "room", "room-1", nats_with_password, etcd_server, **env)
    connector = await start_node(nodes, "connector", "c-1", nats_with_password, etcd_server, **env)
    client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
    try:
        reply = await client.request("room.room.join", {"name": "ann"})
        assert reply["members"] == ["ann"]
    finally:
        await client.close()
    for node in (room, connector):
        await node.stop()
        assert node.log and not [line for line in node.log if PASSWORD in line], node.log
        # A clean stop is not an outage.
        assert not [line for line in node.log if "connection to NATS" in line], node.log[-5:]


def test_a_config_shows_no_secret() -> None:
    config = Config(
        nats_url=f"nats://ann:{PASSWORD}@n1:4222, tls://{TOKEN}@n2:4222",
        nats_password=PASSWORD,
        nats_token=TOKEN,
        etcd_password=PASSWORD,
    )
    shown = repr(config)
    assert "nats_url='nats://***@n1:4222,tls://***@n2:4222'" in shown
    assert PASSWORD not in shown and TOKEN not in shown
