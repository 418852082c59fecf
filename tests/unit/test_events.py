from __future__ import annotations

import asyncio

from imagegate.events import Signal, TaskEvents


def test_a_signal_set_before_the_wait_wakes_it_and_rearms() -> None:
    async def scenario() -> tuple[bool, bool]:
        signal = Signal()
        signal.set()
        woke = asyncio.ensure_future(signal.wait(30))
        await asyncio.sleep(0)
        await asyncio.wait_for(woke, 1)
        second = asyncio.ensure_future(signal.wait(30))
        await asyncio.sleep(0.01)
        return woke.done(), second.done()

    assert asyncio.run(scenario()) == (True, False)


def test_stop_wakes_a_waiting_signal() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(Signal().wait(30, stop))
        await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())


def test_waiters_see_a_task_change_and_time_out_otherwise() -> None:
    async def scenario() -> tuple[bool, bool]:
        events = TaskEvents()
        seen = asyncio.ensure_future(events.wait_for_change("t1", 5))
        await asyncio.sleep(0)
        events.task_changed("t1")
        return await seen, await events.wait_for_change("t2", 0.01)

    assert asyncio.run(scenario()) == (True, False)
