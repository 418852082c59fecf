"""The worker loop: claim a task under a lease -> fetch references -> router -> normalise ->
store the files -> finish. Runs in the API process (``serve``) or on its own.

This is the one place that catches broadly: any exception inside a task attempt becomes a
failed (or retried) task with a clear failMsg; nothing escapes to kill the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence

from imagegate.blobs.base import BlobStore, result_key
from imagegate.clock import Clock
from imagegate.completion import Completion
from imagegate.config import Settings
from imagegate.contract import ModelLimits, nearest_ratio, output_size
from imagegate.errors import (
    FailCode,
    RouteError,
    StorageFull,
    StorageUnavailable,
    StoreUnavailable,
    TaskError,
)
from imagegate.events import Progress, TaskEvents
from imagegate.fetch import FetchedImage, ReferenceFetcher
from imagegate.imaging import EncodedImage, ImageDecodeError, as_delivered, normalise
from imagegate.logs import task_fields
from imagegate.picture_headers import EncodedPicture
from imagegate.router import Router
from imagegate.routes.base import GeneratedImage, Job
from imagegate.store.base import Store
from imagegate.tasks import ResultFile, RouteAttempt, Task, TaskState

log = logging.getLogger("imagegate.worker")


class Worker:
    def __init__(self, store: Store, blobs: BlobStore, router: Router, fetcher: ReferenceFetcher,
                 completion: Completion, settings: Settings, clock: Clock, events: TaskEvents,
                 models: Sequence[str] | None = None, concurrency: int | None = None) -> None:
        self.store = store
        self.blobs = blobs
        self.router = router
        self.fetcher = fetcher
        self.completion = completion
        self.settings = settings
        self.clock = clock
        self.events = events
        self.models = models  # None: every model
        self.concurrency = concurrency or settings.worker_concurrency
        self.id = "w-" + secrets.token_hex(4)
        self._running: set[asyncio.Task[None]] = set()
        self._tasks: dict[asyncio.Task[None], Task] = {}  # what each running attempt runs

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run tasks until ``stop`` is set; then let running attempts finish.
        Cancelled (a stop's grace period is over), it cancels the attempts it runs and hands
        their tasks back to the queue at once, instead of leaving them to their leases."""
        try:
            await self._loop(stop)
        except asyncio.CancelledError:
            cut_off = list(self._tasks.values())
            for running in list(self._running):
                running.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            await self._release(cut_off)
            raise

    async def work_once(self) -> int:
        """Claim the tasks ready now (up to ``concurrency``) and run each attempt to its end;
        how many. One pass of ``run``, for tools and tests that drive time themselves."""
        claimed = await self._claim(self.concurrency)
        await asyncio.gather(*(self.run_task(task) for task in claimed))
        return len(claimed)

    async def _release(self, tasks: Sequence[Task]) -> None:
        now = self.clock.now_ms()
        for task in tasks:
            try:
                if await self.store.retry_later(task.id, task.attempt, now,
                                                task.route_attempts, f"attempt {task.attempt}: "
                                                "released by a worker that stopped"):
                    self.events.task_changed(task.id)
            except Exception:  # its lease will expire instead
                log.exception("could not release task %s", task.id, extra=task_fields(task))

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            claimed = await self._claim(free) if free > 0 else []
            for task in claimed:
                running = asyncio.create_task(self.run_task(task), name=f"task-{task.id}")
                self._running.add(running)
                self._tasks[running] = task
                running.add_done_callback(self._done)
            if free > 0 and not claimed:
                await self._idle(stop)
            elif free <= len(claimed):
                await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        if self._running:
            await asyncio.wait(self._running)

    def _done(self, running: asyncio.Task[None]) -> None:
        self._running.discard(running)
        self._tasks.pop(running, None)
        self.events.work.set()  # a slot is free: this process looks for more work

    async def _claim(self, limit: int) -> list[Task]:
        lease_ms = int(self.settings.worker_lease_seconds * 1000)
        try:
            claimed = await self.store.claim_tasks(self.id, self.clock.now_ms(), lease_ms,
                                                   limit, self.models)
        except StoreUnavailable as exc:
            log.warning("claiming tasks failed, retrying shortly: %s", exc.message)
            return []
        except Exception:
            log.exception("claiming tasks failed; retrying shortly")
            return []
        for task in claimed:  # its stream shows it running
            self.events.task_changed(task.id, Progress(task.attempt, task.stage))
        return claimed

    async def _idle(self, stop: asyncio.Event) -> None:
        await self.events.work.wait(self.settings.worker_poll_seconds, stop)

    async def run_task(self, task: Task) -> None:
        """One attempt of one task, with a heartbeat that keeps its lease and watches for its
        client's cancel. A task claimed with a cancel already asked for (its earlier attempt
        was cut off) ends canceled at once."""
        if task.cancel_requested_ms is not None:
            await self.completion.end_canceled(task, task.route_attempts)
            return
        attempt = asyncio.create_task(self._attempt(task))
        beat = asyncio.create_task(self._heartbeat(task, attempt))
        try:
            await attempt
        except asyncio.CancelledError:
            if not attempt.cancelled():
                raise
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if not beat.cancelled() and beat.result():
            await self._canceled(task)
        elif attempt.cancelled():
            log.warning("task %s attempt %d lost its lease; abandoned", task.id, task.attempt,
                        extra=task_fields(task))

    async def _canceled(self, task: Task) -> None:
        """End an attempt abandoned for its client's cancel; the fence keeps the result of an
        attempt that finished first."""
        if not await self.completion.end_canceled(task, task.route_attempts):
            log.info("task %s attempt %d ended before its cancel", task.id, task.attempt,
                     extra=task_fields(task))

    async def _heartbeat(self, task: Task, attempt: asyncio.Task[None]) -> bool:
        """Renew the lease every third of it, and meanwhile watch for the client's cancel:
        on the task's change event (from any process; its own stages, announced with progress
        notes, are not read for one), and at each beat should an event be lost. The attempt
        is cancelled when the client cancels (True), or when the lease is lost (another
        attempt owns the task) or could not be renewed for a whole lease."""
        lease_s = self.settings.worker_lease_seconds
        renewed = time.monotonic()
        due = renewed + lease_s / 3
        with self.events.watch(task.id) as watch:
            while not attempt.done():
                changed = await watch.wait(max(0.0, due - time.monotonic()))
                if attempt.done():  # it ended (the change heard may be its own finish)
                    break
                unexplained = watch.take_notes()[1]
                if (unexplained or not changed) and await self._cancel_requested(task):
                    attempt.cancel()
                    return True
                if time.monotonic() < due:
                    continue
                due = time.monotonic() + lease_s / 3
                kept, renewed = await self._renew(task, renewed)
                if not kept:
                    attempt.cancel()
                    break
        return False

    async def _renew(self, task: Task, renewed: float) -> tuple[bool, float]:
        """Renew the attempt's lease: whether it is still held (a renewal that fails is
        forgiven until a whole lease has passed since ``renewed``), and when it was renewed
        last (monotonic seconds)."""
        lease_s = self.settings.worker_lease_seconds
        try:
            kept = await self.store.renew_lease(task.id, task.attempt,
                                                self.clock.now_ms() + int(lease_s * 1000))
        except StoreUnavailable as exc:
            log.warning("heartbeat for task %s failed: %s", task.id, exc.message,
                        extra=task_fields(task))
            return time.monotonic() - renewed < lease_s, renewed
        except Exception:
            log.exception("heartbeat for task %s failed", task.id, extra=task_fields(task))
            return time.monotonic() - renewed < lease_s, renewed
        return kept, time.monotonic() if kept else renewed

    async def _cancel_requested(self, task: Task) -> bool:
        """Whether the client asked to cancel this attempt's task (False when that cannot be
        read now: the next beat asks again)."""
        try:
            current = await self.store.get_task(task.id)
        except Exception:
            log.exception("reading task %s for a cancel failed", task.id,
                          extra=task_fields(task))
            return False
        return (current is not None and current.cancel_requested_ms is not None
                and current.state is TaskState.RUNNING and current.attempt == task.attempt)

    async def _attempt(self, task: Task) -> None:
        record = list(task.route_attempts)  # the router appends each route it tries
        try:
            remaining = self._remaining_s(task)
            if remaining <= 0:
                raise RouteError(FailCode.TIMEOUT, "the task ran past its deadline")
            async with asyncio.timeout(remaining):
                results, notes = await self._produce(task, record)
            await self.completion.succeed(task, results, tuple(record), notes)
        except TimeoutError:
            late = TaskError(FailCode.TIMEOUT, "the task ran past its deadline")
            await self.completion.fail(task, late, tuple(record))
        except TaskError as error:
            await self._failed(task, error, tuple(record))
        except StorageFull as exc:
            # Not retried: the image was made (and paid upstream); another attempt would pay
            # again and likely find the storage as full. The client is refunded.
            full = TaskError(FailCode.UNKNOWN, f"storage full: the images were made but could "
                             f"not be stored ({exc})")
            await self.completion.fail(task, full, tuple(record))
        except StorageUnavailable as exc:
            log.warning("task %s attempt %d: %s", task.id, task.attempt, exc)
            # The detail (bucket, key, S3's answer) is the operator's; the client gets the gist.
            unstored = TaskError(FailCode.UNKNOWN, "the images were made but the result "
                                 "storage could not be reached", retryable=True)
            await self._failed(task, unstored, tuple(record))
        except Exception as exc:
            log.exception("task %s attempt %d crashed", task.id, task.attempt,
                          extra=task_fields(task))
            crash = TaskError(FailCode.UNKNOWN, f"internal error: {type(exc).__name__}",
                              retryable=True)
            await self._failed(task, crash, tuple(record))

    async def _failed(self, task: Task, error: TaskError,
                      attempts: tuple[RouteAttempt, ...]) -> None:
        if self.completion.may_retry(task, error):
            await self.completion.retry_later(task, error, attempts)
        else:
            await self.completion.fail(task, error, attempts)

    def _remaining_s(self, task: Task) -> float:
        deadline = task.created_ms + int(self.settings.worker_task_deadline_seconds * 1000)
        return (deadline - self.clock.now_ms()) / 1000

    async def _produce(self, task: Task, record: list[RouteAttempt],
                       ) -> tuple[tuple[ResultFile, ...], tuple[str, ...]]:
        references: list[FetchedImage] = []
        if task.input.image_urls:
            await self._stage(task, "fetching")
            references = await self.fetcher.fetch_all(task.input.image_urls)
        job = build_job(task, references, self.router.model(task.model).limits)
        await self._stage(task, "generating")
        outcome = await self.router.run(job, task.input, task.provider)
        record.extend(outcome.attempts)
        if outcome.error is not None:
            raise outcome.error
        await self._stage(task, "storing")
        return await self._store_images(task, job, outcome.images)

    async def _stage(self, task: Task, stage: str) -> None:
        """Record the attempt's stage (renewing its lease) and announce it to the task's
        streams, one note per stage."""
        lease_ms = int(self.settings.worker_lease_seconds * 1000)
        if await self.store.renew_lease(task.id, task.attempt, self.clock.now_ms() + lease_ms,
                                        stage):
            self.events.task_changed(task.id, Progress(task.attempt, stage))

    async def _store_images(self, task: Task, job: Job, images: Sequence[GeneratedImage],
                            ) -> tuple[tuple[ResultFile, ...], tuple[str, ...]]:
        if len(images) < job.num_images:
            raise RouteError.of(FailCode.UNKNOWN, f"the route returned {len(images)} images, "
                                f"{job.num_images} were asked for")
        results, notes = [], []
        for index, generated in enumerate(images[: job.num_images]):
            encoded = await _delivered(index, generated, job)
            key = result_key(task.id, task.attempt, index, encoded.extension)
            await self.blobs.put(key, encoded.data, encoded.content_type)
            results.append(ResultFile(key, f"image-{index}.{encoded.extension}",
                                      encoded.content_type, len(encoded.data), encoded.width,
                                      encoded.height))
            notes.extend(_notes(index, generated, encoded))
        return tuple(results), tuple(notes)


