"""The task record, its states and their legal transitions, and its wire rendering.

Internal states: queued -> running -> succeeded | failed | canceled; running may go back to
queued (lease expired, or a retryable error asked for a later attempt). On the wire queued and
running are ``processing``, succeeded is ``success``, failed and canceled are ``failed``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imagegate.contract import SubmitInput
from imagegate.money import ChargeState


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED)

    @property
    def wire(self) -> str:
        if self is TaskState.SUCCEEDED:
            return "success"
        return "failed" if self.terminal else "processing"

    def can_become(self, new: TaskState) -> bool:
        """Whether a task may move from this state to ``new`` (``TRANSITIONS``)."""
        return new in TRANSITIONS[self]


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.FAILED, TaskState.CANCELED}),
    TaskState.RUNNING: frozenset({TaskState.QUEUED, TaskState.SUCCEEDED, TaskState.FAILED,
                                  TaskState.CANCELED}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELED: frozenset(),
}


CANCELED_MESSAGE = "the task was cancelled by the client (cancelTask)"


def can_transition(old: TaskState, new: TaskState) -> bool:
    return old.can_become(new)


def new_task_id() -> str:
    """32 hex characters, 128 random bits: opaque and unguessable."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ResultFile:
    """One stored output image. ``key`` is the blob key; ``name`` ends the public URL."""

    key: str
    name: str
    content_type: str
    size: int
    width: int
    height: int


@dataclass(frozen=True)
class RouteAttempt:
    """One try of one route, kept on the task for operators. ``model``: the upstream model id
    the route asked for ("" for a route without one, and on attempts recorded before it was
    kept)."""

    attempt: int
    route: str
    outcome: str  # "success" or a failCode
    duration_ms: int
    detail: str = ""
    model: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "route": self.route, "upstreamModel": self.model,
                "outcome": self.outcome, "durationMs": self.duration_ms, "detail": self.detail}


@dataclass(frozen=True)
class Task:
    id: str
    account_id: str
    key_id: str
    model: str
    input: SubmitInput
    state: TaskState
    created_ms: int
    price_micros: int
    charge_state: ChargeState
    result_token: str
    request_type: str = "async"
    callback_url: str | None = None
    provider: str = "auto"
    source: str | None = None
    stage: str = "queued"
    attempt: int = 0
    lease_until_ms: int | None = None
    not_before_ms: int = 0
    started_ms: int | None = None
    complete_ms: int | None = None
    expire_ms: int | None = None
    fail_code: str | None = None
    fail_msg: str | None = None
    results: tuple[ResultFile, ...] = ()
    route_attempts: tuple[RouteAttempt, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Unix ms when the client asked to cancel the task while it ran (cancelTask); its worker
    # abandons the attempt and ends it canceled, unless the attempt finishes first.
    cancel_requested_ms: int | None = None


def result_url(base_url: str, task: Task, result: ResultFile) -> str:
    return f"{base_url}/files/{task.id}/{task.result_token}/{result.name}"


def render_status(task: Task, base_url: str) -> dict[str, Any]:
    """The ``data`` of a status answer (docs/contract.md §5): absent fields left out, never null."""
    data: dict[str, Any] = {"taskId": task.id, "state": task.state.wire,
                            "createTime": task.created_ms}
    if task.state is TaskState.SUCCEEDED:
        urls = [result_url(base_url, task, r) for r in task.results]
        data["resultJson"] = json.dumps({"resultUrls": urls}, separators=(",", ":"))
    if task.state.terminal and task.complete_ms is not None:
        data["completeTime"] = task.complete_ms
    if task.state is TaskState.SUCCEEDED and task.complete_ms is not None:
        data["costTime"] = task.complete_ms - task.created_ms
    if task.state.terminal and task.state is not TaskState.SUCCEEDED:
        data["failCode"] = task.fail_code or "Unknown error"
        data["failMsg"] = task.fail_msg or ""
    data.update(_extensions(task))
    return data


def _extensions(task: Task) -> dict[str, Any]:
    ext: dict[str, Any] = {"stage": task.stage}
    if task.state is TaskState.SUCCEEDED and task.expire_ms is not None:
        ext["expireTime"] = task.expire_ms
    if task.charge_state is ChargeState.SETTLED:
        ext["cost"] = task.price_micros / 1_000_000
    return ext


def envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}
