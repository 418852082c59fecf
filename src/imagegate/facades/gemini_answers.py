"""Answers in the Gemini API's shape: a finished task as a ``generateContent`` response, a
refusal or a failed task as Google's error (``{"error": {"code", "message", "status",
"details"}}``), and the catalogue as Google's model resources. Pure functions, no I/O.

A succeeded task answers one candidate per image (``finishReason`` STOP, one ``inlineData``
part each, no text part: the service makes no text). A task failed with SensitiveContent
answers HTTP 200 with one candidate whose ``finishReason`` is IMAGE_SAFETY, no content, and the
task's failMsg as ``finishMessage``, as Google answers an image its filters blocked; the
service does not tell a blocked prompt from a blocked image, so it never answers
``promptFeedback``. Other failures and refusals are errors:

    refusal or failCode                          HTTP  status
    400 invalid request, 413, 415                400   INVALID_ARGUMENT (BadRequest details)
    401 invalid or revoked key                   400   INVALID_ARGUMENT, reason API_KEY_INVALID
    no key at all, 403 model not allowed         403   PERMISSION_DENIED
    404 unknown model                            404   NOT_FOUND
    402 insufficient balance                     429   RESOURCE_EXHAUSTED
    429 rate or wait limit                       429   RESOURCE_EXHAUSTED (RetryInfo, Retry-After)
    409                                          409   ABORTED
    503 not ready, store or storage unavailable  503   UNAVAILABLE
    500 and anything unexpected                  500   INTERNAL
    PromptInvalid, ImageFormatIncorrect,
    MissingParameter                             400   INVALID_ARGUMENT
    RateLimited                                  429   RESOURCE_EXHAUSTED
    Timeout                                      504   DEADLINE_EXCEEDED
    Canceled                                     499   CANCELLED
    Unknown error                                500   INTERNAL
    the wait ran out (the task goes on)          504   DEADLINE_EXCEEDED, naming the task
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imagegate.app.generation import Generation
from imagegate.catalogue import ModelConfig
from imagegate.errors import FailCode, InvalidRequest
from imagegate.routes.google_models import KNOWN_MODELS
from imagegate.tasks import Task

__all__ = ["GoogleError", "answers_in_content", "content_answer", "failure", "model_list",
           "model_resource", "refusal_error", "wait_ran_out"]

KEY_INVALID = "API key not valid. Please pass a valid API key."
METHODS = ("generateContent", "streamGenerateContent")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ABORTED",
           429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 503: "UNAVAILABLE",
           504: "DEADLINE_EXCEEDED"}
# The service's own statuses Google answers with another one.
_AS_GOOGLE = {401: 400, 402: 429, 413: 400, 415: 400, 410: 404}
_FAILURES = {FailCode.PROMPT_INVALID: 400, FailCode.IMAGE_FORMAT_INCORRECT: 400,
             FailCode.MISSING_PARAMETER: 400, FailCode.RATE_LIMITED: 429,
             FailCode.TIMEOUT: 504, FailCode.CANCELED: 499, FailCode.UNKNOWN: 500}
_TYPE = "type.googleapis.com/google.rpc."


@dataclass(frozen=True)
class GoogleError:
    """An error answer: the HTTP ``code`` and Google's body, and the seconds the client should
    wait before it calls again (for a Retry-After header), if any."""

    code: int
    body: dict[str, Any]
    retry_after: float | None = None


def _error(code: int, message: str, details: list[dict[str, Any]] | None = None,
           retry_after: float | None = None) -> GoogleError:
    error: dict[str, Any] = {"code": code, "message": message,
                             "status": _STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return GoogleError(code, {"error": error}, retry_after)


def refusal_error(status: int, message: str, field: str | None = None,
                  retry_after: float | None = None) -> GoogleError:
    """Google's error for a request the service refused with HTTP ``status`` (``field`` in
    the request's own terms)."""
    if status == 401:
        return _error(400, KEY_INVALID, [{"@type": _TYPE + "ErrorInfo", "reason":
                                          "API_KEY_INVALID", "domain": "imagegate"}])
    code = _AS_GOOGLE.get(status, status if status in _STATUS else
                          (500 if status >= 500 else 400))
    details: list[dict[str, Any]] = []
    if field and code == 400:
        details.append({"@type": _TYPE + "BadRequest",
                        "fieldViolations": [{"field": field, "description": message}]})
    if retry_after is not None:
        details.append({"@type": _TYPE + "RetryInfo",
                        "retryDelay": f"{max(1, round(retry_after + 0.499))}s"})
    return _error(code, message, details, retry_after)


