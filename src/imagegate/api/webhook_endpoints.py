"""Webhook endpoints (extensions): a task's delivery log, redelivery, a signed test event, and
the account's signing secrets with rotation."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from imagegate.api.endpoints import api_of, json_object, ok, read_json, read_optional_object
from imagegate.contract import check_url
from imagegate.errors import InvalidRequest
from imagegate.net.netguard import without_userinfo
from imagegate.store.base import Delivery, DeliveryAttempt, WebhookSecret

_SMALL_BODY = 64 * 1024


def _task_id(request: Request) -> str:
    task_id = request.query_params.get("taskId", "")
    if not task_id:
        raise InvalidRequest("taskId query parameter is required", field="taskId")
    return task_id


def render_attempt(a: DeliveryAttempt) -> dict[str, Any]:
    out: dict[str, Any] = {"attempt": a.attempt, "time": a.started_ms, "latencyMs": a.duration_ms,
                           "delivered": a.error is None}
    if a.status is not None:
        out["httpStatus"] = a.status
    if a.error is not None:
        out["error"] = a.error
    return out


def render_delivery(d: Delivery, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    out: dict[str, Any] = {"webhookId": d.id, "taskId": d.task_id, "url": without_userinfo(d.url),
                           "state": d.state, "attempts": d.attempts, "createTime": d.created_ms,
                           "log": [render_attempt(a) for a in attempts]}
    if d.state == "pending":
        out["nextAttemptTime"] = d.next_attempt_ms
    return out


def render_secret(s: WebhookSecret) -> dict[str, Any]:
    out: dict[str, Any] = {"secret": s.secret, "createTime": s.created_ms}
    if s.expires_ms is not None:
        out["expireTime"] = s.expires_ms
    return out


async def delivery_log(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    found = await api.webhooks.delivery_log(key, _task_id(request))
    return ok([render_delivery(d, attempts) for d, attempts in found])


async def redeliver(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    delivery, attempt = await api.webhooks.redeliver(key, _task_id(request))
    return ok({"webhookId": delivery.id, "attempt": render_attempt(attempt)})


async def test_event(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    body = json_object(await read_json(request, _SMALL_BODY))
    url = body.get("url")
    if url is None or url == "":
        raise InvalidRequest("url is required: the address to send a test event to", field="url")
    check_url(url, "url")
    result = await api.webhooks.test_event(key, url)
    out: dict[str, Any] = {"webhookId": result.webhook_id, "delivered": result.delivered,
                           "latencyMs": result.latency_ms}
    if result.status is not None:
        out["httpStatus"] = result.status
    if result.error is not None:
        out["error"] = result.error
    return ok(out)


async def signing_secrets(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    return ok({"secrets": [render_secret(s) for s in await api.webhooks.secrets(key)]})


async def rotate_secret(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    body = await read_optional_object(request, _SMALL_BODY) or {}
    live = await api.webhooks.rotate(key, _overlap_seconds(body))
    return ok({"secret": live[0].secret, "secrets": [render_secret(s) for s in live]})


def _overlap_seconds(body: dict[str, Any]) -> float | None:
    """``overlapSeconds`` when given: absent or a number (null is refused, not taken as absent);
    the range is the service's rule."""
    if "overlapSeconds" not in body:
        return None
    raw = body["overlapSeconds"]
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise InvalidRequest("overlapSeconds must be a number of seconds from 0 to 2592000; "
                             "leave it out for the default", field="overlapSeconds")
    return raw
