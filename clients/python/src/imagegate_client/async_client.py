"""``AsyncClient``: the asyncio shell over the core (core.py), performing its effects with
httpx.AsyncClient. The same operations as ``Client``, awaited."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar, Unpack, cast

import httpx

from . import httpx_adapter
from .core import DEFAULT_MODEL, Core, SubmitOptions
from .effects import Effect, Flow, Notify, OpenStream, ReadStream, Send, Sleep, Stepper
from .errors import APIConnectionError
from .records import Cancellation, Generation, ModelInfo, Progress, TaskPage, TaskStatus
from .wire import Reply, Request

__all__ = ["AsyncClient"]

T = TypeVar("T")


class _Stream:
    """The event stream a run has open, if any."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.chunks: AsyncIterator[bytes] | None = None

    async def close(self) -> None:
        if self.response is not None:
            await self.response.aclose()
        self.response, self.chunks = None, None


class AsyncClient:
    """An asyncio client of imagegate's task API, or of APIXO's (see docs/sdk.md).

    ``base_url`` and ``api_key`` default to IMAGEGATE_BASE_URL and IMAGEGATE_API_KEY.
    ``timeout``: seconds for each HTTP request to connect, and between its bytes (a call that
    waits for one of the client's connections, all busy with other calls, waits as long as
    it takes). ``max_retries``: retries of one request after a
    connection failure, a 429 or a 5xx (exponential backoff from ``retry_base_delay`` s, with
    jitter; Retry-After is honoured). ``poll_interval``: seconds between status reads when the
    server cannot stream. ``transport``: httpx's transport seam (tests, proxies).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 model: str = DEFAULT_MODEL, timeout: float = 60.0, max_retries: int = 3,
                 transport: httpx.AsyncBaseTransport | None = None, poll_interval: float = 10.0,
                 retry_base_delay: float = 0.5) -> None:
        self._core = Core.configure(base_url, api_key, model=model, timeout=timeout,
                                    max_retries=max_retries, poll_interval=poll_interval,
                                    retry_base_delay=retry_base_delay)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    @property
    def base_url(self) -> str:
        return self._core.wire.base_url

    @property
    def model(self) -> str:
        return self._core.model

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # The API --------------------------------------------------------------------------------

    async def submit(self, prompt: str, **options: Unpack[SubmitOptions]) -> str:
        """Submit a task; its id. Retried safely: the same Idempotency-Key (``idempotency_key``,
        or a uuid4 made for this call) goes with every try, so the task is made and charged
        once."""
        return await self._run(self._core.submit(prompt, **options))

    async def status(self, task_id: str, *, model: str | None = None) -> TaskStatus:
        return await self._run(self._core.status(task_id, model=model))

    async def wait(self, task_id: str, *, model: str | None = None,
                   timeout: float | None = None,  # noqa: ASYNC109 (the same as Client.wait)
                   on_progress: Callable[[Progress], object] | None = None) -> TaskStatus:
        """The task once it has succeeded. Raises TaskFailed when it failed, WaitTimeout after
        ``timeout`` seconds (None: no limit). ``on_progress`` is called on every change."""
        return await self._run(self._core.wait(task_id, model=model, timeout=timeout,
                                               on_progress=on_progress))

    async def generate(self, prompt: str, *,
                       timeout: float | None = None,  # noqa: ASYNC109 (the same as Client's)
                       on_progress: Callable[[Progress], object] | None = None,
                       **options: Unpack[SubmitOptions]) -> Generation:
        """Submit, wait, and download every result image (raises as submit and wait do)."""
        return await self._run(self._core.generate(prompt, timeout=timeout,
                                                  on_progress=on_progress, **options))

    async def cancel(self, task_id: str, *, model: str | None = None) -> Cancellation:
        return await self._run(self._core.cancel(task_id, model=model))

    async def list_tasks(self, *, state: str | Sequence[str] | None = None,
                         model: str | None = None,
                         created_after: int | datetime | None = None,
                         created_before: int | datetime | None = None, limit: int | None = None,
                         cursor: str | None = None) -> TaskPage:
        """One page of the key's tasks, newest first (``model`` None: every model)."""
        return await self._run(self._core.list_tasks(
            state=state, model=model, created_after=created_after,
            created_before=created_before, limit=limit, cursor=cursor))

    async def iter_tasks(self, *, state: str | Sequence[str] | None = None,
                         model: str | None = None,
                         created_after: int | datetime | None = None,
                         created_before: int | datetime | None = None, limit: int | None = None,
                         cursor: str | None = None) -> AsyncIterator[TaskStatus]:
        """Every task the filters select, page after page (``limit`` per page)."""
        for page in self._core.task_pages(state=state, model=model, created_after=created_after,
                                          created_before=created_before, limit=limit,
                                          cursor=cursor):
            for task in (await self._run(page)).tasks:
                yield task

    async def balance(self) -> Decimal:
        return await self._run(self._core.balance())

    async def models(self) -> list[ModelInfo]:
        return await self._run(self._core.models())

    async def download(self, url: str) -> bytes:
        return await self._run(self._core.download(url))

    # The shell ------------------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        stepper, stream = Stepper(flow), _Stream()
        try:
            while not stepper.done:
                try:
                    value = await self._perform(stepper.effect, stream)
                except APIConnectionError as exc:
                    stepper.fail(exc)
                else:
                    stepper.resolve(value)
            return cast(T, stepper.result)
        finally:
            await stream.close()
            stepper.close()

    async def _perform(self, effect: Effect, stream: _Stream) -> Any:
        match effect:
            case Send(request):
                await stream.close()
                return await self._send(request)
            case OpenStream(request, read_timeout):
                return await self._open(request, read_timeout, stream)
            case ReadStream():
                return await self._read(stream)
            case Sleep(seconds):
                await asyncio.sleep(seconds)
            case Notify(callback, progress):
                outcome = callback(progress)
                if inspect.isawaitable(outcome):
                    await outcome
        return None

    async def _send(self, request: Request) -> Reply:
        built = httpx_adapter.http_request(self._http, request, self._core.timeout)
        try:
            response = await self._http.send(built, follow_redirects=request.follow_redirects)
        except httpx.RequestError as exc:
            raise httpx_adapter.connection_error(exc, request) from exc
        return httpx_adapter.reply(response, response.content)

    async def _open(self, request: Request, read_timeout: float, stream: _Stream) -> Reply:
        await stream.close()
        built = httpx_adapter.http_request(self._http, request, self._core.timeout, read_timeout)
        try:
            response = await self._http.send(built, stream=True)
            if not httpx_adapter.is_event_stream(response):
                try:
                    return httpx_adapter.reply(response, await response.aread())
                finally:
                    await response.aclose()
        except httpx.RequestError as exc:
            raise httpx_adapter.connection_error(exc, request) from exc
        stream.response, stream.chunks = response, response.aiter_bytes()
        return httpx_adapter.reply(response, b"")

    @staticmethod
    async def _read(stream: _Stream) -> bytes:
        if stream.chunks is None:
            return b""
        try:
            return await anext(stream.chunks, b"")
        except httpx.RequestError as exc:
            raise httpx_adapter.connection_error(exc, Request("GET", "stream")) from exc
