"""Route types by name: what each declares it can do from its table alone, and how it is built.

``declared_capabilities`` reads no credential and builds nothing, so an API process can check
at submit whether any route could ever serve a task without constructing a single route;
``build_route`` is for the processes that run tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from imagegate.catalogue import RouteConfig
from imagegate.config import Settings
from imagegate.errors import ConfigError
from imagegate.routes.base import Capabilities, Route
from imagegate.routes.diffusers import DiffusersRoute
from imagegate.routes.gemini import GeminiRoute
from imagegate.routes.openai_images import OpenAIImagesRoute
from imagegate.routes.relay import RelayRoute
from imagegate.routes.sandbox import SandboxRoute

__all__ = ["ROUTE_TYPES", "build_route", "declared_capabilities"]


class RouteType(Protocol):
    @staticmethod
    def declared_capabilities(name: str, options: Mapping[str, Any]) -> Capabilities: ...

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], client: httpx.AsyncClient,
                     settings: Settings) -> Route: ...


ROUTE_TYPES: dict[str, RouteType] = {"sandbox": SandboxRoute, "gemini": GeminiRoute,
                                      "relay": RelayRoute, "openai-images": OpenAIImagesRoute,
                                      "diffusers": DiffusersRoute}


def _route_type(cfg: RouteConfig) -> RouteType:
    try:
        return ROUTE_TYPES[cfg.type]
    except KeyError:
        raise ConfigError(f"routes.{cfg.name}: unknown route type {cfg.type!r}; known: "
                          f"{', '.join(ROUTE_TYPES)}") from None


def declared_capabilities(routes: Mapping[str, RouteConfig]) -> dict[str, Capabilities]:
    """Each route's capabilities, from configuration alone (``ConfigError`` naming a bad
    option)."""
    return {name: _route_type(cfg).declared_capabilities(name, cfg.options)
            for name, cfg in routes.items()}


def build_route(cfg: RouteConfig, settings: Settings, client: httpx.AsyncClient) -> Route:
    """The route of ``cfg``, ready to run (``ConfigError`` naming a bad option)."""
    return _route_type(cfg).from_options(cfg.name, cfg.options, client, settings)
