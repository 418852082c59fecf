"""The memory guard: batches that run out of memory are split, and shrink from then on."""

from __future__ import annotations

import pytest
from PIL import Image

from imagegate.errors import RouteError
from imagegate.routes.diffusers.batcher import BatchKey, Outcome, Request
from imagegate.routes.diffusers.memory import MemoryGuard

KEY = BatchKey("tiny", "text-to-image", 64, 64, 2, 5.0, 0.75)


class OutOfMemory(Exception):
    pass


class Device:
    """A call that runs out of memory above ``fits`` images; records each call's task ids."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.calls: list[list[str]] = []
        self.released = 0

    def call(self, requests: list[Request]) -> list[Outcome]:
        self.calls.append([r.task_id for r in requests])
        if sum(r.images for r in requests) > self.fits:
            raise OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [[Image.new("RGB", (1, 1))] * r.images for r in requests]

    def release(self) -> None:
        self.released += 1


def guard(device: Device) -> MemoryGuard:
    return MemoryGuard(lambda exc: isinstance(exc, OutOfMemory), device.release)


def jobs(*images: int) -> list[Request]:
    return [Request(f"t{i}", "a fox", tuple(range(n))) for i, n in enumerate(images)]


def test_a_batch_that_runs_out_of_memory_is_split_until_it_fits() -> None:
    device = Device(fits=2)
    outcomes = guard(device).run(KEY, jobs(1, 1, 1, 1), device.call)
    assert all(isinstance(o, list) and len(o) == 1 for o in outcomes)
    assert device.calls == [["t0", "t1", "t2", "t3"], ["t0", "t1"], ["t2", "t3"]]
    assert device.released == 1


def test_later_batches_of_that_kind_are_cut_to_the_size_that_fit() -> None:
    device = Device(fits=2)
    memory = guard(device)
    memory.run(KEY, jobs(1, 1, 1, 1), device.call)
    device.calls.clear()
    memory.run(KEY, jobs(1, 1, 1), device.call)
    assert device.calls == [["t0", "t1"], ["t2"]]  # no out-of-memory first
    other = BatchKey("tiny", "text-to-image", 32, 32, 2, 5.0, 0.75)
    device.calls.clear()
    memory.run(other, jobs(1, 1), device.call)
    assert device.calls == [["t0", "t1"]]  # another size keeps its own limit


def test_a_job_too_large_alone_fails_alone_with_a_clear_message() -> None:
    device = Device(fits=2)
    outcomes = guard(device).run(KEY, jobs(1, 3, 1), device.call)
    assert isinstance(outcomes[0], list) and isinstance(outcomes[2], list)
    error = outcomes[1]
    assert isinstance(error, RouteError)
    assert "out of device memory" in error.message and "3 image(s) at 64x64" in error.message
    assert not error.retryable and error.failover


def test_an_error_that_is_not_about_memory_passes_through() -> None:
    def broken(requests: list[Request]) -> list[Outcome]:
        raise ValueError("bad shape")

    with pytest.raises(ValueError, match="bad shape"):
        guard(Device(fits=8)).run(KEY, jobs(1, 1), broken)
