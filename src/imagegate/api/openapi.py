"""The OpenAPI 3.1 description of the API exactly as this app serves it (``api/app.py`` ROUTES),
served at ``/openapi.json``.

The schemas are generated from the wire models (``imagegate_client.wire_models``, through
``openapi_models``), which the submit validator takes its enumerations and limits from, so the
document cannot drift from the validation it describes; the operations are a compact table
(``Operation``): their parameters, bodies, answers and wording (docs/contract.md §3 to §8, §13
and §15).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from imagegate.api.openapi_listing import listing_paths
from imagegate.api.openapi_models import model_schemas
from imagegate.api.openapi_operations import (
    Operation,
    enveloped,
    error,
    ok,
    path_param,
    ref,
)
from imagegate.api.openapi_stream import stream_paths
from imagegate.api.openapi_text import info, tags
from imagegate.api.openapi_webhooks import webhook_paths
from imagegate.api.waiting import MAX_WAIT_S, MIN_WAIT_S
from imagegate.app.tasks import MAX_WAITS_PER_KEY
from imagegate.errors import FailCode

__all__ = ["openapi_document", "openapi_json"]

Json = dict[str, Any]

_IMAGE_TO_IMAGE = "image-to-image"


def openapi_document(base_url: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; ``base_url`` is the server URL clients call."""
    return {
        "openapi": "3.1.0",
        "info": info(),
        "servers": [{"url": base_url}],
        "tags": tags(),
        "paths": _paths(),
        "webhooks": {"taskEnded": {"post": _CALLBACK}},
        "components": _components(),
    }


