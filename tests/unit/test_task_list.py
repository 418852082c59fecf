"""The task list's query and cursor (task_list.py): what a client may send, and what it means."""

from __future__ import annotations

import base64

import pytest

from imagegate.contract import SubmitInput
from imagegate.errors import InvalidRequest
from imagegate.money import ChargeState
from imagegate.task_list import (
    DEFAULT_LIMIT,
    MAX_MS,
    WIRE_STATES,
    TaskQuery,
    decode_cursor,
    encode_cursor,
    parse_task_query,
)
from imagegate.tasks import Task, TaskState, new_task_id


def parse(**params: str | list[str]) -> TaskQuery:
    return parse_task_query("key_1", {k: v if isinstance(v, list) else [v]
                                      for k, v in params.items()})


def test_no_parameters_ask_for_the_first_page_of_every_task() -> None:
    assert parse() == TaskQuery("key_1", DEFAULT_LIMIT, tuple(TaskState), None, 0, MAX_MS, None)
    assert parse(unknown="x").limit == DEFAULT_LIMIT


def test_wire_states_cover_every_state_once() -> None:
    assert WIRE_STATES == {"processing": (TaskState.QUEUED, TaskState.RUNNING),
                           "success": (TaskState.SUCCEEDED,),
                           "failed": (TaskState.FAILED, TaskState.CANCELED)}


def test_states_are_comma_separated_or_repeated() -> None:
    assert parse(state="success,failed").states == (
        TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED)
    assert parse(state=["processing", "failed,processing"]).states == (
        TaskState.QUEUED, TaskState.RUNNING, TaskState.FAILED, TaskState.CANCELED)


def test_the_other_parameters_are_read_as_given() -> None:
    query = parse(limit="100", model="nano-banana-pro", createdAfter="0",
                  createdBefore=str(MAX_MS))
    assert (query.limit, query.model, query.created_after_ms, query.created_before_ms) == (
        100, "nano-banana-pro", 0, MAX_MS)


@pytest.mark.parametrize("name,value", [
    ("limit", "0"), ("limit", "101"), ("limit", "-1"), ("limit", "ten"), ("limit", ""),
    ("limit", "1.5"), ("limit", " 5"), ("limit", "9" * 5000),
    ("state", "done"), ("state", ""), ("state", "success,"), ("state", "SUCCESS"),
    ("state", "queued"),
    ("model", ""), ("model", "m" * 257), ("model", "a\x00b"),
    ("createdAfter", "-1"), ("createdAfter", str(MAX_MS + 1)), ("createdBefore", "1e12"),
    ("createdBefore", ""),
    ("cursor", ""), ("cursor", "not a cursor"), ("cursor", "x"), ("cursor", "AAAA"),
])
def test_a_bad_parameter_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse(**{name: value})
    assert refused.value.field == name


@pytest.mark.parametrize("name", ["limit", "model", "createdAfter", "createdBefore", "cursor"])
def test_a_parameter_other_than_state_may_be_given_once(name: str) -> None:
    with pytest.raises(InvalidRequest, match="only once") as refused:
        parse(**{name: ["1", "1"]})
    assert refused.value.field == name


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    task = Task(id=new_task_id(), account_id="a", key_id="k", model="m",
                input=SubmitInput("text-to-image", "p", "1:1", "1k", "png"),
                state=TaskState.QUEUED, created_ms=1_767_225_600_000, price_micros=0,
                charge_state=ChargeState.HELD, result_token="t")
    cursor = encode_cursor(task)
    assert cursor.replace("-", "").replace("_", "").isalnum()
    assert decode_cursor(cursor) == (task.created_ms, task.id)
    assert parse(cursor=cursor).cursor == (task.created_ms, task.id)


@pytest.mark.parametrize("raw", [b"12.", b".abc", b"12abc", b"12.a.b", b"-1.abc",
                                 str(MAX_MS + 1).encode() + b".abc", b"\xff\xfe"])
def test_a_forged_cursor_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


def test_the_upper_bound_is_the_lower_of_the_cursor_and_created_before() -> None:
    assert TaskQuery("k").upper_bound == (MAX_MS, "")
    assert TaskQuery("k", cursor=(5, "b")).upper_bound == (5, "b")
    assert TaskQuery("k", cursor=(5, "b"), created_before_ms=5).upper_bound == (5, "")
    assert TaskQuery("k", cursor=(5, "b"), created_before_ms=6).upper_bound == (5, "b")
    assert TaskQuery("k", cursor=(7, "b"), created_before_ms=6).upper_bound == (6, "")
