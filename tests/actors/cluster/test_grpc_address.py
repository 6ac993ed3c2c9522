"""The address a gRPC peer is dialed at, chosen from its discovery metadata as Go Pitaya's
gRPC client chooses it (``getServerHost``): a server of another region, or of none, that
advertises an external address is dialed there; otherwise at ``grpcHost``/``grpcPort``.
Against Go servers: tests/interop/test_grpc_regions.py."""

from __future__ import annotations

import pytest

from actors.cluster.discovery import ServerInfo
from actors.cluster.grpc_rpc import grpc_address
from actors.config import Config

INTERNAL = {"grpcHost": "10.0.0.7", "grpcPort": "3434"}
EXTERNAL = {"grpc-external-host": "room.example.com", "grpc-external-port": "443"}


@pytest.mark.parametrize(
    ("metadata", "region", "address"),
    [
        (INTERNAL, "", "10.0.0.7:3434"),
        (INTERNAL, "eu", "10.0.0.7:3434"),
        ({**INTERNAL, "region": "us"}, "eu", "10.0.0.7:3434"),  # no external address
        ({**INTERNAL, **EXTERNAL, "region": "eu"}, "eu", "10.0.0.7:3434"),
        ({**INTERNAL, **EXTERNAL, "region": "us"}, "eu", "room.example.com:443"),
        ({**INTERNAL, **EXTERNAL, "region": "us"}, "", "room.example.com:443"),
        ({**INTERNAL, **EXTERNAL}, "eu", "room.example.com:443"),  # no region: external
        ({**INTERNAL, **EXTERNAL, "region": ""}, "", "room.example.com:443"),
        ({**INTERNAL, "grpc-external-host": "", "region": "us"}, "eu", "10.0.0.7:3434"),
        ({}, "eu", None),
    ],
)
def test_the_address_go_would_dial(
    metadata: dict[str, str], region: str, address: str | None
) -> None:
    assert grpc_address(ServerInfo("room-1", "room", metadata=metadata), region) == address


def test_the_region_is_go_pitayas_setting() -> None:
    assert Config.from_env({"PITAYA_CLUSTER_INFO_REGION": "eu"}).region == "eu"
    assert Config.from_env({"PITAYA_REGION": "us"}).region == "us"
