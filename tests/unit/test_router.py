"""Candidate selection, failover and health, with scripted fake routes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from PIL import Image

from imagegate.catalogue import ModelConfig
from imagegate.contract import ModelLimits, SubmitInput
from imagegate.errors import FailCode, InvalidRequest, NotFound, RouteError, RouteUnavailable
from imagegate.health import HealthBook
from imagegate.router import Router
from imagegate.routes.base import Capabilities, GeneratedImage, Job, RouteCheck
from imagegate.routing import Routing


class ScriptedRoute:
    """Answers each call with the next outcome: an error to raise, or None for an image."""

    def __init__(self, name: str, outcomes: Sequence[RouteError | None] = (),
                 **caps: object) -> None:
        self.name = name
        self.upstream_model = f"upstream-{name}"
        self.capabilities = Capabilities(**caps)  # type: ignore[arg-type]
        self.outcomes = list(outcomes)
        self.calls = 0

    async def generate(self, job: Job) -> list[GeneratedImage]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return [GeneratedImage(Image.new("RGB", (8, 8)))]

    async def check(self) -> RouteCheck:
        return RouteCheck(True, "scripted")

    async def close(self) -> None:
        return None


def err(code: str, retry_after: float | None = None) -> RouteError:
    return RouteError.of(code, f"{code} happened", retry_after=retry_after)


def inp(**changes: object) -> SubmitInput:
    base: dict[str, object] = dict(mode="text-to-image", prompt="p", aspect_ratio="1:1",
                                   resolution="1k", output_format="png")
    base.update(changes)
    return SubmitInput(**base)  # type: ignore[arg-type]


JOB = Job(task_id="t", model="m", mode="text-to-image", prompt="p", aspect_ratio="1:1",
          resolution="1k", width=1024, height=1024, output_format="png")


def routing(*routes: ScriptedRoute) -> Routing:
    model = ModelConfig("m", ModelLimits(), {"1k": 1}, tuple(r.name for r in routes))
    return Routing({"m": model}, {r.name: r.capabilities for r in routes})


def router(*routes: ScriptedRoute, health: HealthBook | None = None) -> Router:
    return Router(routing(*routes), {r.name: r for r in routes}, health)


def run(r: Router, provider: str = "auto", **changes: object):  # type: ignore[no-untyped-def]
    return asyncio.run(r.run(JOB, inp(**changes), provider))


def test_first_route_that_succeeds_produces_the_images() -> None:
    a, b = ScriptedRoute("a"), ScriptedRoute("b")
    out = run(router(a, b))
    assert out.route == "a" and len(out.images) == 1 and b.calls == 0
    assert [(x.route, x.outcome) for x in out.attempts] == [("a", "success")]
    assert out.attempts[0].model == "upstream-a"


@pytest.mark.parametrize("code", [FailCode.RATE_LIMITED, FailCode.TIMEOUT, FailCode.UNKNOWN])
def test_health_failures_fail_over_to_the_next_route(code: str) -> None:
    a, b = ScriptedRoute("a", [err(code)]), ScriptedRoute("b")
    out = run(router(a, b))
    assert out.route == "b"
    assert [(x.route, x.outcome) for x in out.attempts] == [("a", code), ("b", "success")]


@pytest.mark.parametrize("code", [FailCode.SENSITIVE_CONTENT, FailCode.PROMPT_INVALID,
                                  FailCode.IMAGE_FORMAT_INCORRECT, FailCode.MISSING_PARAMETER])
def test_content_failures_never_fail_over(code: str) -> None:
    a, b = ScriptedRoute("a", [err(code)]), ScriptedRoute("b")
    out = run(router(a, b))
    assert out.error is not None and out.error.fail_code == code and b.calls == 0


def test_when_every_route_fails_the_last_error_is_returned() -> None:
    a = ScriptedRoute("a", [err(FailCode.TIMEOUT)])
    b = ScriptedRoute("b", [err(FailCode.RATE_LIMITED, retry_after=3)])
    out = run(router(a, b))
    assert out.error is not None and out.error.fail_code == FailCode.RATE_LIMITED
    assert out.error.retry_after == 3 and len(out.attempts) == 2


def test_a_storm_opens_the_circuit_and_traffic_moves_to_the_second_route() -> None:
    now = [0.0]
    health = HealthBook(threshold=3, cooldown_s=30, monotonic=lambda: now[0])
    a = ScriptedRoute("a", [err(FailCode.UNKNOWN)] * 3)
    b = ScriptedRoute("b")
    r = router(a, b, health=health)
    for _ in range(3):
        assert run(r).route == "b"
    assert a.calls == 3
    for _ in range(5):
        assert run(r).route == "b"
    assert a.calls == 3  # open: skipped
    now[0] += 30
    assert run(r).route == "a"  # half-open trial succeeds and closes it
    assert a.calls == 4 and health.circuit("a") == "closed"


def test_when_every_route_is_resting_the_task_is_told_when_to_retry() -> None:
    now = [0.0]
    health = HealthBook(threshold=1, cooldown_s=20, monotonic=lambda: now[0])
    a = ScriptedRoute("a", [err(FailCode.RATE_LIMITED, retry_after=5)])
    r = router(a, health=health)
    run(r)
    out = run(r)
    assert a.calls == 1 and out.attempts == ()
    assert out.error is not None and out.error.fail_code == FailCode.RATE_LIMITED
    assert out.error.retryable and out.error.retry_after == 20


def gone() -> RouteUnavailable:
    return RouteUnavailable("the Gemini API no longer serves model m-1 (HTTP 404 NOT_FOUND)")


def test_a_model_gone_at_run_time_marks_the_route_and_fails_over() -> None:
    reported: list[tuple[str, str]] = []
    health = HealthBook()

    def report(name: str, why: str) -> None:
        reported.append((name, why))
        health.mark_unavailable(name, why)

    a, b = ScriptedRoute("a", [gone()]), ScriptedRoute("b")
    r = Router(routing(a, b), {"a": a, "b": b}, health, on_unavailable=report)
    out = run(r)
    assert out.route == "b"
    assert [(x.route, x.outcome, x.model) for x in out.attempts] == [
        ("a", FailCode.UNKNOWN, "upstream-a"), ("b", "success", "upstream-b")]
    assert reported == [("a", gone().message)]
    assert health.circuit("a") == "unavailable" and health.view("a")["failures"] == 0
    for _ in range(3):
        assert run(r).route == "b"
    assert a.calls == 1  # skipped from then on: no retry storm


def test_when_every_route_is_unavailable_the_task_fails_at_once_saying_why() -> None:
    health = HealthBook()
    health.mark_unavailable("b", "Vertex AI does not serve model m-2 (HTTP 404 NOT_FOUND)")
    a, b = ScriptedRoute("a", [gone()]), ScriptedRoute("b")
    out = run(router(a, b, health=health))
    assert b.calls == 0 and [x.route for x in out.attempts] == ["a"]
    assert out.error is not None and out.error.fail_code == FailCode.UNKNOWN
    assert not out.error.retryable and not out.error.failover
    assert "model m cannot be served" in out.error.message
    assert "no longer serves model m-1" in out.error.message
    assert "does not serve model m-2" in out.error.message


def test_a_resting_route_beside_an_unavailable_one_means_retry_later() -> None:
    now = [0.0]
    health = HealthBook(threshold=1, cooldown_s=20, monotonic=lambda: now[0])
    health.mark_unavailable("a", "gone")
    b = ScriptedRoute("b", [err(FailCode.TIMEOUT)])
    r = router(ScriptedRoute("a"), b, health=health)
    run(r)
    out = run(r)
    assert out.error is not None and out.error.retryable and out.error.retry_after == 20


def test_success_and_a_check_make_an_unavailable_route_available_again() -> None:
    health = HealthBook()
    health.mark_unavailable("a", "gone")
    assert not health.acquire("a") and health.view("a")["reason"] == "gone"
    health.mark_available("a")
    assert health.acquire("a") and health.unavailable("a") is None
    health.mark_unavailable("a", "gone")
    health.succeeded("a")
    assert health.circuit("a") == "closed"


@pytest.mark.parametrize("code", [FailCode.RATE_LIMITED, FailCode.TIMEOUT, FailCode.UNKNOWN])
def test_injected_failures_never_open_the_breaker_nor_fail_over(code: str) -> None:
    health = HealthBook(threshold=1, cooldown_s=30)
    injected = RouteError(code, "sandbox: failing as asked", retryable=True, injected=True)
    a, b = ScriptedRoute("a", [injected] * 5), ScriptedRoute("b")
    r = router(a, b, health=health)
    for _ in range(5):
        out = run(r)
        assert out.error is injected and [x.route for x in out.attempts] == ["a"]
    assert b.calls == 0 and health.circuit("a") == "closed"
    assert health.view("a")["failures"] == 0
    assert run(r).route == "a"  # the next plain task runs at once


def test_capabilities_filter_candidates() -> None:
    plain = ScriptedRoute("plain", resolutions=("1k",))
    grounded = ScriptedRoute("grounded", search_grounding=True)
    r = router(plain, grounded)
    assert [c.name for c in r.candidates("m", inp(), "auto")] == ["plain", "grounded"]
    assert [c.name for c in r.candidates("m", inp(google_search=True), "auto")] == ["grounded"]
    assert [c.name for c in r.candidates("m", inp(resolution="4k"), "auto")] == ["grounded"]
    few = ScriptedRoute("few", max_references=1)
    urls = ("https://a/1.png", "https://a/2.png")
    i2i = inp(mode="image-to-image", image_urls=urls)
    assert router(few).candidates("m", i2i, "auto") == []


def test_provider_official_and_value() -> None:
    cheap = ScriptedRoute("cheap", cost_micros={"1k": 10})
    dear = ScriptedRoute("dear", official=True, cost_micros={"1k": 50})
    r = router(dear, cheap)
    assert [c.name for c in r.candidates("m", inp(), "auto")] == ["dear", "cheap"]
    assert [c.name for c in r.candidates("m", inp(), "value")] == ["cheap", "dear"]
    assert [c.name for c in r.candidates("m", inp(), "official")] == ["dear"]


def test_grounding_nobody_offers_is_refused_at_submit() -> None:
    r = routing(ScriptedRoute("plain"))  # from configuration: no route is built
    with pytest.raises(InvalidRequest) as exc:
        r.check_routable("m", inp(google_search=True), "auto")
    assert exc.value.field == "input.google_search"
    with pytest.raises(InvalidRequest) as exc:
        r.check_routable("m", inp(), "official")
    assert exc.value.field == "provider"
    with pytest.raises(NotFound):
        r.model("nope")


def test_a_worker_tries_only_the_candidates_it_has_routes_for() -> None:
    a, b = ScriptedRoute("a", [err(FailCode.TIMEOUT)]), ScriptedRoute("b")
    partial = Router(routing(a, b), {"a": a})
    assert [c.name for c in partial.candidates("m", inp(), "auto")] == ["a"]
    out = run(partial)
    assert out.error is not None and out.error.fail_code == FailCode.TIMEOUT and b.calls == 0


class SlowRoute(ScriptedRoute):
    """Holds each call until ``release`` is set, counting the calls open at once."""

    def __init__(self, name: str, outcomes: Sequence[RouteError | None] = ()) -> None:
        super().__init__(name, outcomes)
        self.release = asyncio.Event()
        self.open = 0
        self.most_open = 0

    async def generate(self, job: Job) -> list[GeneratedImage]:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.release.wait()
            return await super().generate(job)
        finally:
            self.open -= 1


def test_max_in_flight_bounds_the_calls_of_a_route_and_the_rest_wait() -> None:
    async def go() -> None:
        slow = SlowRoute("engine")
        router = Router(routing(slow), {"engine": slow}, max_in_flight={"engine": 2})
        runs = [asyncio.create_task(router.run(JOB, inp(), "auto")) for _ in range(5)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert (slow.open, router.slots.held("engine")) == (2, 2)
        slow.release.set()
        outcomes = await asyncio.gather(*runs)
        assert [o.route for o in outcomes] == ["engine"] * 5
        assert (slow.most_open, slow.calls, router.slots.held("engine")) == (2, 5, 0)

    asyncio.run(go())


def test_a_route_without_a_limit_takes_every_call_at_once() -> None:
    async def go() -> None:
        slow = SlowRoute("engine")
        router = Router(routing(slow), {"engine": slow})
        runs = [asyncio.create_task(router.run(JOB, inp(), "auto")) for _ in range(5)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert slow.open == 5
        slow.release.set()
        await asyncio.gather(*runs)

    asyncio.run(go())


def test_a_failed_call_frees_its_slot_and_fails_over() -> None:
    async def go() -> None:
        slow = SlowRoute("engine", [err(FailCode.UNKNOWN)])
        backup = ScriptedRoute("backup")
        router = Router(routing(slow, backup), {"engine": slow, "backup": backup},
                        max_in_flight={"engine": 1})
        slow.release.set()
        first = await router.run(JOB, inp(), "auto")
        second = await router.run(JOB, inp(), "auto")
        assert (first.route, second.route) == ("backup", "engine")
        assert router.slots.held("engine") == 0

    asyncio.run(go())
