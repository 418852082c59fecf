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
    server.add_tool(tools.generate_image, title="Generate an image", annotations=paid)
    server.add_tool(tools.edit_image, title="Edit images", annotations=paid)
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    server.add_tool(tools.get_task, title="Read a task", annotations=reads)
    server.add_tool(tools.list_tasks, title="List tasks", annotations=reads)
    server.add_tool(tools.cancel_task, title="Cancel a task", annotations=ToolAnnotations(
        read_only_hint=False, destructive_hint=True, idempotent_hint=True,
        open_world_hint=False))
    server.add_tool(tools.get_balance, title="Read the balance", annotations=reads)
    server.add_tool(tools.list_models, title="List the models", annotations=reads)
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