async def _delivered(index: int, generated: GeneratedImage, job: Job) -> EncodedImage:
    """The file of image ``index``: exactly the job's size and format. A picture the route
    kept encoded is stored as it came when it already is that (``as_delivered``: no pixel
    decoded); any other is decoded (a picture that does not decode fails the attempt, which
    may be retried) and normalised, off the event loop."""
    source = generated.source
    if isinstance(source, EncodedPicture):
        kept = as_delivered(source, job.width, job.height, job.output_format)
        if kept is not None:
            return kept
    try:
        return await asyncio.to_thread(_normalised, generated, job)
    except ImageDecodeError as exc:
        raise RouteError.of(FailCode.UNKNOWN, f"image {index}: the route's picture is "
                            f"unusable: {exc}") from exc


def _normalised(generated: GeneratedImage, job: Job) -> EncodedImage:
    return normalise(generated.image, job.width, job.height, job.output_format)


def _notes(index: int, generated: GeneratedImage, encoded: EncodedImage) -> list[str]:
    notes = [f"image {index}: {generated.note}"] if generated.note else []
    if encoded.adjusted:
        w, h = generated.size
        notes.append(f"image {index}: route gave {w}x{h}; cropped and resized to "
                     f"{encoded.width}x{encoded.height}")
    return notes


def build_job(task: Task, references: Sequence[FetchedImage], limits: ModelLimits) -> Job:
    """Resolve ``auto`` (docs/contract.md §6) among the model's ratios, and the exact output
    size."""
    inp = task.input
    ratio = inp.aspect_ratio
    if ratio == "auto":
        ratio = (nearest_ratio(*references[0].image.size, limits.ratios) if references
                 else "1:1")
    width, height = output_size(ratio, inp.resolution, limits.size_table)
    return Job(task_id=task.id, model=task.model, mode=inp.mode, prompt=inp.prompt,
               aspect_ratio=ratio, resolution=inp.resolution, width=width, height=height,
               output_format=inp.output_format, references=tuple(references),
               image_urls=inp.image_urls,
               google_search=inp.google_search, seed=inp.seed, num_images=inp.num_images,
               attempt=task.attempt)
