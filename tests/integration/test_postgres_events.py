"""PostgresEvents across processes: two instances, each on its own event loop in its own thread
with its own connections, as two processes would be, against a scratch database."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import psycopg
import pytest
from postgres_db import ADMIN_URL, fresh_database

from imagegate.events import Progress
from imagegate.events_postgres import PostgresEvents

T = TypeVar("T")
WAIT_S = 30.0  # far longer than a notification takes: a wait that ends was woken


class Process:
    """An event loop in a thread of its own, with a started PostgresEvents on it."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.events = self.call(self._open(url))

    async def _open(self, url: str) -> PostgresEvents:
        events = PostgresEvents.from_url(url)
        await events.start()
        return events

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def later(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def do(self, action: Callable[[], object]) -> None:
        async def on_loop() -> None:
            action()

        self.call(on_loop())

    def close(self) -> None:
        self.call(self.events.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_database() as database_url:
        yield database_url


@pytest.fixture
def two(url: str) -> Iterator[tuple[Process, Process]]:
    a, b = Process(url), Process(url + "?pool_size=3")  # the store's options are ignored
    try:
        assert a.events.listening and b.events.listening
        yield a, b
    finally:
        a.close()
        b.close()


def woken(future: Future[Any]) -> Any:
    return future.result(WAIT_S)


def drop_connections(url: str, application_name: str) -> int:
    name = url.rpartition("/")[2]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND application_name = %s",
                             (name, application_name)).fetchall()
    return len(rows)


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def test_work_submitted_in_one_process_wakes_idle_workers_in_another(
        two: tuple[Process, Process]) -> None:
    a, b = two
    idle_worker = b.later(b.events.work.wait(WAIT_S * 2))
    a.do(a.events.work_available)
    woken(idle_worker)


def test_a_queued_delivery_wakes_the_dispatcher_in_another_process(
        two: tuple[Process, Process]) -> None:
    a, b = two
    idle_dispatcher = b.later(b.events.deliveries.wait(WAIT_S * 2))
    a.do(a.events.delivery_queued)
    woken(idle_dispatcher)


def test_a_task_changing_in_one_process_wakes_its_waiters_in_another_only(
        two: tuple[Process, Process]) -> None:
    a, b = two
    waiting = b.later(b.events.wait_for_change("tsk_1", WAIT_S * 2))
    other = b.later(b.events.wait_for_change("tsk_2", 1.0))
    time.sleep(0.1)  # both registered
    a.do(lambda: a.events.task_changed("tsk_1"))
    assert woken(waiting) is True
    assert woken(other) is False


def test_a_running_tasks_progress_notes_reach_another_process_in_order(
        two: tuple[Process, Process]) -> None:
    a, b = two

    async def notes() -> tuple[list[Progress], bool]:
        with b.events.watch("tsk_1") as watch:
            heard: list[Progress] = []
            unexplained = False
            while not unexplained:  # the last change comes without a note
                assert await watch.wait(WAIT_S * 2)
                more, unexplained = watch.take_notes()
                heard += more
            return heard, unexplained

    listening = b.later(notes())
    time.sleep(0.1)
    stages = [Progress(1, "running"), Progress(1, "generating"), Progress(1, "storing")]

    def announce() -> None:
        for progress in stages:
            a.events.task_changed("tsk_1", progress)
        a.events.task_changed("tsk_1")

    a.do(announce)
    assert woken(listening) == (stages, True)


def test_the_process_that_notifies_wakes_its_own_waiters_too(
        two: tuple[Process, Process]) -> None:
    a, _ = two
    waiting = a.later(a.events.wait_for_change("tsk_1", WAIT_S * 2))
    time.sleep(0.1)
    a.do(lambda: a.events.task_changed("tsk_1"))
    assert woken(waiting) is True


def test_listening_comes_back_after_its_connection_drops_and_wakes_every_waiter(
        two: tuple[Process, Process], url: str) -> None:
    a, b = two
    waiting = b.later(b.events.wait_for_change("tsk_1", WAIT_S * 2))
    time.sleep(0.1)
    assert drop_connections(url, "imagegate-events") >= 2  # both listeners and the senders
    until(lambda: not b.events.listening)
    until(lambda: b.events.listening)
    assert woken(waiting) is True  # a change may have been missed meanwhile
    idle_worker = b.later(b.events.work.wait(WAIT_S * 2))
    a.do(a.events.work_available)  # the sender reconnects too
    woken(idle_worker)


def test_without_a_database_events_still_wake_this_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = Process(f"postgresql://postgres@127.0.0.1:{port}/none")
    try:
        assert not process.events.listening
        idle_worker = process.later(process.events.work.wait(WAIT_S * 2))
        process.do(process.events.work_available)
        woken(idle_worker)
    finally:
        process.close()