def failure(task: Task) -> GoogleError:
    """Google's error for a task that ended without images (SensitiveContent excepted:
    ``content_answer`` answers it)."""
    code = _FAILURES.get(task.fail_code or "", 500)
    why = task.fail_msg or "no reason given"
    return _error(code, f"task {task.id} failed ({task.fail_code}): {why}")


def wait_ran_out(task_id: str, model_id: str, wait_s: float) -> GoogleError:
    """504 for a task still running when the call stopped waiting: it goes on, billed if it
    succeeds, and the native API reads it."""
    return _error(504, f"task {task_id} is still running after {wait_s:g} s; it goes on: read "
                       f"it with GET /api/v1/statusTask/{model_id}?taskId={task_id} (this "
                       "call's x-imagegate-task-id header) instead of calling again")


def content_answer(generation: Generation, model: str) -> dict[str, Any]:
    """The ``generateContent`` response of a finished task that made images or was blocked
    (``model`` as the request named it)."""
    task = generation.task
    if generation.succeeded:
        candidates = [_image_candidate(i, image.file.content_type, image.data or b"")
                      for i, image in enumerate(generation.images)]
    elif task.fail_code == FailCode.SENSITIVE_CONTENT:
        candidates = [{"finishReason": "IMAGE_SAFETY", "index": 0,
                       "finishMessage": task.fail_msg or "the image was blocked"}]
    else:
        raise ValueError(f"task {task.id} has no answer in candidates; see failure()")
    return {"candidates": candidates, "usageMetadata": {}, "modelVersion": model,
            "responseId": task.id}


def _image_candidate(index: int, mime: str, data: bytes) -> dict[str, Any]:
    part = {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode("ascii")}}
    return {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP",
            "index": index}


def answers_in_content(generation: Generation) -> bool:
    """Whether the finished task answers 200 (images, or a safety block) rather than an
    error."""
    return generation.succeeded or generation.task.fail_code == FailCode.SENSITIVE_CONTENT


def model_resource(name: str, model: ModelConfig) -> dict[str, Any]:
    """Google's Model resource for ``name``: a catalogue id, or an alias of ``model``."""
    known = KNOWN_MODELS.get(name)
    sizes = ", ".join(r.upper() for r in model.limits.resolutions)
    what = f"{len(model.limits.ratios)} aspect ratios, image sizes {sizes}, up to " \
           f"{model.limits.max_references} reference images"
    described = f"imagegate model {model.id}: {what}" if name == model.id else \
        f"an alias of imagegate model {model.id}: {what}"
    return {"name": f"models/{name}", "baseModelId": name, "version": "imagegate",
            "displayName": known.name if known else name, "description": described,
            "supportedGenerationMethods": list(METHODS)}


def model_list(resources: Iterable[dict[str, Any]], page_size: str | None,
               page_token: str | None) -> dict[str, Any]:
    """A ``models.list`` page: ``pageSize`` resources (50 by default, 1000 at most) from
    ``pageToken`` (the offset a previous page handed out); ``InvalidRequest`` for a bad one."""
    every = list(resources)
    size = _page_number(page_size, "pageSize", DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    start = _page_number(page_token, "pageToken", 0)
    end = start + min(size, MAX_PAGE_SIZE)
    page: dict[str, Any] = {"models": every[start:end]}
    if end < len(every):
        page["nextPageToken"] = str(end)
    return page


def _page_number(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidRequest(f"{name} must be a whole number", field=name)
    return int(value)
