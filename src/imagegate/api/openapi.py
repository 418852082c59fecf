"""The OpenAPI 3.1 description of the API exactly as this app serves it (``api/app.py`` ROUTES).

Built as plain data by small functions and served at ``/openapi.json``. Enumerations and limits
come from ``imagegate.contract`` and failCodes from ``imagegate.errors``, so the document cannot
drift from the validation it describes (docs/contract.md §3 to §8, §13 and §15).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from imagegate.contract import (
    MODES,
    OUTPUT_FORMATS,
    PROVIDERS,
    RATIOS,
    REQUEST_TYPES,
    RESOLUTIONS,
    ModelLimits,
)
from imagegate.errors import FailCode

__all__ = ["openapi_document"]

from imagegate.api.openapi_listing import listing_paths, listing_schemas
from imagegate.api.openapi_stream import stream_paths
from imagegate.api.openapi_webhooks import webhook_paths
from imagegate.api.waiting import MAX_WAIT_S, MIN_WAIT_S

Json = dict[str, Any]

_LIMITS = ModelLimits()  # nano-banana-2's limits, the catalogue's defaults
_IMAGE_TO_IMAGE = "image-to-image"
_URL_MAX = 4096
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
        **stream_paths(),
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


def _success(data: Json, description: str) -> Json:
    return {
        "description": description,
        "allOf": [
            _ref("schemas", "Envelope"),
            {"properties": {"code": {"const": 200}, "message": {"const": "success"},
                            "data": data}},
        ],
    }


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
    return {
        "Envelope": _envelope_schema(),
        "ErrorData": _error_data_schema(),
        "ErrorResponse": _error_response_schema(),
        "SubmitRequest": _submit_request_schema(),
        "SubmitInput": _submit_input_schema(),
        "SubmitResponse": _success(
            {"type": "object", "required": ["taskId"],
             "properties": {"taskId": {"type": "string", "description": "Opaque, unguessable "
                                       "task id (32 hex characters)."}}},
            "Submit answer: data.taskId."),
        "Task": _task_schema(),
        "StatusResponse": _success(_ref("schemas", "Task"), "Status answer: data is the task."),
        "CancelResponse": _success(_cancel_data_schema(), "Cancel answer (extension)."),
        **listing_schemas(),
        "BalanceResponse": _success(
            {"type": "number", "description": "USD available now, holds deducted (up to 6 "
                                              "decimal places).", "examples": [9.95]},
            "Balance answer: data is a bare number, USD."),
        "HealthResponse": _success(
            {"type": "object", "required": ["status"],
             "properties": {"status": {"type": "string", "enum": ["ok", "ready"]},
                            "routes": {"type": "object",
                                       "additionalProperties": _ref("schemas", "RouteHealth")}}},
            "Health or readiness answer."),
        "RouteHealth": {
            "type": "object", "required": ["circuit", "failures", "retryInS"],
            "properties": {
                "circuit": {"type": "string",
                            "enum": ["closed", "open", "half-open", "unavailable"]},
                "failures": {"type": "integer", "minimum": 0,
                             "description": "Failures in a row."},
                "retryInS": {"type": "number", "minimum": 0,
                             "description": "Seconds until an open circuit lets a trial in."},
                "reason": {"type": "string",
                           "description": "Why the route is unavailable."},
            },
        },
    }


def _cancel_data_schema() -> Json:
    return {
        "type": "object",
        "required": ["taskId", "state", "refunded"],
        "properties": {
            "taskId": {"type": "string"},
            "state": {"type": "string", "enum": ["canceled", "cancelling"],
                      "description": "canceled: the task was queued and is cancelled now; "
                                     "cancelling: it runs, and its worker is told to stop."},
            "refunded": {"type": "boolean",
                         "description": "Whether the price is back in the balance now: true "
                                        "with canceled, false with cancelling (the refund "
                                        "comes when the task ends cancelled)."},
        },
    }


def _envelope_schema() -> Json:
    return {
        "type": "object",
        "description": "Every JSON response, success or error.",
        "required": ["code", "message", "data"],
        "properties": {
            "code": {"type": "integer", "description": "Repeats the HTTP status."},
            "message": {"type": "string",
                        "description": '"success" on success; the status reason on an error.'},
            "data": {"description": "The answer; its shape depends on the operation."},
        },
    }


def _error_data_schema() -> Json:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What is wrong, for a person."},
            "field": {"type": "string", "description": "JSON path of the field at fault "
                      "(e.g. input.prompt); present only when one field is at fault."},
        },
    }


def _error_response_schema() -> Json:
    return {
        "description": "A request error: the HTTP status is the real non-2xx status.",
        "allOf": [
            _ref("schemas", "Envelope"),
            {"properties": {"data": _ref("schemas", "ErrorData")}},
        ],
        "examples": [{"code": 400, "message": "Invalid request",
                      "data": {"error": "input.prompt must be 1 to 20000 characters, not only "
                                        "whitespace", "field": "input.prompt"}}],
    }


# The submit body (docs/contract.md §4) -----------------------------------------------------------


def _or_null(schema: Json) -> Json:
    """``schema`` that also takes null, read as absent. APIXO's own optional fields take it, as
    SDKs send null for a field left at its default; the extension fields do not."""
    out = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        out["enum"] = [*schema["enum"], None]
    out["description"] = f"{schema['description']} null is read as absent."
    return out


def _url_string(description: str) -> Json:
    # An IRI: non-ASCII characters are taken (and percent-encoded when sent); control
    # characters are not.
    return {"type": "string", "format": "iri", "maxLength": _URL_MAX,
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://", "description": description}


_CALLBACK_URL = ("Required when request_type is callback: an http or https URL, https and "
                 "resolving to a public address unless the operator allows otherwise.")


def _submit_request_schema() -> Json:
    return {
        "type": "object",
        "description": "Unknown top-level fields are ignored. Any broken rule: 400 naming the "
                       "field, nothing stored, nothing charged.",
        "required": ["input"],
        "additionalProperties": True,
        "properties": {
            "request_type": _or_null({
                "type": "string", "enum": list(REQUEST_TYPES), "default": "async",
                "description": "callback: the final status envelope is POSTed to callback_url "
                               "(signed, Standard Webhooks style)."}),
            "callback_url": {"description": f"{_CALLBACK_URL} Ignored, whatever it holds, "
                                            "unless request_type is callback (SDKs send empty "
                                            "defaults)."},
            "provider": _or_null({
                "type": "string", "enum": list(PROVIDERS), "default": "auto",
                "description": "Routing preference: auto (catalogue order), value (cheapest "
                               "healthy route), official (maker's routes)."}),
            "source": _or_null({"type": "string", "maxLength": 128,
                                "description": "Free text; stored, otherwise ignored."}),
            "input": _ref("schemas", "SubmitInput"),
        },
        "if": {"required": ["request_type"],
               "properties": {"request_type": {"const": "callback"}}},
        "then": {"required": ["callback_url"],
                 "properties": {"callback_url": _url_string(_CALLBACK_URL)}},
    }


def _submit_input_schema() -> Json:
    return {
        "type": "object",
        "description": "Unknown fields are ignored. Limits shown are nano-banana-2's.",
        "required": ["mode", "prompt", "aspect_ratio", "resolution"],
        "additionalProperties": True,
        "properties": {**_input_core_properties(), **_input_extension_properties()},
        "if": {"required": ["mode"], "properties": {"mode": {"const": _IMAGE_TO_IMAGE}}},
        "then": {"required": ["image_urls"],
                 "properties": {"image_urls": {"type": "array", "minItems": 1}}},
        "else": {"properties": {"image_urls": {"maxItems": 0}}},
    }


def _input_core_properties() -> Json:
    return {
        "mode": {"type": "string", "enum": list(MODES)},
        "prompt": {"type": "string", "minLength": 1, "maxLength": _LIMITS.max_prompt_chars,
                   "pattern": "\\S", "description": "Counted in Unicode code points; not only "
                                                     "whitespace. May hold sandbox directives."},
        "image_urls": _or_null(_image_urls_schema()),
        "aspect_ratio": {"type": "string", "enum": ["auto", *RATIOS],
                         "description": "auto: 1:1 for text-to-image, the ratio nearest the "
                                        "first reference image for image-to-image."},
        "resolution": {"type": "string", "enum": list(RESOLUTIONS),
                       "description": 'Case-insensitive ("1K" is accepted).'},
        "output_format": _or_null({
            "type": "string", "enum": list(OUTPUT_FORMATS), "default": "png",
            "description": "Case-insensitive; jpg and jpeg both mean JPEG, the file extension "
                           "follows the value asked for."}),
        "google_search": _or_null({
            "type": "boolean", "default": False,
            "description": "Ground on Google Search. Only routes that can ground take the "
                           "task; when no configured route of the model can, the submit "
                           "answers 400 naming input.google_search (the sandbox can)."}),
    }


def _input_extension_properties() -> Json:
    return {
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1,
                 "description": "Extension: for reproducible routes. Absent or an integer; "
                                "null is refused."},
        "num_images": {"type": "integer", "minimum": 1, "maximum": _LIMITS.max_images,
                       "default": 1, "description": "Extension: images to make, billed per "
                                                    "image."},
    }


def _image_urls_schema() -> Json:
    data_uri = {"type": "string", "pattern": "^data:image/[^;,]+;base64,",
                "description": "Extension: a data:image/...;base64, URI."}
    return {
        "type": "array",
        "maxItems": _LIMITS.max_references,
        "items": {"anyOf": [_url_string("An http or https URL, fetched when the task runs."),
                            data_uri]},
        "description": f"1 to {_LIMITS.max_references} reference images, required for "
                       "image-to-image; absent, null or [] for text-to-image. A reference that "
                       "cannot be fetched or decoded fails the task with "
                       f"{FailCode.IMAGE_FORMAT_INCORRECT}.",
    }


# The task (docs/contract.md §5) -----------------------------------------------------------------


def _task_schema() -> Json:
    return {
        "type": "object",
        "description": "A task. Fields that are not present are omitted, never sent as null.",
        "required": ["taskId", "state", "createTime"],
        "additionalProperties": True,
        "properties": {**_task_core_properties(), **_task_extension_properties()},
    }


def _task_core_properties() -> Json:
    ms = "Unix time in milliseconds"
    return {
        "taskId": {"type": "string", "description": "Always present."},
        "state": {"type": "string", "enum": ["processing", "success", "failed"],
                  "description": "Always present; a queued task is processing too."},
        "createTime": {"type": "integer", "description": f"{ms}. Always present."},
        "resultJson": {
            "type": "string", "contentMediaType": "application/json",
            "contentSchema": _result_json_schema(),
            "description": 'A STRING holding JSON {"resultUrls": ["https://..."]}; parse it '
                           "with JSON.parse. Present only when state is success.",
        },
        "completeTime": {"type": "integer",
                         "description": f"{ms}. Present when state is success or failed."},
        "costTime": {"type": "integer", "description": "Milliseconds, completeTime - "
                     "createTime. Present only when state is success."},
        "failCode": {"type": "string", "examples": [*FailCode.ALL, FailCode.CANCELED],
                     "description": "Present only when state is failed. An open string; "
                                    f"imagegate emits {_codes_text()}, and "
                                    f"`{FailCode.CANCELED}` for a task its client cancelled "
                                    "(extension: cancelTask)."},
        "failMsg": {"type": "string", "description": "For a person. Present only when state "
                                                    "is failed."},
    }


def _result_json_schema() -> Json:
    return {
        "type": "object",
        "required": ["resultUrls"],
        "properties": {"resultUrls": {
            "type": "array",
            "items": {"type": "string", "format": "uri"},
            "description": "Absolute, unguessable URLs that need no authentication.",
        }},
    }


def _task_extension_properties() -> Json:
    return {
        "stage": {"type": "string", "description": "Extension, always sent: queued, running, "
                  "fetching, generating, storing, retrying or done (an open string)."},
        "expireTime": {"type": "integer", "description": "Extension: Unix ms after which the "
                       "result URLs answer 410. Present only when state is success."},
        "cost": {"type": "number", "minimum": 0, "description": "Extension: USD charged. "
                 "Present only once the charge is settled (a successful task)."},
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
