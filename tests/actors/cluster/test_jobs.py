"""Reliable-RPC jobs as Go Pitaya writes them, go-workers' retry rules, and protobuf
arguments in Go's JSON of its generated structs."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.cluster.gojson import GoJsonError, from_go_json, to_go_json
from actors.cluster.jobs import (
    MAX_RETRY_DELAY,
    MalformedJob,
    RetryOptions,
    encode_rpc_job,
    load_job,
    may_retry,
    parse_rpc_job,
    requeued_job,
    retried_job,
    retry_delay,
)
from actors.config import option_default
from transport.protos.pitaya_pb2 import Error, KickMsg, Msg, Push, Response


def test_a_job_is_what_pitayas_enqueue_rpc_writes() -> None:
    jid, raw = encode_rpc_job(
        "room.remote.grant",
        KickMsg(userId="ann"),
        metadata={"server": "room-1"},
        reply=None,
        options=RetryOptions(),
        now=1733580000.25,
    )
    job = json.loads(raw)
    assert len(jid) == 24 and int(jid, 16) >= 0 and job["jid"] == jid
    assert list(job) == [  # Go's struct order
        "queue", "class", "args", "jid", "enqueued_at", "retry", "retry_max",
        "retry_options", "connection_options",
    ]  # fmt: skip
    assert job["queue"] == "rpc" and job["class"] == ""
    assert job["args"] == {
        "Route": "room.remote.grant",
        "Metadata": {"server": "room-1"},
        "Arg": {"userId": "ann"},
        "Reply": None,
    }
    assert job["enqueued_at"] == 1733580000.25
    assert (job["retry"], job["retry_max"]) == (True, 2)
    assert job["retry_options"] == {"exp": 5, "min_delay": 10, "max_delay": 10, "max_rand": 0}
    assert job["connection_options"]["Address"] == ""


def test_no_retry_leaves_retry_and_retry_max_out_as_go_omitempty_does() -> None:
    _, raw = encode_rpc_job(
        "a.b.c", None, metadata=None, reply=None, options=RetryOptions(enabled=False, max=0)
    )
    job = json.loads(raw)
    assert "retry" not in job and "retry_max" not in job
    assert job["args"]["Metadata"] is None and job["args"]["Arg"] is None
    assert not may_retry(job)


def test_a_reply_class_or_message_is_written_as_gos_struct() -> None:
    for reply in (Push, Push(route="r")):
        _, raw = encode_rpc_job("a.b.c", None, metadata=None, reply=reply, options=RetryOptions())
        assert json.loads(raw)["args"]["Reply"] == ({} if reply is Push else {"route": "r"})


def test_jids_differ() -> None:
    jids = {encode_rpc_job("a.b.c", None, metadata=None, reply=None, options=RetryOptions())[0]}
    jids.add(encode_rpc_job("a.b.c", None, metadata=None, reply=None, options=RetryOptions())[0])
    assert len(jids) == 2


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"text"', b'{"args": []}', b'{"args": {"Route": 3}}', b"\xff"],
)
def test_a_job_without_a_route_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedJob):
        parse_rpc_job(load_job(raw))


def test_nan_and_infinity_are_not_json_for_go() -> None:
    # Go's json.Marshal refuses them (EnqueueRPC fails) and its decoder cannot read a job
    # holding them: refused when enqueued, a malformed job (dead set) when read.
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            encode_rpc_job(
                "room.r.m", {"x": value}, metadata=None, reply=None, options=RetryOptions()
            )
    raw = b'{"queue":"rpc","args":{"Route":"room.r.m","Arg":{"x":NaN}},"retry":true}'
    with pytest.raises(MalformedJob):
        load_job(raw)
    assert requeued_job(raw, "") is None


def test_a_go_job_parses() -> None:
    raw = (
        b'{"queue":"rpc","class":"","args":{"Route":"room.r.m","Metadata":null,'
        b'"Arg":{"route":"x"},"Reply":null},"jid":"abc","enqueued_at":1.5,"retry":true,'
        b'"retry_max":2,"retry_options":{"exp":5,"min_delay":10,"max_delay":10,"max_rand":0},'
        b'"connection_options":{}}'
    )
    call = parse_rpc_job(load_job(raw))
    assert (call.route, call.metadata, call.arg, call.jid) == (
        "room.r.m",
        {},
        {"route": "x"},
        "abc",
    )


def test_retries_follow_go_workers_count_quirk() -> None:
    # retry_max 2: the first two failures both record retry_count 0, then 1, then 2 = the end.
    job: dict[str, Any] = {"retry": True, "retry_max": 2}
    counts = []
    while may_retry(job):
        count, raw = retried_job(job, "rpc", "boom", now=0.0)
        counts.append(count)
        job = json.loads(raw)
    assert counts == [0, 1, 2]
    assert job["retry_count"] == 2 and job["error_message"] == "boom"
    assert job["failed_at"] == "1970-01-01 00:00:00 UTC" and "retried_at" in job


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({}, False),
        ({"retry": False, "retry_max": 5}, False),
        ({"retry": True}, True),  # default limit 25
        ({"retry": True, "retry_count": 24}, True),
        ({"retry": True, "retry_count": 25}, False),
        ({"retry": 3, "retry_count": 2}, True),  # Sidekiq's form: a number is the limit
        ({"retry": 3, "retry_count": 3}, False),
        ({"retry": True, "retry_max": 0}, False),
    ],
)
def test_may_retry(job: dict[str, Any], expected: bool) -> None:
    assert may_retry(job) is expected


def test_the_delay_is_go_workers_formula() -> None:
    options = {"exp": 2, "min_delay": 3, "max_delay": 1000, "max_rand": 0}
    assert [retry_delay(n, options) for n in range(4)] == [3, 4, 7, 12]
    assert retry_delay(10, {"exp": 5, "min_delay": 10, "max_delay": 10, "max_rand": 0}) == 10
    # Missing options: exp 4, min 15, no max, jitter below 30 times (count + 1).
    rand = random.Random(7)
    expected = 2**4 + 15 + random.Random(7).randrange(30) * 3
    assert retry_delay(2, None, rand) == expected


def test_a_due_job_goes_back_to_its_queue_without_the_namespace() -> None:
    _, raw = retried_job({"jid": "a"}, "ns:rpc", "boom")
    queue, back = requeued_job(raw, "ns:", now=42.0) or ("", b"")
    assert queue == "rpc" and json.loads(back)["enqueued_at"] == 42.0
    assert requeued_job(b"{broken", "ns:") is None
    assert requeued_job(b'{"jid": "no queue"}', "ns:") is None


# -- protobuf arguments in Go's JSON -----------------------------------------------------------


def test_go_json_uses_the_proto_names_base64_and_omits_zero_values() -> None:
    assert to_go_json(Push(route="chat", uid="", data=b"hi")) == {"route": "chat", "data": "aGk="}
    assert to_go_json(KickMsg(userId="ann")) == {"userId": "ann"}
    assert to_go_json(Msg(id=2**60, type=3)) == {"id": 2**60, "type": 3}
    response = Response(error=Error(code="PIT-500", metadata={"b": "2", "a": "1"}))
    assert to_go_json(response) == {"error": {"code": "PIT-500", "metadata": {"a": "1", "b": "2"}}}
    assert to_go_json(Response()) == {}


def test_go_json_decodes_what_go_writes() -> None:
    assert from_go_json(Push, {"route": "chat", "uid": "u", "data": "aGk="}) == Push(
        route="chat", uid="u", data=b"hi"
    )
    assert from_go_json(KickMsg, {"UserId": "case-insensitive", "other": 1}) == KickMsg(
        userId="case-insensitive"
    )
    assert from_go_json(KickMsg, None) == KickMsg()
    with pytest.raises(GoJsonError, match=r"Push\.data"):
        from_go_json(Push, {"data": "not base64!"})
    with pytest.raises(GoJsonError, match="expected an object"):
        from_go_json(Push, [1])


@given(
    route=st.text(),
    uid=st.text(),
    data=st.binary(),
    code=st.text(),
    metadata=st.dictionaries(st.text(), st.text(), max_size=3),
)
def test_go_json_round_trips(
    route: str, uid: str, data: bytes, code: str, metadata: dict[str, str]
) -> None:
    push = Push(route=route, uid=uid, data=data)
    assert from_go_json(Push, json.loads(json.dumps(to_go_json(push)))) == push
    response = Response(data=data, error=Error(code=code, metadata=metadata))
    assert from_go_json(Response, to_go_json(response)) == response


def test_option_default_refuses_a_name_that_is_no_option() -> None:
    with pytest.raises(AttributeError, match="worker_retry_maximum"):
        option_default("worker_retry_maximum")
    with pytest.raises(AttributeError, match="extra"):  # a factory, no plain default
        option_default("extra")


# -- go-workers' edges: error texts, defaults, time stamps ---------------------------------


def test_a_job_is_compact_json_stamped_now_when_no_time_is_given() -> None:
    before = time.time()
    _, raw = encode_rpc_job("a.b.c", None, metadata=None, reply=None, options=RetryOptions())
    after = time.time()
    assert raw.startswith(b'{"queue":"rpc","class":"","args":{"Route":"a.b.c","Metadata":null,')
    assert b", " not in raw and b": " not in raw  # json.Marshal's form, no spaces
    assert before <= json.loads(raw)["enqueued_at"] <= after


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"x": NaN}', "not JSON (NaN is not JSON)"),
        (b"[1, 2]", "not a JSON object but list"),
    ],
)
def test_a_job_that_is_no_json_object_says_what_it_is(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedJob) as caught:
        load_job(raw)
    assert str(caught.value) == message
    with pytest.raises(MalformedJob, match=r"^not JSON \(Expecting"):
        load_job(b"{not json")
    with pytest.raises(MalformedJob) as no_route:
        parse_rpc_job({"args": {"Route": None}})
    assert str(no_route.value) == "no args.Route string"


def test_a_job_parses_with_its_reply_and_without_a_jid() -> None:
    call = parse_rpc_job({"args": {"Route": "room.r.m", "Reply": {"route": "r"}}})
    assert (call.reply, call.jid) == ({"route": "r"}, "")


def test_retry_max_1_allows_the_retry_of_a_first_failure() -> None:
    assert may_retry({"retry": True, "retry_max": 1})
    assert may_retry({"retry": True, "retry_max": 1, "retry_count": 0})
    assert not may_retry({"retry": True, "retry_max": 1, "retry_count": 1})


class MaxJitter(random.Random):
    """Always the largest jitter the bound allows."""

    def randrange(self, stop: int, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        return stop - 1


def test_the_delay_takes_a_default_for_each_missing_or_non_number_option() -> None:
    # Jitter below 30 by default: at most 29 times (count + 1).
    assert retry_delay(2, None, MaxJitter()) == 2**4 + 15 + 29 * 3
    assert retry_delay(2, {}, MaxJitter()) == 2**4 + 15 + 29 * 3
    assert retry_delay(2, {"min_delay": 3}, MaxJitter()) == 2**4 + 3 + 29 * 3
    assert retry_delay(2, {"exp": 1, "max_rand": 0}) == 2 + 15
    assert retry_delay(2, {"exp": 1, "max_rand": 0, "max_delay": 5}) == 5
    not_numbers = {"exp": True, "min_delay": "3", "max_delay": None, "max_rand": [1]}
    assert retry_delay(2, not_numbers, MaxJitter()) == 2**4 + 15 + 29 * 3


def test_a_second_failure_is_stamped_retried_at() -> None:
    _, raw = retried_job({"retry": True, "retry_count": 0}, "rpc", "boom", now=60.0)
    job = json.loads(raw)
    assert (job["retry_count"], job["retried_at"]) == (1, "1970-01-01 00:01:00 UTC")
    assert "failed_at" not in job


def test_a_due_job_with_an_empty_or_odd_queue_cannot_go_back() -> None:
    assert requeued_job(b'{"queue": ""}', "ns:") is None
    assert requeued_job(b'{"queue": 5}', "ns:") is None
    before = time.time()
    queue, back = requeued_job(b'{"queue": "ns:rpc"}', "ns:") or ("", b"")
    assert queue == "rpc" and before <= json.loads(back)["enqueued_at"] <= time.time()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"exp": 1, "min_delay": 0, "max_rand": 0.5}, 3),  # below 1: no jitter
        ({"exp": 1, "min_delay": 0, "max_rand": float("inf")}, 3),
        ({"exp": 1, "min_delay": 0, "max_rand": float("nan")}, 3),
        ({"exp": 1e6, "max_rand": 0, "max_delay": 60}, 60),  # Go: +Inf, capped
        ({"exp": 1e6, "max_rand": 0}, MAX_RETRY_DELAY),  # nothing caps it
        ({"exp": 1, "min_delay": float("nan"), "max_rand": 0}, MAX_RETRY_DELAY),
    ],
)
def test_options_go_never_writes_still_give_a_delay(options: dict[str, Any], expected: int) -> None:
    """A job is read from Redis, where anything may have written it: these raised
    (``randrange(0)``, an overflow, ``int`` of an infinity) and the failed job stuck in
    progress until the worker's next start."""
    assert retry_delay(3, options) == expected