@functools.lru_cache(maxsize=4)
def openapi_json(base_url: str) -> bytes:
    """The document as served: compact JSON, built once per process (generating the schemas
    from the models takes milliseconds, and the document never changes while it runs)."""
    return json.dumps(openapi_document(base_url), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()


def _paths() -> Json:
    return {
        "/api/v1/generateTask/{model}": {"post": _GENERATE.render()},
        "/api/v1/statusTask/{model}": {"get": _STATUS.render()},
        **stream_paths(),
        "/api/v1/cancelTask/{model}": {"post": _CANCEL.render()},
        "/api/v1/apikeys/current-balance": {"get": _BALANCE.render()},
        **listing_paths(),
        "/files/{task_id}/{token}/{name}": {"get": _FILE.render()},
        "/healthz": {"get": _HEALTHZ.render()},
        "/readyz": {"get": _READYZ.render()},
        "/openapi.json": {"get": _OPENAPI.render()},
        **webhook_paths(),
    }


# Examples ----------------------------------------------------------------------------------------


def _submit_examples() -> Json:
    text = {"mode": "text-to-image", "prompt": "a lighthouse at dusk, watercolor",
            "aspect_ratio": "16:9", "resolution": "2k", "output_format": "png"}
    image = {"mode": _IMAGE_TO_IMAGE, "prompt": "make it snow",
             "image_urls": ["https://example.com/photo.jpg"], "aspect_ratio": "auto",
             "resolution": "1k"}
    return {
        "textToImage": {"value": {"request_type": "async", "input": text}},
        "imageToImage": {"value": {"input": image}},
        "sandboxFailure": {"summary": "Sandbox: fail twice, then succeed",
                           "value": {"input": {**text, "prompt": "a cat "
                                               "[sandbox:fail=RateLimited:2]"}}},
    }


def _submit_error_examples() -> Json:
    return {
        "invalidField": {"value": {
            "code": 400, "message": "Invalid request",
            "data": {"error": "input.aspect_ratio must be one of auto, 1:1, 1:4, ...",
                     "field": "input.aspect_ratio"}}},
        "noSearchGrounding": {
            "summary": "google_search true, and no configured route of the model can ground",
            "value": {"code": 400, "message": "Invalid request", "data": {
                "error": "no configured route for this model can ground on Google search; "
                         "send google_search false",
                "field": "input.google_search"}}},
    }


def _status_examples() -> Json:
    task_id = "0f8e4c1b2a3d4e5f60718293a4b5c6d7"
    base = {"taskId": task_id, "createTime": 1767225600000}
    urls = '{"resultUrls":["https://imagegate.example/files/0f8e.../tok/0.png"]}'
    done = {"completeTime": 1767225612000}
    return {
        "processing": {"value": enveloped({**base, "state": "processing", "stage": "queued"})},
        "success": {"value": enveloped({**base, "state": "success", "resultJson": urls, **done,
                                         "costTime": 12000, "stage": "done",
                                         "expireTime": 1768521612000, "cost": 0.08})},
        "failed": {"value": enveloped({**base, "state": "failed", **done,
                                        "failCode": FailCode.SENSITIVE_CONTENT,
                                        "failMsg": "the output violated the safety policy",
                                        "stage": "done"})},
    }


def _cancel_examples() -> Json:
    task_id = "0f8e4c1b2a3d4e5f60718293a4b5c6d7"
    return {
        "queued": {"value": enveloped({"taskId": task_id, "state": "canceled",
                                        "refunded": True})},
        "running": {"value": enveloped({"taskId": task_id, "state": "cancelling",
                                         "refunded": False})},
    }


# Tasks -------------------------------------------------------------------------------------------

_SUBMIT_OK = {
    "description": "The task is stored. Without `Prefer: wait`, or when the task has not "
                   "finished within the wait: data.taskId alone (poll statusTask with "
                   "it). Extension: with `Prefer: wait=N`, when the task finished within "
                   "N seconds, the answer statusTask would give (data is the finished "
                   "task, state success or failed). Preference-Applied is sent whenever "
                   "the server waited; it does not wait (and sends none) while the key "
                   "already has as many waits on this server as it may.",
    "headers": {"Preference-Applied": ref("headers", "Preference-Applied")},
    "content": {"application/json": {
        "schema": {"anyOf": [ref("schemas", "SubmitResponse"),
                             ref("schemas", "StatusResponse")]},
    }},
}

_GENERATE = Operation(
    "generateTask", "tasks", "Submit a task",
    description="Validates the body, reserves the price from the key's balance and stores "
                "the task durably before answering. Any broken rule answers 400 and "
                "nothing is stored or charged. Extension: with `Prefer: wait=N` the "
                "answer waits up to N seconds for the task to finish. Extension: with "
                "an `Idempotency-Key`, a repeat of the same request answers the first "
                "task again, stored and charged once.",
    params=("model", "Prefer", "Idempotency-Key"),
    body={"required": True, "content": {"application/json": {
        "schema": ref("schemas", "SubmitRequest"), "examples": _submit_examples()}}},
    answers={
        200: _SUBMIT_OK,
        400: error(400, "The body breaks a submit rule (the error names the field), is not "
                        "valid UTF-8 JSON, or no configured route of the model can serve it: "
                        "google_search true when none can ground on Google Search (field "
                        "input.google_search), a provider none matches (field provider), or a "
                        "callback_url that is not https or not public (field callback_url). "
                        "Also a Prefer header whose wait is not a whole number of seconds "
                        f"from {MIN_WAIT_S} to {MAX_WAIT_S} (field Prefer), or an "
                        "Idempotency-Key that is not 1 to 255 printable ASCII characters "
                        "(field Idempotency-Key); nothing is stored.",
                   examples=_submit_error_examples()),
        402: "The key's balance cannot pay for the task; nothing is stored.",
        403: "The key may not use this model.",
        404: "Unknown model.",
        409: "Extension: the Idempotency-Key was used by this API key in the last 24 hours "
             "for a different request (another body or model; field Idempotency-Key); "
             "nothing is stored.",
        413: "The body is larger than the configured limit.",
        415: "Content-Type is not application/json (or +json).",
        429: error(429, "The key's submit rate or its limit of unfinished tasks is reached. "
                        "Retry after the number of seconds in Retry-After.",
                   headers={"Retry-After": ref("headers", "Retry-After")}),
    },
)

_STATUS = Operation(
    "statusTask", "tasks", "Read a task",
    description="Cheap (no write, no lock); poll every 10 s. A failed task is HTTP 200. "
                "Extension: with wait=N the answer comes as soon as the task has "
                "finished (at once if it has), else after N seconds with the task as "
                "it is then.",
    params=("model", "taskId", "wait"),
    answers={
        200: ok("The task.", "StatusResponse", _status_examples()),
        400: "The taskId query parameter is missing or empty (field taskId), or wait is not "
             f"a whole number of seconds from {MIN_WAIT_S} to {MAX_WAIT_S} (field wait).",
        404: "Unknown taskId, a task of another account, or a {model} that does not match "
             "the task. Never reveals that a task of another account exists.",
        429: error(429, "Extension: with wait, the key already has as many status reads "
                        f"waiting on this server as it may ({MAX_WAITS_PER_KEY}, or its limit "
                        "of unfinished tasks when that is higher). Read without wait, or "
                        "retry after the number of seconds in Retry-After.",
                   headers={"Retry-After": ref("headers", "Retry-After")}),
    },
)

_CANCEL = Operation(
    "cancelTask", "tasks", "Cancel a task (extension)",
    description="Extension. A queued task is cancelled and refunded at once (state "
                "`canceled`, `refunded` true). A running one is cancelled best effort "
                "(state `cancelling`, `refunded` false): its worker abandons the route "
                "call and the task ends cancelled and refunded, unless its attempt "
                "finishes first and keeps its result; poll statusTask for the end. A "
                f"cancelled task reads as state failed, failCode `{FailCode.CANCELED}`. "
                "No body is read.",
    params=("model", "taskId"),
    answers={
        200: ok("The task is cancelled, or its cancel is under way.", "CancelResponse",
                _cancel_examples()),
        400: "The taskId query parameter is missing or empty.",
        404: "Unknown taskId, a task of another account, or a {model} that does not match "
             "the task, as statusTask.",
        409: "The task has already ended; the error names its state (succeeded, failed or "
             "canceled). Nothing changes.",
    },
)

_BALANCE = Operation(
    "currentBalance", "account", "The key's balance",
    description="What the key's account can spend now, in USD, holds of unfinished tasks "
                "deducted. `data` is a bare number.",
    answers={200: ok("The balance in USD.", "BalanceResponse")},
)


def _signature_header(name: str, description: str, example: str) -> Json:
    return {"name": name, "in": "header", "required": True, "description": description,
            "schema": {"type": "string"}, "example": example}


# The callback of a task submitted with request_type callback (docs/contract.md §12).
_CALLBACK: Json = {
    "operationId": "taskEnded",
    "tags": ["webhooks"],
    "summary": "A callback task has ended",
    "description": "POSTed to the submit's callback_url when the task ends, success or "
                   "failure: exactly the answer statusTask gives for the finished task. "
                   "Extension: signed in the Standard Webhooks style under the account's "
                   "secret; receivers that ignore the headers keep working (docs/webhooks.md).",
    "parameters": [
        _signature_header("webhook-id", "The same on every attempt of one event: deduplicate "
                                        "on it.", "msg_5f0c2a9d1e7b44c08a3f9e21"),
        _signature_header("webhook-timestamp", "Unix seconds of this attempt.", "1795503561"),
        _signature_header("webhook-signature", "v1,<base64 HMAC-SHA256> of id.timestamp.body "
                                               "under each live secret, space-separated.",
                          "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
    ],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": ref("schemas", "StatusResponse"),
        "examples": {k: v for k, v in _status_examples().items() if k != "processing"}}}},
    "responses": {"2XX": {"description": "A delivery, when it answers within the callback "
                                         "timeout (30 s by default). Anything else, a redirect "
                                         "too, is retried for about a day."}},
}


