"""HTTP endpoints: parse, call one use case (``app/``), render the envelope."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from imagegate.api.openapi import openapi_json
from imagegate.api.waiting import prefer_wait, query_wait, unless_disconnected
from imagegate.app.files import ResultRedirect
from imagegate.bootstrap import Api
from imagegate.errors import (
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMedia,
)
from imagegate.idempotency import HEADER, parse_idempotency
from imagegate.metrics import CONTENT_TYPE
from imagegate.money import micros_to_usd
from imagegate.store.base import ApiKey
from imagegate.task_list import parse_task_query
from imagegate.tasks import envelope

log = logging.getLogger("imagegate.api")

# Far more than any body of this API needs; past it a body is refused the same way on every
# Python, whatever its recursion limit lets the JSON decoder reach.
MAX_JSON_DEPTH = 64
# The status of an answer to a client that went away while it waited: nobody reads it (the
# convention of nginx's logs, "client closed request").
CLIENT_GONE = 499
WAITS_RETRY_AFTER_S = 5.0


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


def ok(data: Any) -> JSONResponse:
    return JSONResponse(envelope(data))


def task_id_answer(task_id: str) -> Response:
    """``ok({"taskId": task_id})``, to the byte, without the JSON encoder: a task id is 32 hex
    characters, nothing in it to escape (the submit path is the hottest one)."""
    return Response(b'{"code":200,"message":"success","data":{"taskId":"%s"}}'
                    % task_id.encode("ascii"), media_type="application/json")


async def generate_task(request: Request) -> Response:
    api = api_of(request)
    try:
        key, task_id, wait_s = await _submit(api, request)
    except Exception as exc:
        api.seams.metrics.submit_refused(exc)
        raise
    api.seams.metrics.submit_accepted()
    if wait_s is None:
        return task_id_answer(task_id)
    slot = api.tasks.wait_slot(key)
    if slot is None:  # the key holds as many waits as it may: the preference is not applied
        return task_id_answer(task_id)
    applied = {"preference-applied": f"wait={wait_s}"}
    model_id = request.path_params["model"]
    try:
        with slot:
            waited = await unless_disconnected(
                request, api.tasks.wait_status(key, model_id, task_id, wait_s))
    except Exception:
        # The task is stored: whatever happens while waiting, the client gets its id.
        log.warning("waiting for task %s failed; answering its id", task_id, exc_info=True)
        waited = None
    if waited is None or not waited[0].finished:
        answer = task_id_answer(task_id)
        answer.headers.update(applied)
        return answer
    return Response(waited[0].body, media_type="application/json", headers=applied)


async def _submit(api: Api, request: Request) -> tuple[ApiKey, str, int | None]:
    """The key, the stored task's id, and the seconds the client prefers to wait for it."""
    if api.draining:
        raise NotReady("the service is shutting down; submit again in a moment")
    key = await api.access.authenticate(request.headers.get("authorization"))
    model_id = request.path_params["model"]
    api.access.check_model(key, model_id)
    wait_s = prefer_wait(request)
    header = request.headers.get(HEADER)
    if header is not None:
        parse_idempotency(header, model_id, b"")  # a bad header is refused before any token
    rate = await api.access.check_rate(key)
    _require_json(request)
    raw = await read_body(request, api.settings.limits_max_body_bytes)
    idem = parse_idempotency(header, model_id, raw)
    return key, await api.tasks.submit(key, model_id, parse_json(raw), rate, idem), wait_s


async def key_and_task_id(api: Api, request: Request) -> tuple[ApiKey, str]:
    """The caller's key and the ``taskId`` query parameter (400 when absent)."""
    key = await api.access.authenticate(request.headers.get("authorization"))
    task_id = request.query_params.get("taskId", "")
    if not task_id:
        raise InvalidRequest("taskId query parameter is required", field="taskId")
    return key, task_id


async def status_task(request: Request) -> Response:
    api = api_of(request)
    key, task_id = await key_and_task_id(api, request)
    model_id = request.path_params["model"]
    wait_s = query_wait(request)
    if wait_s is None:
        answer = await api.tasks.status(key, model_id, task_id)
    else:
        slot = api.tasks.wait_slot(key)
        if slot is None:
            raise TooManyRequests(
                "this API key has as many status reads waiting on this server as it may; "
                "read without wait, or retry after Retry-After", retry_after=WAITS_RETRY_AFTER_S,
                reason="waits_limit")
        with slot:
            waited = await unless_disconnected(
                request, api.tasks.wait_status(key, model_id, task_id, wait_s))
        if waited is None:
            return Response(status_code=CLIENT_GONE)
        answer = waited[0]
    return Response(answer.body, media_type="application/json")


