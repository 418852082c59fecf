from __future__ import annotations

import asyncio

from prometheus_client import generate_latest
from prometheus_client.core import Metric

from imagegate.concurrency import Slots
from imagegate.errors import (
    FailCode,
    InvalidRequest,
    PaymentRequired,
    RouteError,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
)
from imagegate.health import HealthBook
from imagegate.limits import rate_limited
from imagegate.metrics import Metrics, fleet_families, refusal_reason
from imagegate.store.base import FleetStats

NOW = 1_700_000_000_000


def flat(families: list[Metric]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(s.name, tuple(sorted(s.labels.values()))): s.value
            for family in families for s in family.samples}


def test_fleet_families_give_ages_in_seconds_and_zero_for_idle_catalogue_models() -> None:
    stats = FleetStats(queued={"a": 3}, oldest_queued_ms={"a": NOW - 90_500},
                       running={"a": 1, "b": 2}, held_micros=1_250_000,
                       pending_deliveries=4, oldest_pending_ms=NOW - 3_000)
    got = flat(fleet_families(stats, NOW, models=["a", "b"]))
    assert got == {
        ("imagegate_database_up", ()): 1.0,
        ("imagegate_queue_depth", ("a",)): 3.0,
        ("imagegate_queue_depth", ("b",)): 0.0,
        ("imagegate_queue_oldest_age_seconds", ("a",)): 90.5,
        ("imagegate_queue_oldest_age_seconds", ("b",)): 0.0,
        ("imagegate_tasks_unfinished", ("queued",)): 3.0,
        ("imagegate_tasks_unfinished", ("running",)): 3.0,
        ("imagegate_money_held_usd", ()): 1.25,
        ("imagegate_webhook_backlog", ()): 4.0,
        ("imagegate_webhook_oldest_pending_age_seconds", ()): 3.0,
    }


def test_a_model_queued_but_not_in_the_catalogue_still_shows() -> None:
    stats = FleetStats(queued={"gone": 1}, oldest_queued_ms={"gone": NOW})
    got = flat(fleet_families(stats, NOW, models=["a"]))
    assert got[("imagegate_queue_depth", ("gone",))] == 1.0
    assert got[("imagegate_queue_depth", ("a",))] == 0.0


def test_a_clock_behind_the_database_never_gives_a_negative_age() -> None:
    stats = FleetStats(queued={"a": 1}, oldest_queued_ms={"a": NOW + 5_000})
    assert flat(fleet_families(stats, NOW))[("imagegate_queue_oldest_age_seconds", ("a",))] == 0


def test_without_the_database_only_database_up_zero_is_reported() -> None:
    assert flat(fleet_families(None, NOW, models=["a"])) == {("imagegate_database_up", ()): 0.0}


def test_refusals_are_named_by_their_reason() -> None:
    assert refusal_reason(InvalidRequest("x")) == "invalid_request"
    assert refusal_reason(Unauthorized()) == "unauthorized"
    assert refusal_reason(PaymentRequired()) == "payment_required"
    assert refusal_reason(rate_limited(1.0, 2.0)) == "rate_limited"
    assert refusal_reason(TooManyRequests("x", reason="unfinished_limit")) == "unfinished_limit"
    assert refusal_reason(StoreUnavailable("disk full")) == "store_unavailable"
    assert refusal_reason(RuntimeError("bug")) == "error"


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # a global registry would refuse the second
    first.submit_accepted()
    first.submit_refused(Unauthorized())
    second.route_called("r", "success", 0.3)
    assert first.registry.get_sample_value("imagegate_submits_total",
                                           {"outcome": "accepted"}) == 1
    assert second.registry.get_sample_value("imagegate_submits_total",
                                            {"outcome": "accepted"}) == 0
    assert second.registry.get_sample_value("imagegate_route_call_seconds_bucket",
                                            {"route": "r", "le": "0.5"}) == 1
    assert second.registry.get_sample_value("imagegate_route_call_seconds_bucket",
                                            {"route": "r", "le": "0.25"}) == 0


def test_circuits_are_read_from_the_health_book_at_each_scrape() -> None:
    now = [100.0]
    health = HealthBook(threshold=2, cooldown_s=30, monotonic=lambda: now[0])
    metrics = Metrics()
    metrics.circuits.watch(health, ["b", "a"])

    def circuit(route: str) -> str:
        states = [s for s in ("closed", "open", "half-open", "unavailable")
                  if metrics.registry.get_sample_value(
                      "imagegate_route_circuit_state", {"route": route, "state": s}) == 1]
        assert len(states) == 1, states
        return states[0]

    assert (circuit("a"), circuit("b")) == ("closed", "closed")
    for _ in range(2):
        health.failed("a", RouteError.of(FailCode.TIMEOUT, "slow"))
    health.mark_unavailable("b", "the model is gone")
    assert (circuit("a"), circuit("b")) == ("open", "unavailable")
    assert metrics.registry.get_sample_value("imagegate_route_failures_in_a_row",
                                             {"route": "a"}) == 2
    now[0] += 31
    assert circuit("a") == "half-open"
    assert b'imagegate_route_circuit_state{route="a",state="half-open"} 1.0' in generate_latest(
        metrics.registry)


def test_route_slots_are_read_from_the_router_at_each_scrape() -> None:
    slots = Slots({"engine": 1})
    metrics = Metrics()
    metrics.route_slots.watch(slots)

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"route": "engine"})

    async def go() -> tuple[float | None, float | None, float | None]:
        release = asyncio.Event()

        async def call() -> None:
            async with slots.hold("engine"):
                await release.wait()

        calls = [asyncio.create_task(call()) for _ in range(3)]
        for _ in range(10):
            await asyncio.sleep(0)
        seen = (sample("imagegate_route_max_in_flight"), sample("imagegate_route_in_flight"),
                sample("imagegate_route_slot_waiters"))
        release.set()
        await asyncio.gather(*calls)
        return seen

    assert asyncio.run(go()) == (1.0, 1.0, 2.0)
    assert (sample("imagegate_route_in_flight"), sample("imagegate_route_slot_waiters")) == (
        0.0, 0.0)
    assert metrics.registry.get_sample_value("imagegate_route_in_flight",
                                             {"route": "other"}) is None
