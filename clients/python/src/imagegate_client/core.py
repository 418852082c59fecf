"""The client's operations, written once for both shells (effects.py says how).

``Core`` holds what a client is configured with and answers each public method as a ``Flow``:
the requests it makes, the retries (``call``), and what its answers become.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict, TypeVar, Unpack

from . import errors, images, wire
from .backoff import RetryPolicy
from .calls import call
from .effects import Flow
from .records import Cancellation, GeneratedImage, Generation, ModelInfo, TaskPage, TaskStatus
from .waiting import Waiter
from .wire import Request, Wire

__all__ = ["DEFAULT_MODEL", "Core", "SubmitOptions"]

DEFAULT_MODEL = "nano-banana-2"
T = TypeVar("T")
BASE_URL_VARIABLE = "IMAGEGATE_BASE_URL"
API_KEY_VARIABLE = "IMAGEGATE_API_KEY"


class SubmitOptions(TypedDict, total=False):
    """The keywords of ``submit`` and ``generate`` (docs/sdk.md). Left out: ``images`` (),
    ``aspect_ratio`` "auto", ``resolution`` "1k", ``output_format`` "png", ``google_search``
    False, ``model`` the client's, a new ``idempotency_key`` per call, the others not sent."""

    images: Sequence[str]
    model: str | None
    mode: str | None
    aspect_ratio: str
    resolution: str
    output_format: str
    google_search: bool
    num_images: int | None
    seed: int | None
    callback_url: str | None
    source: str | None
    idempotency_key: str | None


