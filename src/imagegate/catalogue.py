"""The catalogue: which models are served, with what limits and prices, by which routes.

Built from the defaults below and the TOML ``[models.<id>]`` and ``[routes.<name>]`` tables; a
table of a default model overrides its keys one by one. Every mistake is a ``ConfigError``
naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import InvalidOperation
from typing import Any

from imagegate.contract import RATIOS, RESOLUTIONS, SIZE_TABLES, ModelLimits
from imagegate.errors import ConfigError
from imagegate.money import usd_to_micros

DEFAULT_PRICES = {"1k": "0.05", "2k": "0.08", "4k": "0.12"}
_TEN_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]

# The default catalogue, in the form of the TOML ``[models.<id>]`` tables; a TOML table of the
# same id overrides these keys one by one. ``google_model``: the Google model that serves the
# model when a Google platform (the Gemini API, Vertex AI) is configured. Which id serves which
# model, and why, is in docs/routes-gemini.md with its sources and the date it was checked.
#
# ``aliases``: other names the OpenAI Images and Gemini facades take for the model (its id is
# always taken). Google's ids, current and retired, name the catalogue model they served, so
# code written against any of them keeps working; OpenAI's image model ids name the flagship.
DEFAULT_CATALOGUE: dict[str, dict[str, Any]] = {
    "nano-banana-2": {"prices": DEFAULT_PRICES, "google_model": "gemini-nano-banana-2.1",
                      "aliases": ["gemini-3.1-flash-image", "gemini-3.1-flash-image-preview",
                                  "gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini",
                                  "dall-e-3", "dall-e-2"]},
    "nano-banana-2.1": {"prices": DEFAULT_PRICES, "google_model": "gemini-nano-banana-2.1",
                        "aliases": ["gemini-nano-banana-2.1"]},
    "nano-banana-pro": {"prices": {"1k": "0.09", "2k": "0.09", "4k": "0.16"},
                        "ratios": _TEN_RATIOS, "google_model": "gemini-3-pro-image",
                        "aliases": ["gemini-3-pro-image", "gemini-3-pro-image-preview"]},
    "nano-banana-2-lite": {"prices": {"1k": "0.03"}, "resolutions": ["1k"],
                           "ratios": _TEN_RATIOS, "google_model": "gemini-3.1-flash-lite-image",
                           "aliases": ["gemini-3.1-flash-lite-image"]},
    # The first Nano Banana's own model (gemini-2.5-flash-image) is closed to new projects and
    # due to be shut down: its closest served successor, at its own sizes and limits.
    "nano-banana": {"prices": {"1k": "0.03"}, "resolutions": ["1k"], "size_table": "gemini-2.5",
                    "max_references": 10, "max_prompt_chars": 5000,
                    "google_model": "gemini-3.1-flash-lite-image",
                    "aliases": ["gemini-2.5-flash-image", "gemini-2.5-flash-image-preview"]},
}
# The Google platforms a default route can use, as the prefix of its name, in failover order.
GOOGLE_PLATFORMS = ("gemini", "vertex")
# The rest of a default route's name, by catalogue model ("gemini-pro", "vertex-pro").
_ROUTE_SUFFIX = {"nano-banana-2": "", "nano-banana-2.1": "-nano-banana-2.1",
                 "nano-banana-pro": "-pro", "nano-banana-2-lite": "-lite",
                 "nano-banana": "-nano-banana"}


@dataclass(frozen=True)
class RouteConfig:
    """One configured route: ``type`` picks the implementation, ``options`` configure it.
    ``model_setting`` names the setting that chooses its upstream model, for messages that
    tell an operator what to change. ``max_in_flight``: the most calls of this route one worker
    process makes at once (None: no limit); a key of every route type, so not in ``options``."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)
    model_setting: str = ""
    max_in_flight: int | None = None

    @property
    def model_key(self) -> str:
        return self.model_setting or f"routes.{self.name}.model"


