"""The OpenAPI 3.1 description of the API exactly as this app serves it (``api/app.py`` ROUTES).

Built as plain data by small functions and served at ``/openapi.json``. Enumerations and limits
come from ``imagegate.contract`` and failCodes from ``imagegate.errors``, so the document cannot
drift from the validation it describes (docs/contract.md §3 to §8, §13 and §15).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from imagegate.api.openapi_listing import listing_paths
from imagegate.api.openapi_models import model_schemas
from imagegate.api.openapi_webhooks import webhook_paths
from imagegate.api.waiting import MAX_WAIT_S, MIN_WAIT_S
from imagegate.errors import FailCode

__all__ = ["openapi_document"]

Json = dict[str, Any]

_IMAGE_TO_IMAGE = "image-to-image"
_BEARER: list[Json] = [{"bearerAuth": []}]
_PUBLIC: list[Json] = []

_FAIL_MEANINGS: dict[str, str] = {
    FailCode.PROMPT_INVALID: "the prompt was rejected as invalid",
    FailCode.SENSITIVE_CONTENT: "prompt, reference image or output violated the safety policy "
                                "(never failed over to another route)",
    FailCode.IMAGE_FORMAT_INCORRECT: "a reference image could not be fetched or decoded, or is "
                                     "too large; failMsg names the URL and why",
    FailCode.MISSING_PARAMETER: "a route needed a parameter the request lacked",
    FailCode.RATE_LIMITED: "every eligible route stayed rate limited (retried with backoff first)",
    FailCode.TIMEOUT: "the task ran past its deadline (retried within the deadline first)",
    FailCode.UNKNOWN: "anything else; the exact string, with a space (retried once first)",
}


def openapi_document(base_url: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; ``base_url`` is the server URL clients call."""
    return {
        "openapi": "3.1.0",
        "info": _info(),
        "servers": [{"url": base_url}],
        "tags": _tags(),
        "paths": _paths(),
        "components": _components(),
    }


# Info --------------------------------------------------------------------------------------------


def _version() -> str:
    try:
        return version("imagegate")
    except PackageNotFoundError:
        return "0.0.0"


def _info() -> Json:
    return {
        "title": "imagegate",
        "version": _version(),
        "summary": "Self-hostable image-generation task service, wire-compatible with APIXO.",
        "description": "\n\n".join([_intro_text(), _sandbox_text(), _fail_code_table()]),
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    }


def _intro_text() -> str:
    return (
        "imagegate serves the APIXO task API for image models: submit a task, poll its status, "
        "download the results. A program written against APIXO's Nano Banana 2 API works "
        "unchanged after changing only its base URL and API key; everything marked "
        "*extension* is additive.\n\n"
        "Every JSON response, success or error, is the envelope "
        '`{"code": <int>, "message": <string>, "data": <any>}`; `code` repeats the HTTP '
        'status and `message` is `"success"` on success. A request error has the real non-2xx '
        'HTTP status and `data` `{"error": "...", "field": "..."}`. A task that failed is not '
        "a request error: its status read is HTTP 200 with `state` `failed`.\n\n"
        "Poll 10-20 s after submitting, then every 10 s, or (extension) let the server "
        "wait: `Prefer: wait=N` on a submit, `wait=N` on a status read. Result URLs need no "
        "authentication and answer 410 Gone once they expire."
    )


def _sandbox_text() -> str:
    return (
        "## Sandbox directives\n\n"
        "The `sandbox` route (the service's test mode, used until a real route is configured) "
        "renders a deterministic picture of the prompt at the exact size and format asked for. "
        "Directives inside the prompt steer it; they are removed before drawing:\n\n"
        "| directive | effect |\n|---|---|\n"
        "| `[sandbox:fail=CODE]` | every attempt fails with failCode `CODE` |\n"
        "| `[sandbox:fail=CODE:N]` | the first `N` attempts fail with `CODE`, later ones "
        "succeed (shows the service's retries) |\n"
        "| `[sandbox:delay=SECONDS]` | answer after `SECONDS` (0 to 600) instead of the "
        "configured delay |\n\n"
        f"`CODE` is one of the failCodes below (case-insensitive): {_codes_text()}. An unknown "
        "code, a bad count or delay, or an unknown directive fails the task with "
        f"`{FailCode.PROMPT_INVALID}`."
    )


def _codes_text() -> str:
    return ", ".join(f"`{code}`" for code in FailCode.ALL)


