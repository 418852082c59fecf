"""Route availability: whether each route's upstream still serves its model.

Upstream models are checked, not assumed: Google renames and shuts models down on its own
schedule, and a route pointed at a model that is gone fails every task it is given. The
``RouteMonitor`` asks every route in use (``Route.check``) at start, asks the unavailable ones
again every ``recheck_s``, and takes the router's word when a call finds a model gone. A route
found unavailable is marked so in the ``HealthBook`` (the router skips it, /readyz shows why)
and reported once in one log line that names the route and the setting to change; the service
keeps running on its other routes. A check that gets no verdict (the upstream unreachable,
refusing, failing) changes nothing: the route stays in use, and a warning says why. Only a
verdict on the model itself marks a route unavailable: a refused key or a missing permission on
the model-lookup endpoint must not take out a route that may still generate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from imagegate.catalogue import RouteConfig
from imagegate.health import HealthBook
from imagegate.routes.base import Route, RouteCheck

__all__ = ["RouteMonitor", "ask", "problem_line"]

log = logging.getLogger("imagegate.routes")

CHECK_TIMEOUT_S = 15.0


# Where each route type's guide says which models it can be given.
_GUIDES = {"gemini": "docs/routes-gemini.md lists them", "relay": "see docs/routes-relay.md",
           "openai-images": "see docs/routes-openai-images.md",
           "diffusers": "a pipeline directory or a model in the Hugging Face cache; see "
                        "docs/routes-diffusers.md"}


def problem_line(config: RouteConfig, check: RouteCheck) -> str:
    """The one line that tells an operator what is wrong with a route and what to change."""
    guide = _GUIDES.get(config.type, "see docs/configuration.md")
    return (f"route {config.name} is unavailable: {check.detail}; set {config.model_key} to a "
            f"model the upstream serves ({guide})")


async def ask(routes: Mapping[str, Route],
              timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, RouteCheck]:
    """Every route's own check, at once, each bounded by ``timeout_s``; keeps nothing. A check
    that hangs or raises is no verdict."""
    async def one(name: str, route: Route) -> RouteCheck:
        try:
            async with asyncio.timeout(timeout_s):
                return await route.check()
        except TimeoutError:
            return RouteCheck(None, f"no answer to the availability check within {timeout_s:g} s")
        except Exception as exc:  # a check must never stop a start; routes should not raise
            log.exception("route %s: the availability check failed", name,
                          extra={"route": name})
            return RouteCheck(None, f"the availability check failed ({type(exc).__name__})")

    checks = await asyncio.gather(*(one(name, route) for name, route in routes.items()))
    return dict(zip(routes, checks, strict=True))


class RouteMonitor:
    """Keeps the availability of ``routes`` (by name, with their ``configs``) in ``health``."""

    def __init__(self, routes: Mapping[str, Route], configs: Mapping[str, RouteConfig],
                 health: HealthBook, *, recheck_s: float = 300.0,
                 timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self.routes = routes
        self.configs = configs
        self.health = health
        self.recheck_s = recheck_s
        self.timeout_s = timeout_s

    async def check(self, names: Iterable[str] | None = None) -> dict[str, RouteCheck]:
        """Check ``names`` (default: every route) at once; mark each verdict in ``health``."""
        chosen = {name: self.routes[name] for name in (self.routes if names is None else names)}
        checks = await ask(chosen, self.timeout_s)
        for name, result in checks.items():
            self._apply(name, result)
        return checks

    def mark_unavailable(self, name: str, reason: str) -> None:
        """A call found the route's model gone (the router says so)."""
        self._apply(name, RouteCheck(False, reason))

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: every ``recheck_s``, check the routes marked unavailable."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.recheck_s)
            except TimeoutError:
                pass
            gone = [name for name in self.routes if self.health.unavailable(name)]
            if gone and not stop.is_set():
                await self.check(gone)

    def _apply(self, name: str, check: RouteCheck) -> None:
        was = self.health.unavailable(name)
        if check.available is True:
            if was:
                log.warning("route %s is available again: %s", name, check.detail,
                            extra={"route": name})
            else:
                log.info("route %s: %s", name, check.detail, extra={"route": name})
            self.health.mark_available(name)
        elif check.available is False:
            self.health.mark_unavailable(name, check.detail)
            if not was:
                log.error("%s", problem_line(self._config(name), check), extra={"route": name})
        else:
            log.warning("route %s: could not check its model: %s", name, check.detail,
                        extra={"route": name})

    def _config(self, name: str) -> RouteConfig:
        return self.configs.get(name) or RouteConfig(name, "")
