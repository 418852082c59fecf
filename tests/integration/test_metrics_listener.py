"""The listener through which the worker and the sweeper serve /metrics, on loopback."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from imagegate.errors import RequestError
from imagegate.metrics import CONTENT_TYPE
from imagegate.metrics_listener import serve_metrics

PAGE = b"# a page\nimagegate_up 1.0\n"


async def page() -> bytes:
    return PAGE


def test_the_listener_answers_get_metrics_and_nothing_else() -> None:
    async def scenario() -> list[httpx.Response]:
        server = await serve_metrics("127.0.0.1", 0, page)
        port = server.sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(trust_env=False) as c:
                return [await c.get(f"{base}/metrics?name[]=x"), await c.get(f"{base}/"),
                        await c.delete(f"{base}/metrics")]
        finally:
            server.close()
            await server.wait_closed()

    scraped, root, deleted = asyncio.run(scenario())
    assert (scraped.status_code, scraped.content) == (200, PAGE)
    assert scraped.headers["content-type"] == CONTENT_TYPE
    assert (root.status_code, deleted.status_code) == (404, 404)


def test_a_port_in_use_is_refused_by_name() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RequestError, match=f"cannot serve metrics on 127.0.0.1 port {port}"):
            asyncio.run(serve_metrics("127.0.0.1", port, page))
