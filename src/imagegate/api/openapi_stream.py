"""The OpenAPI description of streaming a task (extension; docs/contract.md §15, "Extension:
streaming a task"): the path, its ``text/event-stream`` answer with each event's name and the
schema of its data, and the JSON errors before the stream starts. The retry, keep-alive and
limits come from the modules that implement them, so the document cannot drift from them."""

from __future__ import annotations

from typing import Any

from imagegate.api.openapi_operations import Operation, error, ref
from imagegate.app.stream import KEEP_ALIVE_S, MAX_STREAM_S, MAX_STREAMS_PER_KEY, RETRY_MS

__all__ = ["stream_paths"]

Json = dict[str, Any]

_TASK_ID = "0f8e4c1b2a3d4e5f60718293a4b5c6d7"


def stream_paths() -> Json:
    return {"/api/v1/streamTask/{model}": {"get": _STREAM.render()}}


_FORMAT = (
    "Messages separated by a blank line, each `event: status` or `event: done`, an `id:` "
    "and one `data:` line of JSON; the first message also carries `retry: "
    f"{RETRY_MS}`. `status` data is statusTask's data for the task now, plus queuePosition "
    "(1 + the ready tasks of any model claimed before it; 1 = next to be claimed) while it "
    "waits in the queue (stage queued or retrying). `done` "
    "data is statusTask's whole answer, {code, message, data}, for the ended task (state "
    "success or failed). Lines starting with `:` are comments (keep-alives).")


def _event() -> Json:
    """One message of the stream, as an SSE parser reads it: its fields, and its data's JSON by
    its event name (the wire models' Task, with queuePosition, or the whole status answer)."""
    def data_of(event: str, schema: str) -> Json:
        data = {**_JSON, "contentSchema": ref("schemas", schema)}
        return {"if": {"properties": {"event": {"const": event}}},
                "then": {"properties": {"data": data}}}

    return {
        "type": "object",
        "description": _FORMAT,
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["status", "done"],
                      "description": "status: the task now, sent when the stream opens and on "
                                     "each change of state, stage or queuePosition. done: the "
                                     "task has ended; the last event of the stream."},
            "id": {"type": "string", "description": "Opaque: send it back as Last-Event-ID to "
                                                    "resume after this event."},
            "retry": {"type": "integer", "const": RETRY_MS,
                      "description": "Milliseconds to wait before reconnecting; on the first "
                                     "message."},
            "data": {**_JSON, "description": "One line of JSON."},
        },
        "allOf": [data_of("status", "Task"), data_of("done", "StatusResponse")],
    }


_JSON = {"type": "string", "contentMediaType": "application/json"}


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


_STREAM = Operation(
    "streamTask", "tasks", "Follow a task as Server-Sent Events (extension)",
    description=(
        "The task's changes as they happen, instead of polling statusTask: a `status` "
        "event with the task now at once, another each time its state, stage or "
        "queuePosition changes, and a `done` event with statusTask's whole answer when it "
        "has ended (at once, as the only event, when it already had); then the server "
        "closes the stream. Resume with `Last-Event-ID` (EventSource does it by itself): "
        "the snapshot the client has seen is not sent again. A `: keep-alive` comment "
        f"comes every {KEEP_ALIVE_S:.0f} s while nothing changes. The server may end a "
        f"stream before `done` (shutdown, after {MAX_STREAM_S / 60:.0f} minutes, its key "
        "revoked): reconnect with Last-Event-ID. Errors before the stream starts are JSON, as for "
        "statusTask."),
    params=("model", "taskId",
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "description": "The id of the last event the client received (opaque); the "
                            "stream then starts after it.",
             "schema": {"type": "string"}, "example": "1.generating"}),
    answers={
        200: {
            "description": "The stream. Cache-Control: no-cache; X-Accel-Buffering: no.",
            "headers": {
                "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
                "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"},
                                      "description": "Tells nginx not to buffer it."},
            },
            "content": {"text/event-stream": {"schema": _event(), "example": _example()}},
        },
        400: "The taskId query parameter is missing or empty (field taskId).",
        404: "Unknown taskId, a task of another account, or a {model} that does not match "
             "the task.",
        429: error(429, f"The key holds as many open streams on this server as it may "
                        f"({MAX_STREAMS_PER_KEY}, or its limit of unfinished tasks when that "
                        "is higher). Close one, or retry after the number of seconds in "
                        "Retry-After.",
                   headers={"Retry-After": ref("headers", "Retry-After")}),
    },
)
