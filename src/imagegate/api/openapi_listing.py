"""The OpenAPI description of the list of a key's tasks and of the models it may use
(extensions; docs/contract.md §5 and §9). Limits and enumerations come from ``task_list`` and
``contract``, so the document cannot drift from the parsing it describes."""

from __future__ import annotations

from typing import Any

from imagegate.api.openapi_operations import Operation, enveloped, ok, query
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

_CURSOR_EXAMPLE = "MTc2NzIyNTYwMDAwMC4wZjhlNGMxYjJhM2Q0ZTVmNjA3MTgyOTNhNGI1YzZkNw"


def listing_paths() -> Json:
    tasks = Operation(
        "listTasks", "tasks", "List the key's own tasks (extension)",
        description="The tasks submitted with this API key, newest first (by createTime, then "
                    "taskId), a page at a time. Pass a page's nextCursor as cursor, with the "
                    "same filters, for the next page; nextCursor is null on the last. Tasks "
                    "submitted meanwhile never shift a page: pages neither repeat nor skip a "
                    "task. Each item is what statusTask answers for the task, plus its "
                    "model and its source. A task whose record retention ended is not "
                    "listed. A parameter that is given must be valid (an empty value is not); "
                    "unknown parameters are ignored.",
        params=tuple(_task_parameters()),
        answers={200: ok("A page of tasks.", "TaskListResponse", _page_examples()),
                 400: "A query parameter is not valid, or given more than once (all but "
                      "state); the error names it as field."})
    models = Operation(
        "listModels", "models", "The models the key may use (extension)",
        description="Each model of the catalogue, or those the key is limited to, with what "
                    "its submit accepts, its price per image by resolution, whether "
                    "google_search can be sent, and whether the sandbox alone serves it.",
        answers={200: ok("The models.", "ModelsResponse", _models_examples())})
    return {"/api/v1/tasks": {"get": tasks.render()}, "/api/v1/models": {"get": models.render()}}


def _task_parameters() -> list[Json]:
    ms = {"type": "integer", "minimum": 0, "maximum": MAX_MS}
    return [
        query("limit", "How many tasks a page holds at most.",
               {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT}),
        query("cursor", "The nextCursor of the page before, as given (opaque).",
               {"type": "string", "minLength": 1}, example=_CURSOR_EXAMPLE),
        {**query("state", "Only tasks in one of these wire states, comma-separated "
                           "(processing is queued or running; failed includes canceled). "
                           "May also be given several times.",
                  {"type": "array", "minItems": 1,
                   "items": {"type": "string", "enum": list(WIRE_STATES)}},
                  example=["success", "failed"]),
         "style": "form", "explode": False},
        query("model", "Only tasks of this model (a model the catalogue no longer serves "
                        "still matches its tasks).",
               {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_CHARS,
                "pattern": "^[^\\x00-\\x1f\\x7f]*$"}, example="nano-banana-2"),
        query("createdAfter", "Only tasks whose createTime is at or after this Unix time in "
                               "milliseconds.", ms, example=1767225600000),
        query("createdBefore", "Only tasks whose createTime is before this Unix time in "
                                "milliseconds (with createdAfter: windows that tile, "
                                "neither overlapping nor leaving gaps).", ms,
               example=1767312000000),
    ]


def _page_examples() -> Json:
    task = {"taskId": "0f8e4c1b2a3d4e5f60718293a4b5c6d7", "state": "processing",
            "createTime": 1767225600000, "stage": "queued", "model": "nano-banana-2",
            "source": "my-app"}
    return {
        "morePages": {"value": enveloped({"tasks": [task], "nextCursor": _CURSOR_EXAMPLE})},
        "lastPage": {"value": enveloped({"tasks": [], "nextCursor": None})},
    }


def _models_examples() -> Json:
    model = {"id": "nano-banana-2-lite", "aspectRatios": ["1:1", "16:9"], "resolutions": ["1k"],
             "outputFormats": list(OUTPUT_FORMATS), "maxPromptChars": 20000,
             "maxReferences": 14, "maxImages": 4, "prices": {"1k": 0.03},
             "googleSearch": False, "sandbox": False}
    return {"oneModel": {"value": enveloped({"models": [model]})}}
