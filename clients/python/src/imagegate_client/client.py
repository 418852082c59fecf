"""``Client``: the blocking shell over the core (core.py), performing its effects with
httpx.Client."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Sequence
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

__all__ = ["Client"]

T = TypeVar("T")


class _Stream:
    """The event stream a run has open, if any."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.chunks: Iterator[bytes] = iter(())

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        self.response, self.chunks = None, iter(())


class Client:
    """A blocking client of imagegate's task API, or of APIXO's (see docs/sdk.md).

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
                 transport: httpx.BaseTransport | None = None, poll_interval: float = 10.0,
                 retry_base_delay: float = 0.5) -> None:
        self._core = Core.configure(base_url, api_key, model=model, timeout=timeout,
                                    max_retries=max_retries, poll_interval=poll_interval,
                                    retry_base_delay=retry_base_delay)
        self._http = httpx.Client(transport=transport, timeout=timeout)

    @property
    def base_url(self) -> str:
        return self._core.wire.base_url

    @property
    def model(self) -> str:
        return self._core.model

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # The API --------------------------------------------------------------------------------

    def submit(self, prompt: str, **options: Unpack[SubmitOptions]) -> str:
        """Submit a task; its id. Retried safely: the same Idempotency-Key (``idempotency_key``,
        or a uuid4 made for this call) goes with every try, so the task is made and charged
        once."""
        return self._run(self._core.submit(prompt, **options))

    def status(self, task_id: str, *, model: str | None = None) -> TaskStatus:
        return self._run(self._core.status(task_id, model=model))

    def wait(self, task_id: str, *, model: str | None = None, timeout: float | None = None,
             on_progress: Callable[[Progress], object] | None = None) -> TaskStatus:
        """The task once it has succeeded. Raises TaskFailed when it failed, WaitTimeout after
        ``timeout`` seconds (None: no limit). ``on_progress`` is called on every change."""
        return self._run(self._core.wait(task_id, model=model, timeout=timeout,
                                         on_progress=on_progress))

    def generate(self, prompt: str, *, timeout: float | None = None,
                 on_progress: Callable[[Progress], object] | None = None,
                 **options: Unpack[SubmitOptions]) -> Generation:
        """Submit, wait, and download every result image (raises as submit and wait do)."""
        return self._run(self._core.generate(prompt, timeout=timeout,
                                            on_progress=on_progress, **options))

    def cancel(self, task_id: str, *, model: str | None = None) -> Cancellation:
        return self._run(self._core.cancel(task_id, model=model))

    def list_tasks(self, *, state: str | Sequence[str] | None = None, model: str | None = None,
                   created_after: int | datetime | None = None,
                   created_before: int | datetime | None = None, limit: int | None = None,
                   cursor: str | None = None) -> TaskPage:
        """One page of the key's tasks, newest first (``model`` None: every model)."""
        return self._run(self._core.list_tasks(
            state=state, model=model, created_after=created_after,
            created_before=created_before, limit=limit, cursor=cursor))

    def iter_tasks(self, *, state: str | Sequence[str] | None = None, model: str | None = None,
                   created_after: int | datetime | None = None,
                   created_before: int | datetime | None = None, limit: int | None = None,
                   cursor: str | None = None) -> Iterator[TaskStatus]:
        """Every task the filters select, page after page (``limit`` per page)."""
        for page in self._core.task_pages(state=state, model=model, created_after=created_after,
                                          created_before=created_before, limit=limit,
                                          cursor=cursor):
            yield from self._run(page).tasks

    def balance(self) -> Decimal:
        return self._run(self._core.balance())

    def models(self) -> list[ModelInfo]:
        return self._run(self._core.models())

    def download(self, url: str) -> bytes:
        return self._run(self._core.download(url))

    # The shell ------------------------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        stepper, stream = Stepper(flow), _Stream()
        try:
            while not stepper.done:
                try:
                    value = self._perform(stepper.effect, stream)
                except APIConnectionError as exc:
                    stepper.fail(exc)
                else:
                    stepper.resolve(value)
            return cast(T, stepper.result)
        finally:
            stream.close()
            stepper.close()

    def _perform(self, effect: Effect, stream: _Stream) -> Any:
        match effect:
            case Send(request):
                stream.close()
                return self._send(request)
            case OpenStream(request, read_timeout):
                return self._open(request, read_timeout, stream)
            case ReadStream():
                return self._read(stream)
            case Sleep(seconds):
                time.sleep(seconds)
            case Notify(callback, progress):
                outcome = callback(progress)
                if inspect.isawaitable(outcome):
                    if inspect.iscoroutine(outcome):
                        outcome.close()  # never to run: no "never awaited" warning at exit
                    raise TypeError("on_progress returned an awaitable, which Client cannot "
                                    "await: pass a plain function, or use AsyncClient")
        return None

    def _send(self, request: Request) -> Reply:
        try:
            built = httpx_adapter.http_request(self._http, request, self._core.timeout)
            response = self._http.send(built, follow_redirects=request.follow_redirects)
        except httpx.RequestError as exc:
            raise httpx_adapter.connection_error(exc, request) from exc
        return httpx_adapter.reply(response, response.content)

    def _open(self, request: Request, read_timeout: float, stream: _Stream) -> Reply:
        stream.close()
        built = httpx_adapter.http_request(self._http, request, self._core.timeout, read_timeout)
        try:
            response = self._http.send(built, stream=True)
            if not httpx_adapter.is_event_stream(response):
                try:
                    return httpx_adapter.reply(response, response.read())
                finally:
                    response.close()
        except httpx.RequestError as exc:
            raise httpx_adapter.connection_error(exc, request) from exc
        stream.response, stream.chunks = response, response.iter_bytes()
        return httpx_adapter.reply(response, b"")

    @staticmethod
    def _read(stream: _Stream) -> bytes:
        try:
            return next(stream.chunks, b"")
        except httpx.RequestError as exc:
            raise httpx_adapter.connection_error(exc, Request("GET", "stream")) from exc
