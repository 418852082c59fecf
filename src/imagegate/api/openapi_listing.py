"""The OpenAPI description of the list of a key's tasks and of the models it may use
(extensions; docs/contract.md §5 and §9). Limits and enumerations come from ``task_list`` and
``contract``, so the document cannot drift from the parsing it describes."""

from __future__ import annotations

from typing import Any

from imagegate.contract import OUTPUT_FORMATS
from imagegate.task_list import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_MODEL_CHARS,
    MAX_MS,
    WIRE_STATES,
)

__all__ = ["listing_paths"]

Json = dict[str, Any]

_BEARER: list[Json] = [{"bearerAuth": []}]
_COMMON = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
    "500": {"$ref": "#/components/responses/InternalError"},
    "503": {"$ref": "#/components/responses/NotReady"},
}
_CURSOR_EXAMPLE = "MTc2NzIyNTYwMDAwMC4wZjhlNGMxYjJhM2Q0ZTVmNjA3MTgyOTNhNGI1YzZkNw"


def listing_paths() -> Json:
    return {
        "/api/v1/tasks": {"get": _tasks_operation()},
        "/api/v1/models": {"get": _models_operation()},
    }


# GET /api/v1/tasks -------------------------------------------------------------------------------


def _tasks_operation() -> Json:
    return {
        "operationId": "listTasks",
        "tags": ["tasks"],
        "summary": "List the key's own tasks (extension)",
        "description": "The tasks submitted with this API key, newest first (by createTime, "
                       "then taskId), a page at a time. Pass a page's nextCursor as cursor, "
                       "with the same filters, for the next page; nextCursor is null on the "
                       "last. Tasks submitted meanwhile never shift a page: pages neither "
                       "repeat nor skip a task. Each item is what statusTask answers for the "
                       "task, plus its source. A task whose record retention ended is not "
                       "listed. A parameter that is given must be valid (an empty value is "
                       "not); unknown parameters are ignored.",
        "security": _BEARER,
        "parameters": _task_parameters(),
        "responses": {
            "200": _ok("A page of tasks.", "TaskListResponse", _page_examples()),
            "400": _error("A query parameter is not valid, or given more than once (all but "
                          "state); the error names it as field."),
            **_COMMON,
        },
    }


def _task_parameters() -> list[Json]:
    ms = {"type": "integer", "minimum": 0, "maximum": MAX_MS}
    return [
        _query("limit", "How many tasks a page holds at most.",
               {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT}),
        _query("cursor", "The nextCursor of the page before, as given (opaque).",
               {"type": "string", "minLength": 1}, example=_CURSOR_EXAMPLE),
        {**_query("state", "Only tasks in one of these wire states, comma-separated "
                           "(processing is queued or running; failed includes canceled). "
                           "May also be given several times.",
                  {"type": "array", "minItems": 1,
                   "items": {"type": "string", "enum": list(WIRE_STATES)}},
                  example=["success", "failed"]),
         "style": "form", "explode": False},
        _query("model", "Only tasks of this model (a model the catalogue no longer serves "
                        "still matches its tasks).",
               {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_CHARS,
                "pattern": "^[^\\x00-\\x1f\\x7f]*$"}, example="nano-banana-2"),
        _query("createdAfter", "Only tasks whose createTime is at or after this Unix time in "
                               "milliseconds.", ms, example=1767225600000),
        _query("createdBefore", "Only tasks whose createTime is before this Unix time in "
                                "milliseconds (with createdAfter: windows that tile, "
                                "neither overlapping nor leaving gaps).", ms,
               example=1767312000000),
    ]


def _page_examples() -> Json:
    task = {"taskId": "0f8e4c1b2a3d4e5f60718293a4b5c6d7", "state": "processing",
            "createTime": 1767225600000, "stage": "queued", "source": "my-app"}
    return {
        "morePages": {"value": _enveloped({"tasks": [task], "nextCursor": _CURSOR_EXAMPLE})},
        "lastPage": {"value": _enveloped({"tasks": [], "nextCursor": None})},
    }


# GET /api/v1/models ------------------------------------------------------------------------------


def _models_operation() -> Json:
    return {
        "operationId": "listModels",
        "tags": ["models"],
        "summary": "The models the key may use (extension)",
        "description": "Each model of the catalogue, or those the key is limited to, with "
                       "what its submit accepts, its price per image by resolution, whether "
                       "google_search can be sent, and whether the sandbox alone serves it.",
        "security": _BEARER,
        "responses": {"200": _ok("The models.", "ModelsResponse", _models_examples()),
                      **_COMMON},
    }


def _models_examples() -> Json:
    model = {"id": "nano-banana-2-lite", "aspectRatios": ["1:1", "16:9"], "resolutions": ["1k"],
             "outputFormats": list(OUTPUT_FORMATS), "maxPromptChars": 20000,
             "maxReferences": 14, "maxImages": 4, "prices": {"1k": 0.03},
             "googleSearch": False, "sandbox": False}
    return {"oneModel": {"value": _enveloped({"models": [model]})}}


# Building blocks ---------------------------------------------------------------------------------


def _schema_ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, schema: Json, *, example: Any = None) -> Json:
    param: Json = {"name": name, "in": "query", "required": False, "description": description,
                   "schema": schema}
    if example is not None:
        param["example"] = example
    return param


def _ok(description: str, schema: str, examples: Json) -> Json:
    return {"description": description, "content": {"application/json": {
        "schema": _schema_ref(schema), "examples": examples}}}


def _error(description: str) -> Json:
    schema = {"allOf": [_schema_ref("ErrorResponse"), {"properties": {"code": {"const": 400}}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _enveloped(data: Any) -> Json:
    return {"code": 200, "message": "success", "data": data}
