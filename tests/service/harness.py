"""The service in-process, for tests that drive it step by step: the use cases, the worker, the
sweeper and the dispatcher over the in-memory store and blobs, a ``FakeClock`` that moves only
when a test moves it, and callbacks answered by a scripted transport. No socket, no sleep: a
test runs in milliseconds and always in the same order.

    h = await Harness.open(worker_max_attempts=2)
    key = await h.key(credit="1")
    task_id = await h.submit(key, prompt="[sandbox:fail=Timeout:1] a fox")
    await h.work()                  # attempt 1 fails, retry due after the backoff
    h.clock.advance(2)
    await h.work()                  # attempt 2 succeeds
    assert (await h.status(key, task_id))["state"] == "success"
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp

from imagegate import accounts
from imagegate.api.app import create_app
from imagegate.blobs.base import BlobStore
from imagegate.blobs.memory import MemoryBlobStore
from imagegate.bootstrap import Api, build_api, build_runtime, open_seams, prepare_database
from imagegate.clock import FakeClock
from imagegate.config import Settings
from imagegate.events import TaskEvents
from imagegate.money import usd_to_micros
from imagegate.store.base import ApiKey
from imagegate.store.memory import MemoryStore
from imagegate.sweeper import Swept
from imagegate.tasks import Task
from imagegate.webhooks import CallbackPolicy

Answer = Callable[[httpx.Request], httpx.Response]
Scenario = Callable[["Harness"], Awaitable[None]]


async def _any_public_address(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]  # every callback host is a public one here; nothing is dialled


@dataclass
class Harness:
    api: Api
    clock: FakeClock
    store: MemoryStore
    blobs: BlobStore  # a MemoryBlobStore unless the test passed another
    callbacks: list[httpx.Request] = field(default_factory=list)
    answer: Answer = field(default=lambda request: httpx.Response(200))

    @classmethod
    async def open(cls, blobs: BlobStore | None = None, **settings: Any) -> Harness:
        config = Settings.load(env={}, **{"sandbox_delay_seconds": 0.0, **settings})
        clock, store, blobs = FakeClock(), MemoryStore(), blobs or MemoryBlobStore()
        holder: list[Harness] = []
        transport = httpx.MockTransport(lambda request: holder[0]._receive(request))
        policy = CallbackPolicy(allow_http=True, resolver=_any_public_address)
        # One process, one memory store: every change arrives as an event, none is re-read.
        seams = open_seams(config, store=store, blobs=blobs, clock=clock, transport=transport,
                           callbacks=policy, events=TaskEvents())
        harness = cls(build_api(seams, build_runtime(seams)), clock, store, blobs)
        holder.append(harness)
        await prepare_database(store, upgrade=True)
        return harness

    def _receive(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.callbacks.append(request)
        return self.answer(request)

    async def close(self) -> None:
        await self.api.stop()

    # Driving ----------------------------------------------------------------------------------

    async def key(self, credit: str = "10", **limits: Any) -> ApiKey:
        return (await self.new_key(credit, **limits)).key

    async def new_key(self, credit: str = "10", **limits: Any) -> accounts.NewKey:
        """A key on a new account, with its secret for ``http``."""
        return await accounts.create_key(self.store, self.clock,
                                         credit_micros=usd_to_micros(credit), **limits)

    def http(self, secret: str | None = None, *, streaming: bool = False) -> httpx.AsyncClient:
        """A client of the HTTP app over this harness's service, in-process (no socket), sending
        ``secret`` as its Bearer key. ``streaming``: answers arrive as the app sends them (an
        event stream can be read message by message) and closing one disconnects."""
        app = create_app(self.api.settings, build=lambda settings: self.api)
        app.state.api = self.api  # what the lifespan would set; the harness started the rest
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        transport = (StreamingASGITransport(app) if streaming
                     else httpx.ASGITransport(app=app))
        return httpx.AsyncClient(transport=transport, headers=headers,
                                 base_url="http://imagegate.test")

    async def submit(self, key: ApiKey, prompt: str = "a fox", model: str = "nano-banana-2",
                     **fields: Any) -> str:
        body = {"input": {"mode": "text-to-image", "prompt": prompt, "aspect_ratio": "1:1",
                          "resolution": "1k", **fields.pop("input", {})}, **fields}
        return await self.api.tasks.submit(key, model, body)

    async def work(self) -> int:
        """Run every attempt that is due now; how many ran."""
        assert self.api.runtime is not None and self.api.runtime.worker is not None
        return await self.api.runtime.worker.work_once()

    async def sweep(self) -> Swept:
        assert self.api.runtime is not None and self.api.runtime.sweeper is not None
        return await self.api.runtime.sweeper.sweep_once()

    async def deliver(self) -> int:
        assert self.api.runtime is not None and self.api.runtime.dispatcher is not None
        return await self.api.runtime.dispatcher.deliver_once()

    # Looking ----------------------------------------------------------------------------------

    async def status(self, key: ApiKey, task_id: str, model: str = "nano-banana-2",
                     ) -> dict[str, Any]:
        return (await self.api.tasks.status(key, model, task_id)).data

    async def task(self, task_id: str) -> Task:
        task = await self.store.get_task(task_id)
        assert task is not None
        return task

    async def balance(self, key: ApiKey) -> int:
        return await self.api.tasks.balance_micros(key)

    def callback_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.callbacks]

    async def settle(self, task_ids: list[str], *, step_s: float = 1.0,
                     rounds: int = 100) -> None:
        """Work and sweep, moving the clock ``step_s`` after each round, until every task of
        ``task_ids`` has ended (at most ``rounds`` rounds)."""
        for _ in range(rounds):
            await self.work()
            await self.sweep()
            if all([(await self.task(t)).state.terminal for t in task_ids]):
                return
            self.clock.advance(step_s)
        raise AssertionError(f"tasks still unfinished after {rounds} rounds")


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Calls an ASGI app in-process like ``httpx.ASGITransport``, but hands the answer over as
    soon as it starts and its body chunk by chunk as the app sends them (``ASGITransport``
    keeps everything until the app returns, which an endless event stream never does).
    Closing the answer tells the app the client has gone (``http.disconnect``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "http_version": "1.1", "method": request.method,
                 "headers": [(k.lower(), v) for k, v in request.headers.raw],
                 "scheme": request.url.scheme, "path": request.url.path,
                 "raw_path": request.url.raw_path.split(b"?")[0],
                 "query_string": request.url.query,
                 "server": (request.url.host, request.url.port),
                 "client": ("127.0.0.1", 123), "root_path": ""}
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        gone = asyncio.Event()
        unread = [body]

        async def receive() -> dict[str, Any]:
            if unread:
                return {"type": "http.request", "body": unread.pop(), "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.put_nowait(message["body"])
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        running = asyncio.ensure_future(self.app(scope, receive, send))
        await asyncio.wait({started, running}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            running.result()  # the app's error
            raise AssertionError("the app returned without answering")
        start = started.result()
        return httpx.Response(start["status"], headers=start.get("headers", []),
                              stream=_LiveBody(chunks, gone, running))


class _LiveBody(httpx.AsyncByteStream):
    def __init__(self, chunks: asyncio.Queue[bytes | None], gone: asyncio.Event,
                 running: asyncio.Future[None]) -> None:
        self.chunks, self.gone, self.running = chunks, gone, running

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.chunks.get()) is not None:
            yield chunk
        await self.running

    async def aclose(self) -> None:
        self.gone.set()
        await asyncio.wait({self.running})


def scenario(**settings: Any) -> Callable[[Scenario], None]:
    """Decorate a test's body: run ``body(harness)`` at once on a fresh harness opened with
    ``settings``, closing it afterwards."""
    def run(body: Scenario) -> None:
        async def go() -> None:
            h = await Harness.open(**settings)
            try:
                await body(h)
            finally:
                await h.close()

        asyncio.run(go())
    return run


def t2i(prompt: str = "a fox", **fields: Any) -> dict[str, Any]:
    """A text-to-image submit body (1:1, 1k), with ``fields`` beside its input."""
    return {"input": {"mode": "text-to-image", "prompt": prompt, "aspect_ratio": "1:1",
                      "resolution": "1k"}, **fields}
