"""A task's life through the use cases and the runtime, in-process (tests/service/harness.py):
the store's money rules, retries and their backoff, lease recovery, deadlines, callbacks and
retention, with a clock that moves only when the test moves it."""

from __future__ import annotations

import json

import httpx
import pytest
from harness import Harness, scenario

from imagegate.app.files import ResultStream
from imagegate.errors import Gone, NotFound, PaymentRequired, TooManyRequests
from imagegate.money import ChargeState, LedgerKind
from imagegate.signing import verify
from imagegate.sweeper import Swept
from imagegate.tasks import TaskState

PRICE = 50_000


def test_a_task_succeeds_is_charged_once_and_its_file_is_stored() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        key = await h.key("1")
        task_id = await h.submit(key)
        assert (await h.status(key, task_id))["state"] == "processing"
        assert await h.balance(key) == 1_000_000 - PRICE  # held at submit
        assert await h.work() == 1
        data = await h.status(key, task_id)
        assert data["state"] == "success" and data["cost"] == 0.05
        [url] = json.loads(data["resultJson"])["resultUrls"]
        task = await h.task(task_id)
        assert task.charge_state is ChargeState.SETTLED
        download = await h.api.files.result(task_id, task.result_token, task.results[0].name)
        assert isinstance(download, ResultStream)  # proxy: the default
        body = b"".join([chunk async for chunk in download.blob.chunks])
        assert len(body) == download.blob.size == task.results[0].size
        assert body[:8] == b"\x89PNG\r\n\x1a\n" and url.endswith(task.results[0].name)
        assert await h.balance(key) == 1_000_000 - PRICE
        assert await h.work() == 0


def test_a_retry_waits_for_its_backoff_on_the_clock() -> None:
    @scenario(worker_retry_backoff_seconds=2.0)
    async def _(h: Harness) -> None:
        key = await h.key("1")
        task_id = await h.submit(key, prompt="[sandbox:fail=Timeout:1] a fox")
        assert await h.work() == 1
        assert (await h.task(task_id)).stage == "retrying"
        h.clock.advance(1.9)
        assert await h.work() == 0  # not before its backoff
        h.clock.advance(0.2)
        assert await h.work() == 1
        assert (await h.status(key, task_id))["state"] == "success"
        assert [a.outcome for a in (await h.task(task_id)).route_attempts] == [
            "Timeout", "success"]


def test_a_final_failure_and_exhausted_retries_are_refunded_in_full() -> None:
    @scenario(worker_max_attempts=2, worker_retry_backoff_seconds=1.0)
    async def _(h: Harness) -> None:
        key = await h.key("1")
        blocked = await h.submit(key, prompt="[sandbox:fail=SensitiveContent] a fox")
        flaky = await h.submit(key, prompt="[sandbox:fail=RateLimited] a fox")
        await h.work()
        h.clock.advance(5)
        await h.work()
        for task_id, code in ((blocked, "SensitiveContent"), (flaky, "RateLimited")):
            data = await h.status(key, task_id)
            assert (data["state"], data["failCode"]) == ("failed", code)
        assert len((await h.task(flaky)).route_attempts) == 2
        assert await h.balance(key) == 1_000_000
        ledger = await h.store.ledger((await h.task(blocked)).account_id)
        assert sum(entry.amount_micros for entry in ledger) == 1_000_000


def test_a_dead_workers_lease_expires_and_the_task_runs_again_charged_once() -> None:
    @scenario(worker_lease_seconds=30.0)
    async def _(h: Harness) -> None:
        key = await h.key("1")
        task_id = await h.submit(key)
        [taken] = await h.store.claim_tasks("dead-worker", h.clock.now_ms(), 30_000, 10)
        assert taken.id == task_id and await h.work() == 0
        h.clock.advance(29)
        assert await h.sweep() == Swept(0, 0, 0)  # the lease still holds
        h.clock.advance(2)
        assert (await h.sweep())[0] == 1
        assert await h.work() == 1
        task = await h.task(task_id)
        assert task.state is TaskState.SUCCEEDED and task.attempt == 2
        assert await h.balance(key) == 1_000_000 - PRICE
        # The dead worker comes back: its fenced finish changes nothing.
        assert not await h.store.renew_lease(task_id, 1, h.clock.now_ms() + 1000)


def test_a_queued_task_past_its_deadline_is_failed_refunded_and_called_back() -> None:
    @scenario(worker_task_deadline_seconds=60.0)
    async def _(h: Harness) -> None:
        key = await h.key("1")
        task_id = await h.submit(key, request_type="callback",
                                 callback_url="https://app.example/hook")
        h.clock.advance(59)
        await h.sweep()
        assert (await h.status(key, task_id))["state"] == "processing"
        h.clock.advance(2)
        await h.sweep()
        data = await h.status(key, task_id)
        assert (data["state"], data["failCode"]) == ("failed", "Timeout")
        assert await h.balance(key) == 1_000_000
        assert await h.deliver() == 1
        [body] = h.callback_bodies()
        assert body["data"]["taskId"] == task_id and body["data"]["failCode"] == "Timeout"


