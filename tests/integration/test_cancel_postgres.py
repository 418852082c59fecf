"""cancelTask across a fleet's processes on PostgreSQL: the API process that takes the cancel
and the worker that runs the task share only the database, and the worker hears of the cancel
through its notification channel (``task_changed``), not at its next lease renewal."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_db import fresh_database

from imagegate import accounts
from imagegate.blobs.memory import MemoryBlobStore
from imagegate.bootstrap import Seams, build_api, build_runtime, open_seams
from imagegate.config import Settings
from imagegate.money import ChargeState, LedgerKind
from imagegate.tasks import TaskState

PRICE = 50_000
CREDIT = 1_000_000
MODEL = "nano-banana-2"


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_database() as database_url:
        yield database_url


def test_a_cancel_taken_by_one_process_stops_the_attempt_running_in_another(
        url: str, tmp_path: Path) -> None:
    # A lease of 600 s: the heartbeat's own read of the task comes after 200 s, far past the
    # guard below, so only the notification can end the attempt in time.
    settings = Settings.load(env={}, database_url=url, data_dir=str(tmp_path),
                             sandbox_delay_seconds=0.0, worker_lease_seconds=600.0)

    async def scenario() -> None:
        worker_side = open_seams(settings, blobs=MemoryBlobStore())
        api_side = open_seams(settings, blobs=MemoryBlobStore())
        await worker_side.store.migrate()
        for seams in (worker_side, api_side):
            await seams.start()
        try:
            await run(worker_side, api_side)
        finally:
            for seams in (worker_side, api_side):
                await seams.close()

    async def run(worker_side: Seams, api_side: Seams) -> None:
        worker = build_runtime(worker_side, sweep=False, deliver=False).worker
        assert worker is not None
        api = build_api(api_side, migrate=False)
        made = await accounts.create_key(api_side.store, api_side.clock, credit_micros=CREDIT)
        body = {"input": {"mode": "text-to-image", "prompt": "[sandbox:delay=600] a slow fox",
                          "aspect_ratio": "1:1", "resolution": "1k"}}
        task_id = await api.tasks.submit(made.key, MODEL, body)
        work = asyncio.create_task(worker.work_once())
        for _ in range(3_000):  # until the attempt is inside the route call
            task = await api_side.store.get_task(task_id)
            if task is not None and task.stage == "generating":
                break
            await asyncio.sleep(0.01)
        answer = await api.tasks.cancel(made.key, MODEL, task_id)
        assert answer == {"taskId": task_id, "state": "cancelling", "refunded": False}
        assert await asyncio.wait_for(work, 60) == 1  # a guard: the cancel needs no waiting
        task = await api_side.store.get_task(task_id)
        assert task is not None
        assert (task.state, task.charge_state, task.fail_code) == (
            TaskState.CANCELED, ChargeState.REFUNDED, "Canceled")
        assert await api.tasks.balance_micros(made.key) == CREDIT
        ledger = await api_side.store.ledger(made.account.id)
        assert [e.kind for e in ledger if e.task_id == task_id] == [
            LedgerKind.HOLD, LedgerKind.REFUND]

    asyncio.run(scenario())
