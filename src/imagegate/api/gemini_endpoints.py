"""The Gemini API facade over HTTP (docs/gemini-api.md): ``generateContent`` and
``streamGenerateContent`` on ``/v1beta/models/{model}:...`` (and ``/v1/models/...``), and
``models.list`` / ``models.get`` on ``/v1beta/models``, as the google-genai SDK calls them.

The API key comes as Google's clients send it: the ``x-goog-api-key`` header, else the ``key``
query parameter, else ``Authorization: Bearer``. The model is a catalogue id or an alias
(Google's ids, current and retired). Each call is an ordinary task of the key (``generate``),
answered when it finishes; its id is the answer's ``responseId`` and ``x-imagegate-task-id``
header. An ``Idempotency-Key`` header is honoured as on a native submit, over the request as
translated: a call sent again under the same key answers the first task, billed once.
``streamGenerateContent`` answers the same response as one chunk once the task has
finished: an event (``?alt=sse``, as the SDK asks) or a JSON array of one response.

``/v1/models`` itself (the list) is left to the OpenAI facade, which owns that path.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from imagegate.api.endpoints import CLIENT_GONE, api_of, read_json
from imagegate.api.facades import TASK_ID_HEADER, Refusal, encoded, generate, guarded
from imagegate.app.generation import Generation
from imagegate.bootstrap import Api
from imagegate.errors import Forbidden, NotFound
from imagegate.facades.gemini import gemini_field, native_body
from imagegate.facades.gemini_answers import (
    GoogleError,
    answers_in_content,
    content_answer,
    failure,
    model_list,
    model_resource,
    refusal_error,
    wait_ran_out,
)
from imagegate.store.base import ApiKey

__all__ = ["generate_content", "get_model", "list_models", "render", "stream_generate_content"]

GENERATE = "generateContent"
STREAM = "streamGenerateContent"


def render(refusal: Refusal) -> Response:
    """A refusal as Google's error body."""
    error = refusal_error(refusal.status, refusal.message, gemini_field(refusal.field),
                          refusal.retry_after)
    return _error_response(error, refusal.headers())


def _error_response(error: GoogleError, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(error.body, error.code, headers=headers)


async def _key(api: Api, request: Request) -> ApiKey:
    token = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if token:
        return await api.access.key(token)
    if request.headers.get("authorization"):
        return await api.access.authenticate(request.headers.get("authorization"))
    raise Forbidden("the request has no API key: send it in the x-goog-api-key header (or "
                    "the key query parameter, or an Authorization: Bearer header)")


def _model_id(api: Api, key: ApiKey, name: str, method: str) -> str:
    """The catalogue id ``name`` names, if the key may use it."""
    try:
        model_id = api.seams.routing.resolve(name)
    except NotFound:
        raise NotFound(f"models/{name} is not found, or is not supported for {method}. Call "
                       "ListModels to see the models this service serves.") from None
    api.access.check_model(key, model_id)
    return model_id


@guarded(render)
async def generate_content(request: Request) -> Response:
    """``POST .../models/{model}:generateContent``."""
    return await _generate(request, GENERATE)


@guarded(render)
async def stream_generate_content(request: Request) -> Response:
    """``POST .../models/{model}:streamGenerateContent``: the same answer, as one chunk."""
    return await _generate(request, STREAM)


async def _generate(request: Request, method: str) -> Response:
    api = api_of(request)
    key = await _key(api, request)
    name = request.path_params["model"]
    model_id = _model_id(api, key, name, method)
    body = await read_json(request, api.settings.limits_max_body_bytes)
    native = native_body(body, api.seams.routing.model(model_id).limits)
    generation = await generate(api, request, key, model_id, native, with_bytes=True)
    if generation is None:
        return Response(status_code=CLIENT_GONE)
    return await _answer(api, generation, name, model_id,
                         stream=method == STREAM, sse=request.query_params.get("alt") == "sse")


async def _answer(api: Api, generation: Generation, name: str, model_id: str, *, stream: bool,
                  sse: bool) -> Response:
    headers = {TASK_ID_HEADER: generation.task.id}
    if not generation.finished:
        return _error_response(wait_ran_out(generation.task.id, model_id,
                                            api.generations.wait_s), headers)
    if not answers_in_content(generation):
        return _error_response(failure(generation.task), headers)
    body = await encoded(content_answer, generation, name)
    if not stream:
        return Response(body, media_type="application/json", headers=headers)
    if sse:
        return Response(b"data: " + body + b"\r\n\r\n", media_type="text/event-stream",
                        headers=headers)
    return Response(b"[" + body + b"]", media_type="application/json", headers=headers)


@guarded(render)
async def list_models(request: Request) -> Response:
    """``GET /v1beta/models``: the catalogue's ids and aliases the key may use."""
    api = api_of(request)
    key = await _key(api, request)
    resources = []
    for model in api.seams.routing.models.values():
        try:
            api.access.check_model(key, model.id)
        except Forbidden:
            continue
        resources += [model_resource(name, model) for name in (model.id, *model.aliases)]
    params = request.query_params
    return JSONResponse(model_list(resources, params.get("pageSize"), params.get("pageToken")))


@guarded(render)
async def get_model(request: Request) -> Response:
    """``GET /v1beta/models/{model}``: one id or alias."""
    api = api_of(request)
    key = await _key(api, request)
    name = request.path_params["model"]
    model_id = _model_id(api, key, name, "models.get")
    return JSONResponse(model_resource(name, api.seams.routing.model(model_id)))
