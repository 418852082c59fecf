"""The worker's, the sweeper's and the dispatcher's log lines carry the task id as a field (what
the json log format writes out), not only inside the message."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from harness import Harness

from imagegate.logs import JsonFormatter


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def kept() -> Iterator[Keep]:
    logger = logging.getLogger("imagegate")
    keep, level = Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        yield keep
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)


def test_worker_sweeper_and_dispatcher_lines_carry_the_task_id() -> None:
    async def scenario(keep: Keep) -> tuple[str, str]:
        h = await Harness.open(worker_lease_seconds=10)
        try:
            key = await h.key("1")
            hooked = await h.submit(key, request_type="callback",
                                    callback_url="https://app.example/hook")
            await h.work()
            await h.deliver()
            lost = await h.submit(key, prompt="its worker dies")
            await h.store.claim_tasks("dead-worker", h.clock.now_ms(), 10_000, 1)
            h.clock.advance(11)
            await h.sweep()
            return hooked, lost
        finally:
            await h.close()

    with kept() as keep:
        hooked, lost = asyncio.run(scenario(keep))
    about = {(r.name, getattr(r, "task_id", None)) for r in keep.records}
    assert ("imagegate.tasks", hooked) in about  # the worker's finish
    assert ("imagegate.webhooks", hooked) in about
    assert ("imagegate.sweeper", lost) in about
    [delivered] = [r for r in keep.records if r.name == "imagegate.webhooks"]
    line = json.loads(JsonFormatter().format(delivered))
    assert line["task_id"] == hooked and line["delivery_id"].startswith("msg_")
