"""In-process task events: wake idle workers when work arrives, and let waiters observe a task
reach a terminal state without polling the database in a tight loop.

This is the single-process implementation; a fleet replaces it with the database's own
notification channel behind the same methods, and workers keep a slow poll as a fallback.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class TaskEvents:
    def __init__(self) -> None:
        self._work = asyncio.Event()
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._deliveries = asyncio.Event()

    def work_available(self) -> None:
        self._work.set()

    async def wait_for_work(self, within_s: float) -> None:
        try:
            await asyncio.wait_for(self._work.wait(), within_s)
        except TimeoutError:
            pass
        self._work.clear()

    def delivery_queued(self) -> None:
        self._deliveries.set()

    async def wait_for_deliveries(self, within_s: float) -> None:
        try:
            await asyncio.wait_for(self._deliveries.wait(), within_s)
        except TimeoutError:
            pass
        self._deliveries.clear()

    def task_changed(self, task_id: str) -> None:
        for event in self._waiters.pop(task_id, ()):
            event.set()

    async def wait_for_change(self, task_id: str, within_s: float) -> bool:
        """True when the task changed within ``within_s`` seconds."""
        event = asyncio.Event()
        self._waiters[task_id].add(event)
        try:
            await asyncio.wait_for(event.wait(), within_s)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]
