"""The options of an openai-images route (``[routes.<name>]`` with ``type = "openai-images"``),
read once into a ``RouteSettings``. docs/routes-openai-images.md has the table.

Every ``ConfigError`` names the option as ``routes.<name>.<key>``; the API key is never shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagegate.contract import MODES
from imagegate.errors import ConfigError
from imagegate.routes.base import Capabilities
from imagegate.routes.openai_sizes import DEFAULT_SIZES, parse_size
from imagegate.routes.options import RouteOptions

__all__ = ["OPTIONS", "RouteSettings", "declared", "route_settings"]

OPTIONS = ("base_url", "api_key", "api_key_env", "model", "sizes", "max_n", "timeout_seconds",
           "connect_timeout_seconds", "max_references", "modes", "image_field",
           "response_format", "output_format", "send_seed", "send_model", "extra_body",
           "private_results", "max_result_bytes", "resolutions", "ratios", "official", "cost")
RESPONSE_FORMATS = ("b64_json", "url", "none")
OUTPUT_FORMATS = ("png", "jpeg", "webp", "task")
IMAGE_FIELDS = ("image", "image[]")
# Parameters the route sets itself: extra_body may not name them.
OWN_FIELDS = frozenset({"model", "prompt", "n", "size", "response_format", "output_format",
                        "seed", "image", "image[]"})
_MIB = 1024 * 1024


@dataclass(frozen=True)
class RouteSettings:
    """What an openai-images route was configured with. ``base_url`` has no trailing ``/v1``;
    ``response_format`` and ``output_format`` are "" when not sent; times are seconds."""

    base_url: str
    model: str
    api_key: str = ""
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    max_n: int = 10
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    image_field: str = "image"
    response_format: str = "b64_json"
    output_format: str = ""
    send_seed: bool = False
    send_model: bool = True
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    private_results: bool = False
    max_result_bytes: int = 50 * _MIB

    def __repr__(self) -> str:  # never shows the key
        return f"RouteSettings(base_url={self.base_url!r}, model={self.model!r})"


def declared(name: str, options: Mapping[str, Any]) -> Capabilities:
    """The route's capabilities from its table alone: one reference and both modes unless
    ``max_references`` and ``modes`` say otherwise."""
    opts = RouteOptions("openai-images", name, options, OPTIONS)
    base = Capabilities(modes=opts.subset("modes", MODES), max_references=1)
    return opts.capabilities(base)


def route_settings(name: str, options: Mapping[str, Any],
                   allow_private_networks: bool = False) -> RouteSettings:
    """Read and check every option; ``ConfigError`` names the first bad one."""
    opts = RouteOptions("openai-images", name, options, OPTIONS)
    response_format = _choice(opts, "response_format", RESPONSE_FORMATS, "b64_json")
    return RouteSettings(
        base_url=_base_url(opts), model=opts.text("model", example="black-forest-labs/FLUX.1-dev"),
        api_key=_api_key(opts), sizes=_sizes(opts), max_n=opts.whole("max_n", 10, 1, 128),
        timeout_s=opts.seconds("timeout_seconds", 300.0),
        connect_timeout_s=opts.seconds("connect_timeout_seconds", 10.0),
        image_field=_choice(opts, "image_field", IMAGE_FIELDS, "image"),
        response_format="" if response_format == "none" else response_format,
        output_format=_choice(opts, "output_format", OUTPUT_FORMATS, ""),
        send_seed=opts.flag("send_seed"), send_model=opts.flag("send_model", True),
        extra_body=_extra_body(opts),
        private_results=opts.flag("private_results") or allow_private_networks,
        max_result_bytes=opts.whole("max_result_bytes", 50 * _MIB, 1, 2**40))


def _base_url(opts: RouteOptions) -> str:
    """``http://host:port`` from that or from ``http://host:port/v1/``."""
    url = opts.text("base_url", example="http://127.0.0.1:30000")
    if not re.match(r"https?://[^/\s]+", url, re.IGNORECASE):
        raise ConfigError(f"{opts.where('base_url')} must be an http(s) URL such as "
                          f"http://127.0.0.1:30000, got {url!r}")
    root = url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _api_key(opts: RouteOptions) -> str:
    """The key from ``api_key``, or from the environment variable ``api_key_env`` names; ""
    (no Authorization header) when neither is set: local engines often need none."""
    if "api_key" in opts and "api_key_env" in opts:
        raise ConfigError(f"{opts.where('api_key')} and {opts.where('api_key_env')}: set one")
    if "api_key" in opts:
        return opts.text("api_key", secret=True)
    variable = opts.optional_text("api_key_env")
    if variable is None:
        return ""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"{opts.where('api_key_env')}: the environment variable {variable} "
                          "is not set")
    return value


def _sizes(opts: RouteOptions) -> tuple[tuple[int, int], ...]:
    value = opts.options.get("sizes")
    if value is None:
        return DEFAULT_SIZES
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{opts.where('sizes')} must be a non-empty list of sizes such as "
                          '["1024x1024", "1536x1024"]')
    try:
        return tuple(dict.fromkeys(parse_size(v) for v in value))
    except ValueError as exc:
        raise ConfigError(f"{opts.where('sizes')}: {exc}") from exc


def _choice(opts: RouteOptions, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = opts.options.get(key, default)
    if value != default and value not in allowed:
        raise ConfigError(f"{opts.where(key)} must be one of {', '.join(allowed)}, "
                          f"got {value!r}")
    return str(value)


def _extra_body(opts: RouteOptions) -> dict[str, Any]:
    """Parameters of the server's own (``num_inference_steps = 28``), sent with every request:
    in the JSON body of a generation, as form fields of an edit (so scalars only)."""
    table = opts.options.get("extra_body", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{opts.where('extra_body')} must be a table such as "
                          "{ num_inference_steps = 28, guidance_scale = 3.5 }")
    for key, value in table.items():
        if key in OWN_FIELDS:
            raise ConfigError(f"{opts.where(f'extra_body.{key}')}: the route sets {key} "
                              "itself")
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(f"{opts.where(f'extra_body.{key}')} must be a string, number "
                              f"or true/false, got {value!r}")
    return dict(table)
