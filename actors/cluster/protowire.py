"""Pitaya's ``protos.Request`` and ``protos.Response`` written, and the common answer read, by
hand: the protobuf wire format of those two messages on the hot path of forwarding.

Why: building a ``protos.Request`` through the protobuf runtime costs a Python object per
nested message and a call per field set (about 4 µs per forwarded message on the project's
2-core machine), several times what writing its few fields does. The bytes are the same as
the runtime's (fields in number order, defaults left out, as proto3 writes them); the
codec's tests check that against the runtime for every shape of request and answer. Decoding
stays with the runtime (``actors.cluster.codec``), except for an answer that is only data,
the answer to nearly every forwarded request.

Field numbers are those of ``transport/protos/pitaya.proto``::

    Request  {1 type: RPCType, 2 session: Session, 3 msg: Msg, 4 frontendID, 5 metadata}
    Session  {1 id: int64, 2 uid, 3 data}
    Msg      {1 id: uint64, 2 route, 3 data, 4 reply, 5 type: MsgType}
    Response {1 data, 2 error: Error}
"""

from __future__ import annotations

_BYTES = tuple(bytes((value,)) for value in range(0x80))
"""One-byte varints, made once."""

_UINT64 = (1 << 64) - 1
_INT64_MIN = -(1 << 63)

_LENGTH_BYTES = 5
"""The most bytes the runtime reads a length in (a 32-bit size, padded or not): a longer
one is corrupt to it."""


def varint(value: int) -> bytes:
    """``value`` (0 .. 2**64-1) as a protobuf varint."""
    if value < 0x80:
        return _BYTES[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_request(
    user: bool,
    mid: int,
    route: str,
    data: bytes,
    notify: bool,
    session: tuple[int, str, bytes] | None,
    frontend_id: str,
    metadata: bytes,
) -> bytes:
    """A ``protos.Request``: ``user`` (RPCType User, else Sys); the ``Msg`` {``mid``,
    ``route``, ``data``, type Notify if ``notify`` else Request}; ``session`` (id, uid, data)
    or None; ``frontend_id``; ``metadata``. ValueError for an id out of its range or a
    string that is not UTF-8 (as the runtime raises). Written inline, without a call per
    field: a length below 128 is one byte from a table."""
    if not 0 <= mid <= _UINT64:
        raise ValueError(f"message id {mid} is out of range for uint64")
    one = _BYTES
    text = route.encode()
    size = len(text)
    msg = b"\x12%b%b" % (one[size] if size < 0x80 else varint(size), text) if size else b""
    if mid:
        msg = b"\x08%b%b" % (varint(mid), msg)
    if data:
        size = len(data)
        msg = b"%b\x1a%b%b" % (msg, one[size] if size < 0x80 else varint(size), data)
    if notify:
        msg += b"\x28\x01"
    size = len(msg)
    out = b"\x1a%b%b" % (one[size] if size < 0x80 else varint(size), msg)
    if session is not None:
        session_id, uid, session_data = session
        if not _INT64_MIN <= session_id <= _UINT64 >> 1:
            raise ValueError(f"session id {session_id} is out of range for int64")
        wire = b"\x08" + varint(session_id & _UINT64) if session_id else b""
        if uid:
            text = uid.encode()
            size = len(text)
            wire = b"%b\x12%b%b" % (wire, one[size] if size < 0x80 else varint(size), text)
        if session_data:
            size = len(session_data)
            wire = b"%b\x1a%b%b" % (wire, one[size] if size < 0x80 else varint(size), session_data)
        size = len(wire)
        out = b"\x12%b%b%b" % (one[size] if size < 0x80 else varint(size), wire, out)
    if user:
        out = b"\x08\x01" + out
    if frontend_id:
        text = frontend_id.encode()
        size = len(text)
        out = b"%b\x22%b%b" % (out, one[size] if size < 0x80 else varint(size), text)
    if metadata:
        size = len(metadata)
        out = b"%b\x2a%b%b" % (out, one[size] if size < 0x80 else varint(size), metadata)
    return out


def encode_data_answer(data: bytes) -> bytes:
    """A ``protos.Response`` carrying ``data`` (empty: no field, the empty message)."""
    size = len(data)
    if not size:
        return b""
    return b"\x0a%b%b" % (_BYTES[size] if size < 0x80 else varint(size), data)


def data_of_answer(answer: bytes) -> bytes | None:
    """The data of ``answer`` when it is a ``protos.Response`` with data and nothing else
    (written as the runtime writes it); None for anything else (an error, other fields, a
    malformed message): the caller parses those with the runtime."""
    if len(answer) < 2 or answer[0] != 0x0A:
        return None
    size = answer[1]
    start = 2
    if size > 0x7F:
        size &= 0x7F
        shift = 7
        while True:
            if start >= len(answer) or start > _LENGTH_BYTES:  # the length's bytes are 1..5
                return None
            byte = answer[start]
            start += 1
            size |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
    if start + size != len(answer):
        return None
    return answer[start:]
