"""The MCP server: the tools (tools.py) on the official ``mcp`` SDK's MCPServer, run on stdio
or on streamable HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from imagegate_client import AsyncClient
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from imagegate import __version__
from imagegate.mcp.tools import Tools

INSTRUCTIONS = """\
Makes and edits images with an imagegate (or APIXO-compatible) image service. generate_image \
and edit_image wait for the task and answer the images with their URLs and the task id; every \
image is billed (list_models shows the prices, get_balance the money left). A task that fails \
answers an error with its failCode and failMsg. get_task, list_tasks and cancel_task work on \
tasks by id."""


@dataclass(frozen=True)
class Listen:
    """Where the streamable HTTP transport listens; its endpoint is ``/mcp``."""

    host: str
    port: int


def build(tools: Tools) -> MCPServer[object]:
    """The MCP server with every tool of ``tools``."""
    server: MCPServer[object] = MCPServer(
        "imagegate", title="imagegate images", version=__version__,
        instructions=INSTRUCTIONS, log_level="WARNING")
    paid = ToolAnnotations(read_only_hint=False, destructive_hint=False,
                           idempotent_hint=False, open_world_hint=True)
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    cancels = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                              idempotent_hint=True, open_world_hint=False)
    for fn, title, hints in (
            (tools.generate_image, "Generate an image", paid),
            (tools.edit_image, "Edit images", paid),
            (tools.get_task, "Read a task", reads),
            (tools.list_tasks, "List tasks", reads),
            (tools.cancel_task, "Cancel a task", cancels),
            (tools.get_balance, "Read the balance", reads),
            (tools.list_models, "List the models", reads)):
        # The docstring, as one paragraph, is the description the assistant reads.
        server.add_tool(fn, title=title, description=" ".join((fn.__doc__ or "").split()),
                        annotations=hints)
    return server


async def serve(client: AsyncClient, *, wait_timeout: float | None,
                inline_images: bool = True, listen: Listen | None = None) -> None:
    """Serve the tools over ``client`` until the client hangs up (stdio) or the process is
    stopped (HTTP, when ``listen`` is given); the SDK client is closed after."""
    async with client:
        server = build(Tools(client, wait_timeout=wait_timeout, inline_images=inline_images))
        if listen is None:
            await server.run_stdio_async()
        else:
            await server.run_streamable_http_async(host=listen.host, port=listen.port)
