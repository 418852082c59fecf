"""The exit status of a client command, by the class of what went wrong (docs/cli.md).

    0    ok
    1    the task failed (its failCode and failMsg are printed), or its images could not be
         written
    2    usage: a bad argument, or a request the service refused as invalid (400, 404, 405,
         409, 410, 413, 415, 422; the field at fault is named)
    3    authentication or permission (401, 403)
    4    insufficient balance (402)
    5    rate limited (429; when to retry is printed)
    6    server or connection error (5xx, an unexpected answer, no connection); after the
         submit the message names the task, which goes on
    7    timed out waiting for the task (--timeout); the task may still end
    130  interrupted (Ctrl-C); the task id is printed so it can be found or cancelled
    141  stdout was closed before all was printed (``| head``); the images are saved
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from imagegate_client import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ImagegateError,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    TaskFailed,
    WaitTimeout,
)

from imagegate.client_cli.outputs import UsageError, WriteError


class Exit(IntEnum):
    OK = 0
    TASK_FAILED = 1
    USAGE = 2
    AUTH = 3
    BALANCE = 4
    RATE_LIMITED = 5
    SERVER = 6
    TIMEOUT = 7
    INTERRUPTED = 130
    PIPE_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a program the pipe's end stopped


@dataclass(frozen=True)
class Outcome:
    """What to tell the user and the shell about an error."""

    code: Exit
    message: str
    status: int | None = None  # the HTTP status, for an API error
    field: str | None = None


_USAGE_STATUSES = frozenset({400, 404, 405, 409, 410, 413, 415, 422})


def outcome(exc: BaseException) -> Outcome | None:
    """The exit status and message for ``exc``; None for an exception a client command does
    not expect (a bug: it should show its traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        return Outcome(Exit.INTERRUPTED, "interrupted")
    if isinstance(exc, UsageError | ValueError):
        return Outcome(Exit.USAGE, str(exc))
    if isinstance(exc, TaskFailed):
        return Outcome(Exit.TASK_FAILED, _task_failed(exc))
    if isinstance(exc, WaitTimeout):
        return Outcome(Exit.TIMEOUT, str(exc))
    if isinstance(exc, APIError):
        return _api_error(exc)
    if isinstance(exc, APIConnectionError):
        return Outcome(Exit.SERVER, f"cannot reach the service: {exc}")
    if isinstance(exc, ImagegateError):
        return Outcome(Exit.SERVER, str(exc))
    if isinstance(exc, WriteError):
        return Outcome(Exit.TASK_FAILED, str(exc))
    return None


def _task_failed(exc: TaskFailed) -> str:
    code = exc.fail_code or "failed"
    return f"task {exc.task.task_id} failed: {code}: {exc.fail_msg or 'no message'}"


def _api_error(exc: APIError) -> Outcome:
    status, field, text = exc.status, exc.field, _message(exc)
    where = f" (field {field})" if field else ""
    if isinstance(exc, AuthenticationError):
        return Outcome(Exit.AUTH, f"authentication failed ({status}): {text}; check --api-key "
                       "or IMAGEGATE_API_KEY", status, field)
    if isinstance(exc, PermissionDenied):
        return Outcome(Exit.AUTH, f"permission denied ({status}): {text}", status, field)
    if isinstance(exc, InsufficientBalance):
        return Outcome(Exit.BALANCE, f"insufficient balance ({status}): {text}", status, field)
    if isinstance(exc, RateLimited):
        after = f"; retry after {exc.retry_after:g} s" if exc.retry_after is not None else ""
        return Outcome(Exit.RATE_LIMITED, f"rate limited ({status}): {text}{after}", status,
                       field)
    if isinstance(exc, NotFound):
        return Outcome(Exit.USAGE, f"not found ({status}): {text}", status, field)
    if isinstance(exc, InvalidRequest) or status in _USAGE_STATUSES:
        return Outcome(Exit.USAGE, f"refused ({status}): {text}{where}", status, field)
    return Outcome(Exit.SERVER, f"server error ({status}): {text}", status, field)


def _message(exc: APIError) -> str:
    if exc.body is not None and not isinstance(exc.body, dict):
        # Not the task API's envelope: a web page, a proxy's error, another service.
        return ("the answer is not the task API's (no JSON envelope): is the base URL the "
                "service's root, such as http://127.0.0.1:8000? (--base-url or "
                "IMAGEGATE_BASE_URL)")
    return exc.message or "no message"