async def cancel_task(request: Request) -> Response:
    api = api_of(request)
    key, task_id = await key_and_task_id(api, request)
    return ok(await api.tasks.cancel(key, request.path_params["model"], task_id))


async def current_balance(request: Request) -> Response:
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    return ok(micros_to_usd(await api.tasks.balance_micros(key)))


async def list_tasks(request: Request) -> Response:
    """The key's own tasks, newest first, a page at a time (docs/contract.md §5)."""
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    params = request.query_params
    query = parse_task_query(key.id, {name: params.getlist(name) for name in params})
    return ok(await api.tasks.page(query))


async def list_models(request: Request) -> Response:
    """The models the key may use, with their limits and prices (docs/contract.md §9)."""
    api = api_of(request)
    key = await api.access.authenticate(request.headers.get("authorization"))
    return ok({"models": api.models.for_key(key)})


async def result_file(request: Request) -> Response:
    p = request.path_params
    download = await api_of(request).files.result(p["task_id"], p["token"], p["name"])
    if isinstance(download, ResultRedirect):
        # The presigned URL changes on every answer and expires: no cache may keep it.
        return RedirectResponse(download.url, 307, headers={"cache-control": "no-store"})
    blob = download.blob
    headers = {"content-length": str(blob.size),
               "cache-control": "public, max-age=86400, immutable"}
    return StreamingResponse(blob.chunks, media_type=download.file.content_type,
                             headers=headers, background=BackgroundTask(blob.close))


async def healthz(request: Request) -> Response:
    return ok({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready while the process can serve; ``routes`` shows each route's health, an unavailable
    route with the reason (the process stays ready: other routes and models still work)."""
    api = api_of(request)
    if await api.ready():
        return ok({"status": "ready", "routes": api.route_health()})
    return JSONResponse(envelope({"error": "not ready"}, 503, "Service Unavailable"), 503)


async def metrics(request: Request) -> Response:
    """The Prometheus metrics of this process and of the fleet (docs/metrics.md)."""
    return Response(await api_of(request).scrape.page(), media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    return Response(openapi_json(api_of(request).settings.base_url),
                    media_type="application/json")


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON: 415 unless JSON, 413 past ``limit`` bytes, 400 when malformed."""
    _require_json(request)
    return parse_json(await read_body(request, limit))


async def read_optional_object(request: Request, limit: int) -> dict[str, Any] | None:
    """An optional JSON object body: None when the body is empty; otherwise as ``read_json``,
    and 400 when the JSON is not an object."""
    raw = await read_body(request, limit)
    if not raw:
        return None
    _require_json(request)
    return json_object(parse_json(raw))


def json_object(body: Any) -> dict[str, Any]:
    """``body`` when it is a JSON object; 400 otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def parse_json(raw: bytes) -> Any:
    """Decode a JSON body; 400 with a sentence for a person when it is not JSON, or is nested
    more than ``MAX_JSON_DEPTH`` levels deep.

    An integer literal too long to convert (over 4300 digits by default) decodes to a stand-in
    that is no number, so the field holding it is refused by name like any other wrong value.
    """
    too_deep = f"request body is nested too deeply (more than {MAX_JSON_DEPTH} levels)"
    try:
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except UnicodeDecodeError as exc:
        raise InvalidRequest("request body is not valid UTF-8 JSON") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno}") from exc
    except ValueError as exc:
        raise InvalidRequest("request body is not valid JSON") from exc
    except RecursionError as exc:
        raise InvalidRequest(too_deep) from exc
    # Nesting needs an opening bracket per level: most bodies are too small to be walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(body, MAX_JSON_DEPTH):
        raise InvalidRequest(too_deep)
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class _OversizedInteger:
    """Stands in for an integer literal too long for Python to convert."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<integer literal too long to convert>"


_OVERSIZED = _OversizedInteger()


def _parse_int(text: str) -> int | _OversizedInteger:
    try:
        return int(text)
    except ValueError:  # past sys.get_int_max_str_digits()
        return _OVERSIZED


# What json.loads(raw, parse_int=_parse_int) does, without building a decoder per call.
_DECODER = json.JSONDecoder(parse_int=_parse_int)


def _require_json(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMedia("Content-Type must be application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; 413 as soon as it is known to pass ``limit`` bytes. Read from the ASGI
    messages themselves (a body is nearly always one), not through Starlette's stream."""
    declared = request.headers.get("content-length", "")
    digits = declared.lstrip("0")  # a length may be written with any number of zeros first
    if declared.isascii() and declared.isdigit() and (
            len(digits) > len(str(limit)) or int(digits or "0") > limit):
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
