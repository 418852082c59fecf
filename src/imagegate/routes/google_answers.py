"""Reading Google's answers (the Gemini API and Vertex AI answer alike): error bodies
(``{"error": {"code", "message", "status", "details"}}``), their retry delays, and the parts of
a ``generateContent`` answer. Pure functions, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from imagegate.routes.options import retry_after_seconds

__all__ = ["describe", "error_object", "inline_blob", "mapping", "reason_text", "retry_after",
           "route_unusable", "snippet"]

SNIPPET = 200  # characters of upstream text repeated in a message
DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def inline_blob(part: Mapping[str, Any]) -> str | None:
    """The base64 data of an image part; REST answers use camelCase, some proxies snake_case."""
    blob = mapping(part.get("inlineData") or part.get("inline_data"))
    mime = str(blob.get("mimeType") or blob.get("mime_type") or "image/")
    data = blob.get("data")
    return data if isinstance(data, str) and data and mime.startswith("image/") else None


def reason_text(source: Mapping[str, Any], key: str) -> str:
    extra = source.get("blockReasonMessage") or source.get("finishMessage")
    reason = str(source.get(key))
    return f"{reason}: {snippet(str(extra))}" if extra else reason


def snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 3] + "..."


def describe(response: httpx.Response) -> tuple[int, str, str]:
    """The HTTP status, the gRPC status and a short text of an error answer."""
    error = error_object(response)
    grpc = str(error.get("status") or "")
    message = snippet(str(error.get("message") or response.reason_phrase or ""))
    status = response.status_code
    return status, grpc, f"HTTP {status}{' ' + grpc if grpc else ''}" \
                         f"{': ' + message if message else ''}"


def error_object(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    if isinstance(body, list) and body:  # some front ends wrap the error in a list
        body = body[0]
    return mapping(mapping(body).get("error"))


def error_reasons(error: Mapping[str, Any]) -> set[str]:
    details = error.get("details")
    return {str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")} \
        if isinstance(details, list) else set()


def route_unusable(status: int, grpc: str, error: Mapping[str, Any]) -> bool:
    """A bad or refused key, a model this key may not use, an unsupported region or project:
    Google answers 400 API_KEY_INVALID, 400 FAILED_PRECONDITION, 401 or 403 for these."""
    if status in (401, 403):
        return True
    if grpc in ("UNAUTHENTICATED", "PERMISSION_DENIED", "FAILED_PRECONDITION"):
        return True
    return bool(error_reasons(error) & {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED",
                                        "CONSUMER_SUSPENDED", "SERVICE_DISABLED"})


def retry_after(error: Mapping[str, Any], headers: httpx.Headers) -> float | None:
    """Seconds Google asked us to wait: RetryInfo.retryDelay ("27s"), else Retry-After."""
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(".RetryInfo"):
            match = DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return retry_after_seconds(headers.get("retry-after"))
