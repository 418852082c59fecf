"""The router: tries a task's candidate routes (``routing.py`` picks them) in turn.

A route error that allows failover (rate limit, timeout, unknown) moves on to
the next candidate; one that does not (safety block, invalid prompt, bad image) ends the try.
A failure the client injected (the sandbox's test mode) ends the try with its own code and never
counts against the route's health.
A route whose upstream no longer serves its model (``RouteUnavailable``, or a check that said
so) is marked unavailable and skipped; a task whose every candidate is unavailable fails at once,
without retries, saying that the model is no longer served. Every try is recorded as a
``RouteAttempt`` with the upstream model it asked for.

A route with a ``max_in_flight`` limit (``[routes.<name>]``) is called by at most that many tasks
of this process at once; a task past the limit waits for a slot of that route (first come, first
served) rather than skipping it, so a serving engine gets enough requests to keep its own
batcher full and no more. The wait is not part of the try's recorded duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from imagegate.catalogue import ModelConfig
from imagegate.concurrency import Slots
from imagegate.contract import SubmitInput
from imagegate.errors import (
    FailCode,
    RouteError,
    RouteUnavailable,
    TaskError,
)
from imagegate.health import HealthBook
from imagegate.metrics import Metrics
from imagegate.routes.base import GeneratedImage, Job, Route
from imagegate.routing import Routing
from imagegate.tasks import RouteAttempt


@dataclass(frozen=True)
class RouterOutcome:
    """Images from the route that succeeded, or the error that ended the try."""

    attempts: tuple[RouteAttempt, ...]
    images: Sequence[GeneratedImage] = ()
    route: str | None = None
    error: TaskError | None = None


class Router:
    """Runs a task's candidates (``routing.Routing``) among the routes this process has.
    ``on_unavailable(route, reason)`` is told when a call finds a route's model gone (the route
    monitor marks it and reports it); without one the router marks it itself. Each call is
    counted in ``metrics`` with its outcome and duration. ``max_in_flight`` bounds the calls of
    a route at once (route name -> limit; routes not named have none)."""

    def __init__(self, routing: Routing, routes: Mapping[str, Route],
                 health: HealthBook | None = None,
                 on_unavailable: Callable[[str, str], None] | None = None, *,
                 metrics: Metrics | None = None,
                 max_in_flight: Mapping[str, int] | None = None) -> None:
        self.routing = routing
        self.routes = routes
        self.health = health or HealthBook()
        self.on_unavailable = on_unavailable or self.health.mark_unavailable
        self.metrics = metrics or Metrics()
        self.slots = Slots(max_in_flight or {})

    def model(self, model_id: str) -> ModelConfig:
        return self.routing.model(model_id)

    def candidates(self, model_id: str, inp: SubmitInput, provider: str) -> list[Route]:
        """The task's candidates this process has routes for, in the order to try them."""
        return [self.routes[name] for name in self.routing.candidates(model_id, inp, provider)
                if name in self.routes]

    async def run(self, job: Job, inp: SubmitInput, provider: str) -> RouterOutcome:
        attempts: list[RouteAttempt] = []
        closed: list[str] = []
        gone: list[str] = []
        last: TaskError | None = None
        for route in self.candidates(job.model, inp, provider):
            if self.health.unavailable(route.name):
                gone.append(route.name)
                continue
            if self.health.wait_s(route.name) > 0:  # resting: no slot to wait for
                closed.append(route.name)
                continue
            async with self.slots.hold(route.name):
                tried = await self._try(route, job, attempts, closed, gone)
            if isinstance(tried, RouterOutcome):
                return tried
            last = tried or last
        return RouterOutcome(tuple(attempts),
                             error=last or self._none_left(job.model, closed, gone))

    async def _try(self, route: Route, job: Job, attempts: list[RouteAttempt],
                   closed: list[str], gone: list[str]) -> RouterOutcome | TaskError | None:
        """Call ``route`` once, if its health lets it be tried now: the outcome that ends the
        run, the error to fail over from, or None when it was skipped or is gone."""
        if self.health.unavailable(route.name):  # marked while this task waited for a slot
            gone.append(route.name)
            return None
        if not self.health.acquire(route.name):
            closed.append(route.name)
            return None
        started = time.monotonic()
        try:
            images = await route.generate(job)
        except RouteUnavailable as exc:
            self.health.release(route.name)
            self.on_unavailable(route.name, exc.message)
            attempts.append(self._tried(job, route, exc.fail_code, started, exc.message))
            gone.append(route.name)
            return None
        except TaskError as exc:
            if exc.injected:
                self.health.release(route.name)  # the client's test, not the route's health
            else:
                self.health.failed(route.name, exc)
            attempts.append(self._tried(job, route, exc.fail_code, started, exc.message))
            return exc if exc.failover else RouterOutcome(tuple(attempts), error=exc)
        except BaseException:
            self.health.release(route.name)
            raise
        self.health.succeeded(route.name)
        attempts.append(self._tried(job, route, "success", started, ""))
        return RouterOutcome(tuple(attempts), images=images, route=route.name)

    def _tried(self, job: Job, route: Route, outcome: str, started: float,
               detail: str) -> RouteAttempt:
        """The record of one call of ``route``, counted in the metrics."""
        seconds = time.monotonic() - started
        self.metrics.route_called(route.name, outcome, seconds)
        return RouteAttempt(job.attempt, route.name, outcome, int(seconds * 1000), detail[:500],
                            route.upstream_model)

    def _none_left(self, model: str, closed: list[str], gone: list[str]) -> TaskError:
        """When no route was left to try: wait for a resting one, else say why every route is
        unavailable (a final error: retrying cannot help until an operator acts)."""
        if closed or not gone:
            return self._all_resting(closed)
        reasons = "; ".join(f"route {name}: {self.health.unavailable(name)}" for name in gone)
        return RouteError(FailCode.UNKNOWN, f"model {model} cannot be served: every route for "
                          f"it is unavailable ({reasons})"[:1000], retryable=False,
                          failover=False)

    def _all_resting(self, closed: list[str]) -> TaskError:
        """When every route was skipped: a retryable error that waits for the first to reopen."""
        if not closed:
            return RouteError(FailCode.UNKNOWN, "no route could serve this task")
        wait = min(self.health.wait_s(name) for name in closed)
        codes = {self.health.last_code(name) for name in closed}
        code = FailCode.RATE_LIMITED if codes == {FailCode.RATE_LIMITED} else FailCode.UNKNOWN
        names = ", ".join(closed)
        return RouteError(code, f"every route is resting after failures ({names})",
                          retryable=True, failover=False, retry_after=max(wait, 0.1))

