"""cancelTask over HTTP (docs/contract.md, Extension: cancelTask), through the ASGI app
in-process (tests/service/harness.py): a queued task is canceled and refunded at once, a
running one is abandoned by its worker and refunded, a finished one is refused; the balance
after each case is exact."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from harness import Harness, scenario

from imagegate.money import ChargeState, LedgerKind
from imagegate.tasks import CANCELED_MESSAGE, TaskState

PRICE = 50_000
CREDIT = 1_000_000
MODEL = "nano-banana-2"
CANCEL = f"/api/v1/cancelTask/{MODEL}"


async def cancel(c: httpx.AsyncClient, task_id: str, model: str = MODEL) -> httpx.Response:
    return await c.post(f"/api/v1/cancelTask/{model}", params={"taskId": task_id})


async def status(c: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    r = await c.get(f"/api/v1/statusTask/{MODEL}", params={"taskId": task_id})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def refunds(h: Harness, account_id: str) -> list[tuple[int, str | None]]:
    return [(e.amount_micros, e.task_id) for e in await h.store.ledger(account_id)
            if e.kind == LedgerKind.REFUND]


def test_a_queued_task_is_canceled_refunded_and_called_back_at_once() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        task_id = await h.submit(made.key, request_type="callback",
                                 callback_url="https://app.example/hook")
        assert await h.balance(made.key) == CREDIT - PRICE
        async with h.http(made.plain) as c:
            r = await cancel(c, task_id)
            assert r.status_code == 200, r.text
            assert r.json() == {"code": 200, "message": "success", "data": {
                "taskId": task_id, "state": "canceled", "refunded": True}}
            data = await status(c, task_id)
        assert (data["state"], data["failCode"], data["failMsg"], data["stage"]) == (
            "failed", "Canceled", CANCELED_MESSAGE, "done")
        assert "cost" not in data
        assert await h.balance(made.key) == CREDIT
        assert await refunds(h, made.account.id) == [(PRICE, task_id)]
        assert await h.work() == 0  # no worker takes it any more
        assert await h.deliver() == 1
        [body] = h.callback_bodies()
        assert (body["data"]["taskId"], body["data"]["state"], body["data"]["failCode"]) == (
            task_id, "failed", "Canceled")


def test_a_canceled_task_frees_its_keys_unfinished_slot() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1", max_concurrent_tasks=1)
        first = await h.submit(made.key)
        async with h.http(made.plain) as c:
            assert (await cancel(c, first)).status_code == 200
        await h.submit(made.key)  # would be 429 while the first held the slot
        assert await h.balance(made.key) == CREDIT - PRICE


def test_a_running_task_is_abandoned_by_its_worker_and_refunded() -> None:
    @scenario(worker_lease_seconds=30.0)
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        task_id = await h.submit(made.key, prompt="[sandbox:delay=600] a slow fox")
        work = asyncio.create_task(h.work())
        for _ in range(10_000):  # until the attempt is inside the route call
            if (await h.task(task_id)).stage == "generating":
                break
            await asyncio.sleep(0)
        assert (await h.task(task_id)).stage == "generating"
        async with h.http(made.plain) as c:
            r = await cancel(c, task_id)
            assert r.status_code == 200, r.text
            assert r.json()["data"] == {"taskId": task_id, "state": "cancelling",
                                        "refunded": False}
            assert await h.balance(made.key) == CREDIT - PRICE  # not yet: it still runs
            # The worker hears of it at once and abandons the 600 s route call; the guard
            # only keeps a broken cancel from hanging the suite.
            assert await asyncio.wait_for(work, 60) == 1
            data = await status(c, task_id)
            assert (data["state"], data["failCode"], data["failMsg"]) == (
                "failed", "Canceled", CANCELED_MESSAGE)
            again = await cancel(c, task_id)
            assert again.status_code == 409
        task = await h.task(task_id)
        assert (task.state, task.charge_state) == (TaskState.CANCELED, ChargeState.REFUNDED)
        assert await h.balance(made.key) == CREDIT
        assert await refunds(h, made.account.id) == [(PRICE, task_id)]


def test_a_task_whose_worker_died_after_a_cancel_is_ended_canceled_by_the_sweeper() -> None:
    @scenario(worker_lease_seconds=30.0)
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        task_id = await h.submit(made.key)
        [taken] = await h.store.claim_tasks("dead-worker", h.clock.now_ms(), 30_000, 10)
        assert taken.id == task_id
        async with h.http(made.plain) as c:
            assert (await cancel(c, task_id)).json()["data"]["state"] == "cancelling"
        h.clock.advance(29)
        await h.sweep()
        assert (await h.task(task_id)).state is TaskState.RUNNING  # the lease still holds
        h.clock.advance(2)
        await h.sweep()  # the lease ran out: canceled, not run again
        task = await h.task(task_id)
        assert (task.state, task.charge_state, task.fail_code) == (
            TaskState.CANCELED, ChargeState.REFUNDED, "Canceled")
        assert await h.work() == 0
        assert await h.balance(made.key) == CREDIT
        assert await refunds(h, made.account.id) == [(PRICE, task_id)]


def test_a_task_requeued_after_a_cancel_ends_canceled_when_claimed() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        task_id = await h.submit(made.key)
        [taken] = await h.store.claim_tasks("w", h.clock.now_ms(), 30_000, 10)
        async with h.http(made.plain) as c:
            assert (await cancel(c, task_id)).json()["data"]["state"] == "cancelling"
        # the attempt failed retryably before its worker heard of the cancel
        assert await h.store.retry_later(task_id, taken.attempt, h.clock.now_ms(), (), "again")
        assert await h.work() == 1  # claimed with the cancel already asked: ended at once
        task = await h.task(task_id)
        assert (task.state, task.charge_state, task.fail_code) == (
            TaskState.CANCELED, ChargeState.REFUNDED, "Canceled")
        assert not task.results
        assert await h.balance(made.key) == CREDIT


def test_a_finished_task_is_refused_with_409_naming_its_state() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        task_id = await h.submit(made.key)
        assert await h.work() == 1
        async with h.http(made.plain) as c:
            r = await cancel(c, task_id)
            assert r.status_code == 409
            body = r.json()
            assert (body["code"], body["message"]) == (409, "Conflict")
            assert "succeeded" in body["data"]["error"]
            assert (await status(c, task_id))["state"] == "success"
        assert await h.balance(made.key) == CREDIT - PRICE


def test_a_task_of_another_account_or_model_is_not_found_and_taskid_is_required() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        owner = await h.new_key("1")
        other = await h.new_key("1")
        task_id = await h.submit(owner.key)
        async with h.http(other.plain) as c:
            r = await cancel(c, task_id)
            assert (r.status_code, r.json()["code"]) == (404, 404)
            assert (await cancel(c, "0" * 32)).status_code == 404
        async with h.http(owner.plain) as c:
            assert (await cancel(c, task_id, model="nano-banana-pro")).status_code == 404
            missing = await c.post(CANCEL)
            assert missing.status_code == 400
            assert missing.json()["data"]["field"] == "taskId"
        async with h.http() as c:
            assert (await cancel(c, task_id)).status_code == 401
        assert (await h.task(task_id)).state is TaskState.QUEUED
        assert await h.balance(owner.key) == CREDIT - PRICE
        assert await h.balance(other.key) == CREDIT
