"""Streaming a task over HTTP (docs/contract.md §15, "Extension: streaming a task"): Server-Sent
Events of each change of state, stage and queue position, and a ``done`` event with the status
answer; resumable with Last-Event-ID; JSON errors before the stream starts; nothing left
behind when the client goes away.

Each stream is read message by message beside the harness's worker in one event loop
(``Harness.http(streaming=True)``); a message the test waits for that never comes fails the
test after ``PATIENCE_S`` instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from harness import Harness, scenario, t2i
from starlette.types import ASGIApp
from starlette.types import Message as AsgiMessage

from imagegate.api.app import create_app

STREAM = "/api/v1/streamTask/nano-banana-2"
STATUS = "/api/v1/statusTask/nano-banana-2"
SUBMIT = "/api/v1/generateTask/nano-banana-2"
PATIENCE_S = 30.0

Message = dict[str, Any]


class Reader:
    """The messages of one event stream, parsed as EventSource does: ``event``, ``id``,
    ``data`` (decoded JSON), ``retry``, and ``comment`` for a comment line."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> Message | None:
        """The next message; None when the stream has ended."""
        return await asyncio.wait_for(self._next(), PATIENCE_S)

    async def _next(self) -> Message | None:
        message: Message = {}
        async for line in self._lines:
            if not line:
                if message:
                    return message
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if not name:
                message["comment"] = value
            elif name == "data":
                message["data"] = json.loads(value)
                message["raw"] = value
            else:
                message[name] = value
        return message or None

    async def rest(self) -> list[Message]:
        """Every message until the stream ends."""
        found = []
        while (message := await self.next()) is not None:
            found.append(message)
        return found

    async def status(self) -> Message:
        """The next message that is not a keep-alive."""
        while True:
            message = await self.next()
            assert message is not None, "the stream ended"
            if "comment" not in message:
                return message


@asynccontextmanager
async def streaming(c: httpx.AsyncClient, task_id: str,
                    last_event_id: str | None = None) -> AsyncIterator[Reader]:
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    async with c.stream("GET", STREAM, params={"taskId": task_id}, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        yield Reader(r)


async def submit(c: httpx.AsyncClient, prompt: str = "a fox") -> str:
    r = await c.post(SUBMIT, json=t2i(prompt))
    assert r.status_code == 200, r.text
    task_id: str = r.json()["data"]["taskId"]
    return task_id


def quick_positions(h: Harness) -> None:
    """Queue positions read as often as the harness likes (the default is once a second)."""
    h.api.streams.positions.interval_s = 0.01


def test_a_stream_shows_every_state_and_stage_then_the_status_answer() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                headers = s.response.headers
                assert headers["content-type"] == "text/event-stream"
                assert headers["cache-control"] == "no-cache"
                assert headers["x-accel-buffering"] == "no"
                assert "content-length" not in headers
                first = await s.next()
                assert first is not None
                assert first["retry"] == "1000"
                assert first["event"] == "status"
                assert first["data"] == {**await h.status(new.key, task_id), "queuePosition": 1}
                assert await h.work() == 1
                rest = await s.rest()
            final = await c.get(STATUS, params={"taskId": task_id})
        events = [first, *rest]
        assert [(m["event"], m["data"].get("stage")) for m in events[:-1]] == [
            ("status", "queued"), ("status", "running"), ("status", "generating"),
            ("status", "storing")]
        assert all(m["data"]["state"] == "processing" for m in events[:-1])
        assert "queuePosition" not in events[1]["data"]
        done = events[-1]
        assert done["event"] == "done"
        assert done["raw"].encode() == final.content
        assert done["data"]["data"]["state"] == "success"
        assert len({m["id"] for m in events}) == len(events)
        assert h.api.seams.events.watching == 0
        assert h.api.streams.positions.tracked == 0


def test_an_image_to_image_task_shows_its_fetching_stage() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key, input={
            "mode": "image-to-image", "image_urls": ["http://refs.example/a.png"]})
        async with h.http(new.plain, streaming=True) as c, streaming(c, task_id) as s:
            await s.next()
            await h.work()
            stages = [m["data"].get("stage") for m in await s.rest()]
        assert stages[:2] == ["running", "fetching"]


