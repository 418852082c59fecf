"""The route monitor (availability.py): verdicts kept in the health book, one line per problem."""

from __future__ import annotations

import asyncio
import logging

import pytest

from imagegate.availability import RouteMonitor, problem_line
from imagegate.catalogue import RouteConfig
from imagegate.health import HealthBook
from imagegate.routes.base import RouteCheck


class CheckedRoute:
    """A route whose checks answer from a list (the last answer repeats)."""

    def __init__(self, name: str, *answers: RouteCheck | Exception | float) -> None:
        self.name = name
        self.upstream_model = f"m-{name}"
        self.answers = list(answers)
        self.checks = 0

    async def check(self) -> RouteCheck:
        self.checks += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            return RouteCheck(True, "slow")
        return answer


GONE = RouteCheck(False, "the Gemini API does not serve model m-a (HTTP 404 NOT_FOUND)")
SERVED = RouteCheck(True, "model m-a is served")
NO_VERDICT = RouteCheck(None, "could not reach the Gemini API (ConnectError)")
CONFIGS = {"a": RouteConfig("a", "gemini", model_setting="models.nano-banana-2.google_model")}


def monitor(*routes: CheckedRoute, **kwargs: float) -> tuple[RouteMonitor, HealthBook]:
    health = HealthBook()
    return RouteMonitor({r.name: r for r in routes}, CONFIGS, health, **kwargs), health


def test_a_gone_model_is_marked_and_reported_once_naming_the_setting(
        caplog: pytest.LogCaptureFixture) -> None:
    m, health = monitor(CheckedRoute("a", GONE))
    asyncio.run(m.check())
    asyncio.run(m.check())
    m.mark_unavailable("a", "a call said so")
    assert health.unavailable("a") == "a call said so"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["route a is unavailable: the Gemini API does not serve model m-a (HTTP "
                      "404 NOT_FOUND); set models.nano-banana-2.google_model to a model the "
                      "upstream serves (docs/routes-gemini.md lists them)"]


def test_a_route_of_its_own_names_its_model_option() -> None:
    assert problem_line(RouteConfig("g", "gemini"), GONE) == (
        "route g is unavailable: the Gemini API does not serve model m-a (HTTP 404 NOT_FOUND); "
        "set routes.g.model to a model the upstream serves (docs/routes-gemini.md lists them)")


@pytest.mark.parametrize(("kind", "guide"), [
    ("relay", "see docs/routes-relay.md"), ("openai-images", "see docs/routes-openai-images.md"),
    ("diffusers", "a pipeline directory or a model in the Hugging Face cache; see "
                  "docs/routes-diffusers.md")])
def test_each_route_type_points_to_its_own_guide(kind: str, guide: str) -> None:
    assert problem_line(RouteConfig("r", kind), GONE).endswith(
        f"set routes.r.model to a model the upstream serves ({guide})")


def test_no_verdict_leaves_the_route_as_it_was(caplog: pytest.LogCaptureFixture) -> None:
    m, health = monitor(CheckedRoute("a", NO_VERDICT))
    asyncio.run(m.check())
    assert health.unavailable("a") is None
    health.mark_unavailable("a", "gone")
    asyncio.run(m.check())
    assert health.unavailable("a") == "gone"
    assert any("could not check its model" in r.getMessage() for r in caplog.records)


def test_a_check_that_hangs_or_raises_gives_no_verdict() -> None:
    m, health = monitor(CheckedRoute("a", 5.0), CheckedRoute("b", RuntimeError("bug")),
                        timeout_s=0.1)
    checks = asyncio.run(m.check())
    assert checks["a"].available is None and "within 0.1 s" in checks["a"].detail
    assert checks["b"].available is None and "RuntimeError" in checks["b"].detail
    assert health.unavailable("a") is None and health.unavailable("b") is None


def test_the_recheck_loop_asks_only_unavailable_routes_and_restores_them(
        caplog: pytest.LogCaptureFixture) -> None:
    gone_then_back = CheckedRoute("a", GONE, SERVED)
    fine = CheckedRoute("b", SERVED)
    m, health = monitor(gone_then_back, fine, recheck_s=0.05)

    async def scenario() -> None:
        await m.check()
        assert health.unavailable("a")
        stop = asyncio.Event()
        loop = asyncio.create_task(m.run(stop))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if health.unavailable("a") is None:
                break
        stop.set()
        await loop

    asyncio.run(scenario())
    assert health.unavailable("a") is None
    assert fine.checks == 1  # never rechecked: it was available
    assert any("route a is available again" in r.getMessage() for r in caplog.records)