def test_callbacks_are_signed_retried_on_schedule_and_given_up() -> None:
    @scenario(callbacks_max_attempts=3, callbacks_retry_schedule="10,60")
    async def _(h: Harness) -> None:
        h.answer = lambda request: httpx.Response(500)
        key = await h.key("1")
        task_id = await h.submit(key, request_type="callback",
                                 callback_url="https://app.example/hook")
        await h.work()
        assert await h.deliver() == 1
        assert await h.deliver() == 0  # next attempt is due in about 10 s
        h.clock.advance(12)
        assert await h.deliver() == 1
        h.clock.advance(70)
        assert await h.deliver() == 1
        h.clock.advance(3600)
        assert await h.deliver() == 0  # given up after 3 attempts
        [delivery] = await h.store.deliveries_for_task(task_id)
        assert (delivery.state, delivery.attempts) == ("failed", 3)
        ids = {r.headers["webhook-id"] for r in h.callbacks}
        assert ids == {delivery.id}  # one event, the same id on every retry
        secrets = [s.secret for s in await h.api.webhooks.secrets(key)]
        for request in h.callbacks:  # raises unless each is authentic
            verify(dict(request.headers), request.content, secrets,
                   now=int(request.headers["webhook-timestamp"]))


def test_a_refused_submit_stores_and_charges_nothing() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        poor = await h.key("0.04")
        with pytest.raises(PaymentRequired):
            await h.submit(poor)
        assert await h.balance(poor) == 40_000
        capped = await h.key("1", max_concurrent_tasks=1)
        await h.submit(capped)
        with pytest.raises(TooManyRequests):
            await h.submit(capped)
        assert await h.balance(capped) == 1_000_000 - PRICE
        await h.work()
        await h.submit(capped)  # the finished task freed its slot


def test_results_expire_and_their_files_are_deleted() -> None:
    @scenario(retention_days=1.0)
    async def _(h: Harness) -> None:
        key = await h.key("1")
        task_id = await h.submit(key)
        await h.work()
        task = await h.task(task_id)
        assert len(h.blobs.blobs) == 1
        h.clock.advance(86_401)
        assert (await h.sweep())[1] == 1
        assert h.blobs.blobs == {}
        with pytest.raises(Gone):
            await h.api.files.result(task_id, task.result_token, task.results[0].name)


DAY_S = 86_400


def test_a_finished_tasks_record_is_pruned_after_the_record_retention() -> None:
    @scenario(retention_days=1.0, record_retention_days=3.0,
              callbacks_retry_schedule=str(4 * DAY_S))
    async def _(h: Harness) -> None:
        key = await h.key("1")
        polled = await h.submit(key)
        called = await h.submit(key, request_type="callback",
                                callback_url="https://app.example/hook")
        await h.work()
        h.answer = lambda request: httpx.Response(500)
        assert await h.deliver() == 1  # its callback stays pending, next try in 4 days
        assert (await h.status(key, polled))["state"] == "success"  # now answered from memory
        task = await h.task(polled)
        h.clock.advance(DAY_S + 1)
        assert await h.sweep() == Swept(0, 2, 0)  # the results go first
        with pytest.raises(Gone):
            await h.api.files.result(polled, task.result_token, task.results[0].name)
        assert (await h.status(key, polled))["state"] == "success"
        h.clock.advance(2 * DAY_S)
        assert (await h.sweep()).records == 1  # not the task whose callback is pending
        for look in (lambda: h.status(key, polled),
                     lambda: h.api.files.result(polled, task.result_token, task.results[0].name),
                     lambda: h.api.webhooks.delivery_log(key, polled)):
            with pytest.raises(NotFound):
                await look()
        assert (await h.status(key, called))["state"] == "success"
        h.answer = lambda request: httpx.Response(200)
        h.clock.advance(4 * DAY_S + 1)
        assert await h.deliver() == 1
        assert (await h.sweep()).records == 1
        with pytest.raises(NotFound):
            await h.status(key, called)
        # The money history is whole.
        assert await h.balance(key) == 1_000_000 - 2 * PRICE
        for task_id in (polled, called):
            lines = await h.store.task_ledger(task_id)
            assert [line.kind for line in lines] == [LedgerKind.HOLD, LedgerKind.SETTLE]
        ledger = await h.store.ledger(key.account_id)
        assert sum(line.amount_micros for line in ledger) == await h.balance(key)


def test_a_record_retention_of_0_keeps_records_forever() -> None:
    @scenario(retention_days=1.0, record_retention_days=0.0)
    async def _(h: Harness) -> None:
        key = await h.key("1")
        task_id = await h.submit(key)
        await h.work()
        h.clock.advance(10_000 * DAY_S)
        assert await h.sweep() == Swept(0, 1, 0)
        assert (await h.status(key, task_id))["state"] == "success"