def _fail_code_table() -> str:
    lines = [
        "## Failure codes",
        "",
        "A failed task carries one of these `failCode` values and a `failMsg` for a person. "
        "Treat `failCode` as an open string.",
        "",
        "| failCode | meaning | retried by the service first |",
        "|---|---|---|",
    ]
    for code in FailCode.ALL:
        retried = "yes" if code in FailCode.RETRYABLE else "no"
        lines.append(f"| `{code}` | {_FAIL_MEANINGS.get(code, '')} | {retried} |")
    lines.append(f"| `{FailCode.CANCELED}` | extension: the client cancelled the task "
                 "(cancelTask); it is refunded | no |")
    return "\n".join(lines)


def _tags() -> list[Json]:
    return [
        {"name": "tasks", "description": "Submit and read image-generation tasks."},
        {"name": "account", "description": "The API key's account."},
        {"name": "models", "description": "The models the API key may use, with their limits "
                                          "and prices."},
        {"name": "results", "description": "Result downloads (the URLs in resultJson)."},
        {"name": "webhooks", "description": "Callback delivery log, redelivery, test events "
                                            "and signing secrets."},
        {"name": "operations", "description": "Health, readiness and this document."},
    ]


# Paths -------------------------------------------------------------------------------------------


def _paths() -> Json:
    return {
        "/api/v1/generateTask/{model}": {"post": _generate_operation()},
        "/api/v1/statusTask/{model}": {"get": _status_operation()},
        "/api/v1/cancelTask/{model}": {"post": _cancel_operation()},
        "/api/v1/apikeys/current-balance": {"get": _balance_operation()},
        **listing_paths(),
        "/files/{task_id}/{token}/{name}": {"get": _file_operation()},
        "/healthz": {"get": _healthz_operation()},
        "/readyz": {"get": _readyz_operation()},
        "/openapi.json": {"get": _openapi_operation()},
        **webhook_paths(),
    }


def _generate_operation() -> Json:
    return {
        "operationId": "generateTask",
        "tags": ["tasks"],
        "summary": "Submit a task",
        "description": "Validates the body, reserves the price from the key's balance and stores "
                       "the task durably before answering. Any broken rule answers 400 and "
                       "nothing is stored or charged. Extension: with `Prefer: wait=N` the "
                       "answer waits up to N seconds for the task to finish. Extension: with "
                       "an `Idempotency-Key`, a repeat of the same request answers the first "
                       "task again, stored and charged once.",
        "security": _BEARER,
        "parameters": [_ref("parameters", "model"), _ref("parameters", "Prefer"),
                       _ref("parameters", "Idempotency-Key")],
        "requestBody": {
            "required": True,
            "content": {"application/json": {
                "schema": _ref("schemas", "SubmitRequest"),
                "examples": _submit_examples(),
            }},
        },
        "responses": _generate_responses(),
    }


def _generate_responses() -> Json:
    return {
        "200": _submit_ok(),
        "400": _error(400, "The body breaks a submit rule (the error names the field), is not "
                           "valid UTF-8 JSON, or no configured route of the model can serve it: "
                           "google_search true when none can ground on Google Search (field "
                           "input.google_search), a provider none matches (field provider), or a "
                           "callback_url that is not https or not public (field callback_url). "
                           f"Also a Prefer header whose wait is not a whole number of seconds "
                           f"from {MIN_WAIT_S} to {MAX_WAIT_S} (field Prefer), or an "
                           "Idempotency-Key that is not 1 to 255 printable ASCII characters "
                           "(field Idempotency-Key); nothing is stored.",
                      examples=_submit_error_examples()),
        "401": _ref("responses", "Unauthorized"),
        "402": _error(402, "The key's balance cannot pay for the task; nothing is stored."),
        "403": _error(403, "The key may not use this model."),
        "404": _error(404, "Unknown model."),
        "405": _ref("responses", "MethodNotAllowed"),
        "409": _error(409, "Extension: the Idempotency-Key was used by this API key in the "
                           "last 24 hours for a different request (another body or model; "
                           "field Idempotency-Key); nothing is stored."),
        "413": _error(413, "The body is larger than the configured limit."),
        "415": _error(415, "Content-Type is not application/json (or +json)."),
        "429": _too_many_requests(),
        "500": _ref("responses", "InternalError"),
        "503": _ref("responses", "NotReady"),
    }


