"""The wire: requests built and answers read, for every call of the task API. No I/O.

Requests are plain records (``Request``); the shells turn them into httpx requests. Answers
come back as ``Reply`` records and are read here: the envelope ``{"code", "message", "data"}``
is opened, errors become the exceptions of errors.py, JSON becomes the records of records.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import errors
from .backoff import parse_retry_after
from .records import Cancellation, ModelInfo, TaskPage, TaskStatus

__all__ = ["API_PREFIX", "Reply", "Request", "Wire", "error_for", "submit_body"]

API_PREFIX = "/api/v1"
USER_AGENT = "imagegate-client/0.1.0"


@dataclass(frozen=True)
class Request:
    """One HTTP request. ``repeatable``: sending it twice does no harm (reads; submits, which
    carry an Idempotency-Key). ``stream``: the answer may be an event stream, read as it comes.
    """

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    content: bytes | None = None
    repeatable: bool = True
    follow_redirects: bool = False


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str] = field(hash=False)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A header's value; the shells give ``headers`` with lower-case names."""
        return self.headers.get(name.lower())

    @property
    def media_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class Wire:
    """Builds the requests of one client: its base URL (``/api/v1`` is added, and dropped from
    the URL when given, as APIXO's pages write it) and API key."""

    base_url: str
    api_key: str

    @property
    def root(self) -> str:
        return self.base_url.rstrip("/").removesuffix(API_PREFIX) + API_PREFIX

    def _api(self, method: str, path: str, params: Sequence[tuple[str, str]] = (),
             content: bytes | None = None, extra: Mapping[str, str] | None = None,
             repeatable: bool = True) -> Request:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json",
                   "User-Agent": USER_AGENT, **(extra or {})}
        if content is not None:
            headers["Content-Type"] = "application/json"
        return Request(method, self.root + path, tuple(params), headers, content, repeatable)

    def submit(self, model: str, body: bytes, idempotency_key: str) -> Request:
        return self._api("POST", f"/generateTask/{model}", content=body,
                         extra={"Idempotency-Key": idempotency_key})

    def status(self, model: str, task_id: str) -> Request:
        return self._api("GET", f"/statusTask/{model}", [("taskId", task_id)])

    def stream(self, model: str, task_id: str, last_event_id: str | None) -> Request:
        extra = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            extra["Last-Event-ID"] = last_event_id
        return self._api("GET", f"/streamTask/{model}", [("taskId", task_id)], extra=extra)

    def cancel(self, model: str, task_id: str) -> Request:
        return self._api("POST", f"/cancelTask/{model}", [("taskId", task_id)],
                         repeatable=False)

    def tasks(self, params: Sequence[tuple[str, str]]) -> Request:
        return self._api("GET", "/tasks", params)

    def balance(self) -> Request:
        return self._api("GET", "/apikeys/current-balance")

    def models(self) -> Request:
        return self._api("GET", "/models")

    @staticmethod
    def download(url: str) -> Request:
        """A result file: no API key (the URL is the credential, and may be another host's)."""
        return Request("GET", url, headers={"User-Agent": USER_AGENT}, follow_redirects=True)


def submit_body(prompt: str, *, images: Sequence[str], mode: str | None, aspect_ratio: str,
                resolution: str, output_format: str, google_search: bool,
                num_images: int | None, seed: int | None, callback_url: str | None,
                source: str | None) -> bytes:
    """The submit body of contract §4, as the bytes sent (the same bytes on every retry, which
    an Idempotency-Key requires). Extensions are left out unless given."""
    given = list(images)
    inp: dict[str, Any] = {
        "mode": mode or ("image-to-image" if given else "text-to-image"), "prompt": prompt,
        "aspect_ratio": aspect_ratio, "resolution": resolution, "output_format": output_format,
        "google_search": google_search}
    if given:
        inp["image_urls"] = given
    if num_images is not None:
        inp["num_images"] = num_images
    if seed is not None:
        inp["seed"] = seed
    body: dict[str, Any] = {"request_type": "callback" if callback_url else "async"}
    if callback_url:
        body["callback_url"] = callback_url
    if source is not None:
        body["source"] = source
    body["input"] = inp
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def list_params(*, state: str | Sequence[str] | None, model: str | None,
                created_after: int | datetime | None, created_before: int | datetime | None,
                limit: int | None, cursor: str | None) -> list[tuple[str, str]]:
    """The query of GET /api/v1/tasks (contract §5); times as Unix ms or aware datetimes."""
    params: list[tuple[str, str]] = []
    if state is not None:
        params.append(("state", state if isinstance(state, str) else ",".join(state)))
    if model is not None:
        params.append(("model", model))
    for name, when in (("createdAfter", created_after), ("createdBefore", created_before)):
        if when is not None:
            params.append((name, str(_ms(when))))
    if limit is not None:
        params.append(("limit", str(limit)))
    if cursor is not None:
        params.append(("cursor", cursor))
    return params


def _ms(when: int | datetime) -> int:
    return round(when.timestamp() * 1000) if isinstance(when, datetime) else int(when)


