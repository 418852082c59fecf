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


def test_a_change_between_subscribing_and_waiting_is_not_missed() -> None:
    async def scenario() -> tuple[bool, int]:
        events = TaskEvents()
        with events.watch("t1") as watch:
            events.task_changed("t1")  # lands after the subscription, before the wait
            seen = await watch.wait(5)
            watching = events.watching
        return seen, watching

    assert asyncio.run(scenario()) == (True, 1)


def test_a_watch_rearms_after_each_change_and_ignores_other_tasks() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        events = TaskEvents()
        with events.watch("t1") as watch:
            events.task_changed("t1")
            first = await watch.wait(5)
            events.task_changed("t2")
            second = await watch.wait(0.01)
            events.task_changed("t1")
            third = await watch.wait(5)
        return first, second, third

    assert asyncio.run(scenario()) == (True, False, True)


def test_a_cancelled_waiter_leaves_no_subscription() -> None:
    async def scenario() -> tuple[int, int]:
        events = TaskEvents()
        waiting = asyncio.ensure_future(events.wait_for_change("t1", 30))
        await asyncio.sleep(0)
        during = events.watching
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return during, events.watching

    assert asyncio.run(scenario()) == (1, 0)


def test_in_process_events_ask_for_no_recheck_unless_told() -> None:
    assert TaskEvents().recheck_s is None
    assert TaskEvents(recheck_s=2.0).recheck_s == 2.0