# Results and operations --------------------------------------------------------------------------

_IMAGE = {
    "description": "The image bytes, at exactly the size of the contract's table "
                   "(docs/contract.md §6).",
    "headers": {
        "Content-Length": {"description": "Size in bytes.",
                           "schema": {"type": "integer", "minimum": 0}},
        "Cache-Control": {"description": "public, max-age=86400, immutable",
                          "schema": {"type": "string"}},
    },
    "content": {
        "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
        "image/jpeg": {"schema": {"type": "string", "contentMediaType": "image/jpeg"}},
    },
}

_FILE = Operation(
    "downloadResult", "results", "Download a result image", public=True,
    description="The URLs of resultJson.resultUrls. No authentication: the token in the "
                "path is unguessable. Served with the right Content-Type and "
                "Content-Length until the task's expireTime, then 410 Gone.",
    params=(path_param("task_id", "The task id."),
            path_param("token", "The task's unguessable result token."),
            path_param("name", "The file name; its extension follows output_format.")),
    answers={
        200: _IMAGE,
        307: {"description": "Where results_delivery is redirect: the image is at Location, "
                             "a presigned URL of the result storage that works for a few "
                             "minutes and never past expireTime.",
              "headers": {"Location": {"description": "The presigned URL.",
                                       "schema": {"type": "string"}}}},
        404: "No such task, token or file, or the task did not succeed.",
        410: "The result expired and its bytes were deleted.",
        500: ref("responses", "InternalError"),
        503: ref("responses", "NotReady"),
    },
)