def test_the_queue_position_counts_down_as_earlier_tasks_are_claimed() -> None:
    @scenario(worker_concurrency=1)
    async def _(h: Harness) -> None:
        quick_positions(h)
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            ahead = []
            for prompt in ("first", "second"):
                ahead.append(await submit(c, prompt))
                h.clock.advance(1)  # the queue's order is the submits' (ties go by task id)
            task_id = await submit(c, "third")
            async with streaming(c, task_id) as s:
                positions = [(await s.status())["data"]["queuePosition"]]
                for _ in ahead:
                    await h.work()
                    positions.append((await s.status())["data"]["queuePosition"])
                await h.work()
                running = await s.status()
                assert (await s.rest())[-1]["event"] == "done"
        assert positions == [3, 2, 1]
        assert running["data"]["stage"] == "running"
        assert "queuePosition" not in running["data"]
        assert [(await h.task(t)).state.value for t in ahead] == ["succeeded", "succeeded"]


def test_the_queue_position_counts_other_models_and_retries_once_they_are_due() -> None:
    @scenario(worker_max_attempts=2, worker_retry_backoff_seconds=5)
    async def _(h: Harness) -> None:
        quick_positions(h)
        new = await h.new_key()
        retried = await h.submit(new.key, prompt="[sandbox:fail=Timeout:1] a fox")
        await h.work()  # its first attempt fails: it waits 5 s for its second
        h.clock.advance(1)
        async with h.http(new.plain, streaming=True) as c:
            r = await c.post("/api/v1/generateTask/nano-banana-pro", json=t2i("first"))
            assert r.status_code == 200, r.text
            h.clock.advance(1)
            task_id = await submit(c, "second")
            async with streaming(c, task_id) as s:
                before_due = (await s.status())["data"]["queuePosition"]
                h.clock.advance(5)  # the retry is due: a worker would take it first
                once_due = (await s.status())["data"]["queuePosition"]
        assert (await h.task(retried)).stage == "retrying"
        assert (before_due, once_due) == (2, 3)


def test_streams_of_many_queued_tasks_share_one_position_read() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key(max_concurrent_tasks=20)
        async with h.http(new.plain, streaming=True) as c:
            task_ids = []
            for i in range(10):
                task_ids.append(await submit(c, f"fox {i}"))
                h.clock.advance(1)
            before = h.api.streams.positions.reads
            opened = [streaming(c, t) for t in task_ids]
            readers = await asyncio.gather(*(o.__aenter__() for o in opened))
            firsts = await asyncio.gather(*(r.next() for r in readers))
            reads = h.api.streams.positions.reads - before
            for o in opened:
                await o.__aexit__(None, None, None)
        assert [(m or {})["data"]["queuePosition"] for m in firsts] == list(range(1, 11))
        assert reads == 1  # the streams that opened together share one read
        assert h.api.streams.positions.tracked == 0


def test_a_stream_resumed_with_the_last_event_id_does_not_repeat_it() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                seen = await s.next()
            assert seen is not None
            async with streaming(c, task_id, last_event_id=seen["id"]) as s:
                opened = await s.next()
                await h.work()
                rest = await s.rest()
        assert opened == {"comment": "keep-alive", "retry": "1000"}
        assert [m["data"].get("stage") for m in rest[:-1]] == ["running", "generating",
                                                                 "storing"]
        assert rest[-1]["event"] == "done"
        assert seen["id"] not in {m["id"] for m in rest}


def test_a_stream_resumed_with_an_old_event_id_shows_the_task_now() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                seen = await s.next()
            assert seen is not None
            await h.api.tasks.cancel(new.key, "nano-banana-2", task_id)
            async with streaming(c, task_id, last_event_id=seen["id"]) as s:
                rest = await s.rest()
        assert [m["event"] for m in rest] == ["done"]


def test_a_finished_task_answers_one_done_event() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        await h.work()
        async with h.http(new.plain, streaming=True) as c:
            async with streaming(c, task_id) as s:
                messages = await s.rest()
            final = await c.get(STATUS, params={"taskId": task_id})
        assert len(messages) == 1
        assert messages[0]["event"] == "done" and messages[0]["retry"] == "1000"
        assert messages[0]["raw"].encode() == final.content
        assert h.api.seams.events.watching == 0


def test_a_cancelled_task_streams_its_failed_end() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                await s.next()
                r = await c.post("/api/v1/cancelTask/nano-banana-2", params={"taskId": task_id})
                assert r.json()["data"]["state"] == "canceled", r.text
                rest = await s.rest()
        assert [m["event"] for m in rest] == ["done"]
        data = rest[0]["data"]["data"]
        assert (data["state"], data["failCode"]) == ("failed", "Canceled")


