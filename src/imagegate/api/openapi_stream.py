"""The OpenAPI description of streaming a task (extension; docs/contract.md §15, "Extension:
streaming a task"): the path, its ``text/event-stream`` answer with each event's name and the
schema of its data, and the JSON errors before the stream starts. The retry, keep-alive and
limits come from the modules that implement them, so the document cannot drift from them."""

from __future__ import annotations

from typing import Any

from imagegate.app.stream import KEEP_ALIVE_S, MAX_STREAM_S, RETRY_MS

__all__ = ["stream_paths"]

Json = dict[str, Any]

_TASK_ID = "0f8e4c1b2a3d4e5f60718293a4b5c6d7"


def stream_paths() -> Json:
    return {"/api/v1/streamTask/{model}": {"get": _stream_operation()}}


def _stream_operation() -> Json:
    return {
        "operationId": "streamTask",
        "tags": ["tasks"],
        "summary": "Follow a task as Server-Sent Events (extension)",
        "description": (
            "The task's changes as they happen, instead of polling statusTask: a `status` "
            "event with the task now at once, another each time its state, stage or "
            "queuePosition changes, and a `done` event with statusTask's whole answer when it "
            "has ended (at once, as the only event, when it already had); then the server "
            "closes the stream. Resume with `Last-Event-ID` (EventSource does it by itself): "
            "the snapshot the client has seen is not sent again. A `: keep-alive` comment "
            f"comes every {KEEP_ALIVE_S:.0f} s while nothing changes. The server may end a "
            f"stream before `done` (shutdown, after {MAX_STREAM_S / 60:.0f} minutes): "
            "reconnect with Last-Event-ID. Errors before the stream starts are JSON, as for "
            "statusTask."),
        "security": [{"bearerAuth": []}],
        "parameters": [
            {"$ref": "#/components/parameters/model"},
            {"$ref": "#/components/parameters/taskId"},
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "description": "The id of the last event the client received (opaque); the "
                            "stream then starts after it.",
             "schema": {"type": "string"}, "example": "1.generating"},
        ],
        "responses": {
            "200": {
                "description": "The stream. Cache-Control: no-cache; X-Accel-Buffering: no.",
                "headers": {
                    "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
                    "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"},
                                          "description": "Tells nginx not to buffer it."},
                },
                "content": {"text/event-stream": {
                    "schema": {"type": "string", "description": _FORMAT},
                    "example": _example(),
                    "x-events": _events(),
                }},
            },
            "400": _error(400, "The taskId query parameter is missing or empty (field "
                               "taskId)."),
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "404": _error(404, "Unknown taskId, a task of another account, or a {model} that "
                               "does not match the task."),
            "405": {"$ref": "#/components/responses/MethodNotAllowed"},
            "500": {"$ref": "#/components/responses/InternalError"},
            "503": {"$ref": "#/components/responses/NotReady"},
        },
    }


_FORMAT = (
    "Messages separated by a blank line, each `event: status` or `event: done`, an `id:` "
    "and one `data:` line of JSON; the first message also carries `retry: "
    f"{RETRY_MS}`. `status` data is statusTask's data for the task now, plus queuePosition "
    "(1 = next to be claimed) while it waits in the queue (stage queued or retrying). `done` "
    "data is statusTask's whole answer, {code, message, data}, for the ended task (state "
    "success or failed). Lines starting with `:` are comments (keep-alives).")


def _events() -> Json:
    position = {"type": "integer", "minimum": 1,
                "description": "While the task is queued: 1 + the queued tasks of its model "
                               "ahead of it, in the order workers claim them."}
    return {
        "status": {"description": "The task now, sent when the stream opens and on each "
                                  "change of state, stage or queuePosition.",
                   "schema": {"allOf": [{"$ref": "#/components/schemas/Task"},
                                        {"properties": {"queuePosition": position}}]}},
        "done": {"description": "The task has ended; the last event of the stream.",
                 "schema": {"$ref": "#/components/schemas/StatusResponse"}},
    }


def _example() -> str:
    start = f'"taskId":"{_TASK_ID}","state":"processing","createTime":1767225600000'
    return (
        f"retry: {RETRY_MS}\nevent: status\nid: 0.queued.2\n"
        f'data: {{{start},"stage":"queued","queuePosition":2}}\n\n'
        f'event: status\nid: 0.queued.1\ndata: {{{start},"stage":"queued","queuePosition":1}}'
        "\n\n"
        f'event: status\nid: 1.running\ndata: {{{start},"stage":"running"}}\n\n'
        f'event: status\nid: 1.generating\ndata: {{{start},"stage":"generating"}}\n\n'
        ": keep-alive\n\n"
        f'event: status\nid: 1.storing\ndata: {{{start},"stage":"storing"}}\n\n'
        'event: done\nid: 1.done\ndata: {"code":200,"message":"success","data":{'
        f'"taskId":"{_TASK_ID}","state":"success","createTime":1767225600000,'
        '"resultJson":"{\\"resultUrls\\":[\\"https://imagegate.example/files/'
        f'{_TASK_ID}/tok/image-0.png\\"]}}","completeTime":1767225612000,"costTime":12000,'
        '"stage":"done","expireTime":1768521612000,"cost":0.04}}\n\n')


def _error(status: int, description: str) -> Json:
    schema = {"allOf": [{"$ref": "#/components/schemas/ErrorResponse"},
                        {"properties": {"code": {"const": status}}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}
