"""What the OpenAI Images and Gemini facades share over HTTP: a generation call from the
parsed request to the finished task (``generate``), and every error answered in the facade's
own shape (``guarded``), never in the native envelope.

A facade endpoint authenticates in its format's way, parses its format's request into a
native submit body (``imagegate.facades``), calls ``generate`` and renders the ``Generation``
in its format. The task's id is in the ``x-imagegate-task-id`` header of every answer that
stored one, so a client of either format can follow the task through the native API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from imagegate.api.waiting import unless_disconnected
from imagegate.app.generation import Generation
from imagegate.app.tasks import json_bytes
from imagegate.bootstrap import Api
from imagegate.errors import (
    NotReady,
    RequestError,
    StorageUnavailable,
    StoreUnavailable,
    TooManyRequests,
)
from imagegate.idempotency import HEADER as IDEMPOTENCY_HEADER
from imagegate.idempotency import Idempotency, parse_idempotency
from imagegate.store.base import ApiKey

__all__ = ["TASK_ID_HEADER", "Refusal", "check_open", "encoded", "generate", "guarded"]

P = ParamSpec("P")

log = logging.getLogger("imagegate.api")

TASK_ID_HEADER = "x-imagegate-task-id"
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Refusal:
    """A request the service refuses, before a facade renders it: the HTTP ``status``, a
    ``message`` for people, the request ``field`` at fault (in the native request's terms,
    e.g. ``input.prompt``; the facade names it in its own), ``reason`` as in
    ``imagegate_submits_total`` (``invalid_request``, ``unauthorized``, ``rate_limited``,
    ``store_unavailable``, ``internal``...), and the seconds to wait before trying again."""

    status: int
    message: str
    field: str | None = None
    reason: str = "bad_request"
    retry_after: float | None = None
    task_id: str | None = None  # the task stored before the error, if one was

    @classmethod
    def of(cls, exc: Exception) -> Refusal:
        """The refusal an exception raised while serving a facade call stands for."""
        if isinstance(exc, AfterSubmit):
            cause = exc.__cause__
            refusal = cls.of(cause if isinstance(cause, Exception) else exc)
            message = (f"{refusal.message} (task {exc.task_id} was stored and goes on: read it "
                       "with GET /api/v1/statusTask)")
            return dataclasses.replace(refusal, message=message, task_id=exc.task_id)
        if isinstance(exc, TooManyRequests):
            return cls(429, exc.error, exc.field, exc.reason, exc.retry_after)
        if isinstance(exc, RequestError):
            return cls(exc.status, exc.error, exc.field, exc.reason)
        if isinstance(exc, StoreUnavailable):
            return cls(503, "the service cannot store data right now; try again shortly",
                       reason="store_unavailable", retry_after=exc.retry_after)
        if isinstance(exc, StorageUnavailable):
            return cls(503, "the result storage cannot be reached right now; try again "
                       "shortly", reason="storage_unavailable", retry_after=5.0)
        if isinstance(exc, HTTPException):
            return cls(exc.status_code, exc.detail or "request refused", reason="http")
        return cls(500, "internal server error", reason="internal")

    def headers(self) -> dict[str, str]:
        headers = {} if self.task_id is None else {TASK_ID_HEADER: self.task_id}
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, round(self.retry_after + 0.499)))
        return headers


class AfterSubmit(Exception):
    """An error raised after the call's task was stored (its cause is the error): the answer
    names the task, which goes on, so that a client does not submit it again blindly."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


def guarded(render: Callable[[Refusal], Response]) -> Callable[[Endpoint], Endpoint]:
    """Wrap a facade endpoint: whatever it raises is answered by ``render`` in the facade's
    shape (an unexpected error is logged, then answered as a 500)."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded_endpoint(request: Request) -> Response:
            try:
                return await endpoint(request)
            except (RequestError, StoreUnavailable, StorageUnavailable, HTTPException,
                    AfterSubmit) as exc:
                refusal = Refusal.of(exc)
            except Exception as exc:
                log.exception("unhandled error on %s %s", request.method, request.url.path,
                              exc_info=exc)
                refusal = Refusal.of(exc)
            if refusal.status >= 500 and refusal.reason != "internal":
                log.warning("%s %s: %s", request.method, request.url.path, refusal.message)
            return render(refusal)

        return guarded_endpoint

    return wrap


def check_open(api: Api) -> None:
    """``NotReady`` while the process is stopping: a new call goes to another process."""
    if api.draining:
        raise NotReady("the service is shutting down; call again in a moment")


async def generate(api: Api, request: Request, key: ApiKey, model_id: str,
                   body: dict[str, Any], *, with_bytes: bool) -> Generation | None:
    """Submit ``body`` (a native submit body) as the key's task of ``model_id``, taking a
    token of the key's submit rate, and wait for it (``Generations``); None when the client
    went away first (its task goes on). The request's body must have been read. Counted in
    ``imagegate_submits_total`` as a native submit is.

    An ``Idempotency-Key`` header is honoured as on a native submit, over ``body``: the request
    as translated, so the same request in another layout (JSON key order, a multipart
    boundary) is the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    idem = parse_idempotency(request.headers.get(IDEMPOTENCY_HEADER), model_id, canonical)
    check_open(api)
    with api.generations.slot(key):
        task_id = await _submit(api, key, model_id, body, idem)
        try:
            waited = await unless_disconnected(
                request, api.generations.finish(key, model_id, task_id, with_bytes=with_bytes))
        except Exception as exc:
            raise AfterSubmit(task_id) from exc
    return None if waited is None else waited[0]


async def encoded(build: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> bytes:
    """The JSON of ``build(*args, **kwargs)``, built and encoded off the event loop: an
    answer that carries images in base64 is megabytes of work."""
    return await asyncio.to_thread(lambda: json_bytes(build(*args, **kwargs)))


async def _submit(api: Api, key: ApiKey, model_id: str, body: dict[str, Any],
                  idem: Idempotency | None) -> str:
    try:
        rate = await api.access.check_rate(key)
        task_id = await api.generations.submit(key, model_id, body, rate, idem)
    except Exception as exc:
        api.seams.metrics.submit_refused(exc)
        raise
    api.seams.metrics.submit_accepted()
    return task_id
