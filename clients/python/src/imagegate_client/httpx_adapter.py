"""Between the wire's records and httpx, for both shells: requests built, answers recorded,
httpx's exceptions translated into APIConnectionError (they never reach the caller): no
answer, and also none that could be used (a body that cannot be decoded, endless redirects)."""

from __future__ import annotations

import httpx

from .errors import APIConnectionError
from .wire import Reply, Request

__all__ = ["connection_error", "http_request", "reply"]


def http_request(client: httpx.Client | httpx.AsyncClient, request: Request, timeout: float,
                 read_timeout: float | None = None) -> httpx.Request:
    # No limit on waiting for one of the client's own connections: when every one is busy
    # (many concurrent calls, each wait holding its stream), the call queues for the next that
    # frees, as the server has nothing to do with it.
    limits = httpx.Timeout(timeout, read=read_timeout if read_timeout is not None else timeout,
                           pool=None)
    return client.build_request(request.method, request.url, params=list(request.params),
                                headers=request.headers, content=request.content,
                                timeout=limits)


def reply(response: httpx.Response, body: bytes) -> Reply:
    headers = {name.lower(): value for name, value in response.headers.items()}
    return Reply(response.status_code, headers, body)


def connection_error(exc: httpx.RequestError, request: Request) -> APIConnectionError:
    # Only a failure to connect proves the request never reached the server.
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    what = type(exc).__name__
    return APIConnectionError(f"{request.method} {request.url}: {what}: {exc}", sent=sent)


def is_event_stream(response: httpx.Response) -> bool:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return response.is_success and media == "text/event-stream"
