from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RPCType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Sys: _ClassVar[RPCType]
    User: _ClassVar[RPCType]

class MsgType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MsgRequest: _ClassVar[MsgType]
    MsgNotify: _ClassVar[MsgType]
    MsgResponse: _ClassVar[MsgType]
    MsgPush: _ClassVar[MsgType]
Sys: RPCType
User: RPCType
MsgRequest: MsgType
MsgNotify: MsgType
MsgResponse: MsgType
MsgPush: MsgType

class Session(_message.Message):
    __slots__ = ("id", "uid", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: int
    uid: str
    data: bytes
    def __init__(self, id: _Optional[int] = ..., uid: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class Msg(_message.Message):
    __slots__ = ("id", "route", "data", "reply", "type")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    id: int
    route: str
    data: bytes
    reply: str
    type: MsgType
    def __init__(self, id: _Optional[int] = ..., route: _Optional[str] = ..., data: _Optional[bytes] = ..., reply: _Optional[str] = ..., type: _Optional[_Union[MsgType, str]] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("type", "session", "msg", "frontendID", "metadata")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    FRONTENDID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    type: RPCType
    session: Session
    msg: Msg
    frontendID: str
    metadata: bytes
    def __init__(self, type: _Optional[_Union[RPCType, str]] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., msg: _Optional[_Union[Msg, _Mapping]] = ..., frontendID: _Optional[str] = ..., metadata: _Optional[bytes] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "msg", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    code: str
    msg: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[str] = ..., msg: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("data", "error")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    error: Error
    def __init__(self, data: _Optional[bytes] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Push(_message.Message):
    __slots__ = ("route", "uid", "data")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    route: str
    uid: str
    data: bytes
    def __init__(self, route: _Optional[str] = ..., uid: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class KickMsg(_message.Message):
    __slots__ = ("userId",)
    USERID_FIELD_NUMBER: _ClassVar[int]
    userId: str
    def __init__(self, userId: _Optional[str] = ...) -> None: ...

class KickAnswer(_message.Message):
    __slots__ = ("kicked",)
    KICKED_FIELD_NUMBER: _ClassVar[int]
    kicked: bool
    def __init__(self, kicked: _Optional[bool] = ...) -> None: ...

class BindMsg(_message.Message):
    __slots__ = ("uid", "fid")
    UID_FIELD_NUMBER: _ClassVar[int]
    FID_FIELD_NUMBER: _ClassVar[int]
    uid: str
    fid: str
    def __init__(self, uid: _Optional[str] = ..., fid: _Optional[str] = ...) -> None: ...
