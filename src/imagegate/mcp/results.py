"""What the MCP tools answer: the SDK's records and errors as MCP tool results.

Every result has text for the assistant to read and ``structuredContent`` for a program; a
finished generation adds each image as MCP image content (base64). An error is a result with
``isError`` set, never an exception out of the server:

    error                           text                                      structured
    TaskFailed                      task ID failed: FAILCODE: FAILMSG         taskId, state,
                                                                              failCode, failMsg
    WaitTimeout                     task ID did not end within N s ...        taskId, state
    APIError (401, 402, 404, ...)   authentication failed (401): ...          status, field
    APIConnectionError              cannot reach the service: ...             (taskId)
    ReferenceProblem                images[i]: no such file ...               field

The words are those of the ``imagegate`` client commands (client_cli/exits.py), so a key, a
URL or a refused field reads the same from a shell and from an assistant.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from imagegate_client import (
    APIError,
    Cancellation,
    Generation,
    ImagegateError,
    ModelInfo,
    TaskFailed,
    TaskPage,
    TaskStatus,
    WaitTimeout,
)
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent

from imagegate.client_cli.exits import outcome


class ReferenceProblem(ValueError):
    """A reference image that cannot be sent (a missing or unreadable file, not an image);
    ``field`` names it (``images[0]``). Nothing was sent."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def answer(text: str, structured: dict[str, Any],
           images: list[ImageContent] | None = None) -> CallToolResult:
    content: list[ContentBlock] = [*(images or ()), TextContent(type="text", text=text)]
    return CallToolResult(content=content, structured_content=structured)


def failure(exc: ImagegateError | ReferenceProblem) -> CallToolResult:
    """The tool error for an error the SDK raised, or a reference that cannot be sent."""
    if isinstance(exc, ReferenceProblem):
        return _error(str(exc), {"field": exc.field})
    said = outcome(exc)
    text = said.message if said is not None else str(exc)
    structured: dict[str, Any] = {} if exc.task_id is None else {"taskId": exc.task_id}
    if isinstance(exc, TaskFailed):
        structured.update(state="failed", failCode=exc.fail_code, failMsg=exc.fail_msg)
    elif isinstance(exc, WaitTimeout):
        text += ("; the task goes on: get_task reads it (its image URLs once it succeeds), "
                 "cancel_task stops it")
        structured["state"] = "processing"
    elif isinstance(exc, APIError):
        structured.update(status=exc.status, field=exc.field)
    elif exc.task_id is not None:
        text += f"; get_task reads task {exc.task_id}"
    return _error(text, structured)


def _error(text: str, structured: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content={**structured, "error": text}, is_error=True)


def generation(made: Generation, *, inline: bool) -> CallToolResult:
    """A succeeded task: its images (as image content when ``inline``), URLs and id."""
    task = made.task
    lines = [f"task {task.task_id} succeeded: {_count(len(made.images))}{_cost(task.cost)}"]
    lines += [f"image {i + 1}: {image.url}" for i, image in enumerate(made.images)]
    images = [ImageContent(type="image", data=base64.b64encode(image.data).decode(),
                           mime_type=image.media_type) for image in made.images] if inline \
        else []
    structured = {**task_json(task),
                  "images": [{"url": image.url, "mediaType": image.media_type,
                              "bytes": len(image.data)} for image in made.images]}
    return answer("\n".join(lines), structured, images)


def task_json(task: TaskStatus) -> dict[str, Any]:
    """A task as the API sent it (camelCase), with its result URLs parsed out of resultJson."""
    body = {**task.raw, "taskId": task.task_id, "state": task.state}
    body.pop("resultJson", None)
    body["resultUrls"] = list(task.result_urls)
    if task.model is not None:
        body["model"] = task.model
    return body


def task_status(task: TaskStatus) -> CallToolResult:
    return answer(task_line(task), task_json(task))


def task_line(task: TaskStatus) -> str:
    """One task in a line: its id, state and what to know about it."""
    words = f"task {task.task_id}"
    if task.model:
        words += f" ({task.model})"
    if task.state == "success":
        urls = " ".join(task.result_urls)
        return f"{words}: success, {_count(len(task.result_urls))}{_cost(task.cost)}: {urls}"
    if task.state == "failed":
        return f"{words}: failed: {task.fail_code}: {task.fail_msg}"
    stage = f", stage {task.stage}" if task.stage else ""
    return f"{words}: {task.state}{stage}"


def task_page(page: TaskPage) -> CallToolResult:
    lines = [task_line(task) for task in page.tasks] or ["no tasks"]
    if page.next_cursor:
        lines.append(f"more tasks: call list_tasks with cursor {page.next_cursor}")
    return answer("\n".join(lines), {"tasks": [task_json(t) for t in page.tasks],
                                     "nextCursor": page.next_cursor})


def cancellation(done: Cancellation) -> CallToolResult:
    if done.state == "canceled":
        text = f"task {done.task_id} cancelled{', refunded' if done.refunded else ''}"
    else:
        text = (f"task {done.task_id} cancelling: its worker stops it shortly (refunded unless "
                "it finishes first)")
    return answer(text, {"taskId": done.task_id, "state": done.state,
                         "refunded": done.refunded})


def balance(usd: Decimal) -> CallToolResult:
    return answer(f"balance: ${usd} (USD available now)", {"balanceUsd": float(usd)})


def models(found: list[ModelInfo]) -> CallToolResult:
    lines = []
    for model in found:
        prices = ", ".join(f"{tier} ${price}" for tier, price in model.prices.items())
        sandbox = " (sandbox: a picture of the prompt, no model)" if model.sandbox else ""
        lines.append(f"{model.id}{sandbox}: ratios auto, {', '.join(model.aspect_ratios)}; "
                     f"resolutions {', '.join(model.resolutions)}; per image {prices}; up to "
                     f"{model.max_references} references, {model.max_images} images a task")
    return answer("\n".join(lines) or "no models", {"models": [m.raw for m in found]})


def _count(images: int) -> str:
    return f"{images} image{'s' if images != 1 else ''}"


def _cost(usd: Decimal | None) -> str:
    return "" if usd is None else f", cost ${usd}"
