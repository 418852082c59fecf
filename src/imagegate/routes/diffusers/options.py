"""The options of a ``diffusers`` route, and what it declares it can do, from its table alone.

Reading them imports neither torch nor diffusers: an API process checks capabilities at submit
from this module without ever loading a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegate.contract import MODES
from imagegate.errors import ConfigError
from imagegate.routes.base import Capabilities
from imagegate.routes.options import RouteOptions

__all__ = ["DTYPES", "OPTIONS", "DiffusersOptions", "declared_capabilities", "read_options"]

DTYPES = ("bfloat16", "float16", "float32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEFAULT_COMPILE_CACHE = "~/.cache/imagegate/compile"
OPTIONS = ("model", "revision", "variant", "cache_dir", "allow_download", "device", "dtype",
           "steps", "guidance", "strength", "image_to_image", "render_scale", "size_multiple",
           "max_batch_size", "max_wait_ms", "warmup", "compile", "compile_mode",
           "compile_cache_dir", "recycle_after_tasks", "recycle_memory_gib", "resolutions",
           "ratios", "official", "cost")
_GIB = 1024**3


@dataclass(frozen=True)
class DiffusersOptions:
    """One route's settings. ``model``: a local pipeline directory or a Hugging Face repo id
    (found in the cache; downloaded only with ``allow_download``). Sizes: a job of WxH is
    rendered at ``render_scale`` times that, each side rounded to ``size_multiple``; the worker
    brings the image to the exact size. ``max_batch_size`` counts images; ``max_wait_ms`` is
    how long the first job of a batch waits for company. ``recycle_*``: 0 is never."""

    model: str
    revision: str | None = None
    variant: str | None = None
    cache_dir: str | None = None
    allow_download: bool = False
    device: str = "cuda"
    dtype: str = "bfloat16"
    steps: int = 30
    guidance: float = 5.0
    strength: float = 0.75
    image_to_image: bool = False
    render_scale: float = 1.0
    size_multiple: int = 16
    max_batch_size: int = 8
    max_wait_ms: int = 20
    warmup: bool = True
    compile: bool = False
    compile_mode: str = "default"
    compile_cache_dir: str = DEFAULT_COMPILE_CACHE
    recycle_after_tasks: int = 0
    recycle_memory_bytes: int = 0

    @property
    def local_dir(self) -> Path | None:
        """The pipeline's directory when ``model`` names one on disk, else None (a repo id)."""
        path = Path(self.model).expanduser()
        return path if path.is_dir() else None

    def render_size(self, width: int, height: int) -> tuple[int, int]:
        """The size a WxH job is rendered at: scaled, each side a multiple of
        ``size_multiple`` and at least one multiple."""
        m = self.size_multiple
        return (max(m, round(width * self.render_scale / m) * m),
                max(m, round(height * self.render_scale / m) * m))


def read_options(name: str, options: Mapping[str, Any]) -> DiffusersOptions:
    """The options of route ``name`` (``ConfigError`` naming the first bad one)."""
    opts = RouteOptions("diffusers", name, options, OPTIONS)
    return DiffusersOptions(
        model=opts.text("model", example="stabilityai/stable-diffusion-xl-base-1.0"),
        revision=opts.optional_text("revision"),
        variant=opts.optional_text("variant"),
        cache_dir=opts.optional_text("cache_dir"),
        allow_download=opts.flag("allow_download"),
        device=_device(opts),
        dtype=_choice(opts, "dtype", DTYPES, "bfloat16"),
        steps=opts.whole("steps", 30, 1, 1000),
        guidance=_number(opts, "guidance", 5.0, 0.0, 100.0),
        strength=_number(opts, "strength", 0.75, 0.01, 1.0),
        image_to_image=opts.flag("image_to_image"),
        render_scale=_number(opts, "render_scale", 1.0, 0.01, 4.0),
        size_multiple=opts.whole("size_multiple", 16, 1, 256),
        max_batch_size=opts.whole("max_batch_size", 8, 1, 256),
        max_wait_ms=opts.whole("max_wait_ms", 20, 0, 60_000),
        warmup=opts.flag("warmup", True),
        compile=opts.flag("compile"),
        compile_mode=_choice(opts, "compile_mode", COMPILE_MODES, "default"),
        compile_cache_dir=opts.text("compile_cache_dir", DEFAULT_COMPILE_CACHE),
        recycle_after_tasks=opts.whole("recycle_after_tasks", 0, 0, 10**9),
        recycle_memory_bytes=int(_number(opts, "recycle_memory_gib", 0.0, 0.0, 1e6) * _GIB),
    )


def declared_capabilities(name: str, options: Mapping[str, Any]) -> Capabilities:
    """Text-to-image always; image-to-image (one reference: the starting image) only when the
    table says ``image_to_image = true``, so the router never sends a route what its pipeline
    cannot do. Resolutions, ratios, ``official`` and ``cost`` as for every route."""
    parsed = read_options(name, options)
    i2i = parsed.image_to_image
    base = Capabilities(modes=MODES if i2i else ("text-to-image",),
                        max_references=1 if i2i else 0)
    opts = RouteOptions("diffusers", name, options, OPTIONS)
    return opts.capabilities(base)


def _device(opts: RouteOptions) -> str:
    device = opts.text("device", "cuda")
    kind = device.split(":", 1)[0]
    index = device.split(":", 1)[1] if ":" in device else "0"
    if kind not in ("cuda", "cpu", "mps", "xpu") or not index.isdigit():
        raise ConfigError(f"{opts.where('device')} must be cuda, cuda:N, cpu, mps or xpu, "
                          f"got {device!r}")
    return device


def _choice(opts: RouteOptions, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = opts.text(key, default)
    if value not in allowed:
        raise ConfigError(f"{opts.where(key)} must be one of {', '.join(allowed)}, "
                          f"got {value!r}")
    return value


def _number(opts: RouteOptions, key: str, default: float, low: float, high: float) -> float:
    value = opts.options.get(key, default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{opts.where(key)} must be a number from {low:g} to {high:g}, "
                          f"got {value!r}")
    return float(value)