# Answers ----------------------------------------------------------------------------------------

_BY_STATUS: dict[int, type[errors.APIError]] = {
    400: errors.InvalidRequest, 401: errors.AuthenticationError,
    402: errors.InsufficientBalance, 403: errors.PermissionDenied, 404: errors.NotFound,
    409: errors.Conflict, 413: errors.InvalidRequest, 415: errors.InvalidRequest,
    422: errors.InvalidRequest, 429: errors.RateLimited}


def decode(body: bytes) -> Any:
    """The JSON of ``body``, or its text when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def error_for(status: int, headers: Mapping[str, str], body: bytes) -> errors.APIError:
    """The exception for an error answer (the envelope's ``data.error`` and ``data.field``);
    ``headers`` with lower-case names."""
    decoded = decode(body)
    message, field_ = _describe(status, decoded)
    cls = _BY_STATUS.get(status, errors.ServerError if status >= 500 else errors.APIError)
    if cls is errors.RateLimited:
        after = parse_retry_after(headers.get("retry-after"))
        return errors.RateLimited(message, status=status, field=field_, body=decoded,
                                  retry_after=after)
    return cls(message, status=status, field=field_, body=decoded)


def _describe(status: int, decoded: Any) -> tuple[str, str | None]:
    if isinstance(decoded, dict):
        data = decoded.get("data")
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            field_ = data.get("field")
            return data["error"], field_ if isinstance(field_, str) and field_ else None
        if isinstance(decoded.get("message"), str):
            return decoded["message"], None
    text = decoded.strip()[:200] if isinstance(decoded, str) else ""
    return text or f"HTTP {status}", None


def data_of(reply: Reply) -> Any:
    """The ``data`` of a successful envelope; raises the mapped APIError for an error answer
    (also one sent with HTTP 200 and an error ``code`` in the envelope)."""
    if reply.status >= 400:
        raise error_for(reply.status, reply.headers, reply.body)
    decoded = decode(reply.body)
    if not isinstance(decoded, dict) or "data" not in decoded:
        raise errors.ServerError("the answer is not an API envelope", status=reply.status,
                                 body=decoded)
    code = decoded.get("code")
    if isinstance(code, int) and code >= 400:
        raise error_for(code, reply.headers, reply.body)
    return decoded["data"]


def task_id_of(data: Any) -> str:
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if isinstance(task_id, str):
        return task_id
    raise errors.ServerError("the submit answer has no taskId", status=200, body=data)


def task_status(data: Any, model: str | None = None) -> TaskStatus:
    """A status read's ``data`` (or a listed task, or an event's) as a TaskStatus."""
    if not isinstance(data, dict) or not isinstance(data.get("taskId"), str):
        raise errors.ServerError("the answer has no task", status=200, body=data)
    cost = data.get("cost")
    return TaskStatus(
        task_id=data["taskId"], state=str(data.get("state", "processing")),
        stage=_opt_str(data.get("stage")), result_urls=_result_urls(data.get("resultJson")),
        fail_code=_opt_str(data.get("failCode")), fail_msg=_opt_str(data.get("failMsg")),
        create_time=_opt_int(data.get("createTime")),
        complete_time=_opt_int(data.get("completeTime")),
        cost_time=_opt_int(data.get("costTime")),
        cost=None if cost is None else Decimal(str(cost)),
        expire_time=_opt_int(data.get("expireTime")), source=_opt_str(data.get("source")),
        model=_opt_str(data.get("model")) or model, raw=dict(data))


def _result_urls(result_json: Any) -> tuple[str, ...]:
    # resultJson is a JSON *string* on the wire; an object is accepted too.
    payload = json.loads(result_json) if isinstance(result_json, str) else result_json
    urls = payload.get("resultUrls") if isinstance(payload, dict) else None
    return tuple(str(u) for u in urls) if isinstance(urls, list) else ()


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cancellation(data: Any) -> Cancellation:
    return Cancellation(task_id=str(data["taskId"]), state=data["state"],
                        refunded=bool(data.get("refunded")))


def task_page(data: Any, model: str | None) -> TaskPage:
    tasks = tuple(task_status(item, model) for item in data.get("tasks", []))
    cursor = data.get("nextCursor")
    return TaskPage(tasks, cursor if isinstance(cursor, str) and cursor else None)


def balance(data: Any) -> Decimal:
    return Decimal(str(data))


def model_infos(data: Any) -> list[ModelInfo]:
    return [model_info(item) for item in data.get("models", [])]


def model_info(item: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        id=str(item["id"]), aspect_ratios=tuple(item.get("aspectRatios", ())),
        resolutions=tuple(item.get("resolutions", ())),
        output_formats=tuple(item.get("outputFormats", ())),
        max_prompt_chars=_opt_int(item.get("maxPromptChars")),
        max_references=_opt_int(item.get("maxReferences")),
        max_images=_opt_int(item.get("maxImages")),
        prices={k: Decimal(str(v)) for k, v in dict(item.get("prices", {})).items()},
        google_search=bool(item.get("googleSearch")), sandbox=bool(item.get("sandbox")),
        raw=dict(item))