@dataclass(frozen=True)
class ModelConfig:
    """One catalogue model: its limits, prices (micro-USD per image) and ordered routes."""

    id: str
    limits: ModelLimits
    prices: Mapping[str, int]
    routes: tuple[str, ...]
    aliases: tuple[str, ...] = ()


def default_route_name(platform: str, model_id: str) -> str:
    """The name of the default ``platform`` route of catalogue model ``model_id``."""
    return platform + _ROUTE_SUFFIX.get(model_id, f"-{model_id}")


def catalogue_from_toml(models_doc: Mapping[str, Any], routes_doc: Mapping[str, Any],
                        platforms: Sequence[str] = (),
                        ) -> tuple[dict[str, ModelConfig], dict[str, RouteConfig]]:
    """The models and routes of the default catalogue as the TOML tables change them.

    Every model with a ``google_model`` gets a default route on each configured Google
    ``platform`` (a subset of ``GOOGLE_PLATFORMS``); a model without its own ``routes`` is served
    by those, else by the sandbox. A ``[routes.<name>]`` table replaces a default route of that
    name."""
    tables = _model_tables(models_doc)
    routes = {"sandbox": RouteConfig("sandbox", "sandbox")}
    for model_id, table in tables.items():
        if not isinstance(table.get("google_model", ""), str):
            raise ConfigError(f"models.{model_id}.google_model must be a Google model id")
        google = [_google_route(p, model_id, table["google_model"]) for p in platforms
                  if table.get("google_model")]
        routes.update((r.name, r) for r in google)
        table.setdefault("routes", [r.name for r in google] or ["sandbox"])
    routes.update(_route_tables(routes_doc))
    models = {model_id: _model(model_id, t) for model_id, t in tables.items()}
    model_names(models)  # refuses an alias that names two models
    return models, routes


def model_names(models: Mapping[str, ModelConfig]) -> dict[str, str]:
    """Every name a facade takes for a model (its id and its aliases) -> the model's id;
    ``ConfigError`` when one name would name two models."""
    names = {model_id: model_id for model_id in models}
    for model in models.values():
        for alias in model.aliases:
            other = names.setdefault(alias, model.id)
            if other != model.id:
                raise ConfigError(f"models.{model.id}.aliases: {alias!r} already names model "
                                  f"{other!r}; a name may stand for one model only")
    return names


def _model_tables(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    tables = {model_id: dict(default) for model_id, default in DEFAULT_CATALOGUE.items()}
    for model_id, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"models.{model_id} must be a table")
        tables[model_id] = {**tables.get(model_id, {}), **table}
    return tables


def _google_route(platform: str, model_id: str, google_model: str) -> RouteConfig:
    options = {"model": google_model} if platform == "gemini" else \
        {"model": google_model, "platform": platform}
    return RouteConfig(default_route_name(platform, model_id), "gemini", options,
                       model_setting=f"models.{model_id}.google_model")


def _route_tables(doc: Mapping[str, Any]) -> dict[str, RouteConfig]:
    routes = {}
    for name, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"routes.{name} must be a table")
        options = {k: v for k, v in table.items() if k not in _ROUTE_KEYS}
        routes[name] = RouteConfig(name, str(table.get("type", name)), options,
                                   max_in_flight=_max_in_flight(name, table))
    return routes


# Keys of every [routes.<name>] table whatever its type; the rest are the type's options.
_ROUTE_KEYS = {"type", "max_in_flight"}


def _max_in_flight(name: str, table: Mapping[str, Any]) -> int | None:
    value = table.get("max_in_flight")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"routes.{name}.max_in_flight must be a whole number of at least 1, "
                          f"got {value!r}")
    return value


_MODEL_KEYS = {"routes", "prices", "ratios", "resolutions", "max_prompt_chars", "max_references",
               "max_images", "size_table", "google_model", "aliases"}


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
    return ModelConfig(model_id, limits, prices, route_names,
                       _aliases(table.get("aliases", []), f"{where}.aliases"))


def _aliases(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of model names (strings)")
    return tuple(dict.fromkeys(value))


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
