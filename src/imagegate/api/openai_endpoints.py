"""The OpenAI Images facade (docs/openai-images.md): ``POST /v1/images/generations``,
``POST /v1/images/edits`` (multipart files or JSON image URLs), ``GET /v1/models`` and
``GET /v1/models/{model}``, with the same Bearer keys as the native API.

Each generation or edit is an ordinary task (stored, billed, routed, listed) that the call
waits for; the answer carries its id in ``x-imagegate-task-id``. An ``Idempotency-Key``
header is honoured as on a native submit, over the request as translated (so a multipart body
sent again with another boundary is the same request).

Error mapping (``facades.openai_errors``), every error as ``{"error": {message, type, param,
code}}``:

=================================  ======  ============================  ======================
case                               status  type                          code
=================================  ======  ============================  ======================
a field refused                    400     invalid_request_error         invalid_value (param)
no or unknown key                  401     invalid_request_error         invalid_api_key
model the key may not use          403     invalid_request_error         model_not_allowed
unknown model                      404     invalid_request_error         model_not_found
balance spent                      429     insufficient_quota            insufficient_quota
submit rate / waiting calls        429     requests                      rate_limit_exceeded
body over limits_max_body_bytes    413     invalid_request_error         request_too_large
store or storage unreachable       503     server_error                  service_unavailable
task failed: SensitiveContent      400     image_generation_user_error   moderation_blocked
task failed: PromptInvalid         400     invalid_request_error         invalid_prompt
task failed: ImageFormatIncorrect  400     invalid_request_error         invalid_image
task failed: RateLimited           429     requests                      rate_limit_exceeded
task failed: Timeout               504     server_error                  timeout
task failed: Unknown error         500     server_error                  server_error
task canceled                      409     invalid_request_error         task_canceled
wait ran out (task goes on)        504     server_error                  timeout
=================================  ======  ============================  ======================
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from imagegate.api.endpoints import CLIENT_GONE, api_of, json_object, read_body, read_json
from imagegate.api.facades import TASK_ID_HEADER, Refusal, encoded, generate, guarded
from imagegate.bootstrap import Api
from imagegate.contract import ModelLimits
from imagegate.errors import InvalidRequest, NotFound, UnsupportedMedia, quoted
from imagegate.facades import openai_errors
from imagegate.facades.openai_images import (
    ImagesRequest,
    Upload,
    answer,
    parse_edit_form,
    parse_edit_json,
    parse_generation,
    requested_model,
)
from imagegate.facades.openai_models import model_list
from imagegate.store.base import ApiKey

__all__ = ["edits", "generations", "get_model", "list_models"]

IMAGE_FIELDS = ("image", "image[]")
# Form parts besides the images: text fields, and files the facade refuses by name (mask).
MAX_FORM_FIELDS = 64
MAX_FORM_FILES = 32


def render(refusal: Refusal) -> Response:
    return _error(openai_errors.refused(refusal), refusal.task_id)


def _error(error: openai_errors.OpenAIError, task_id: str | None = None) -> Response:
    headers = error.headers()
    if task_id is not None:
        headers[TASK_ID_HEADER] = task_id
    return JSONResponse(error.body(), error.status, headers=headers)


@guarded(render)
async def generations(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    body = json_object(await read_json(request, api.settings.limits_max_body_bytes))
    model_id, limits = _model(api, key, requested_model(body))
    return await _serve(api, request, key, model_id, parse_generation(body, limits))


@guarded(render)
async def edits(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    limit = api.settings.limits_max_body_bytes
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        # The whole body first, bounded as a native submit's, then its parts.
        fields, uploads = await _read_form(request, await read_body(request, limit), limit)
        model_id, limits = _model(api, key, requested_model(fields))
        parsed = parse_edit_form(fields, uploads, limits,
                                 max_image_bytes=api.settings.fetch_max_image_bytes)
    elif media_type == "application/json":
        body = json_object(await read_json(request, limit))
        model_id, limits = _model(api, key, requested_model(body))
        parsed = parse_edit_json(body, limits)
    else:
        raise UnsupportedMedia("Content-Type must be multipart/form-data (image files) or "
                               "application/json (image URLs)")
    return await _serve(api, request, key, model_id, parsed)


@guarded(render)
async def list_models(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    return JSONResponse({"object": "list", "data": _models(api, key)})


@guarded(render)
async def get_model(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    name = request.path_params["model"]
    for model in _models(api, key):
        if model["id"] == name:
            return JSONResponse(model)
    raise NotFound(f"the model {quoted(name)} does not exist or this API key may not use it")


def _models(api: Api, key: ApiKey) -> list[dict[str, Any]]:
    return model_list(api.seams.routing.names, key.models)


def _model(api: Api, key: ApiKey, name: str) -> tuple[str, ModelLimits]:
    """The catalogue id ``name`` names, checked for the key, and its limits."""
    model_id = api.seams.routing.resolve(name)
    api.access.check_model(key, model_id)
    return model_id, api.seams.routing.model(model_id).limits


async def _serve(api: Api, request: Request, key: ApiKey, model_id: str,
                 parsed: ImagesRequest) -> Response:
    b64 = parsed.response_format == "b64_json"
    generation = await generate(api, request, key, model_id, parsed.body, with_bytes=b64)
    if generation is None:
        return Response(status_code=CLIENT_GONE)
    task = generation.task
    if not generation.finished:
        return _error(openai_errors.unfinished(task, model_id), task.id)
    if not generation.succeeded:
        return _error(openai_errors.failed(task), task.id)
    content = await encoded(answer, generation, parsed.response_format)
    return Response(content, media_type="application/json", headers={TASK_ID_HEADER: task.id})


async def _read_form(request: Request, raw: bytes,
                     limit: int) -> tuple[dict[str, str], list[Upload]]:
    """The text fields and the image files of a multipart body already read (within
    ``limit`` bytes). A ``mask`` file is kept as a field so that it is refused by name; other
    files (parameters the facade ignores) are dropped."""

    async def stream() -> Any:
        yield raw

    parser = MultiPartParser(request.headers, stream(), max_files=MAX_FORM_FILES,
                             max_fields=MAX_FORM_FIELDS, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"the multipart body cannot be read: {exc.message}") from exc
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    try:
        for name, value in form.multi_items():
            if not isinstance(value, UploadFile):
                fields[name] = value
            elif name in IMAGE_FIELDS:
                uploads.append(Upload(value.filename or "", await value.read()))
            elif name == "mask":
                fields[name] = value.filename or name
    finally:
        await form.close()
    return fields, uploads
