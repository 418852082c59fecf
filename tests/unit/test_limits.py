"""The per-key submit token bucket (limits.py), driven by a fake monotonic clock."""

from __future__ import annotations

import asyncio

import pytest

from imagegate.limits import InMemoryRateLimiter, take_token


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def take(limiter: InMemoryRateLimiter, key: str = "k", rate: float = 1.0, burst: int = 3,
         ) -> float:
    return asyncio.run(limiter.acquire(key, rate, burst))


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def limiter(clock: FakeMonotonic) -> InMemoryRateLimiter:
    return InMemoryRateLimiter(monotonic=clock)


def test_a_fresh_key_may_spend_its_whole_burst_at_once(limiter: InMemoryRateLimiter) -> None:
    assert [take(limiter, burst=5) for _ in range(5)] == [0.0] * 5


def test_after_the_burst_the_answer_is_the_wait_for_one_token(
        limiter: InMemoryRateLimiter) -> None:
    for _ in range(3):
        take(limiter)
    assert take(limiter, rate=1.0) == pytest.approx(1.0)


def test_retry_after_scales_with_the_rate(limiter: InMemoryRateLimiter) -> None:
    for _ in range(3):
        take(limiter, rate=4.0)
    assert take(limiter, rate=4.0) == pytest.approx(0.25)


def test_retry_after_counts_the_partial_refill(limiter: InMemoryRateLimiter,
                                               clock: FakeMonotonic) -> None:
    for _ in range(3):
        take(limiter)
    clock.advance(0.4)
    assert take(limiter) == pytest.approx(0.6)
    clock.advance(0.6)
    assert take(limiter) == 0.0


def test_refused_attempts_do_not_spend_tokens(limiter: InMemoryRateLimiter,
                                              clock: FakeMonotonic) -> None:
    for _ in range(3):
        take(limiter)
    for _ in range(10):
        assert take(limiter) > 0
    clock.advance(1.0)
    assert take(limiter) == 0.0


def test_tokens_refill_at_the_rate(limiter: InMemoryRateLimiter, clock: FakeMonotonic) -> None:
    for _ in range(3):
        take(limiter, rate=2.0)
    clock.advance(1.0)  # two tokens back
    assert take(limiter, rate=2.0) == 0.0
    assert take(limiter, rate=2.0) == 0.0
    assert take(limiter, rate=2.0) > 0


def test_refill_never_exceeds_the_burst(limiter: InMemoryRateLimiter,
                                        clock: FakeMonotonic) -> None:
    take(limiter)
    clock.advance(3600)
    assert [take(limiter) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take(limiter) > 0


def test_keys_have_separate_buckets(limiter: InMemoryRateLimiter) -> None:
    for _ in range(3):
        take(limiter, key="a")
    assert take(limiter, key="a") > 0
    assert take(limiter, key="b") == 0.0


def test_forgetting_buckets_keeps_the_ones_that_still_limit(clock: FakeMonotonic) -> None:
    limiter = InMemoryRateLimiter(monotonic=clock, max_keys=2)
    for _ in range(3):
        take(limiter, key="drained")
    take(limiter, key="idle")
    clock.advance(10)  # "idle" refills to full; "drained" would too, so spend it again
    for _ in range(3):
        take(limiter, key="drained")
    take(limiter, key="newcomer")  # over max_keys: only full buckets may be dropped
    assert take(limiter, key="drained") > 0


def test_take_token_refills_then_takes_one() -> None:
    assert take_token(0.0, 1.5, 2.0, 5) == (2.0, 0.0)  # 3 tokens after 1.5 s at 2/s, one taken


def test_take_token_says_the_wait_when_there_is_none() -> None:
    tokens, wait = take_token(0.25, 0.0, 2.0, 5)
    assert tokens == 0.25 and wait == pytest.approx(0.375)


def test_take_token_ignores_time_running_backwards_and_caps_at_the_burst() -> None:
    assert take_token(0.5, -10.0, 1.0, 3)[0] == 0.5
    assert take_token(float("inf"), 0.0, 1.0, 3) == (2.0, 0.0)  # a new bucket starts full
