"""Tasks as a client sees them: submit (validate, price, store with the hold in one
transaction, wake a worker), read one, list the key's own, cancel one, and the balance that
pays for them.

A finished task never changes, so its status answer is rendered once, to the bytes of its JSON
body, and kept (the most recent ``FINISHED_CACHE`` of them): polling a finished task reads no
database and encodes nothing. Until its record retention ends: from then on the sweeper may
delete the record, so the store is asked again, and a pruned task answers 404 like an unknown
one.

A client may wait for a task to finish (``wait_status``): it subscribes to the task's events,
reads the task, and reads it again only when an event says it changed (or, where events cannot
reach this process, every ``events.recheck_s``): a waiting client costs no query while nothing
happens to its task. A key holds at most ``MAX_WAITS_PER_KEY`` waits in one process (or its
limit of unfinished tasks, when that is higher): each holds a connection for up to 60 s
(``wait_slot``)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import msgspec

from imagegate.app.key_slots import KeySlots
from imagegate.clock import Clock
from imagegate.completion import Completion
from imagegate.contract import parse_submit
from imagegate.errors import Conflict, NotFound, Unauthorized, quoted
from imagegate.events import TaskEvents, Watch
from imagegate.idempotency import Idempotency
from imagegate.money import ChargeState, task_price
from imagegate.routing import Routing
from imagegate.store.base import ApiKey, CancelOutcome, RateRequest, Store
from imagegate.task_list import TaskQuery, render_page
from imagegate.tasks import Task, TaskState, envelope, new_task_id, render_status
from imagegate.webhooks import CallbackPolicy

T = TypeVar("T")

FINISHED_CACHE = 50_000
# Open waits of one key in one process (or the key's unfinished-task limit, if higher).
MAX_WAITS_PER_KEY = 100
# Compact JSON, non-ASCII written as UTF-8, as json.dumps(ensure_ascii=False) writes it, in less
# than half its CPU time: a processing task's answer is encoded on every poll
# (bench/bench_wire.py).
_ENCODER = msgspec.json.Encoder()


def json_bytes(data: Any) -> bytes:
    """``data`` as compact JSON (UTF-8, non-ASCII unescaped): every status body and event."""
    return _ENCODER.encode(data)


def not_found(task_id: str, model_id: str | None = None) -> NotFound:
    """The answer to a read of a task that is not the key's (or not of ``model_id``), the same
    as to one that does not exist: the service never says whose a task is."""
    of_model = "" if model_id is None else f" for model {quoted(model_id)}"
    return NotFound(f"no task {quoted(task_id)}{of_model}")


def check_owner(key: ApiKey, task_id: str, model_id: str | None, account_id: str,
                model: str) -> None:
    """Return when the task (of ``account_id``, ``model``) is the key's account's, and of
    ``model_id`` when it is given; ``NotFound`` otherwise."""
    if account_id != key.account_id or (model_id is not None and model != model_id):
        raise not_found(task_id, model_id)


class StatusAnswer:
    """A status answer: its ``data``, and the JSON body of its envelope, rendered once."""

    __slots__ = ("_body", "data")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self._body: bytes | None = None

    @property
    def finished(self) -> bool:
        """Whether the task has ended (succeeded or failed): its answer never changes again."""
        return bool(self.data["state"] != "processing")

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = json_bytes(envelope(self.data))
        return self._body


class Tasks:
    """``record_retention_ms``: how long a finished task's record is kept (None: forever)."""

    def __init__(self, store: Store, routing: Routing, callbacks: CallbackPolicy, clock: Clock,
                 events: TaskEvents, completion: Completion, *, base_url: str,
                 max_unfinished: int, record_retention_ms: int | None = None) -> None:
        self.store = store
        self.completion = completion
        self.routing = routing
        self.callbacks = callbacks
        self.clock = clock
        self.events = events
        self.base_url = base_url
        self.max_unfinished = max_unfinished
        self.record_retention_ms = record_retention_ms
        # task id -> (account id, model, answer, kept until (ms; None: forever)) of finished
        # tasks, least recent first
        self._finished: OrderedDict[str, tuple[str, str, StatusAnswer, int | None]] = \
            OrderedDict()
        self._waits_end = asyncio.Event()  # the process is stopping: waits answer at once
        self.waits = KeySlots(MAX_WAITS_PER_KEY, max_unfinished)  # open waits by key

    def wait_slot(self, key: ApiKey) -> AbstractContextManager[None] | None:
        """A place among the key's open waits, held for the ``with`` block; None when the key
        holds as many as it may."""
        return None if self.waits.full(key) else self.waits.hold(key.id)

    def end_waits(self) -> None:
        """Answer every wait now, and each one from now on at once, as if its time were over
        (the process is stopping: its clients read or wait again, on another process)."""
        self._waits_end.set()

    async def submit(self, key: ApiKey, model_id: str, body: Any,
                     rate: RateRequest | None = None, idem: Idempotency | None = None) -> str:
        """Validate, price, and store the task with its hold (and its token of the key's shared
        ``rate`` bucket) in one transaction; its id. With ``idem``, a repeat of a request the
        key already submitted under that idempotency key answers the first task's id and
        stores nothing; ``Conflict`` when the key named another request."""
        model = self.routing.model(model_id)
        request = parse_submit(body, model.limits)
        self.routing.check_routable(model_id, request.input, request.provider)
        if request.callback_url:
            await self.callbacks.check_url(request.callback_url)
        task = Task(
            id=new_task_id(), account_id=key.account_id, key_id=key.id, model=model_id,
            input=request.input, state=TaskState.QUEUED, created_ms=self.clock.now_ms(),
            price_micros=task_price(model.prices, request.input.resolution,
                                    request.input.num_images),
            charge_state=ChargeState.HELD, result_token=secrets.token_urlsafe(18),
            request_type=request.request_type, callback_url=request.callback_url,
            provider=request.provider, source=request.source)
        stored = await self.store.insert_task(
            task, key.max_concurrent_tasks or self.max_unfinished, rate, idem)
        if stored == task.id:
            self.events.work_available()
        return stored

    async def status(self, key: ApiKey, model_id: str, task_id: str) -> StatusAnswer:
        """The status answer of the key's task of ``model_id``; ``NotFound`` otherwise. The
        caller must not change it (a finished task's is shared)."""
        found = self._cached(task_id)
        if found is None:
            return self.answer(await self.owned(key, task_id, model_id))
        account_id, model, answer = found
        check_owner(key, task_id, model_id, account_id, model)
        return answer

    def answer(self, task: Task) -> StatusAnswer:
        """The status answer of ``task`` as read now (a finished one's is kept, and shared:
        the caller must not change it)."""
        found = self._cached(task.id) if task.state.terminal else None
        if found is not None:
            return found[2]
        answer = StatusAnswer(render_status(task, self.base_url))
        if task.state.terminal:
            self._remember(task, answer)
        return answer

    async def cancel(self, key: ApiKey, model_id: str, task_id: str) -> dict[str, Any]:
        """Cancel the key's task of ``model_id`` (docs/contract.md, Extension: cancelTask): the
        answer's ``data``, ``state`` "canceled" (it was queued: canceled and refunded now) or
        "cancelling" (it runs: its worker abandons it, unless it finishes first).
        ``NotFound`` as for a status read; ``Conflict`` naming the state of a finished task."""
        task = await self.owned(key, task_id, model_id)
        if not task.state.terminal:
            outcome = await self.completion.cancel(task)
            if outcome is CancelOutcome.CANCELED:
                return {"taskId": task.id, "state": "canceled", "refunded": True}
            if outcome is CancelOutcome.REQUESTED:
                return {"taskId": task.id, "state": "cancelling", "refunded": False}
            task = await self.owned(key, task_id, model_id)  # it ended meanwhile
        raise Conflict(f"task {quoted(task_id)} has already ended ({task.state.value}); only "
                       "a queued or running task can be cancelled")

    async def wait_status(self, key: ApiKey, model_id: str, task_id: str,
                          within_s: float) -> StatusAnswer:
        """The status answer as soon as the task has finished (at once when it already has),
        else its answer after ``within_s`` seconds; ``NotFound`` as ``status``. The task is read
        once, then again only when its events say it may have finished (a change that came
        with progress notes alone is a running attempt's next stage: not read), every
        ``events.recheck_s`` where they may not, and once at the end; after ``end_waits``, at
        once. Cancelled, it leaves no subscription behind."""
        return await self._waited(task_id, within_s,
                                  lambda: self.status(key, model_id, task_id),
                                  lambda answer: answer.finished)

    async def wait_task(self, key: ApiKey, model_id: str, task_id: str,
                        within_s: float) -> Task:
        """The key's task of ``model_id`` as soon as it has finished, else as it is after
        ``within_s`` seconds, read as ``wait_status`` reads it (from the store each time: for
        a caller that needs the task itself, such as a facade answering with its images);
        ``NotFound`` as ``owned``."""
        return await self._waited(task_id, within_s,
                                  lambda: self.owned(key, task_id, model_id),
                                  lambda task: task.state.terminal)

    async def _waited(self, task_id: str, within_s: float, read: Callable[[], Awaitable[T]],
                      finished: Callable[[T], bool]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        with self.events.watch(task_id) as watch:  # before the read: no change slips between
            found = await read()
            while not finished(found) and not self._waits_end.is_set():
                left = deadline - loop.time()
                if left <= 0:
                    break
                recheck = self.events.recheck_s
                await self._wait(watch, left if recheck is None else min(left, recheck))
                notes, unexplained = watch.take_notes()
                if notes and not unexplained and loop.time() < deadline:
                    continue  # only stages of its running attempt: not finished
                found = await read()
        return found

    async def _wait(self, watch: Watch, within_s: float) -> None:
        """Until the task changes, ``within_s`` seconds pass, or the waits are ended."""
        waits = {asyncio.ensure_future(watch.wait(within_s)),
                 asyncio.ensure_future(self._waits_end.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _cached(self, task_id: str) -> tuple[str, str, StatusAnswer] | None:
        """A finished task's answer kept in memory, unless its record retention has ended (the
        record may be gone: the store says)."""
        found = self._finished.get(task_id)
        if found is None:
            return None
        account_id, model, answer, until_ms = found
        if until_ms is not None and self.clock.now_ms() >= until_ms:
            del self._finished[task_id]
            return None
        self._finished.move_to_end(task_id)
        return account_id, model, answer

    def _remember(self, task: Task, answer: StatusAnswer) -> None:
        until = None
        if self.record_retention_ms is not None:
            until = (task.complete_ms or task.created_ms) + self.record_retention_ms
        self._finished[task.id] = (task.account_id, task.model, answer, until)
        if len(self._finished) > FINISHED_CACHE:
            self._finished.popitem(last=False)

    async def page(self, query: TaskQuery) -> dict[str, Any]:
        """The ``data`` of a page of the list of ``query.key_id``'s tasks (``task_list.py``),
        read from the store (a finished task's kept answer is not used: one read serves the
        page). One task more than the page is read, to know whether another page follows."""
        found = await self.store.list_tasks(dataclasses.replace(query, limit=query.limit + 1))
        return render_page(found, query.limit, self.base_url)

    async def owned(self, key: ApiKey, task_id: str, model_id: str | None = None) -> Task:
        """The key's account's task as the store has it now (of ``model_id``, when given);
        ``NotFound`` for any other, as for one that does not exist."""
        task = await self.store.get_task(task_id)
        if task is None:
            raise not_found(task_id, model_id)
        check_owner(key, task_id, model_id, task.account_id, task.model)
        return task

    async def balance_micros(self, key: ApiKey) -> int:
        account = await self.store.get_account(key.account_id)
        if account is None:
            raise Unauthorized("the account of this API key no longer exists")
        return account.balance_micros
