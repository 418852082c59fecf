"""The batcher that turns concurrent calls into one call of a batch function."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from imagegate.store.batching import Batcher


class Doubler:
    """A batch function that records each batch and can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"odd {i}") if i % 2 else i * 2 for i in items]


def test_a_lone_call_runs_at_once_as_a_batch_of_one() -> None:
    async def scenario() -> None:
        run = Doubler()
        batcher: Batcher[int, int] = Batcher(run)
        assert await batcher(4) == 8
        assert run.batches == [[4]]

    asyncio.run(scenario())


def test_calls_made_together_ride_one_batch_and_each_gets_its_own_answer() -> None:
    async def scenario() -> None:
        run = Doubler()
        batcher: Batcher[int, int] = Batcher(run)
        outcomes = await asyncio.gather(*(batcher(i) for i in range(6)),
                                        return_exceptions=True)
        assert run.batches == [[0, 1, 2, 3, 4, 5]]
        assert outcomes[0::2] == [0, 4, 8]
        assert [str(e) for e in outcomes[1::2]] == ["odd 1", "odd 3", "odd 5"]

    asyncio.run(scenario())


def test_calls_arriving_while_a_batch_runs_leave_together_after_it() -> None:
    async def scenario() -> None:
        run = Doubler()
        run.gate.clear()
        batcher: Batcher[int, int] = Batcher(run)
        first = asyncio.create_task(batcher(0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert run.batches == [[0]]  # under way, held open
        later = [asyncio.create_task(batcher(i)) for i in (2, 4, 6)]
        await asyncio.sleep(0)
        assert run.batches == [[0]]  # one batch at a time: the others wait
        run.gate.set()
        assert await first == 0
        assert await asyncio.gather(*later) == [4, 8, 12]
        assert run.batches == [[0], [2, 4, 6]]

    asyncio.run(scenario())


def test_batches_never_exceed_their_size_and_may_run_side_by_side() -> None:
    async def scenario() -> None:
        run = Doubler()
        batcher: Batcher[int, int] = Batcher(run, max_size=4, max_in_flight=2)
        assert await asyncio.gather(*(batcher(2 * i) for i in range(10))) == [
            4 * i for i in range(10)]
        assert [len(b) for b in run.batches] == [4, 4, 2]
        assert sorted(i for b in run.batches for i in b) == [2 * i for i in range(10)]

    asyncio.run(scenario())


def test_a_failed_batch_fails_every_call_in_it_and_the_next_batch_runs() -> None:
    async def scenario() -> None:
        run = Doubler()
        batcher: Batcher[int, int] = Batcher(run)
        run.fail = OSError("disk full")
        outcomes = await asyncio.gather(batcher(2), batcher(4), return_exceptions=True)
        assert [str(o) for o in outcomes] == ["disk full", "disk full"]
        run.fail = None
        assert await batcher(6) == 12

    asyncio.run(scenario())


def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    async def scenario() -> None:
        run = Doubler()
        run.gate.clear()
        batcher: Batcher[int, int] = Batcher(run)
        calls = [asyncio.create_task(batcher(i)) for i in (2, 4)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        calls[0].cancel()
        run.gate.set()
        assert await calls[1] == 8
        with pytest.raises(asyncio.CancelledError):
            await calls[0]
        assert run.batches == [[2, 4]]  # it had left with the batch: it still ran

    asyncio.run(scenario())


def test_drain_returns_once_every_call_has_its_answer() -> None:
    async def scenario() -> None:
        run = Doubler()
        run.gate.clear()
        batcher: Batcher[int, int] = Batcher(run)
        calls = [asyncio.create_task(batcher(i)) for i in (2, 4)]
        await asyncio.sleep(0)
        draining = asyncio.create_task(batcher.drain())
        await asyncio.sleep(0)
        assert not draining.done()
        run.gate.set()
        await draining
        assert all(c.done() for c in calls)

    asyncio.run(scenario())


def test_a_batch_function_that_miscounts_its_answers_fails_every_call() -> None:
    async def short(items: Sequence[int]) -> list[int | Exception]:
        return [1]

    async def scenario() -> None:
        batcher: Batcher[int, int] = Batcher(short)
        outcomes = await asyncio.gather(batcher(1), batcher(2), return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes)

    asyncio.run(scenario())


def test_nonsense_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(Doubler(), max_size=0)
    with pytest.raises(ValueError):
        Batcher(Doubler(), max_in_flight=0)


def test_a_call_made_as_a_flush_ends_still_gets_its_batch() -> None:
    async def scenario() -> None:
        run = Doubler()
        batcher: Batcher[int, int] = Batcher(run)

        async def one_after_another() -> tuple[int, int]:
            # The second call comes as soon as the first has its answer: its flush has
            # finished but is not yet forgotten.
            return await batcher(2), await batcher(4)

        assert await asyncio.wait_for(one_after_another(), 1) == (4, 8)
        assert run.batches == [[2], [4]]

    asyncio.run(scenario())
