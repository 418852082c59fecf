"""Waiting for a task over HTTP (contract §15): ``Prefer: wait=N`` on a submit and ``wait=N`` on
a status read answer as soon as the worker finishes the task, or with the task as it is when
the wait runs out; a client that goes away leaves no waiter behind; bad values are a 400.

Each waiting request runs beside the harness's worker in one event loop: the test lets the
request subscribe (``events.watching``), then works the task, so the order is always the same.
A request asks to wait 60 s and is given ``WOKEN_S`` to answer: one that answers in time was
woken by its task's end, not by its own wait running out (which would read the end too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from harness import Harness, scenario, t2i

from imagegate.api.app import create_app
from imagegate.events import Progress

SUBMIT = "/api/v1/generateTask/nano-banana-2"
STATUS = "/api/v1/statusTask/nano-banana-2"
T = TypeVar("T")
WOKEN_S = 30.0



async def subscribed(h: Harness, request: Awaitable[T], waiters: int = 1) -> asyncio.Future[T]:
    """``request`` started, once ``waiters`` clients wait on a task."""
    started = asyncio.ensure_future(request)
    for _ in range(10_000):
        if h.api.seams.events.watching >= waiters or started.done():
            break
        await asyncio.sleep(0)
    assert h.api.seams.events.watching == waiters, "the request never started waiting"
    # A waiter subscribes before its first read: let that read end too (nothing else runs in
    # this loop, so the request is then parked on its subscription).
    for _ in range(100):
        await asyncio.sleep(0)
    assert not started.done()
    return started


async def woken(waiting: Awaitable[T]) -> T:
    return await asyncio.wait_for(waiting, WOKEN_S)


def test_a_status_read_with_wait_answers_when_the_worker_finishes_the_task() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c:
            waiting = await subscribed(h, c.get(STATUS, params={"taskId": task_id,
                                                                "wait": "60"}))
            assert await h.work() == 1
            r = await woken(waiting)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["state"] == "success"
        assert r.json() == {"code": 200, "message": "success",
                            "data": await h.status(new.key, task_id)}
        assert "preference-applied" not in r.headers
        assert h.api.seams.events.watching == 0


def test_a_waiter_reads_its_task_again_only_for_a_change_that_may_have_finished_it() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        reads: list[str] = []
        read = h.store.get_task

        async def counted(read_id: str) -> Any:
            reads.append(read_id)
            return await read(read_id)

        h.store.get_task = counted  # type: ignore[method-assign]
        events = h.api.seams.events
        waiting = await subscribed(h, h.api.tasks.wait_status(new.key, "nano-banana-2",
                                                              task_id, 60))
        for stage in ("running", "generating", "storing"):  # a running attempt's stages
            events.task_changed(task_id, Progress(1, stage))
            for _ in range(100):
                await asyncio.sleep(0)
        assert reads == [task_id] and not waiting.done()
        events.task_changed(task_id)  # a change without a note: read
        for _ in range(100):
            await asyncio.sleep(0)
        assert reads == [task_id, task_id] and not waiting.done()
        assert await h.work() == 1
        assert (await woken(waiting)).finished
        assert len(reads) == 3


def test_a_cancel_wakes_the_clients_waiting_on_the_task() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c:
            waiting = await subscribed(h, c.get(STATUS, params={"taskId": task_id,
                                                                "wait": "60"}))
            cancel = await c.post("/api/v1/cancelTask/nano-banana-2",
                                  params={"taskId": task_id})
            assert cancel.json()["data"]["state"] == "canceled", cancel.text
            data = (await woken(waiting)).json()["data"]
        assert (data["state"], data["failCode"]) == ("failed", "Canceled")
        assert h.api.seams.events.watching == 0


def test_a_status_read_with_wait_answers_a_failed_task_too() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key, prompt="[sandbox:fail=SensitiveContent] a fox")
        async with h.http(new.plain) as c:
            waiting = await subscribed(h, c.get(STATUS, params={"taskId": task_id,
                                                                "wait": "60"}))
            await h.work()
            data = (await woken(waiting)).json()["data"]
        assert (data["state"], data["failCode"]) == ("failed", "SensitiveContent")


def test_a_finished_task_is_answered_without_waiting() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        await h.work()
        async with h.http(new.plain) as c:
            r = await c.get(STATUS, params={"taskId": task_id, "wait": "60"})
        assert r.json()["data"]["state"] == "success"


def test_a_status_read_whose_wait_runs_out_answers_the_task_as_it_is() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c:
            r = await c.get(STATUS, params={"taskId": task_id, "wait": "1"})
        assert r.status_code == 200
        assert r.json()["data"]["state"] == "processing"
        assert h.api.seams.events.watching == 0


def test_a_submit_preferring_to_wait_answers_the_finished_task() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain) as c:
            waiting = await subscribed(h, c.post(SUBMIT, json=t2i(),
                                                 headers={"prefer": "wait=30"}))
            await h.work()
            r = await woken(waiting)
        assert r.status_code == 200, r.text
        assert r.headers["preference-applied"] == "wait=30"
        data = r.json()["data"]
        assert data["state"] == "success"
        assert r.json() == {"code": 200, "message": "success",
                            "data": await h.status(new.key, data["taskId"])}


def test_a_submit_whose_wait_runs_out_answers_the_task_id() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain) as c:
            r = await c.post(SUBMIT, json=t2i(),
                             headers={"prefer": 'respond-async, WAIT = "1"; x=y'})
        assert r.status_code == 200, r.text
        assert r.headers["preference-applied"] == "wait=1"
        assert set(r.json()["data"]) == {"taskId"}
        assert (await h.status(new.key, r.json()["data"]["taskId"]))["state"] == "processing"


def test_a_submit_without_a_wait_preference_is_the_plain_answer() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain) as c:
            r = await c.post(SUBMIT, json=t2i(), headers={"prefer": "respond-async, waiting=3"})
        assert set(r.json()["data"]) == {"taskId"}
        assert "preference-applied" not in r.headers


# A number too long for int() to convert (Python refuses over 4300 digits) is just too big.
HUGE = "9" * 5000


@pytest.mark.parametrize("value", ["0", "61", "1.5", "-1", "", "soon", "\u0661", HUGE])
def test_a_bad_wait_query_parameter_is_a_400_naming_it(value: str) -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c:
            r = await c.get(STATUS, params={"taskId": task_id, "wait": value})
        assert r.status_code == 400, r.text
        assert r.json()["data"]["field"] == "wait"
        assert "1 to 60" in r.json()["data"]["error"]


@pytest.mark.parametrize("prefer", ["wait=0", "wait=61", "wait", "wait=", "wait=abc",
                                    'respond-async, wait="2.5"', "wait=1e1",
                                    f"wait={HUGE}"])
def test_a_bad_wait_preference_is_a_400_naming_prefer_and_stores_nothing(prefer: str) -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain) as c:
            r = await c.post(SUBMIT, json=t2i(), headers={"prefer": prefer})
        assert r.status_code == 400, r.text
        assert r.json()["data"]["field"] == "Prefer"
        assert await h.balance(new.key) == 10_000_000
        assert len(await h.store.ledger(new.key.account_id)) == 1  # the credit alone


def test_a_client_that_goes_away_while_waiting_leaves_no_waiter() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        app = create_app(h.api.settings, build=lambda settings: h.api)
        app.state.api = h.api
        gone = asyncio.Event()
        incoming = [{"type": "http.request", "body": b"", "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": STATUS, "raw_path": STATUS.encode(),
                 "query_string": f"taskId={task_id}&wait=60".encode(), "root_path": "",
                 "headers": [(b"host", b"imagegate.test"),
                             (b"authorization", f"Bearer {new.plain}".encode())],
                 "server": ("imagegate.test", 80), "client": ("127.0.0.1", 50000)}
        call = await subscribed(h, app(scope, receive, send))
        gone.set()
        await call
        assert h.api.seams.events.watching == 0
        assert sent[0]["status"] == 499


def test_many_clients_waiting_on_one_task_all_get_its_end() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c:
            waiting = await subscribed(h, asyncio.gather(*(
                c.get(STATUS, params={"taskId": task_id, "wait": "60"}) for _ in range(20))),
                waiters=20)
            await h.work()
            answers = await woken(waiting)
        assert {r.json()["data"]["state"] for r in answers} == {"success"}
        assert h.api.seams.events.watching == 0


def test_an_unknown_task_is_a_404_at_once_with_wait() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain) as c:
            r = await c.get(STATUS, params={"taskId": "0" * 32, "wait": "60"})
        assert r.status_code == 404
        assert h.api.seams.events.watching == 0


def test_a_waiter_wakes_when_the_sweeper_fails_a_task_no_worker_took() -> None:
    @scenario(worker_task_deadline_seconds=60)
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c:
            waiting = await subscribed(h, c.get(STATUS, params={"taskId": task_id,
                                                                "wait": "60"}))
            h.clock.advance(61)
            await h.sweep()
            data = (await woken(waiting)).json()["data"]
        assert (data["state"], data["failCode"]) == ("failed", "Timeout")


def test_waits_answer_at_once_when_the_process_is_asked_to_stop() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c:
            reading = await subscribed(h, c.get(STATUS, params={"taskId": task_id,
                                                               "wait": "60"}))
            submitting = await subscribed(
                h, c.post(SUBMIT, json=t2i(), headers={"prefer": "wait=60"}), waiters=2)
            h.api.end_held_requests()  # what SIGTERM does
            read, submitted = await woken(reading), await woken(submitting)
            later = await woken(c.get(STATUS, params={"taskId": task_id, "wait": "60"}))
        assert read.status_code == submitted.status_code == later.status_code == 200
        assert read.json()["data"]["state"] == later.json()["data"]["state"] == "processing"
        assert submitted.headers["preference-applied"] == "wait=60"
        assert set(submitted.json()["data"]) == {"taskId"}
        assert h.api.seams.events.watching == 0


def test_a_key_holds_a_bounded_number_of_waits() -> None:
    @scenario(limits_max_concurrent_tasks=2)
    async def _(h: Harness) -> None:
        h.api.tasks.waits.most = 2
        new, other = await h.new_key(), await h.new_key()
        task_id = await h.submit(new.key)
        async with h.http(new.plain) as c, h.http(other.plain) as o:
            first = await subscribed(h, c.get(STATUS, params={"taskId": task_id, "wait": "60"}))
            second = await subscribed(
                h, c.get(STATUS, params={"taskId": task_id, "wait": "60"}), waiters=2)
            # (Asking 1 s: were they let wait, they would answer processing after it.)
            refused = await c.get(STATUS, params={"taskId": task_id, "wait": "1"})
            unapplied = await c.post(SUBMIT, json=t2i(), headers={"prefer": "wait=1"})
            theirs = await subscribed(h, o.post(SUBMIT, json=t2i(), headers={"prefer": "wait=60"}),
                                      waiters=3)
            await h.work()
            answers = [await woken(w) for w in (first, second, theirs)]
            again = await woken(c.get(STATUS, params={"taskId": task_id, "wait": "60"}))
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert unapplied.status_code == 200, unapplied.text
        assert "preference-applied" not in unapplied.headers  # answered at once, not waited
        assert set(unapplied.json()["data"]) == {"taskId"}
        assert [a.json()["data"]["state"] for a in answers] == ["success"] * 3
        assert again.json()["data"]["state"] == "success"
        assert h.api.seams.events.watching == 0
