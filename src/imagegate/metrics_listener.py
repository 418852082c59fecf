"""The small HTTP listener through which ``imagegate worker`` and ``imagegate sweeper`` serve
``GET /metrics`` (on ``metrics_port``): those processes have no web app, and a scrape needs
the event loop the store runs on (the fleet-wide part reads the database).

It answers one request per connection and closes it: ``GET /metrics`` with the page, anything
else 404, a request that is not HTTP or that takes longer than ``REQUEST_TIMEOUT_S`` to arrive
nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from imagegate.errors import RequestError
from imagegate.metrics import CONTENT_TYPE

__all__ = ["serve_metrics"]

REQUEST_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 16 * 1024

Page = Callable[[], Awaitable[bytes]]


async def serve_metrics(host: str, port: int, page: Page) -> asyncio.Server:
    """Listen on ``host``:``port``; the started server (close it to stop). Raises
    ``RequestError`` naming the port when it cannot listen there."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(await _answer(head, page))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass  # not a scrape, or the scraper left: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        return await asyncio.start_server(handle, host, port, limit=MAX_HEAD_BYTES)
    except OSError as exc:
        raise RequestError(f"cannot serve metrics on {host} port {port} (metrics_port): "
                           f"{exc.strerror or exc}") from None


async def _answer(head: bytes, page: Page) -> bytes:
    method, _, rest = head.partition(b" ")
    target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    if method == b"GET" and target == b"/metrics":
        return _response("200 OK", CONTENT_TYPE, await page())
    return _response("404 Not Found", "text/plain; charset=utf-8", b"only GET /metrics here\n")


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body
