"""The memory guard: a batch that runs out of device memory is split and run again smaller.

An out-of-memory error frees the allocator's cached blocks, halves the batch and retries each
half; the size that failed is remembered per ``BatchKey`` (steps aside: they take time, not memory)
so later batches of that key are cut to the largest size not yet known to fail, instead of
failing first. A single job that does not
fit fails alone with a clear message (other jobs of its batch still run), and the route goes on
serving. How an error is recognised as out-of-memory and how memory is freed are given by the
caller (torch's, in ``engine``), so this module imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from imagegate.errors import FailCode, RouteError
from imagegate.routes.diffusers.batcher import BatchKey, Outcome, Request

__all__ = ["MemoryGuard", "out_of_memory"]

log = logging.getLogger("imagegate.routes.diffusers")

Call = Callable[[list[Request]], list[Outcome]]


def out_of_memory(key: BatchKey, request: Request) -> RouteError:
    """The error of a job that does not fit in memory even alone. Retrying on this device will
    not help; another route may have a larger one."""
    return RouteError(FailCode.UNKNOWN, f"out of device memory: {request.images} image(s) at "
                      f"{key.width}x{key.height}, {key.steps} steps do not fit on this worker "
                      "even alone", retryable=False, failover=True)


class MemoryGuard:
    """Runs batches through ``call`` within the memory they are known to fit in. ``is_oom``
    says whether an exception is an out-of-memory error; ``release`` frees cached memory after
    one. Blocking: it runs on the route's pipeline thread."""

    def __init__(self, is_oom: Callable[[BaseException], bool],
                 release: Callable[[], None]) -> None:
        self._is_oom = is_oom
        self._release = release
        # Images per call known to fit, after an out-of-memory error; by ``_memory_key``.
        self.caps: dict[BatchKey, int] = {}

    def run(self, key: BatchKey, requests: list[Request], call: Call) -> list[Outcome]:
        """One outcome per request, in order. Exceptions other than out-of-memory propagate."""
        outcomes: list[Outcome] = []
        for chunk in self._chunks(key, requests):
            outcomes.extend(self._guarded(key, chunk, call))
        return outcomes

    def _chunks(self, key: BatchKey, requests: list[Request]) -> list[list[Request]]:
        cap = self.caps.get(_memory_key(key))
        if cap is None:
            return [requests]
        chunks: list[list[Request]] = [[]]
        for request in requests:
            if chunks[-1] and _images(chunks[-1]) + request.images > cap:
                chunks.append([])
            chunks[-1].append(request)
        return chunks

    def _guarded(self, key: BatchKey, requests: list[Request], call: Call) -> list[Outcome]:
        try:
            return call(requests)
        except Exception as exc:
            if not self._is_oom(exc):
                raise
        # Out of memory: the exception (and the frames holding tensors) is gone by now.
        self._release()
        images = _images(requests)
        if len(requests) == 1:
            log.warning("out of memory on a single job of %d image(s) at %dx%d", images,
                        key.width, key.height)
            return [out_of_memory(key, requests[0])]
        cap = self.caps[_memory_key(key)] = max(
            1, min(self.caps.get(_memory_key(key), images), images) // 2)
        log.warning("out of memory on a batch of %d images at %dx%d: splitting it, batches "
                    "of this kind now run at most %d images", images, key.width, key.height,
                    cap)
        half = len(requests) // 2
        return (self._guarded(key, requests[:half], call)
                + self._guarded(key, requests[half:], call))


def _images(requests: Sequence[Request]) -> int:
    return sum(r.images for r in requests)


def _memory_key(key: BatchKey) -> BatchKey:
    """What decides a batch's memory: everything in its key but the number of steps."""
    return replace(key, steps=0)