def test_a_retried_task_streams_its_wait_and_its_second_attempt() -> None:
    @scenario(worker_max_attempts=2, worker_retry_backoff_seconds=1)
    async def _(h: Harness) -> None:
        quick_positions(h)
        new = await h.new_key()
        task_id = await h.submit(new.key, prompt="[sandbox:fail=Timeout:1] a fox")
        async with h.http(new.plain, streaming=True) as c, streaming(c, task_id) as s:
            await s.next()
            await h.work()
            first = [await s.status() for _ in range(3)]
            h.clock.advance(2)
            await h.work()
            second = await s.rest()
        assert [m["data"]["stage"] for m in first] == ["running", "generating", "retrying"]
        assert first[-1]["data"]["queuePosition"] == 1
        assert [m["data"].get("stage") for m in second[:3]] == ["running", "generating",
                                                                "storing"]
        assert second[-1]["data"]["data"]["state"] == "success"


def test_errors_before_the_stream_are_json_envelopes() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new, other = await h.new_key(), await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain, streaming=True) as c:
            missing = await c.get(STREAM)
            unknown = await c.get(STREAM, params={"taskId": "nope"})
            other_model = await c.get("/api/v1/streamTask/another-model",
                                      params={"taskId": task_id})
            bad_key = await c.get(STREAM, params={"taskId": task_id},
                                  headers={"authorization": "Bearer wrong"})
        async with h.http(other.plain, streaming=True) as c:
            not_theirs = await c.get(STREAM, params={"taskId": task_id})
        assert missing.status_code == 400
        assert missing.json()["data"]["field"] == "taskId"
        assert bad_key.status_code == 401
        for r in (unknown, other_model, not_theirs):
            assert r.status_code == 404, r.text
            assert r.headers["content-type"] == "application/json"
            assert r.json()["code"] == 404
        assert h.api.seams.events.watching == 0