def _submit_ok() -> Json:
    return {
        "description": "The task is stored. Without `Prefer: wait`, or when the task has not "
                       "finished within the wait: data.taskId alone (poll statusTask with "
                       "it). Extension: with `Prefer: wait=N`, when the task finished within "
                       "N seconds, the answer statusTask would give (data is the finished "
                       "task, state success or failed). Preference-Applied is sent whenever "
                       "the server waited.",
        "headers": {"Preference-Applied": _ref("headers", "Preference-Applied")},
        "content": {"application/json": {
            "schema": {"anyOf": [_ref("schemas", "SubmitResponse"),
                                 _ref("schemas", "StatusResponse")]},
        }},
    }


def _too_many_requests() -> Json:
    return _error(
        429,
        "The key's submit rate or its limit of unfinished tasks is reached. Retry after the "
        "number of seconds in Retry-After.",
        headers={"Retry-After": _ref("headers", "Retry-After")},
    )


def _status_operation() -> Json:
    return {
        "operationId": "statusTask",
        "tags": ["tasks"],
        "summary": "Read a task",
        "description": "Cheap (no write, no lock); poll every 10 s. A failed task is HTTP 200. "
                       "Extension: with wait=N the answer comes as soon as the task has "
                       "finished (at once if it has), else after N seconds with the task as "
                       "it is then.",
        "security": _BEARER,
        "parameters": [_ref("parameters", "model"), _ref("parameters", "taskId"),
                       _ref("parameters", "wait")],
        "responses": {
            "200": _ok("The task.", "StatusResponse", examples=_status_examples()),
            "400": _error(400, "The taskId query parameter is missing or empty (field "
                               "taskId), or wait is not a whole number of seconds from "
                               f"{MIN_WAIT_S} to {MAX_WAIT_S} (field wait)."),
            "401": _ref("responses", "Unauthorized"),
            "404": _error(404, "Unknown taskId, a task of another account, or a {model} that "
                               "does not match the task. Never reveals that a task of another "
                               "account exists."),
            "405": _ref("responses", "MethodNotAllowed"),
            "500": _ref("responses", "InternalError"),
            "503": _ref("responses", "NotReady"),
        },
    }


def _cancel_operation() -> Json:
    return {
        "operationId": "cancelTask",
        "tags": ["tasks"],
        "summary": "Cancel a task (extension)",
        "description": "Extension. A queued task is cancelled and refunded at once (state "
                       "`canceled`, `refunded` true). A running one is cancelled best effort "
                       "(state `cancelling`, `refunded` false): its worker abandons the route "
                       "call and the task ends cancelled and refunded, unless its attempt "
                       "finishes first and keeps its result; poll statusTask for the end. A "
                       f"cancelled task reads as state failed, failCode `{FailCode.CANCELED}`. "
                       "No body is read.",
        "security": _BEARER,
        "parameters": [_ref("parameters", "model"), _ref("parameters", "taskId")],
        "responses": {
            "200": _ok("The task is cancelled, or its cancel is under way.", "CancelResponse",
                       examples=_cancel_examples()),
            "400": _error(400, "The taskId query parameter is missing or empty."),
            "401": _ref("responses", "Unauthorized"),
            "404": _error(404, "Unknown taskId, a task of another account, or a {model} that "
                               "does not match the task, as statusTask."),
            "405": _ref("responses", "MethodNotAllowed"),
            "409": _error(409, "The task has already ended; the error names its state "
                               "(succeeded, failed or canceled). Nothing changes."),
            "500": _ref("responses", "InternalError"),
            "503": _ref("responses", "NotReady"),
        },
    }


def _balance_operation() -> Json:
    return {
        "operationId": "currentBalance",
        "tags": ["account"],
        "summary": "The key's balance",
        "description": "What the key's account can spend now, in USD, holds of unfinished "
                       "tasks deducted. `data` is a bare number.",
        "security": _BEARER,
        "responses": {
            "200": _ok("The balance in USD.", "BalanceResponse"),
            "401": _ref("responses", "Unauthorized"),
            "405": _ref("responses", "MethodNotAllowed"),
            "500": _ref("responses", "InternalError"),
            "503": _ref("responses", "NotReady"),
        },
    }


