"""Errors in the OpenAI API's shape: ``{"error": {"message", "type", "param", "code"}}`` with
OpenAI's HTTP status for the case (docs/openai-images.md, "Errors").

Pure. ``refused`` translates a request the service refused before or while storing its task,
``failed`` a task that finished failed, ``unfinished`` a task still running when the call's
wait ran out.

The openai SDKs retry 408, 409, 429 and 5xx answers (twice by default) and honour the
``x-should-retry`` header. An answer whose retry would store and bill a second task for the
same request while the first goes on (the wait ran out), or could never succeed (the balance is
spent, the task was canceled), says ``x-should-retry: false``; a failed task is not billed, so
retrying it is an honest new try and is left to the SDK.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

from imagegate.errors import FailCode
from imagegate.idempotency import HEADER as IDEMPOTENCY_HEADER
from imagegate.tasks import Task

__all__ = ["OpenAIError", "failed", "param_name", "refused", "unfinished"]

# Native request fields (docs/contract.md §4) -> the OpenAI field they come from.
_PARAMS = {"input.prompt": "prompt", "input.num_images": "n", "input.aspect_ratio": "size",
           "input.resolution": "size", "input.output_format": "output_format",
           "input.image_urls": "image", "input.mode": "image", "input": None,
           IDEMPOTENCY_HEADER: IDEMPOTENCY_HEADER}
_INVALID = "invalid_request_error"


class RefusalLike(Protocol):
    """What ``api.facades.Refusal`` carries (this module does not import the web layer)."""

    @property
    def status(self) -> int: ...
    @property
    def message(self) -> str: ...
    @property
    def field(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def retry_after(self) -> float | None: ...
    @property
    def task_id(self) -> str | None: ...


@dataclass(frozen=True)
class OpenAIError:
    """One error answer: the HTTP ``status``, the body's four fields, the seconds to wait
    (``Retry-After``), and whether an SDK should retry (``x-should-retry``; None: its own
    rule by status)."""

    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None
    retry: bool | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, round(self.retry_after + 0.499)))
        if self.retry is not None:
            headers["x-should-retry"] = "true" if self.retry else "false"
        return headers


def param_name(field: str | None) -> str | None:
    """The OpenAI request field a native field name comes from (``input.image_urls[1]`` ->
    ``image``); a name that is not native is already OpenAI's and is kept."""
    if field is None:
        return None
    base = field.split("[", 1)[0]
    if base in _PARAMS:
        return _PARAMS[base]
    return None if base.startswith("input.") else field


def refused(refusal: RefusalLike) -> OpenAIError:
    """The OpenAI error of a refused request; never to be retried once its task was stored
    (the retry would store and bill another while the first goes on)."""
    error = _refused(refusal)
    if refusal.task_id is not None:
        return dataclasses.replace(error, retry=False)
    return error


def _refused(refusal: RefusalLike) -> OpenAIError:
    status, message = refusal.status, refusal.message
    if status == 400:
        param = param_name(refusal.field)
        if refusal.field and param and message.startswith(refusal.field):
            message = param + message[len(refusal.field):]  # the field as the client named it
        return OpenAIError(400, message, _INVALID, param, "invalid_value" if param else None)
    if status == 401:
        return OpenAIError(401, message, _INVALID, None, "invalid_api_key")
    if status == 402:  # OpenAI's answer to a spent balance, final for the SDK
        return OpenAIError(429, message, "insufficient_quota", None, "insufficient_quota",
                           retry=False)
    if status == 403:
        return OpenAIError(403, message, _INVALID, "model", "model_not_allowed")
    if status == 404:
        return OpenAIError(404, message, _INVALID, "model", "model_not_found")
    if status == 409:
        return OpenAIError(409, message, _INVALID, param_name(refusal.field), "conflict",
                           retry=False)
    if status == 429:
        return OpenAIError(429, message, "requests", None, "rate_limit_exceeded",
                           refusal.retry_after)
    if status == 413:
        return OpenAIError(413, message, _INVALID, None, "request_too_large")
    if status < 500:
        return OpenAIError(status, message, _INVALID, param_name(refusal.field))
    if status == 503:
        return OpenAIError(503, message, "server_error", None, "service_unavailable",
                           refusal.retry_after)
    return OpenAIError(status, message, "server_error")


def failed(task: Task) -> OpenAIError:
    """The OpenAI error of a task that finished without images, by its fail code."""
    code, detail = task.fail_code, task.fail_msg or "the task failed"
    message = f"{detail} (task {task.id})"
    if code == FailCode.SENSITIVE_CONTENT:
        return OpenAIError(400, f"Your request was rejected by the safety system: {message}",
                           "image_generation_user_error", None, "moderation_blocked")
    if code == FailCode.PROMPT_INVALID:
        return OpenAIError(400, message, _INVALID, "prompt", "invalid_prompt")
    if code == FailCode.IMAGE_FORMAT_INCORRECT:
        return OpenAIError(400, message, _INVALID, "image", "invalid_image")
    if code == FailCode.MISSING_PARAMETER:
        return OpenAIError(400, message, _INVALID, None, "missing_parameter")
    if code == FailCode.RATE_LIMITED:
        return OpenAIError(429, message, "requests", None, "rate_limit_exceeded")
    if code == FailCode.TIMEOUT:
        return OpenAIError(504, message, "server_error", None, "timeout")
    if code == FailCode.CANCELED:
        return OpenAIError(409, f"the task was canceled before it finished (task {task.id})",
                           _INVALID, None, "task_canceled", retry=False)
    return OpenAIError(500, message, "server_error", None, "server_error")


def unfinished(task: Task, model_id: str) -> OpenAIError:
    """The OpenAI error of a call whose wait ran out: its task goes on (and is billed if it
    succeeds), so the answer names it and tells the SDK not to submit the request again."""
    return OpenAIError(
        504, f"the image was not ready in time; task {task.id} goes on: read it with GET "
        f"/api/v1/statusTask/{model_id}?taskId={task.id} instead of calling again",
        "server_error", None, "timeout", retry=False)
