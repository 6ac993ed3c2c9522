"""The backend's handshake cache (``actors.cluster.handshakes``) and the omitted handshake on
the wire (``py.session`` without ``"hs"``, ``pysys.handshake``)."""

from __future__ import annotations

import json

from actors.cluster.codec import (
    SYS,
    RpcRequest,
    SessionSnapshot,
    decode_request,
    encode_request,
    without_handshake,
)
from actors.cluster.control import HandshakeGet, control_request, decode_control
from actors.cluster.handshakes import HandshakeCache
from transport.protos import pitaya_pb2 as pb


def test_the_cache_keeps_the_most_recently_used_and_drops_at_close() -> None:
    cache = HandshakeCache(max_entries=2)
    cache.put("fe-1", 1, {"user": {"a": 1}})
    cache.put("fe-1", 2, {"user": {"b": 2}})
    assert cache.get("fe-1", 1) == {"user": {"a": 1}}  # now the most recent
    cache.put("fe-2", 1, {"user": {"c": 3}})  # evicts fe-1/2, the least recently used
    assert cache.get("fe-1", 2) is None and len(cache) == 2
    assert cache.get("fe-2", 1) == {"user": {"c": 3}}
    cache.drop("fe-1", 1)
    cache.drop("fe-1", 99)  # unknown: nothing happens
    assert cache.get("fe-1", 1) is None and len(cache) == 1


def test_the_cache_keeps_handshakes_within_a_byte_budget() -> None:
    """However few: a peer's ten handshakes of 878 KiB held 200 MiB."""
    big = {"user": {"blob": "x" * 1000}}  # 1,021 bytes of JSON
    size = len(json.dumps(big, separators=(",", ":")))
    cache = HandshakeCache(max_entries=100, max_bytes=3 * size)
    for session_id in range(5):
        cache.put("fe-1", session_id, big)
    assert len(cache) == 3 and cache.bytes == 3 * size
    assert [cache.get("fe-1", i) is not None for i in range(5)] == [False, False, True, True, True]
    cache.put("fe-1", 4, {"user": {}})  # replaced: its bytes counted once
    assert cache.bytes == 2 * size + len('{"user":{}}')
    cache.put("fe-1", 9, {"user": {"blob": "x" * 4000}})  # larger than the budget: not kept
    assert cache.get("fe-1", 9) is None and len(cache) == 3
    cache.drop("fe-1", 2)
    cache.drop("fe-1", 3)
    cache.drop("fe-1", 4)
    assert cache.bytes == 0 and len(cache) == 0


def test_an_omitted_handshake_leaves_hs_out_of_py_session_and_decodes_as_omitted() -> None:
    hs = {"sys": {"platform": "ios"}, "user": {"blob": "x" * 100}}
    full = SessionSnapshot(7, "fe-1", "connector", "ann", {}, hs)
    omitted = without_handshake(full)
    assert (omitted.handshake, omitted.handshake_omitted) == (None, True)
    wire = encode_request(RpcRequest(SYS, "room.room.join", b"{}", omitted), "fe-1", "connector", 5)
    metadata = json.loads(pb.Request.FromString(wire).metadata)
    assert metadata["py.session"] == {"ftype": "connector"}
    back = decode_request(wire).session
    assert back is not None and (back.handshake, back.handshake_omitted) == (None, True)
    sent = decode_request(
        encode_request(RpcRequest(SYS, "room.room.join", b"{}", full), "fe-1", "connector", 5)
    ).session
    assert sent is not None and (sent.handshake, sent.handshake_omitted) == (hs, False)
    none = SessionSnapshot(7, "fe-1", "connector", handshake=None)
    assert without_handshake(none) is none  # nothing to leave out: "hs": null still sent
    go = SessionSnapshot(7, "fe-1", "connector", handshake=hs, extras=False)
    assert without_handshake(go) is go  # a Go frontend's session: no py.session at all


def test_the_handshake_control_names_its_session() -> None:
    request = control_request(HandshakeGet(7))
    assert request.route == "pysys.handshake" and request.session is not None
    assert decode_control("pysys.handshake", request) == HandshakeGet(7)
