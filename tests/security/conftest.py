"""A cluster that trusts nobody by default: nats-server with authorisation and TLS, etcd with
TLS, client certificates and users, all certificates from one throwaway CA (trustme).

The servers are the real binaries of tests/services.py, started with their security options;
each test gets fresh ones on free loopback ports, stopped by PID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nkeys  # type: ignore[import-untyped]
import pytest
import trustme

from tests.cluster.harness import etcd_server, nats_server, nodes, rpc_transport
from tests.services import EtcdServer, NatsServer, serving

__all__ = ["etcd_server", "nats_server", "nodes", "rpc_transport"]

PASSWORD = "s3cret-pw"
"""Never to be seen in any log line or error message."""
TOKEN = "t0ken-xyz"


@dataclass(frozen=True, slots=True)
class Pki:
    """PEM files: the CA, a server certificate (127.0.0.1, localhost), a client certificate,
    and a client certificate from another CA (trusted by nobody)."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    rogue_cert: str
    rogue_key: str


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, rogue_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("pitaya-server@example.test")
    rogue = rogue_ca.issue_cert("pitaya-server@example.test")

    def write(name: str, data: bytes) -> str:
        path = root / name
        path.write_bytes(data)
        return str(path)

    return Pki(
        ca=write("ca.pem", ca.cert_pem.bytes()),
        server_cert=write("server.pem", b"".join(p.bytes() for p in server.cert_chain_pems)),
        server_key=write("server.key", server.private_key_pem.bytes()),
        client_cert=write("client.pem", b"".join(p.bytes() for p in client.cert_chain_pems)),
        client_key=write("client.key", client.private_key_pem.bytes()),
        rogue_cert=write("rogue.pem", b"".join(p.bytes() for p in rogue.cert_chain_pems)),
        rogue_key=write("rogue.key", rogue.private_key_pem.bytes()),
    )


@dataclass(frozen=True, slots=True)
class NKey:
    seed_file: str
    public: str


@pytest.fixture(scope="session")
def nkey(tmp_path_factory: pytest.TempPathFactory) -> NKey:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = tmp_path_factory.mktemp("nkey") / "user.nk"
    path.write_bytes(seed)
    return NKey(str(path), nkeys.from_seed(bytearray(seed)).public_key.decode())


class SecureNats(NatsServer):
    """nats-server with a configuration file (``authorization`` and ``tls`` blocks)."""

    def __init__(self, config: str) -> None:
        super().__init__()
        self.config_file = self.data_dir / "nats.conf"
        self.config_file.write_text(f"listen: 127.0.0.1:{self.port}\n{config}")

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_file)]


def nats_tls_block(pki: Pki) -> str:
    """TLS required, client certificates verified against the CA."""
    return (
        f'tls {{\n  cert_file: "{pki.server_cert}"\n  key_file: "{pki.server_key}"\n'
        f'  ca_file: "{pki.ca}"\n  verify: true\n  timeout: 2\n}}\n'
    )


@pytest.fixture
def secure_nats(pki: Pki, nkey: NKey) -> Iterator[SecureNats]:
    """TLS with client certificates, and users: ann with a password, and an NKey user."""
    server = SecureNats(
        nats_tls_block(pki)
        + "authorization {\n  users = [\n"
        + f'    {{user: ann, password: "{PASSWORD}"}}\n'
        + f"    {{nkey: {nkey.public}}}\n  ]\n}}\n"
    )
    yield from serving(server)


@pytest.fixture
def token_nats() -> Iterator[SecureNats]:
    """Plain TCP, a token required."""
    server = SecureNats(f'authorization {{\n  token: "{TOKEN}"\n}}\n')
    yield from serving(server)


class SecureEtcd(EtcdServer):
    """etcd serving TLS only, requiring client certificates signed by the CA."""

    def __init__(self, pki: Pki) -> None:
        super().__init__()
        self.pki = pki

    def command(self) -> list[str]:
        client = f"https://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        pki = self.pki
        return [
            self.binary,
            "--name", "test",
            "--data-dir", str(Path(self.data_dir) / "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}",
            "--cert-file", pki.server_cert,
            "--key-file", pki.server_key,
            "--trusted-ca-file", pki.ca,
            "--client-cert-auth",
        ]  # fmt: skip


@pytest.fixture
def secure_etcd(pki: Pki) -> Iterator[SecureEtcd]:
    server = SecureEtcd(pki)
    yield from serving(server)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keypair(prefix: int) -> tuple[bytes, nkeys.KeyPair]:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return seed, nkeys.from_seed(bytearray(seed))


def _jwt(issuer: nkeys.KeyPair, subject: str, name: str, claims: dict[str, object]) -> str:
    """A NATS JWT (decentralised auth), signed by ``issuer``, as nsc would make it."""
    body: dict[str, object] = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": claims,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    signature = issuer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


@dataclass(frozen=True, slots=True)
class Creds:
    server: SecureNats
    creds_file: str


@pytest.fixture
def creds_nats(tmp_path: Path) -> Iterator[Creds]:
    """nats-server in operator mode (an operator, one account, one user), and the user's
    ``.creds`` file."""
    _, operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    _, account = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user_seed, user = _keypair(nkeys.PREFIX_BYTE_USER)
    operator_pub, account_pub = operator.public_key.decode(), account.public_key.decode()
    no_limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                 "wildcards": True, "conn": -1, "leaf": -1}  # fmt: skip
    operator_jwt = _jwt(operator, operator_pub, "op", {"type": "operator", "version": 2})
    account_jwt = _jwt(
        operator, account_pub, "game", {"type": "account", "version": 2, "limits": no_limits}
    )
    user_claims = {"type": "user", "version": 2, "pub": {}, "sub": {},
                   "subs": -1, "data": -1, "payload": -1}  # fmt: skip
    user_jwt = _jwt(account, user.public_key.decode(), "room", user_claims)
    creds = tmp_path / "room.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user_seed.decode()}\n------END USER NKEY SEED------\n"
    )
    server = SecureNats(
        f"operator: {operator_jwt}\nresolver: MEMORY\n"
        f"resolver_preload: {{\n  {account_pub}: {account_jwt}\n}}\n"
    )
    server.start()
    try:
        yield Creds(server, str(creds))
    finally:
        server.close()
