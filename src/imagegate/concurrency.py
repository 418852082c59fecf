"""Small asyncio helpers shared by the routes and the fetcher."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def all_or_cancel(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``calls`` concurrently; results in order. The first failure cancels the others
    (and waits for them to end) and is raised as itself, not as a group."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
