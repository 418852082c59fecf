"""The ASGI application: a list of routes, a list of exception handlers, a lifespan that builds
and stops the ``Api`` (in ``serve`` with the worker, sweeper and dispatcher in this process).
``/metrics`` is added unless ``metrics_enabled`` is off; like /healthz it takes no API key. The
playground's page and assets (``/`` and ``/playground/...``, ``playground_site``) take none
either: the page asks the user for a key and sends it to ``/api/v1`` itself."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imagegate import bootstrap
from imagegate.api import endpoints as ep
from imagegate.api import gemini_endpoints as gemini
from imagegate.api import openai_endpoints as openai
from imagegate.api import playground_site, streaming
from imagegate.api import webhook_endpoints as wh
from imagegate.api.termination import on_termination
from imagegate.bootstrap import Api
from imagegate.config import Settings
from imagegate.errors import RequestError, StorageUnavailable, StoreUnavailable, TooManyRequests
from imagegate.tasks import envelope

log = logging.getLogger("imagegate.api")

ROUTES = [
    Route("/api/v1/generateTask/{model}", ep.generate_task, methods=["POST"]),
    Route("/api/v1/statusTask/{model}", ep.status_task, methods=["GET"]),
    Route("/api/v1/streamTask/{model}", streaming.stream_task, methods=["GET"]),
    Route("/api/v1/cancelTask/{model}", ep.cancel_task, methods=["POST"]),
    Route("/api/v1/apikeys/current-balance", ep.current_balance, methods=["GET"]),
    Route("/api/v1/tasks", ep.list_tasks, methods=["GET"]),
    Route("/api/v1/models", ep.list_models, methods=["GET"]),
    Route("/api/v1/webhooks/deliveries", wh.delivery_log, methods=["GET"]),
    Route("/api/v1/webhooks/redeliver", wh.redeliver, methods=["POST"]),
    Route("/api/v1/webhooks/test", wh.test_event, methods=["POST"]),
    Route("/api/v1/webhooks/secret", wh.signing_secrets, methods=["GET"]),
    Route("/api/v1/webhooks/secret/rotate", wh.rotate_secret, methods=["POST"]),
    Route("/files/{task_id}/{token}/{name}", ep.result_file, methods=["GET"]),
    Route("/healthz", ep.healthz, methods=["GET"]),
    Route("/readyz", ep.readyz, methods=["GET"]),
    Route("/openapi.json", ep.openapi, methods=["GET"]),
]
# Other APIs' formats on the same tasks and keys, documented as those APIs document them
# (docs/gemini-api.md, docs/openai-images.md); /openapi.json describes ROUTES only. The Gemini
# paths come first: ``/v1/models/{model:path}`` (OpenAI's, GET) would match theirs too.
FACADE_ROUTES = [
    Route("/v1beta/models", gemini.list_models, methods=["GET"]),
    Route("/v1beta/models/{model}", gemini.get_model, methods=["GET"]),
    Route("/v1beta/models/{model}:generateContent", gemini.generate_content, methods=["POST"]),
    Route("/v1beta/models/{model}:streamGenerateContent", gemini.stream_generate_content,
          methods=["POST"]),
    Route("/v1/models/{model}:generateContent", gemini.generate_content, methods=["POST"]),
    Route("/v1/models/{model}:streamGenerateContent", gemini.stream_generate_content,
          methods=["POST"]),
    Route("/v1/images/generations", openai.generations, methods=["POST"]),
    Route("/v1/images/edits", openai.edits, methods=["POST"]),
    Route("/v1/models", openai.list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", openai.get_model, methods=["GET"]),
]
METRICS_ROUTE = Route("/metrics", ep.metrics, methods=["GET"])

_HTTP_MESSAGES = {400: "Invalid request", 401: "Unauthorized", 402: "Payment Required",
                  403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
                  410: "Gone",
                  413: "Payload Too Large", 415: "Unsupported Media Type",
                  429: "Too Many Requests", 500: "Internal Server Error",
                  503: "Service Unavailable"}


def error_response(status: int, error: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    data: dict[str, Any] = {"error": error}
    if field:
        data["field"] = field
    message = _HTTP_MESSAGES.get(status, "Error")
    return JSONResponse(envelope(data, status, message), status, headers=headers)


async def on_request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    headers = None
    if isinstance(exc, TooManyRequests):
        headers = {"retry-after": str(max(1, round(exc.retry_after + 0.499)))}
    return error_response(exc.status, exc.error, exc.field, headers)


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    """The database cannot be written now (a full disk): 503 with Retry-After, never 500."""
    assert isinstance(exc, StoreUnavailable)
    log.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return error_response(503, "the service cannot store data right now; try again shortly",
                          headers={"retry-after": str(max(1, round(exc.retry_after)))})


async def on_storage_unavailable(request: Request, exc: Exception) -> Response:
    """The result storage cannot be reached now: 503 with Retry-After, never 500."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "the result storage cannot be reached right now; try again "
                          "shortly", headers={"retry-after": "5"})


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail or _HTTP_MESSAGES.get(exc.status_code, ""),
                          headers=dict(exc.headers or {}))


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error")


def create_app(settings: Settings, *,
               build: Callable[[Settings], Api] = bootstrap.serve_api) -> Starlette:
    """The app over the ``Api`` that ``build`` makes: ``serve_api`` (the whole runtime in this
    process) or ``fleet_api`` (the API alone)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api = build(settings)
        await api.start()
        app.state.api = api
        # The server waits for every open answer: streams and waits end at the signal.
        restore = on_termination(api.end_held_requests)
        try:
            yield
        finally:
            restore()
            await api.stop()

    routes = [*ROUTES, *FACADE_ROUTES, *playground_site.routes(settings)]
    if settings.metrics_enabled:
        routes.append(METRICS_ROUTE)
    return Starlette(
        routes=routes,
        exception_handlers={RequestError: on_request_error, HTTPException: on_http_error,
                            StoreUnavailable: on_store_unavailable,
                            StorageUnavailable: on_storage_unavailable, Exception: on_crash},
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    """Factory for ``imagegate serve``'s server process: settings from IMAGEGATE_*."""
    return _from_env(bootstrap.serve_api)


def create_api_app_from_env() -> Starlette:
    """Factory for ``imagegate api``'s server process: the API alone."""
    return _from_env(bootstrap.fleet_api)


def _from_env(build: Callable[[Settings], Api]) -> Starlette:
    from imagegate.logs import configure_logging

    settings = Settings.load()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, build=build)
