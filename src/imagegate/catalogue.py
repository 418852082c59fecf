"""The catalogue: which models are served, with what limits and prices, by which routes.

Built from the defaults below and the TOML ``[models.<id>]`` and ``[routes.<name>]`` tables; a
table of a default model overrides its keys one by one. Every mistake is a ``ConfigError``
naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import InvalidOperation
from typing import Any

from imagegate.contract import RATIOS, RESOLUTIONS, SIZE_TABLES, ModelLimits
from imagegate.errors import ConfigError
from imagegate.money import usd_to_micros

DEFAULT_PRICES = {"1k": "0.05", "2k": "0.08", "4k": "0.12"}

# The default catalogue, in the form of the TOML ``[models.<id>]`` tables; a TOML table of the
# same id overrides these keys one by one. ``gemini_route`` and ``gemini_model``: the route that
# serves the model, and its upstream model, when a Gemini API key is configured.
DEFAULT_CATALOGUE: dict[str, dict[str, Any]] = {
    "nano-banana-2": {"prices": DEFAULT_PRICES, "gemini_route": "gemini",
                      "gemini_model": "gemini-3.1-flash-image-preview"},
    "nano-banana-pro": {
        "prices": {"1k": "0.09", "2k": "0.09", "4k": "0.16"},
        "ratios": ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"],
        "gemini_route": "gemini-pro", "gemini_model": "gemini-3-pro-image-preview",
    },
    "nano-banana": {
        "prices": {"1k": "0.03"}, "resolutions": ["1k"], "size_table": "gemini-2.5",
        "max_references": 10, "max_prompt_chars": 5000,
        "gemini_route": "gemini-2.5-flash", "gemini_model": "gemini-2.5-flash-image",
    },
}


@dataclass(frozen=True)
class RouteConfig:
    """One configured route: ``type`` picks the implementation, ``options`` configure it."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """One catalogue model: its limits, prices (micro-USD per image) and ordered routes."""

    id: str
    limits: ModelLimits
    prices: Mapping[str, int]
    routes: tuple[str, ...]


def routes_from_toml(doc: Mapping[str, Any], gemini: bool) -> dict[str, RouteConfig]:
    routes = {"sandbox": RouteConfig("sandbox", "sandbox")}
    if gemini:
        for table in DEFAULT_CATALOGUE.values():
            name = table["gemini_route"]
            routes[name] = RouteConfig(name, "gemini", {"model": table["gemini_model"]})
    for name, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"routes.{name} must be a table")
        options = {k: v for k, v in table.items() if k != "type"}
        routes[name] = RouteConfig(name, str(table.get("type", name)), options)
    return routes


def models_from_toml(doc: Mapping[str, Any], gemini: bool) -> dict[str, ModelConfig]:
    models = {}
    for model_id, default in DEFAULT_CATALOGUE.items():
        routes = [default["gemini_route"]] if gemini else ["sandbox"]
        models[model_id] = {"routes": routes, **default}
    for model_id, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"models.{model_id} must be a table")
        models[model_id] = {**models.get(model_id, {}), **table}
    return {model_id: _model(model_id, table) for model_id, table in models.items()}


_MODEL_KEYS = {"routes", "prices", "ratios", "resolutions", "max_prompt_chars", "max_references",
               "max_images", "size_table", "gemini_model", "gemini_route"}


def _model(model_id: str, table: Mapping[str, Any]) -> ModelConfig:
    where = f"models.{model_id}"
    unknown = sorted(set(table) - _MODEL_KEYS)
    if unknown:
        known = ", ".join(sorted(_MODEL_KEYS))
        raise ConfigError(f"unknown key {where}.{unknown[0]}; known: {known}")
    base = ModelLimits()
    size_table = _size_table(table.get("size_table", base.size_table), where)
    table_ratios = tuple(r for r in RATIOS if r in SIZE_TABLES[size_table])
    limits = ModelLimits(
        max_prompt_chars=_count(table, "max_prompt_chars", base.max_prompt_chars, where),
        max_references=_count(table, "max_references", base.max_references, where),
        ratios=_subset(table.get("ratios"), table_ratios, f"{where}.ratios"),
        resolutions=_subset(table.get("resolutions"), RESOLUTIONS, f"{where}.resolutions"),
        max_images=_count(table, "max_images", base.max_images, where),
        size_table=size_table,
    )
    prices = _prices(table.get("prices", DEFAULT_PRICES), limits.resolutions, f"{where}.prices")
    route_names = tuple(table.get("routes", ("sandbox",)))
    if not route_names or not all(isinstance(r, str) for r in route_names):
        raise ConfigError(f"{where}.routes must name at least one route")
    return ModelConfig(model_id, limits, prices, route_names)


def _size_table(value: Any, where: str) -> str:
    if value not in SIZE_TABLES:
        raise ConfigError(f"{where}.size_table must be one of {', '.join(SIZE_TABLES)}")
    return str(value)


def _count(table: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}.{key} must be a whole number of at least 1, got {value!r}")
    return value


def _subset(value: Any, allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
    if value is None:
        return allowed
    if not isinstance(value, list) or not value or any(v not in allowed for v in value):
        raise ConfigError(f"{where} must be a non-empty list drawn from {', '.join(allowed)}")
    return tuple(v for v in allowed if v in value)


def _prices(value: Any, resolutions: tuple[str, ...], where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of resolution = USD")
    prices: dict[str, int] = {}
    for res in resolutions:
        raw = value.get(res, DEFAULT_PRICES.get(res))
        try:
            prices[res] = usd_to_micros(str(raw))
        except (InvalidOperation, ValueError) as exc:
            raise ConfigError(f"{where}.{res} must be a USD amount, got {raw!r}") from exc
        if prices[res] < 0:
            raise ConfigError(f"{where}.{res} must not be negative, got {raw!r}")
    return prices
