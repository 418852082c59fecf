"""The tools of ``imagegate mcp``: each one call (or a few) of the ``imagegate_client`` SDK.

    generate_image   submit, wait (reporting progress), download: the images, URLs, task id
    edit_image       the same with reference images required
    get_task         a task's status
    list_tasks       a page of the key's tasks, newest first
    cancel_task      cancel a queued or running task
    get_balance      the key's balance in USD
    list_models      the models the key may use, their limits and prices

Arguments are checked against their schema (schemas.py) before anything is sent; what the
SDK raises becomes a tool error (results.py). Only the SDK talks to the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from imagegate_client import AsyncClient, ImagegateError, Progress, image_data_uri
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from imagegate.client_cli.progress import describe
from imagegate.mcp import results
from imagegate.mcp.schemas import (
    AspectRatio,
    Cursor,
    GoogleSearch,
    Limit,
    Model,
    ModelFilter,
    NumImages,
    OptionalReferences,
    OutputFormat,
    Prompt,
    References,
    Resolution,
    Seed,
    States,
    TaskId,
    TaskModel,
)

T = TypeVar("T")
_REMOTE = ("http://", "https://", "data:")
ToolContext = Context[Any, Any]  # what MCPServer hands a tool that asks for it
SOURCE = "imagegate-mcp"  # the source of the tasks the tools submit (list_tasks shows it)


class Tools:
    """The tools, over one SDK client. ``wait_timeout``: seconds a generation is waited for
    before the tool answers that the task goes on (None: no limit). ``inline_images``: whether
    a generation's images go into the result as image content, besides their URLs."""

    def __init__(self, client: AsyncClient, *, wait_timeout: float | None,
                 inline_images: bool = True) -> None:
        self.client = client
        self.wait_timeout = wait_timeout
        self.inline_images = inline_images

    async def generate_image(self, prompt: Prompt, ctx: ToolContext,
                             aspect_ratio: AspectRatio = "auto", resolution: Resolution = "1k",
                             output_format: OutputFormat = "png",
                             images: OptionalReferences = None, num_images: NumImages = 1,
                             model: Model = None, seed: Seed = None,
                             google_search: GoogleSearch = False) -> CallToolResult:
        """Generate images from a prompt (text-to-image, or image-to-image with references),
        wait for the task and answer the images, their URLs and the task id. Each image is
        billed (list_models shows the prices). Progress notifications say the task's state,
        stage and queue position while it waits."""
        return await self._generate(ctx, prompt, images or [], aspect_ratio=aspect_ratio,
                                    resolution=resolution, output_format=output_format,
                                    num_images=num_images, model=model, seed=seed,
                                    google_search=google_search)

    async def edit_image(self, prompt: Prompt, images: References, ctx: ToolContext,
                         aspect_ratio: AspectRatio = "auto", resolution: Resolution = "1k",
                         output_format: OutputFormat = "png", num_images: NumImages = 1,
                         model: Model = None, seed: Seed = None,
                         google_search: GoogleSearch = False) -> CallToolResult:
        """Edit or combine reference images as the prompt says (image-to-image): the same as
        generate_image, with the references required. aspect_ratio auto keeps the first
        reference's (the nearest ratio the model makes)."""
        return await self._generate(ctx, prompt, images, aspect_ratio=aspect_ratio,
                                    resolution=resolution, output_format=output_format,
                                    num_images=num_images, model=model, seed=seed,
                                    google_search=google_search)

    async def get_task(self, task_id: TaskId, model: TaskModel = None) -> CallToolResult:
        """A task's status: processing (with its stage), success (with its image URLs and
        cost) or failed (with failCode and failMsg)."""
        return await self._call(lambda: self.client.status(task_id, model=model),
                                results.task_status)

    async def list_tasks(self, state: States = None, model: ModelFilter = None,
                         limit: Limit = 20, cursor: Cursor = None) -> CallToolResult:
        """The key's tasks, newest first, a page at a time (nextCursor reads the next)."""
        return await self._call(lambda: self.client.list_tasks(
            state=state, model=model, limit=limit, cursor=cursor), results.task_page)

    async def cancel_task(self, task_id: TaskId, model: TaskModel = None) -> CallToolResult:
        """Cancel a task: a queued one ends at once and is refunded; a running one is stopped
        by its worker shortly (refunded unless it finishes first). An ended task cannot be
        (an error, status 409)."""
        return await self._call(lambda: self.client.cancel(task_id, model=model),
                                results.cancellation)

    async def get_balance(self) -> CallToolResult:
        """The key's balance: USD available now, what running tasks hold deducted."""
        return await self._call(self.client.balance, results.balance)

    async def list_models(self) -> CallToolResult:
        """The models the key may use: their aspect ratios, resolutions, output formats,
        limits (prompt length, references, images a task) and USD prices per image."""
        return await self._call(self.client.models, results.models)

    # ----------------------------------------------------------------------------------------

    async def _generate(self, ctx: ToolContext, prompt: str, images: list[str],
                        **options: Any) -> CallToolResult:
        try:
            references = [_reference(ref, f"images[{i}]") for i, ref in enumerate(images)]
            made = await self.client.generate(
                prompt, images=references, timeout=self.wait_timeout,
                on_progress=ProgressReporter(ctx), source=SOURCE, **options)
        except (ImagegateError, results.ReferenceProblem) as exc:
            return results.failure(exc)
        return results.generation(made, inline=self.inline_images)

    @staticmethod
    async def _call(request: Callable[[], Awaitable[T]],
                    render: Callable[[T], CallToolResult]) -> CallToolResult:
        try:
            found = await request()
        except ImagegateError as exc:
            return results.failure(exc)
        return render(found)


class ProgressReporter:
    """Sends each change of a task the SDK sees while waiting as a progress notification,
    when the client asked for them (a progressToken; otherwise the context sends nothing).
    ``progress`` counts the changes: it only grows, as the protocol requires, and there is
    no total, a generation's length being unknown."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.changes = 0

    async def __call__(self, progress: Progress) -> None:
        self.changes += 1
        await self.ctx.report_progress(self.changes, None, progress_message(progress))


def progress_message(progress: Progress) -> str:
    """``task ID: queued, position 2 in line (state processing, stage queued, queue position
    2)``: the words for a person, then the fields as the API names them."""
    fields = [f"state {progress.state}"]
    if progress.stage is not None:
        fields.append(f"stage {progress.stage}")
    if progress.queue_position is not None:
        fields.append(f"queue position {progress.queue_position}")
    words = describe(progress.state, progress.stage, progress.queue_position)
    return f"task {progress.task_id}: {words} ({', '.join(fields)})"


def _reference(ref: str, field: str) -> str:
    """A reference as the API takes it: a URL or data: URI as given, a local file as a data
    URI. Raises ReferenceProblem for a file that is missing, unreadable or not an image."""
    if ref.lower().startswith(_REMOTE):
        return ref
    path = Path(ref).expanduser()
    if not path.is_file():
        raise results.ReferenceProblem(field, f"no such file: {ref} (give an http(s) URL, a "
                                       "data: URI, or the path of an image file on the "
                                       "machine this server runs on)")
    try:
        return image_data_uri(path)
    except OSError as exc:
        raise results.ReferenceProblem(field, f"cannot read {ref}: {exc.strerror or exc}") \
            from exc
    except ValueError as exc:
        raise results.ReferenceProblem(field, str(exc)) from exc
