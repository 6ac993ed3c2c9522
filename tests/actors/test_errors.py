"""The actor layer's errors (``actors.errors``): the kernel family, the Pitaya family and
``as_pitaya_error``, the one place an exception becomes what a client receives.

What a client sees of each code over the protocol is in test_error_codes.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import (
    ActorError,
    ActorNameTaken,
    ActorStopped,
    AskTimeout,
    BadRequest,
    FrontendOnly,
    InternalError,
    MailboxFull,
    PitayaError,
    RouteNotFound,
    RpcTimeout,
    ServiceUnavailable,
    TooManyRequests,
    UnhandledMessage,
    UserNotHere,
    as_pitaya_error,
)
from transport.errors import HandshakeError, InvalidRoute, PacketTooLarge, ProtocolError

# -- the kernel family ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "also"),
    [
        (AskTimeout, TimeoutError),  # ``except TimeoutError`` catches an ask that timed out
        (UnhandledMessage, TypeError),
        (ActorNameTaken, ValueError),
        (ActorStopped, ActorError),
        (MailboxFull, ActorError),
        (FrontendOnly, ActorError),
    ],
)
def test_kernel_errors_are_actor_errors_and_the_builtin_they_resemble(
    error: type[Exception], also: type[Exception]
) -> None:
    assert issubclass(error, ActorError) and issubclass(error, also)
    assert not issubclass(error, PitayaError)  # never answered to a client as they are


# -- the Pitaya family ----------------------------------------------------------------------


def test_a_pitaya_error_carries_code_msg_and_a_copy_of_its_metadata() -> None:
    metadata = {"room": "r1"}
    error = PitayaError("PIT-403", "room is full", metadata)
    assert (error.code, error.msg, error.metadata) == ("PIT-403", "room is full", {"room": "r1"})
    assert str(error) == "PIT-403: room is full"
    metadata["room"] = "changed"
    assert error.metadata == {"room": "r1"}  # its own dict, not the caller's
    assert isinstance(error, Exception) and not isinstance(error, ActorError)


def test_a_pitaya_error_without_code_msg_or_metadata() -> None:
    error = PitayaError()
    assert (error.code, error.msg, error.metadata) == ("PIT-000", "", {})
    assert str(error) == "PIT-000"  # no dangling ": "
    assert PitayaError("", "x").code == "PIT-000"  # an empty code takes the default too


@pytest.mark.parametrize(
    ("make", "code", "msg", "metadata"),
    [
        # Built inside the test, not at collection: a mutation tool sees the constructor run.
        (lambda: BadRequest(), "PIT-400", "bad request", {}),
        (lambda: BadRequest("no name", {"field": "name"}), "PIT-400", "no name", {"field": "name"}),
        (
            lambda: RouteNotFound("a.b"),
            "PIT-404",
            "pitaya/handler: a.b not found",
            {"route": "a.b"},
        ),
        (
            lambda: RouteNotFound("s.a.b", remote=True),
            "PIT-404",
            "route not found",
            {"route": "s.a.b"},
        ),
        (lambda: InternalError(), "PIT-500", "internal server error", {}),
        (lambda: InternalError("db down"), "PIT-500", "db down", {}),
        (lambda: RpcTimeout(), "PIT-408", "rpc client: request timeout", {}),
        (lambda: RpcTimeout("slow room"), "PIT-408", "slow room", {}),
        (lambda: ServiceUnavailable(), "PIT-504", "timeout", {}),
        (lambda: ServiceUnavailable("gave up"), "PIT-504", "gave up", {}),
        (lambda: TooManyRequests(), "PIT-429", "too many requests in flight", {}),
        (lambda: TooManyRequests("slow down"), "PIT-429", "slow down", {}),
        (lambda: UserNotHere("ann"), "PIT-404", "user not bound here", {"uid": "ann"}),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_pitaya_error_has_its_code_text_and_metadata(
    make: Callable[[], PitayaError], code: str, msg: str, metadata: dict[str, str]
) -> None:
    error = make()
    assert (error.code, error.msg, error.metadata) == (code, msg, metadata)
    assert type(error).default_code == code
    assert str(error) == f"{code}: {msg}"


def test_route_and_uid_are_kept_as_attributes() -> None:
    assert RouteNotFound("room.join").route == "room.join"
    assert UserNotHere("bob").uid == "bob"


# -- as_pitaya_error ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: PitayaError("PIT-403", "no"),
        lambda: BadRequest(),
        lambda: RouteNotFound("x"),
        lambda: UserNotHere("u"),
    ],
)
def test_a_pitaya_error_is_answered_as_it_is(make: Callable[[], PitayaError]) -> None:
    error = make()
    assert as_pitaya_error(error) is error


@pytest.mark.parametrize(
    ("error", "code", "msg"),
    [
        (ActorStopped("handler gone"), "PIT-500", "handler unavailable"),
        (MailboxFull("mailbox of x is full (1)"), "PIT-500", "handler unavailable"),
        (AskTimeout("no reply within 5s"), "PIT-504", "no reply within 5s"),
        (ProtocolError("bad bytes"), "PIT-400", "bad bytes"),
        (InvalidRoute("empty route"), "PIT-400", "empty route"),
        (HandshakeError("not json"), "PIT-400", "not json"),
        (PacketTooLarge(10, 5), "PIT-400", "packet body of 10 bytes exceeds the limit of 5 bytes"),
        (ValueError("bad input"), "PIT-500", "bad input"),
        (UnhandledMessage("X has no receiver"), "PIT-500", "X has no receiver"),
        (KeyError(), "PIT-500", "KeyError"),  # no text: the type's name
        (RuntimeError(""), "PIT-500", "RuntimeError"),
        (KeyError("k"), "PIT-500", "'k'"),
    ],
)
def test_other_errors_map_to_their_pitaya_code(error: BaseException, code: str, msg: str) -> None:
    mapped = as_pitaya_error(error)
    assert (mapped.code, mapped.msg) == (code, msg)
    assert mapped.metadata == {}


def test_the_mapped_classes() -> None:
    assert type(as_pitaya_error(ActorStopped())) is InternalError
    assert type(as_pitaya_error(AskTimeout())) is ServiceUnavailable
    assert type(as_pitaya_error(ProtocolError("x"))) is BadRequest
    assert type(as_pitaya_error(OSError("x"))) is InternalError


_EXCEPTIONS = st.sampled_from(
    [
        ActorStopped,
        MailboxFull,
        AskTimeout,
        UnhandledMessage,
        ActorNameTaken,
        FrontendOnly,
        ProtocolError,
        InvalidRoute,
        HandshakeError,
        ValueError,
        RuntimeError,
        OSError,
    ]
)


@given(_EXCEPTIONS, st.text(max_size=50))
def test_every_error_maps_to_a_pitaya_error_once_and_for_all(
    kind: type[Exception], text: str
) -> None:
    mapped = as_pitaya_error(kind(text))
    assert isinstance(mapped, PitayaError)
    assert mapped.code in {"PIT-400", "PIT-500", "PIT-504"}
    if text:
        assert text in mapped.msg or mapped.msg == "handler unavailable"  # the error's own text
    assert as_pitaya_error(mapped) is mapped  # mapping twice changes nothing


@given(st.text(min_size=1, max_size=20), st.text(max_size=50))
def test_a_pitaya_error_keeps_any_code_and_text(code: str, msg: str) -> None:
    error = PitayaError(code, msg)
    mapped = as_pitaya_error(error)
    assert (mapped.code, mapped.msg) == (code, msg)
