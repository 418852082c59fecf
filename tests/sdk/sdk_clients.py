"""Both clients behind one blocking face, so that one scenario runs on each; and transports that
lose an answer after the server has acted on the request."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import httpx
from imagegate_client import AsyncClient, Client

POLL = 0.2  # the contract's 10 s between status reads, shortened for tests


def _is_submit(request: httpx.Request) -> bool:
    return request.method == "POST" and "/generateTask/" in request.url.path


class LosesFirstSubmitAnswer(httpx.BaseTransport):
    """Forwards every request to the network; the first submit's answer, once the server has
    sent it (the task made and paid for), is dropped as if the connection broke."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if _is_submit(request) and not self.lost:
            response.read()
            response.close()
            self.lost += 1
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncLosesFirstSubmitAnswer(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if _is_submit(request) and not self.lost:
            await response.aread()
            await response.aclose()
            self.lost += 1
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Blocking:
    """An AsyncClient called from blocking code: each coroutine runs to its end on one event
    loop kept for the client's life; ``iter_tasks`` answers a list."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._runner = asyncio.Runner()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name == "iter_tasks":
            return lambda **kw: self._runner.run(_collect(attr(**kw)))
        if inspect.iscoroutinefunction(attr):
            return lambda *args, **kw: self._runner.run(attr(*args, **kw))
        return attr

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]




def losing_transport(kind: str) -> LosesFirstSubmitAnswer | AsyncLosesFirstSubmitAnswer:
    return LosesFirstSubmitAnswer() if kind == "sync" else AsyncLosesFirstSubmitAnswer()


def make_client(kind: str, base_url: str, api_key: str, **options: Any) -> Any:
    """A Client, or an AsyncClient behind ``Blocking`` (``kind`` "sync" or "async")."""
    options.setdefault("poll_interval", POLL)
    options.setdefault("retry_base_delay", 0.05)
    if kind == "sync":
        return Client(base_url, api_key, **options)
    return Blocking(AsyncClient(base_url, api_key, **options))