@dataclass(frozen=True)
class Core:
    """A configured client, without I/O. ``poll_interval``: seconds between status reads when
    the server cannot stream (the contract's 10 s; tests shorten it)."""

    wire: Wire
    model: str = DEFAULT_MODEL
    timeout: float = 60.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    poll_interval: float = 10.0

    @classmethod
    def configure(cls, base_url: str | None, api_key: str | None, *, model: str,
                  timeout: float, max_retries: int, poll_interval: float,
                  retry_base_delay: float, environ: Mapping[str, str] | None = None) -> Core:
        """Raises ValueError naming the argument (and the variable) when either is missing,
        or when the base URL is not an http(s) one."""
        env = os.environ if environ is None else environ
        base_url = base_url or env.get(BASE_URL_VARIABLE)
        api_key = api_key or env.get(API_KEY_VARIABLE)
        if not base_url:
            raise ValueError(f"base_url is missing: pass it or set {BASE_URL_VARIABLE}")
        if not base_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
        if not api_key:
            raise ValueError(f"api_key is missing: pass it or set {API_KEY_VARIABLE}")
        policy = RetryPolicy(max_retries=max_retries, base=retry_base_delay)
        return cls(Wire(base_url, api_key), model, timeout, policy, poll_interval)

    def _data(self, request: Request) -> Flow[Any]:
        reply = yield from call(self.policy, request)
        return wire.data_of(reply)

    def submit(self, prompt: str, **options: Unpack[SubmitOptions]) -> Flow[str]:
        unknown = options.keys() - SubmitOptions.__optional_keys__
        if unknown:
            raise TypeError(f"submit() got unexpected keyword arguments: {sorted(unknown)}")
        body = wire.submit_body(
            prompt, images=options.get("images", ()), mode=options.get("mode"),
            aspect_ratio=options.get("aspect_ratio", "auto"),
            resolution=options.get("resolution", "1k"),
            output_format=options.get("output_format", "png"),
            google_search=options.get("google_search", False),
            num_images=options.get("num_images"), seed=options.get("seed"),
            callback_url=options.get("callback_url"), source=options.get("source"))
        key = options.get("idempotency_key") or str(uuid.uuid4())
        model = options.get("model") or self.model
        data = yield from self._data(self.wire.submit(model, body, key))
        return wire.task_id_of(data)

    def status(self, task_id: str, *, model: str | None = None) -> Flow[TaskStatus]:
        model = model or self.model
        data = yield from self._data(self.wire.status(model, task_id))
        return wire.task_status(data, model)

    def wait(self, task_id: str, *, model: str | None = None, timeout: float | None = None,
             on_progress: Callable[[Any], Any] | None = None,
             first_poll_delay: float = 0.0) -> Flow[TaskStatus]:
        waiter = Waiter(self.wire, self.policy, model or self.model, task_id, timeout,
                        on_progress, self.poll_interval, self.timeout)
        return (yield from _about(task_id, waiter.run(first_poll_delay)))

    def generate(self, prompt: str, *, timeout: float | None = None,
                 on_progress: Callable[[Any], Any] | None = None,
                 **submit: Unpack[SubmitOptions]) -> Flow[Generation]:
        task_id = yield from self.submit(prompt, **submit)
        # The task was just made: the first status read waits a poll interval (contract §14).
        task = yield from self.wait(task_id, model=submit.get("model"), timeout=timeout,
                                    on_progress=on_progress,
                                    first_poll_delay=self.poll_interval)
        found = []
        for url in task.result_urls:
            found.append((yield from _about(task_id, self.download_image(url))))
        return Generation(task, tuple(found))

    def cancel(self, task_id: str, *, model: str | None = None) -> Flow[Cancellation]:
        data = yield from self._data(self.wire.cancel(model or self.model, task_id))
        return wire.cancellation(data)

    def list_tasks(self, *, state: str | Sequence[str] | None = None, model: str | None = None,
                   created_after: int | datetime | None = None,
                   created_before: int | datetime | None = None, limit: int | None = None,
                   cursor: str | None = None) -> Flow[TaskPage]:
        params = wire.list_params(state=state, model=model, created_after=created_after,
                                  created_before=created_before, limit=limit, cursor=cursor)
        data = yield from self._data(self.wire.tasks(params))
        return wire.task_page(data, model)

    def task_pages(self, *, state: str | Sequence[str] | None = None, model: str | None = None,
                   created_after: int | datetime | None = None,
                   created_before: int | datetime | None = None, limit: int | None = None,
                   cursor: str | None = None) -> Iterator[Flow[TaskPage]]:
        """The flows of the pages the filters select, in order, for ``iter_tasks``: a shell
        runs each before it takes the next, which starts where that page ended; none after
        the last page."""
        while True:
            ran: list[TaskPage] = []
            yield _into(ran, self.list_tasks(
                state=state, model=model, created_after=created_after,
                created_before=created_before, limit=limit, cursor=cursor))
            if not ran or ran[0].next_cursor is None:
                return
            cursor = ran[0].next_cursor

    def balance(self) -> Flow[Decimal]:
        return wire.balance((yield from self._data(self.wire.balance())))

    def models(self) -> Flow[list[ModelInfo]]:
        return wire.model_infos((yield from self._data(self.wire.models())))

    def download(self, url: str) -> Flow[bytes]:
        return (yield from self.download_image(url)).data

    def download_image(self, url: str) -> Flow[GeneratedImage]:
        """A result file's bytes; raises the mapped APIError (410 once expired, 404...)."""
        reply = yield from call(self.policy, Wire.download(url))
        if reply.status >= 300:
            raise wire.error_for(reply.status, reply.headers, reply.body)
        media = reply.media_type
        if not media.startswith("image/"):
            media = images.sniff_media_type(reply.body) or media or "application/octet-stream"
        return GeneratedImage(url, reply.body, media)


def _into(ran: list[T], flow: Flow[T]) -> Flow[T]:
    """``flow``, its result also appended to ``ran``."""
    result = yield from flow
    ran.append(result)
    return result


def _about(task_id: str, flow: Flow[T]) -> Flow[T]:
    """``flow``, its errors naming the task ``task_id`` (which they leave behind)."""
    try:
        return (yield from flow)
    except errors.ImagegateError as exc:
        if exc.task_id is None:
            exc.task_id = task_id
        raise
