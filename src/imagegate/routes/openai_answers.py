"""Reading the answers of a server of OpenAI's Images API: its error bodies, and the pictures of
a successful answer. Pure functions, no I/O.

Servers answer errors in three shapes, all read here: OpenAI's own
``{"error": {"message", "type", "param", "code"}}``; vLLM's ``{"object": "error", "message",
"type", "code"}``; and FastAPI's ``{"detail": "text"}`` or ``{"detail": [{"loc", "msg"}]}``
(SGLang Diffusion and vLLM-Omni refuse a request this way). ``Problem`` is what they said;
``classify`` says what it means for the task (see the route's docstring for the table).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx

from imagegate.routes.options import retry_after_seconds

__all__ = ["Kind", "Problem", "classify", "image_items", "read_problem", "retry_after",
           "snippet"]

SNIPPET = 200  # characters of upstream text repeated in a message
_SAFETY_CODES = frozenset({"content_policy_violation", "moderation_blocked", "content_filter",
                           "safety_violation"})
_SAFETY_TEXT = re.compile(r"safety system|content polic|moderation|safety filter|nsfw",
                          re.IGNORECASE)
_IMAGE_PARAMS = re.compile(r"^(image|image\[\]|mask|url|images?)(\[\d*\])?$")
_IMAGE_TEXT = re.compile(r"\bimage\b.*\b(invalid|format|decode|corrupt|too large|unsupported|"
                         r"must be|size of)|invalid (input )?image|unsupported image|"
                         r"image file|mime", re.IGNORECASE)
_MODEL_TEXT = re.compile(r"model", re.IGNORECASE)
_SET_UP_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached",
                           "invalid_api_key", "unsupported_parameter", "unknown_parameter",
                           "organization_verification_required"})


class Kind(Enum):
    """What a refusal means for the task."""

    SAFETY = "safety"  # SensitiveContent: final
    IMAGE = "image"  # ImageFormatIncorrect: final
    PROMPT = "prompt"  # PromptInvalid: final
    SET_UP = "set-up"  # the route cannot work as configured: failover, no retry
    MODEL_GONE = "model-gone"  # the server does not serve the model: RouteUnavailable
    RATE_LIMITED = "rate-limited"  # RateLimited: retry (after Retry-After), failover
    TIMEOUT = "timeout"  # Timeout: retry, failover
    TRANSIENT = "transient"  # Unknown error: retry, failover


@dataclass(frozen=True)
class Problem:
    """An error answer: its status, and what the body said (lower-case ``code``, ``param``
    and ``type``; ``message`` as sent, shortened)."""

    status: int
    message: str = ""
    code: str = ""
    param: str = ""
    type: str = ""

    def shown(self) -> str:
        said = f" {self.code}" if self.code else ""
        return f"HTTP {self.status}{said}" + (f": {self.message}" if self.message else "")


def snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 3] + "..."


def read_problem(response: httpx.Response) -> Problem:
    """The ``Problem`` of an error answer, whatever its shape (empty fields when unreadable)."""
    try:
        body = response.json()
    except ValueError:
        return Problem(response.status_code, snippet(response.text[:SNIPPET]))
    body = body if isinstance(body, dict) else {}
    inner = body.get("error")
    error: Mapping[str, Any] = inner if isinstance(inner, dict) else body
    detail = body.get("detail")
    message, param = _text(error.get("message")), _text(error.get("param"))
    if not message and isinstance(detail, str):
        message = detail
    elif not message and isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = detail[0].get("loc")
        param = param or (str(loc[-1]) if isinstance(loc, list) and loc else "")
        message = f"{param}: {_text(detail[0].get('msg'))}" if param else \
            _text(detail[0].get("msg"))
    return Problem(response.status_code, snippet(message), _text(error.get("code")).lower(),
                   param.lower(), _text(error.get("type")).lower())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def classify(problem: Problem) -> Kind:
    """What ``problem`` means for the task; the route's docstring has the table."""
    status = problem.status
    if status == 429:
        return Kind.SET_UP if problem.code == "insufficient_quota" else Kind.RATE_LIMITED
    if status in (408, 504):
        return Kind.TIMEOUT
    if status >= 500:
        return Kind.TRANSIENT
    if problem.code in _SAFETY_CODES or (status == 400 and _SAFETY_TEXT.search(problem.message)):
        return Kind.SAFETY
    if status == 404:
        model = problem.code == "model_not_found" or _MODEL_TEXT.search(problem.message)
        return Kind.MODEL_GONE if model else Kind.SET_UP
    if status == 413:
        return Kind.IMAGE
    if status in (400, 422):
        return _bad_request(problem)
    return Kind.SET_UP  # 401, 402, 403, 405 and the rest: the route's set-up


def _bad_request(problem: Problem) -> Kind:
    """A refused request: the input's fault (image, prompt) or the route's (a parameter it
    sends, its account)."""
    if problem.code in _SET_UP_CODES:
        return Kind.SET_UP
    if problem.code == "model_not_found":
        return Kind.MODEL_GONE
    if _IMAGE_PARAMS.match(problem.param) or problem.code.startswith(("invalid_image", "image_")):
        return Kind.IMAGE
    if problem.param in ("", "prompt", "negative_prompt"):
        return Kind.IMAGE if _IMAGE_TEXT.search(problem.message) else Kind.PROMPT
    return Kind.SET_UP  # size, n, response_format, model, an extra_body parameter...


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms`` (OpenAI), else
    ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return retry_after_seconds(headers.get("retry-after"))


def image_items(body: Any) -> list[Mapping[str, Any]]:
    """The entries of ``data`` of a successful answer that carry ``b64_json`` or ``url``."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return []
    return [item for item in data if isinstance(item, dict)
            and (isinstance(item.get("b64_json"), str) or isinstance(item.get("url"), str))]
