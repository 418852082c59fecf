from __future__ import annotations

from imagegate.errors import FailCode, RouteError
from imagegate.health import Circuit, HealthBook


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def book(threshold: int = 3, cooldown: float = 10.0) -> tuple[HealthBook, Clock]:
    clock = Clock()
    return HealthBook(threshold, cooldown, clock), clock


def fail(code: str = FailCode.UNKNOWN, retry_after: float | None = None) -> RouteError:
    return RouteError.of(code, "boom", retry_after=retry_after)


def test_failures_in_a_row_open_the_circuit_for_the_cooldown() -> None:
    health, clock = book()
    for _ in range(2):
        health.failed("a", fail())
    assert health.circuit("a") == Circuit.CLOSED and health.acquire("a")
    health.failed("a", fail())
    assert health.circuit("a") == Circuit.OPEN and not health.acquire("a")
    assert health.wait_s("a") == 10.0
    clock.now += 9.9
    assert not health.acquire("a")


def test_after_the_cooldown_one_trial_is_let_through() -> None:
    health, clock = book()
    for _ in range(3):
        health.failed("a", fail())
    clock.now += 10
    assert health.circuit("a") == Circuit.HALF_OPEN
    assert health.acquire("a")
    assert not health.acquire("a")  # one trial at a time


def test_a_successful_trial_closes_the_circuit() -> None:
    health, clock = book()
    for _ in range(3):
        health.failed("a", fail())
    clock.now += 10
    assert health.acquire("a")
    health.succeeded("a")
    assert health.circuit("a") == Circuit.CLOSED
    health.failed("a", fail())
    assert health.circuit("a") == Circuit.CLOSED  # the count started again


def test_a_failed_trial_opens_it_again_at_once() -> None:
    health, clock = book()
    for _ in range(3):
        health.failed("a", fail())
    clock.now += 10
    assert health.acquire("a")
    health.failed("a", fail(FailCode.TIMEOUT))
    assert health.circuit("a") == Circuit.OPEN and health.wait_s("a") == 10.0


def test_content_outcomes_do_not_count() -> None:
    health, _ = book(threshold=1)
    for code in (FailCode.SENSITIVE_CONTENT, FailCode.PROMPT_INVALID,
                 FailCode.IMAGE_FORMAT_INCORRECT, FailCode.MISSING_PARAMETER):
        health.failed("a", fail(code))
    assert health.circuit("a") == Circuit.CLOSED


def test_a_rate_limit_delay_rests_the_route_that_long() -> None:
    health, clock = book(threshold=5)
    health.failed("a", fail(FailCode.RATE_LIMITED, retry_after=4.0))
    assert health.circuit("a") == Circuit.OPEN and health.wait_s("a") == 4.0
    assert health.last_code("a") == FailCode.RATE_LIMITED
    clock.now += 4
    assert health.circuit("a") == Circuit.CLOSED and health.acquire("a")


def test_routes_are_independent_and_a_cancelled_trial_frees_the_slot() -> None:
    health, clock = book(threshold=1)
    health.failed("a", fail())
    assert health.acquire("b")
    clock.now += 10
    assert health.acquire("a")
    health.release("a")
    assert health.acquire("a")
    assert health.view("a") == {"circuit": "half-open", "failures": 1, "retryInS": 0.0}


def batch_failure(incident: str) -> RouteError:
    return RouteError(FailCode.UNKNOWN, "the batch failed", retryable=True, failover=True,
                      incident=incident)


def test_the_tasks_of_one_failed_batch_count_once() -> None:
    health, _ = book(threshold=2)
    for _ in range(8):
        health.failed("a", batch_failure("batch-1"))
    assert health.failures("a") == 1 and health.circuit("a") == Circuit.CLOSED
    health.failed("a", batch_failure("batch-2"))
    assert health.failures("a") == 2 and health.circuit("a") == Circuit.OPEN