def test_a_head_request_answers_the_headers_and_keeps_nothing_open() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            r = await c.head(STREAM, params={"taskId": task_id})
            unknown = await c.head(STREAM, params={"taskId": "nope"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.content == b""  # no body frame, not even the first event's
        assert unknown.status_code == 404
        assert h.api.seams.events.watching == 0


def test_a_client_that_goes_away_leaves_no_subscription() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                await s.next()
                assert h.api.seams.events.watching == 1
                assert h.api.streams.positions.tracked == 1
        assert h.api.seams.events.watching == 0
        assert h.api.streams.positions.tracked == 0


def test_streams_end_when_the_service_shuts_down() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                await s.next()
                await h.api.streams.close()
                assert await s.rest() == []
        assert h.api.seams.events.watching == 0


def test_a_quiet_stream_sends_keep_alives_and_ends_after_its_longest_time() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        h.api.streams.keep_alive_s = 0.01
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                await s.next()
                assert await s.next() == {"comment": "keep-alive"}
                h.api.streams.max_duration_s = 0.0  # for streams opened from now on
            async with streaming(c, task_id) as s:
                rest = await s.rest()
        assert [m["event"] for m in rest] == ["status"]
        assert h.api.seams.events.watching == 0


async def opening(c: httpx.AsyncClient, task_id: str) -> httpx.Response:
    """The answer to a stream request, its body read only when it is not a stream (an open
    stream is closed at once)."""
    async with c.stream("GET", STREAM, params={"taskId": task_id}) as r:
        if r.status_code != 200:
            await r.aread()
        return r


async def messages_until_the_end(s: Reader, most: int) -> list[Message] | None:
    """The stream's messages until it ends; None when it sent ``most`` without ending."""
    found = []
    while (message := await s.next()) is not None:
        found.append(message)
        if len(found) >= most:
            return None
    return found


def test_a_stream_ends_when_its_key_is_revoked_and_its_client_then_gets_401() -> None:
    @scenario(auth_cache_seconds=0)
    async def _(h: Harness) -> None:
        h.api.streams.keys.interval_s = 0.01  # the keys of open streams are read often
        new = await h.new_key()
        async with h.http(new.plain, streaming=True) as c:
            task_id = await submit(c)
            async with streaming(c, task_id) as s:
                assert (await s.next())["event"] == "status"
                await h.store.revoke_key(new.key.id, h.clock.now_ms())
                rest = await messages_until_the_end(s, most=200)
            again = await opening(c, task_id)
        assert rest is not None, "the revoked key's stream went on"
        assert all("comment" in m for m in rest), rest  # no done: the task did not end
        assert again.status_code == 401
        assert h.api.seams.events.watching == 0


def test_a_key_holds_a_bounded_number_of_streams_and_one_more_is_429() -> None:
    @scenario(limits_max_concurrent_tasks=3)
    async def _(h: Harness) -> None:
        h.api.streams.keys.slots.most = 3
        new, other = await h.new_key(), await h.new_key()
        async with h.http(new.plain, streaming=True) as c, \
                h.http(other.plain, streaming=True) as o:
            task_id = await submit(c)
            async with streaming(c, task_id), streaming(c, task_id), \
                    streaming(c, task_id) as third:
                await third.next()
                refused = await opening(c, task_id)
                head = await c.head(STREAM, params={"taskId": task_id})
                async with streaming(o, await submit(o)) as others:  # another key's own
                    assert (await others.next())["event"] == "status"
            assert h.api.streams.open_of(new.key) == 0
            async with streaming(c, task_id) as again:  # closed ones no longer count
                assert (await again.next())["event"] == "status"
        assert refused.status_code == head.status_code == 429
        assert refused.headers["content-type"] == "application/json"
        assert int(refused.headers["retry-after"]) >= 1
        assert "streams" in refused.json()["data"]["error"]
        assert h.api.seams.events.watching == 0


def test_a_key_allowed_more_unfinished_tasks_may_stream_each_of_them() -> None:
    @scenario(limits_max_concurrent_tasks=3)
    async def _(h: Harness) -> None:
        h.api.streams.keys.slots.most = 1
        for limit in (2, None):  # its own limit, or the configured one
            new = await h.new_key(max_concurrent_tasks=limit)
            allowed = limit or 3
            async with h.http(new.plain, streaming=True) as c:
                task_ids = [await submit(c) for _ in range(allowed)]
                async with contextlib.AsyncExitStack() as held:
                    for task_id in task_ids:
                        s = await held.enter_async_context(streaming(c, task_id))
                        assert (await s.next())["event"] == "status"
                    refused = await opening(c, task_ids[0])
            assert refused.status_code == 429


def asgi_app(h: Harness) -> ASGIApp:
    """The HTTP app over the harness's service, to be called with a server's own ``receive``
    and ``send``."""
    app = create_app(h.api.settings, build=lambda settings: h.api)
    app.state.api = h.api
    return app


def stream_scope(secret: str, task_id: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "GET", "scheme": "http", "path": STREAM,
            "raw_path": STREAM.encode(), "query_string": f"taskId={task_id}".encode(),
            "headers": [(b"authorization", f"Bearer {secret}".encode())],
            "server": ("imagegate.test", 80), "client": ("127.0.0.1", 123), "root_path": ""}


def test_a_client_gone_before_the_last_frame_is_no_error_of_the_app() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        await h.work()  # ended: the stream is its done event, then the end of the answer
        sent: list[AsgiMessage] = []

        async def receive() -> AsgiMessage:
            await asyncio.Event().wait()  # the server has not seen the client go yet
            raise AssertionError("unreachable")

        async def send(message: AsgiMessage) -> None:
            if message["type"] == "http.response.body" and not message["more_body"]:
                raise OSError("the connection was reset")  # as a server's send says it
            sent.append(message)

        await asgi_app(h)(stream_scope(new.plain, task_id), receive, send)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert b"event: done" in sent[1]["body"]
        assert h.api.seams.events.watching == 0


def test_a_stream_handler_cancelled_while_its_sending_stops_stays_cancelled() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        first_sent, client_gone, send_stopping, send_gives_up = (
            asyncio.Event() for _ in range(4))

        async def receive() -> AsgiMessage:
            await client_gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: AsgiMessage) -> None:
            if message["type"] != "http.response.body":
                return
            first_sent.set()
            try:
                await asyncio.Event().wait()  # a slow client: the frame is not taken
            except asyncio.CancelledError:
                send_stopping.set()  # a server's send that takes a moment to give up
                await send_gives_up.wait()
                raise

        handler = asyncio.ensure_future(
            asgi_app(h)(stream_scope(new.plain, task_id), receive, send))
        await first_sent.wait()
        client_gone.set()  # the stream stops its sending, and waits for it to stop
        await send_stopping.wait()
        handler.cancel()  # meanwhile the server cancels the handler itself
        with pytest.raises(asyncio.CancelledError):
            await handler
        send_gives_up.set()  # the sending stops on its own, and lets the task's events go
        for _ in range(100):  # a few turns of the loop: the sending task ends
            if not h.api.seams.events.watching:
                break
            await asyncio.sleep(0)
        assert h.api.seams.events.watching == 0
