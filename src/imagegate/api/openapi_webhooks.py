"""The OpenAPI description of the webhook endpoints (extensions; docs/contract.md §12)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

_BEARER: list[Json] = [{"bearerAuth": []}]
_TASK_ID = {"$ref": "#/components/parameters/taskId"}
_COMMON = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
    "500": {"$ref": "#/components/responses/InternalError"},
    "503": {"$ref": "#/components/responses/NotReady"},
}
_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_BODY_ERRORS = "not valid UTF-8 JSON, not a JSON object"


def webhook_paths() -> Json:
    return {
        "/api/v1/webhooks/deliveries": {"get": _deliveries()},
        "/api/v1/webhooks/redeliver": {"post": _redeliver()},
        "/api/v1/webhooks/test": {"post": _test()},
        "/api/v1/webhooks/secret": {"get": _secret()},
        "/api/v1/webhooks/secret/rotate": {"post": _rotate()},
    }


def _envelope(data: Json, description: str) -> Json:
    schema = {"allOf": [{"$ref": "#/components/schemas/Envelope"},
                        {"properties": {"code": {"const": 200}, "data": data}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _attempt() -> Json:
    return {"type": "object", "required": ["attempt", "time", "latencyMs", "delivered"],
            "properties": {
                "attempt": {"type": "integer", "minimum": 1},
                "time": {"type": "integer", "description": "Unix ms the attempt started."},
                "latencyMs": {"type": "integer"},
                "delivered": {"type": "boolean", "description": "A 2xx within the timeout."},
                "httpStatus": {"type": "integer", "description": "Absent when no answer."},
                "error": {"type": "string", "description": "Why it is not a delivery: HTTP "
                          "status, redirect (not followed), timeout, refused address."}}}


def _delivery() -> Json:
    return {"type": "object", "properties": {
        "webhookId": {"type": "string", "description": "The webhook-id header, the same on "
                      "every attempt of this event."},
        "taskId": {"type": "string"}, "url": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "delivered", "failed"],
                  "description": "failed: given up after the last scheduled attempt."},
        "attempts": {"type": "integer"}, "createTime": {"type": "integer"},
        "nextAttemptTime": {"type": "integer", "description": "Only while pending."},
        "log": {"type": "array", "items": _attempt()}}}


def _deliveries() -> Json:
    return {"operationId": "webhookDeliveries", "tags": ["webhooks"],
            "summary": "A task's callback deliveries, with every attempt",
            "security": _BEARER, "parameters": [_TASK_ID],
            "responses": {"200": _envelope({"type": "array", "items": _delivery()},
                                           "Deliveries, oldest first."),
                          "400": _err("taskId is missing."),
                          "404": _err("No such task for this key's account."), **_COMMON}}


def _redeliver() -> Json:
    return {"operationId": "webhookRedeliver", "tags": ["webhooks"],
            "summary": "Send a task's callback again now",
            "description": "Same webhook-id and body, new timestamp and signature. A failure "
                           "leaves the retry schedule as it was.",
            "security": _BEARER, "parameters": [_TASK_ID],
            "responses": {"200": _envelope({"type": "object", "properties": {
                "webhookId": {"type": "string"}, "attempt": _attempt()}}, "The attempt made."),
                "400": _err("taskId is missing."),
                "404": _err("No such task, or it has no callback (yet)."), **_COMMON}}


def _test() -> Json:
    url = {"type": "string", "format": "iri", "maxLength": 4096,
           "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
           "description": "https (and a public address) unless the operator allows otherwise."}
    body = {"type": "object", "required": ["url"], "properties": {"url": url}}
    return {"operationId": "webhookTest", "tags": ["webhooks"],
            "summary": "Send a signed test event to a URL",
            "description": "The body has the status envelope's shape with data.test = true. "
                           "Nothing is stored.",
            "security": _BEARER,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": _envelope({"type": "object", "properties": {
                "webhookId": {"type": "string"}, "delivered": {"type": "boolean"},
                "httpStatus": {"type": "integer"}, "error": {"type": "string"},
                "latencyMs": {"type": "integer"}}}, "What the receiver answered."),
                "400": _err(f"The body is {_BODY_ERRORS}, or url is missing, not https or "
                            "not a public address (field url)."),
                "413": _err("The body is larger than 64 KiB."),
                "415": _err("Content-Type is not application/json (or +json)."), **_COMMON}}


def _secrets() -> Json:
    secret = {"type": "object", "properties": {
        "secret": {"type": "string", "description": "whsec_ + base64 of 32 bytes."},
        "createTime": {"type": "integer"},
        "expireTime": {"type": "integer", "description": "Set on a secret being rotated out."}}}
    return {"type": "array", "items": secret}


def _secret() -> Json:
    return {"operationId": "webhookSecret", "tags": ["webhooks"],
            "summary": "The account's live signing secrets (created on first use)",
            "security": _BEARER,
            "responses": {"200": _envelope({"type": "object", "properties": {
                "secrets": _secrets()}}, "Newest first."), **_COMMON}}


def _rotate() -> Json:
    body = {"type": "object", "properties": {"overlapSeconds": {
        "type": "number", "minimum": 0, "maximum": 2592000,
        "description": "How long the old secrets keep signing too (default: the "
                       "callbacks_rotation_overlap_seconds setting, one day). Absent or a "
                       "number; null is refused."}}}
    return {"operationId": "webhookRotateSecret", "tags": ["webhooks"],
            "summary": "Rotate the signing secret",
            "description": "A new secret signs every delivery from now; the old ones sign too "
                           "until the overlap ends (the signature header then carries both).",
            "security": _BEARER,
            "requestBody": {"required": False,
                            "content": {"application/json": {"schema": body}}},
            "responses": {"200": _envelope({"type": "object", "properties": {
                "secret": {"type": "string"}, "secrets": _secrets()}}, "The new secret first."),
                "400": _err(f"The body is {_BODY_ERRORS}, or overlapSeconds is not a number "
                            "from 0 to 2592000 (field overlapSeconds)."),
                "413": _err("The body is larger than 64 KiB."),
                "415": _err("A body is sent and its Content-Type is not application/json (or "
                            "+json)."), **_COMMON}}
