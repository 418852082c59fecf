"""Task states, their legal transitions and the status rendering (tasks.py, docs/contract.md §5)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from imagegate.contract import SubmitInput
from imagegate.money import ChargeState
from imagegate.tasks import (
    TRANSITIONS,
    ResultFile,
    Task,
    TaskState,
    can_transition,
    envelope,
    new_task_id,
    render_status,
    result_url,
)

BASE = "https://img.example.com"
CREATED = 1_700_000_000_000
Q, R, S, F, C = (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED,
                 TaskState.CANCELED)

# Every legal move, written out from the task states of docs/contract.md and tasks.py.
LEGAL = {(Q, R), (Q, F), (Q, C), (R, Q), (R, S), (R, F), (R, C)}


def make_task(**changes: Any) -> Task:
    task = Task(
        id="0123456789abcdef0123456789abcdef", account_id="acct", key_id="key",
        model="nano-banana-2",
        input=SubmitInput(mode="text-to-image", prompt="a fox", aspect_ratio="1:1",
                          resolution="1k", output_format="png"),
        state=TaskState.QUEUED, created_ms=CREATED, price_micros=50_000,
        charge_state=ChargeState.HELD,
        result_token="tok123",
    )
    return dataclasses.replace(task, **changes)


def png(name: str = "0.png") -> ResultFile:
    return ResultFile(key=f"k/{name}", name=name, content_type="image/png", size=1234,
                      width=1024, height=1024)


SUCCEEDED = dict(state=S, stage="done", complete_ms=CREATED + 8_500, expire_ms=CREATED + 10**9,
                 results=(png("0.png"), png("1.png")), charge_state=ChargeState.SETTLED)
FAILED = dict(state=F, stage="done", complete_ms=CREATED + 2_000, fail_code="SensitiveContent",
              fail_msg="the prompt violated the safety policy", charge_state=ChargeState.REFUNDED)


# States and transitions -----------------------------------------------------------------------


@pytest.mark.parametrize("new", list(TaskState))
@pytest.mark.parametrize("old", list(TaskState))
def test_transition_table(old: TaskState, new: TaskState) -> None:
    assert can_transition(old, new) is ((old, new) in LEGAL)


def test_transition_table_names_every_state() -> None:
    assert set(TRANSITIONS) == set(TaskState)


@pytest.mark.parametrize(("state", "terminal", "wire"), [
    (Q, False, "processing"),
    (R, False, "processing"),
    (S, True, "success"),
    (F, True, "failed"),
    (C, True, "failed"),
])
def test_state_is_terminal_and_reads_on_the_wire(state: TaskState, terminal: bool,
                                                 wire: str) -> None:
    assert state.terminal is terminal
    assert state.wire == wire


def test_terminal_states_have_no_way_out() -> None:
    for state in TaskState:
        assert (not TRANSITIONS[state]) is state.terminal


def test_task_ids_are_32_hex_characters_and_unique() -> None:
    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


# Rendering ------------------------------------------------------------------------------------

CONTRACT_FIELDS = {"taskId", "state", "createTime", "resultJson", "completeTime", "costTime",
                   "failCode", "failMsg"}


def contract_part(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in CONTRACT_FIELDS}


@pytest.mark.parametrize("state", [Q, R])
def test_unfinished_task_renders_as_processing_with_only_the_always_fields(
        state: TaskState) -> None:
    data = render_status(make_task(state=state, stage=state.value), BASE)
    assert contract_part(data) == {"taskId": "0123456789abcdef0123456789abcdef",
                                   "state": "processing", "createTime": CREATED}


def test_succeeded_task_renders_result_urls_as_a_json_string() -> None:
    task = make_task(**SUCCEEDED)
    data = render_status(task, BASE)
    assert data["state"] == "success"
    assert isinstance(data["resultJson"], str)
    assert json.loads(data["resultJson"]) == {"resultUrls": [
        f"{BASE}/files/{task.id}/tok123/0.png", f"{BASE}/files/{task.id}/tok123/1.png"]}
    assert data["completeTime"] == CREATED + 8_500
    assert data["costTime"] == data["completeTime"] - data["createTime"] == 8_500
    assert "failCode" not in data
    assert "failMsg" not in data


def test_failed_task_renders_fail_code_and_message_and_no_result() -> None:
    data = render_status(make_task(**FAILED), BASE)
    assert contract_part(data) == {
        "taskId": "0123456789abcdef0123456789abcdef", "state": "failed", "createTime": CREATED,
        "completeTime": CREATED + 2_000, "failCode": "SensitiveContent",
        "failMsg": "the prompt violated the safety policy"}


def test_canceled_task_reads_as_failed_with_its_code() -> None:
    data = render_status(make_task(state=C, complete_ms=CREATED + 5, fail_code="Canceled",
                                   fail_msg="canceled by the client"), BASE)
    assert data["state"] == "failed"
    assert data["failCode"] == "Canceled"
    assert "resultJson" not in data
    assert "costTime" not in data


def test_failed_task_without_a_code_still_carries_strings() -> None:
    data = render_status(make_task(state=F, complete_ms=CREATED + 1), BASE)
    assert data["failCode"] == "Unknown error"
    assert isinstance(data["failMsg"], str)


@pytest.mark.parametrize("changes", [dict(state=Q), dict(state=R, stage="running"), SUCCEEDED,
                                     FAILED, dict(state=C, complete_ms=CREATED + 1)])
def test_absent_fields_are_left_out_never_null(changes: dict[str, Any]) -> None:
    data = render_status(make_task(**changes), BASE)
    assert all(value is not None for value in data.values()), data
    json.dumps(data)  # plain JSON types only


def test_timestamps_are_integers() -> None:
    data = render_status(make_task(**SUCCEEDED), BASE)
    for name in ("createTime", "completeTime", "costTime"):
        assert type(data[name]) is int


def test_extensions_add_stage_expiry_and_cost_without_touching_the_contract() -> None:
    task = make_task(**SUCCEEDED)
    data = render_status(task, BASE)
    assert data["stage"] == "done"
    assert data["expireTime"] == task.expire_ms
    assert data["cost"] == 0.05
    processing = render_status(make_task(state=R, stage="running"), BASE)
    assert processing["stage"] == "running"
    assert "cost" not in processing
    assert "expireTime" not in processing
    assert "cost" not in render_status(make_task(**FAILED), BASE)


def test_result_url_is_absolute_under_the_base_url() -> None:
    task = make_task(**SUCCEEDED)
    assert result_url(BASE, task, task.results[0]) == f"{BASE}/files/{task.id}/tok123/0.png"


def test_envelope_wraps_data_with_code_and_message() -> None:
    assert envelope({"taskId": "x"}) == {"code": 200, "message": "success",
                                         "data": {"taskId": "x"}}
    assert envelope(None, 404, "Not found") == {"code": 404, "message": "Not found",
                                                "data": None}
