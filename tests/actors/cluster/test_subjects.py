"""Which uids can be a token of Pitaya's per-uid NATS subjects (``actors.cluster.subjects``)."""

from __future__ import annotations

import pytest

from actors.cluster.subjects import (
    MAX_UID_BYTES,
    bindings_subject,
    server_problem,
    server_subject,
    uid_problem,
    user_subject,
)


@pytest.mark.parametrize(
    "uid",
    ["ann", "42", "ann@example.com", "a.b.c", "a*b", "a>b", "élodie", "🐉", "x" * MAX_UID_BYTES],
)
def test_uids_a_subject_can_carry(uid: str) -> None:
    assert uid_problem(uid) is None


@pytest.mark.parametrize(
    ("uid", "problem"),
    [
        ("u" * (MAX_UID_BYTES + 1), f"longer than {MAX_UID_BYTES} bytes"),
        ("é" * (MAX_UID_BYTES // 2 + 1), f"longer than {MAX_UID_BYTES} bytes"),  # 2 bytes each
        ("ann bob", "it holds whitespace or control characters"),
        ("ann\r\nPUB x 1", "it holds whitespace or control characters"),
        ("ann\tbob", "it holds whitespace or control characters"),
        ("ann\x00", "it holds whitespace or control characters"),
        ("a..b", "it has an empty dot-separated part"),
        (".ann", "it has an empty dot-separated part"),
        ("ann.", "it has an empty dot-separated part"),
        ("bob.*.x", "it has '*' as a dot-separated part (a NATS wildcard)"),
        (">", "it has '>' as a dot-separated part (a NATS wildcard)"),
    ],
)
def test_uids_a_subject_cannot_carry(uid: str, problem: str) -> None:
    assert uid_problem(uid) == problem


def test_the_longest_uid_makes_a_subject_well_within_a_nats_command_line() -> None:
    subject = user_subject("connector", "x" * MAX_UID_BYTES, "push")
    assert len(f"SUB {subject} 1000000\r\n") < 4096 // 4


def test_the_subjects_are_spelled_as_go_pitaya_spells_them() -> None:
    assert server_subject("room", "room-1") == "pitaya/servers/room/room-1"
    assert user_subject("connector", "ann", "push") == "pitaya/connector/user/ann/push"
    assert user_subject("connector", "ann", "kick") == "pitaya/connector/user/ann/kick"
    assert bindings_subject("connector") == "pitaya/connector/bindings"


def test_a_frontend_named_only_by_a_request_must_make_a_valid_subject() -> None:
    assert server_problem("connector", "c-1") is None
    assert server_problem("connector", "3f2b9c1e-7a51-4a8e-9d7e-8c2f0b3f4a11") is None
    assert server_problem("connector", "A" * 5000) == (
        f"its id cannot be in a subject: longer than {MAX_UID_BYTES} bytes"
    )
    assert server_problem("con nector", "c-1") == (
        "its type cannot be in a subject: it holds whitespace or control characters"
    )
    assert server_problem("connector", "") is not None
    assert server_problem("connector", ">") is not None
