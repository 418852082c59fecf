"""The wire: requests built and answers read, for every call of the task API. No I/O.

Requests are plain records (``Request``); the shells turn them into httpx requests. Answers
come back as ``Reply`` records and are read here: the envelope ``{"code", "message", "data"}``
is opened, errors become the exceptions of errors.py, and the ``data`` is read as the wire
model the service itself answers with (wire_models.py, the schemas of its OpenAPI document),
then turned into the records of records.py. An answer that does not fit its model is a
ServerError naming the field at fault. Fields sent as ``null`` in a task count as absent, as
some APIXO-style servers send them.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from . import errors
from . import wire_models as models
from .backoff import parse_retry_after
from .records import Cancellation, ModelInfo, TaskPage, TaskStatus

__all__ = ["API_PREFIX", "Reply", "Request", "Wire", "error_for", "submit_body"]

API_PREFIX = "/api/v1"
USER_AGENT = "imagegate-client/0.1.0"


@dataclass(frozen=True)
class Request:
    """One HTTP request. ``repeatable``: sending it twice does no harm (reads; submits, which
    carry an Idempotency-Key). Whether the answer is read as an event stream is the effect's
    choice (effects.OpenStream), not the request's."""

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
    """The submit body of contract §4 (the wire model ``SubmitRequest``), as the bytes sent:
    the same bytes on every retry, which an Idempotency-Key requires. ``request_type``,
    ``output_format`` and ``google_search`` are always sent, as APIXO's page does in each of its
    examples (it marks ``request_type`` required); other fields at their default and the
    extensions not given are left out."""
    given = list(images)
    request = models.SubmitRequest(
        input=models.SubmitInput(
            mode=mode or ("image-to-image" if given else "text-to-image"), prompt=prompt,
            aspect_ratio=aspect_ratio, resolution=resolution,
            image_urls=given or models.UNSET, output_format=output_format,
            google_search=google_search,
            num_images=1 if num_images is None else num_images,
            seed=models.UNSET if seed is None else seed),
        request_type="callback" if callback_url else "async", callback_url=callback_url,
        source=source)
    sent = msgspec.to_builtins(request)
    sent["input"].update(output_format=output_format, google_search=google_search)
    return msgspec.json.encode({"request_type": request.request_type, **sent})


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
    text = _plain(decoded) if isinstance(decoded, str) else ""
    return text or f"HTTP {status}", None


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _plain(text: str) -> str:
    """A body that is not JSON in one short line: an HTML page (a proxy's 502) as its title,
    else its text without tags."""
    title = _TITLE.search(text)
    text = title.group(1) if title else _TAG.sub(" ", text)
    return " ".join(html.unescape(text).split())[:200]


def data_of(reply: Reply) -> Any:
    """The ``data`` of a successful envelope; raises the mapped APIError for an error answer
    (also one sent with HTTP 200 and an error ``code`` in the envelope) and for a redirect."""
    if reply.status >= 400:
        raise error_for(reply.status, reply.headers, reply.body)
    if reply.status >= 300:
        # Not followed: the key would go to wherever the answer points (http:// to https://).
        where = reply.header("location") or "elsewhere"
        raise errors.APIError(f"the server redirects to {where}: give its address as the base "
                              "URL", status=reply.status, body=decode(reply.body))
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


T = TypeVar("T")


def read_as(model: type[T], data: Any, what: str) -> T:
    """``data`` as the wire model ``model``; a ServerError naming ``what`` and the field at
    fault when it does not fit."""
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError as exc:
        raise errors.ServerError(f"the {what} answered does not match the API: {exc}",
                                 status=200, body=data) from None


def task_status(data: Any, model: str | None = None) -> TaskStatus:
    """A status read's ``data`` (or a listed task, or an event's) as a TaskStatus."""
    if not isinstance(data, dict):
        raise errors.ServerError("the answer has no task", status=200, body=data)
    task = read_as(models.TaskListItem, {k: v for k, v in data.items() if v is not None},
                   "task")
    return TaskStatus(
        task_id=task.taskId, state=task.state, stage=_given(task.stage),
        result_urls=_result_urls(task.resultJson), fail_code=_given(task.failCode),
        fail_msg=_given(task.failMsg), create_time=task.createTime,
        complete_time=_given(task.completeTime), cost_time=_given(task.costTime),
        cost=None if task.cost is models.UNSET else Decimal(str(task.cost)),
        expire_time=_given(task.expireTime), source=_given(task.source),
        model=_opt_str(data.get("model")) or model, raw=dict(data))


def _given(value: T | models.UnsetType) -> T | None:
    return None if isinstance(value, models.UnsetType) else value


def _result_urls(result_json: str | models.UnsetType) -> tuple[str, ...]:
    if result_json is models.UNSET:
        return ()
    # resultJson is a JSON *string* on the wire, holding {"resultUrls": [...]}.
    try:
        payload = msgspec.json.decode(result_json, type=models.ResultJson)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise errors.ServerError(f"the task's resultJson does not match the API: {exc}",
                                 status=200, body=result_json) from None
    return tuple(payload.resultUrls)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def cancellation(data: Any) -> Cancellation:
    answer = read_as(models.CancelData, data, "cancel answer")
    return Cancellation(task_id=answer.taskId, state=answer.state,  # type: ignore[arg-type]
                        refunded=answer.refunded)


def task_page(data: Any, model: str | None) -> TaskPage:
    """A list answer's ``data``; each listed task is read as a status read's (task_status),
    nulls and all, and keeps what was sent."""
    tasks = data.get("tasks") if isinstance(data, dict) else None
    cursor = data.get("nextCursor") if isinstance(data, dict) else None
    if not isinstance(tasks, list) or not isinstance(cursor, str | None):
        raise errors.ServerError("the task list answered does not match the API: it needs "
                                 "tasks (an array) and nextCursor (a string or null)",
                                 status=200, body=data)
    return TaskPage(tuple(task_status(item, model) for item in tasks), cursor or None)


def balance(data: Any) -> Decimal:
    return Decimal(str(read_as(models.Balance, data, "balance")))


def model_infos(data: Any) -> list[ModelInfo]:
    listing = read_as(models.ModelsData, data, "model list")
    return [model_info(item, raw) for item, raw in zip(listing.models, data["models"],
                                                       strict=True)]


def model_info(item: models.Model, raw: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        id=item.id, aspect_ratios=tuple(item.aspectRatios), resolutions=tuple(item.resolutions),
        output_formats=tuple(item.outputFormats), max_prompt_chars=item.maxPromptChars,
        max_references=item.maxReferences, max_images=item.maxImages,
        prices={k: Decimal(str(v)) for k, v in item.prices.items()},
        google_search=item.googleSearch, sandbox=item.sandbox, raw=dict(raw))
