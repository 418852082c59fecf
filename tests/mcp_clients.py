"""The ``mcp`` SDK's own client against ``imagegate mcp``: on stdio (the server a subprocess of
the client) or over streamable HTTP, driven from plain pytest functions through an anyio
portal, so that one session serves a whole test module."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, Tool
from serverproc import free_port

# Where the service cannot stream a task's progress the SDK polls, by default every 10 s.
FAST_POLLS = ("--poll-interval", "0.1")


@dataclass(frozen=True)
class Notice:
    """One progress notification, as the client received it."""

    progress: float
    total: float | None
    message: str | None


@dataclass
class McpUser:
    """A connected, initialized MCP client session, called from synchronous tests."""

    portal: BlockingPortal
    session: ClientSession
    notices: list[Notice] = field(default_factory=list)

    def tools(self) -> dict[str, Tool]:
        listed = self.portal.call(self.session.list_tools)
        return {tool.name: tool for tool in listed.tools}

    def call(self, name: str, arguments: dict[str, Any] | None = None, *,
             progress: bool = False) -> CallToolResult:
        """Call a tool; with ``progress``, ask for progress notifications (they go to
        ``notices``, emptied first)."""
        self.notices.clear()
        callback = self._notice if progress else None
        return self.portal.call(lambda: self.session.call_tool(
            name, arguments or {}, progress_callback=callback))

    async def _notice(self, progress: float, total: float | None, message: str | None) -> None:
        self.notices.append(Notice(progress, total, message))


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagegate.cli", "mcp", *FAST_POLLS, *args]


@contextmanager
def stdio_user(base_url: str, key: str, log: Path, *args: str) -> Iterator[McpUser]:
    """``imagegate mcp ARGS`` started by the SDK's stdio client with the service and key in
    its environment, as an assistant's configuration sets them; its stderr goes to ``log``."""
    params = StdioServerParameters(
        command=sys.executable, args=command(*args)[1:],
        env={"IMAGEGATE_BASE_URL": base_url, "IMAGEGATE_API_KEY": key})
    with log.open("a") as errlog, start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(_stdio_session(params, errlog)) as session:
        yield McpUser(portal, session)


@asynccontextmanager
async def _stdio_session(params: StdioServerParameters,
                         errlog: TextIO) -> AsyncIterator[ClientSession]:
    async with stdio_client(params, errlog=errlog) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


@contextmanager
def http_server(base_url: str, key: str, log: Path) -> Iterator[str]:
    """``imagegate mcp --http PORT`` as a process of its own: yields its MCP endpoint's URL
    once it accepts connections, and stops it on exit."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "IMAGEGATE_BASE_URL": base_url, "IMAGEGATE_API_KEY": key}
    with log.open("a") as errlog:
        proc = subprocess.Popen(command("--http", str(port)), stdin=subprocess.DEVNULL,
                                stdout=errlog, stderr=errlog, env=env)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        _wait_listening(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_listening(proc: subprocess.Popen[bytes], url: str, log: Path,
                    timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"imagegate mcp --http exited early:\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"imagegate mcp --http not listening in {timeout}s:\n{log.read_text()}")


@contextmanager
def http_user(url: str) -> Iterator[McpUser]:
    """The SDK's streamable HTTP client, connected to ``url``."""
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(_http_session(url)) as session:
        yield McpUser(portal, session)


@asynccontextmanager
async def _http_session(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session