def _file_operation() -> Json:
    return {
        "operationId": "downloadResult",
        "tags": ["results"],
        "summary": "Download a result image",
        "description": "The URLs of resultJson.resultUrls. No authentication: the token in the "
                       "path is unguessable. Served with the right Content-Type and "
                       "Content-Length until the task's expireTime, then 410 Gone.",
        "security": _PUBLIC,
        "parameters": [_path_param("task_id", "The task id."),
                       _path_param("token", "The task's unguessable result token."),
                       _path_param("name", "The file name; its extension follows "
                                           "output_format.")],
        "responses": {
            "200": _image_response(),
            "307": {"description": "Where results_delivery is redirect: the image is at "
                                   "Location, a presigned URL of the result storage that "
                                   "works for a few minutes and never past expireTime.",
                    "headers": {"Location": {"description": "The presigned URL.",
                                             "schema": {"type": "string"}}}},
            "404": _error(404, "No such task, token or file, or the task did not succeed."),
            "405": _ref("responses", "MethodNotAllowed"),
            "410": _error(410, "The result expired and its bytes were deleted."),
            "500": _ref("responses", "InternalError"),
            "503": _ref("responses", "NotReady"),
        },
    }


def _image_response() -> Json:
    return {
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


def _healthz_operation() -> Json:
    return {
        "operationId": "healthz",
        "tags": ["operations"],
        "summary": "Liveness",
        "description": "Answers while the process serves HTTP.",
        "security": _PUBLIC,
        "responses": {
            "200": _ok("Alive.", "HealthResponse"),
            "405": _ref("responses", "MethodNotAllowed"),
        },
    }


def _readyz_operation() -> Json:
    return {
        "operationId": "readyz",
        "tags": ["operations"],
        "summary": "Readiness",
        "description": "200 when the service can take work (database and storage reachable). "
                       "`routes` shows the health of each route in use; a route whose upstream "
                       "model is not served is `unavailable`, with the reason, while the "
                       "service stays ready on its other routes.",
        "security": _PUBLIC,
        "responses": {
            "200": _ok("Ready.", "HealthResponse"),
            "405": _ref("responses", "MethodNotAllowed"),
            "503": _ref("responses", "NotReady"),
        },
    }


def _openapi_operation() -> Json:
    return {
        "operationId": "openapi",
        "tags": ["operations"],
        "summary": "This document",
        "security": _PUBLIC,
        "responses": {
            "200": {"description": "The OpenAPI 3.1 document (not enveloped).",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
            "405": _ref("responses", "MethodNotAllowed"),
        },
    }


# Building blocks ---------------------------------------------------------------------------------


def _ref(section: str, name: str) -> Json:
    return {"$ref": f"#/components/{section}/{name}"}


def _path_param(name: str, description: str) -> Json:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def _ok(description: str, schema: str, *, examples: Json | None = None) -> Json:
    media: Json = {"schema": _ref("schemas", schema)}
    if examples:
        media["examples"] = examples
    return {"description": description, "content": {"application/json": media}}


def _error(status: int, description: str, *, headers: Json | None = None,
           examples: Json | None = None) -> Json:
    schema = {"allOf": [_ref("schemas", "ErrorResponse"),
                        {"properties": {"code": {"const": status}}}]}
    media: Json = {"schema": schema}
    if examples:
        media["examples"] = examples
    response: Json = {"description": description, "content": {"application/json": media}}
    if headers:
        response["headers"] = headers
    return response


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
        "schemas": _schemas(),
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
        "Unauthorized": _error(401, "Missing, malformed, unknown or revoked API key."),
        "MethodNotAllowed": _error(405, "The path exists but not for this method.",
                                   headers={"Allow": _ref("headers", "Allow")}),
        "InternalError": _error(500, "An unexpected server error; the body never carries a "
                                     "stack trace."),
        "NotReady": _error(503, "The service is not ready (starting, draining, or its "
                                "database or storage is unreachable)."),
    }


def _schemas() -> Json:
    return model_schemas()


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
        "processing": {"value": _enveloped({**base, "state": "processing", "stage": "queued"})},
        "success": {"value": _enveloped({**base, "state": "success", "resultJson": urls, **done,
                                         "costTime": 12000, "stage": "done",
                                         "expireTime": 1768521612000, "cost": 0.08})},
        "failed": {"value": _enveloped({**base, "state": "failed", **done,
                                        "failCode": FailCode.SENSITIVE_CONTENT,
                                        "failMsg": "the output violated the safety policy",
                                        "stage": "done"})},
    }


def _cancel_examples() -> Json:
    task_id = "0f8e4c1b2a3d4e5f60718293a4b5c6d7"
    return {
        "queued": {"value": _enveloped({"taskId": task_id, "state": "canceled",
                                        "refunded": True})},
        "running": {"value": _enveloped({"taskId": task_id, "state": "cancelling",
                                         "refunded": False})},
    }


def _enveloped(data: Any) -> Json:
    return {"code": 200, "message": "success", "data": data}