_HEALTHZ = Operation(
    "healthz", "operations", "Liveness", public=True,
    description="Answers while the process serves HTTP.",
    answers={200: ok("Alive.", "HealthResponse")},
)

_READYZ = Operation(
    "readyz", "operations", "Readiness", public=True,
    description="200 when the service can take work (database and storage reachable). "
                "`routes` shows the health of each route in use; a route whose upstream "
                "model is not served is `unavailable`, with the reason, while the "
                "service stays ready on its other routes.",
    answers={200: ok("Ready.", "HealthResponse"), 503: ref("responses", "NotReady")},
)

_OPENAPI = Operation(
    "openapi", "operations", "This document", public=True,
    answers={200: {"description": "The OpenAPI 3.1 document (not enveloped).",
                   "content": {"application/json": {"schema": {"type": "object"}}}}},
)


# Components --------------------------------------------------------------------------------------


def _components() -> Json:
    return {
        "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "Authorization: Bearer <API key>. Missing, malformed, unknown or "
                           "revoked key: 401.",
        }},
        "parameters": _parameters(),
        "headers": _headers(),
        "responses": _shared_responses(),
        "schemas": model_schemas(),
    }


def _parameters() -> Json:
    return {
        "model": {"name": "model", "in": "path", "required": True,
                  "description": "A catalogue model id; unknown: 404.",
                  "schema": {"type": "string"}, "example": "nano-banana-2"},
        "taskId": {"name": "taskId", "in": "query", "required": True,
                   "description": "The taskId returned by generateTask; missing: 400.",
                   "schema": {"type": "string", "minLength": 1},
                   "example": "0f8e4c1b2a3d4e5f60718293a4b5c6d7"},
        "wait": {"name": "wait", "in": "query", "required": False,
                 "description": "Extension: wait up to this many seconds for the task to "
                                "finish before answering; anything else than a whole number "
                                f"from {MIN_WAIT_S} to {MAX_WAIT_S}: 400.",
                 "schema": {"type": "integer", "minimum": MIN_WAIT_S, "maximum": MAX_WAIT_S}},
        "Prefer": {"name": "Prefer", "in": "header", "required": False,
                   "description": "Extension (RFC 7240): `wait=N` answers with the finished "
                                  "task when it ends within N seconds; N a whole number from "
                                  f"{MIN_WAIT_S} to {MAX_WAIT_S}, else 400. Other preferences "
                                  "are ignored.",
                   "schema": {"type": "string"}},
        "Idempotency-Key": {
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Extension: names this submit. A repeat by the same API key with the "
                           "same key, model and body bytes within 24 hours answers the first "
                           "task's id again (as the first answer did, waiting too with "
                           "`Prefer: wait`), stored and charged once; the same key with "
                           "another request: 409. 1 to 255 printable ASCII characters, else "
                           "400.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                       "pattern": "^[\\x20-\\x7e]+$"},
            "example": "order-2041-attempt"},
    }


def _headers() -> Json:
    return {
        "Retry-After": {"description": "Seconds to wait before trying again.",
                        "schema": {"type": "integer", "minimum": 1}},
        "Allow": {"description": "The methods this path accepts.",
                  "schema": {"type": "string"}},
        "Preference-Applied": {
            "description": "Extension (RFC 7240): `wait=N` when the server waited as the "
                           "Prefer header asked.",
            "schema": {"type": "string", "pattern": "^wait=[0-9]+$"}},
    }


def _shared_responses() -> Json:
    return {
        "Unauthorized": error(401, "Missing, malformed, unknown or revoked API key."),
        "MethodNotAllowed": error(405, "The path exists but not for this method.",
                                   headers={"Allow": ref("headers", "Allow")}),
        "InternalError": error(500, "An unexpected server error; the body never carries a "
                                     "stack trace."),
        "NotReady": error(503, "The service is not ready (starting, draining, or its "
                                "database or storage is unreachable)."),
    }
