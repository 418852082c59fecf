"""The list of a key's own tasks (``GET /api/v1/tasks``, an extension; docs/contract.md §5): the
query a client sends, checked, and the cursor that carries where one page ended to the next.

Pure: no I/O, no clock. ``parse_task_query`` turns the query parameters into a ``TaskQuery`` or
raises ``InvalidRequest`` naming the parameter at fault.

Tasks come newest first, in (created_ms, id) descending order, and a page's cursor is the
(created_ms, id) of its last task: the next page holds only tasks below it in that order. A task
submitted between two requests is newer than any cursor, so it never shifts a page; pages
neither repeat nor skip a task, however many are submitted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagegate_client.wire_models import MAX_PAGE_TASKS
from imagegate_client.wire_models import WIRE_STATES as _WIRE_STATE_NAMES

from imagegate.errors import InvalidRequest
from imagegate.tasks import Task, TaskState, render_status

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_MODEL_CHARS", "MAX_MS", "WIRE_STATES", "TaskQuery",
           "decode_cursor", "encode_cursor", "parse_task_query", "render_item", "render_page"]

DEFAULT_LIMIT = 20
MAX_LIMIT = MAX_PAGE_TASKS
MAX_MS = 2**63 - 1  # the largest BIGINT: Unix ms past it fits no column
MAX_MODEL_CHARS = 256

# The wire state of each internal state (TaskState.wire), as a filter reads it.
WIRE_STATES: dict[str, tuple[TaskState, ...]] = {
    wire: tuple(s for s in TaskState if s.wire == wire)
    for wire in _WIRE_STATE_NAMES}

_DIGITS = re.compile(r"[0-9]{1,19}")
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{1,120}")
_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9A-Za-z_-]{1,64})")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TaskQuery:
    """Which of one key's tasks to read, newest first: at most ``limit`` of them, in one of
    ``states`` (internal states), of ``model`` (any when None), created at or after
    ``created_after_ms`` and before ``created_before_ms`` (Unix ms), and below ``cursor`` (the
    (created_ms, id) of the last task of the page before) in the order."""

    key_id: str
    limit: int = DEFAULT_LIMIT
    states: tuple[TaskState, ...] = tuple(TaskState)
    model: str | None = None
    created_after_ms: int = 0
    created_before_ms: int = MAX_MS
    cursor: tuple[int, str] | None = None

    @property
    def upper_bound(self) -> tuple[int, str]:
        """The (created_ms, id) every listed task is below: the cursor, or ``createdBefore``
        when that is lower. An empty id sorts below every id, so ``(ms, "")`` excludes every
        task created at ``ms``."""
        bound = (self.created_before_ms, "")
        return bound if self.cursor is None or bound < self.cursor else self.cursor


def parse_task_query(key_id: str, params: Mapping[str, Sequence[str]]) -> TaskQuery:
    """The query of ``params`` (each parameter's values, in the order sent) for the tasks of
    ``key_id``. Unknown parameters are ignored; one that is given must be valid: else
    ``InvalidRequest`` naming it. ``state`` may be given several times, each a comma-separated
    list; every other parameter at most once."""
    return TaskQuery(
        key_id=key_id,
        limit=_limit(_one(params, "limit")),
        states=_states(params.get("state", ())),
        model=_model(_one(params, "model")),
        created_after_ms=_ms(_one(params, "createdAfter"), "createdAfter", 0),
        created_before_ms=_ms(_one(params, "createdBefore"), "createdBefore", MAX_MS),
        cursor=None if (cursor := _one(params, "cursor")) is None else decode_cursor(cursor))


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, ())
    if len(values) > 1:
        raise InvalidRequest(f"{name} may be given only once", field=name)
    return values[0] if values else None


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}",
                             field="limit")
    return int(raw)


def _states(values: Sequence[str]) -> tuple[TaskState, ...]:
    if not values:
        return tuple(TaskState)
    wanted = {wire for value in values for wire in value.split(",")}
    if not wanted <= WIRE_STATES.keys():
        raise InvalidRequest("state must be processing, success or failed (a cancelled task "
                             "is failed), or several of them separated by commas",
                             field="state")
    return tuple(s for s in TaskState if s.wire in wanted)


def _model(raw: str | None) -> str | None:
    if raw is not None and (not 1 <= len(raw) <= MAX_MODEL_CHARS
                            or _CONTROL_CHARACTER.search(raw)):
        raise InvalidRequest(f"model must be a model id of 1 to {MAX_MODEL_CHARS} characters",
                             field="model")
    return raw


def _ms(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_MS:
        raise InvalidRequest(f"{name} must be a Unix time in milliseconds: a whole number from "
                             f"0 to {MAX_MS}", field=name)
    return int(raw)


def encode_cursor(task: Task) -> str:
    """The cursor of the page that ends with ``task``: opaque to a client (base64url)."""
    raw = f"{task.created_ms}.{task.id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> tuple[int, str]:
    """The (created_ms, id) a cursor of ``encode_cursor`` holds; ``InvalidRequest`` naming
    ``cursor`` for any other text."""
    refused = InvalidRequest("cursor must be the nextCursor of a page of this list, as given",
                             field="cursor")
    if not _CURSOR_TEXT.fullmatch(text):
        raise refused
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise refused from exc
    found = _CURSOR.fullmatch(raw)
    if found is None or int(found[1]) > MAX_MS:
        raise refused
    return int(found[1]), found[2]


def render_item(task: Task, base_url: str) -> dict[str, Any]:
    """A task as the list shows it: its status answer's ``data`` (``render_status``), its
    ``model`` (the ``{model}`` a client reads or cancels it under) and, when the submit gave
    one, its ``source`` (extensions of the list alone)."""
    data = render_status(task, base_url)
    data["model"] = task.model
    if task.source is not None:
        data["source"] = task.source
    return data


def render_page(found: Sequence[Task], limit: int, base_url: str) -> dict[str, Any]:
    """The ``data`` of a list answer from up to ``limit + 1`` tasks read: the first ``limit``,
    and the cursor of the next page when there was one more (null when this page is the
    last)."""
    page = found[:limit]
    more = len(found) > limit
    return {"tasks": [render_item(t, base_url) for t in page],
            "nextCursor": encode_cursor(page[-1]) if more and page else None}
