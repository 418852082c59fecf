"""Loading a route's pipelines: from a local directory, or from the Hugging Face cache (a
download only when the operator allows it), in the configured dtype, onto the configured
device.

Text-to-image uses ``AutoPipelineForText2Image`` for every family; image-to-image, when the
route declares it, is ``AutoPipelineForImage2Image.from_pipe`` over the same components (no
second copy of the weights). Imports torch and diffusers: only a worker process that runs a
``diffusers`` route loads this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

from imagegate.errors import ConfigError
from imagegate.routes.diffusers.compiling import compile_denoiser
from imagegate.routes.diffusers.options import DiffusersOptions

__all__ = ["Pipelines", "load_pipelines"]

log = logging.getLogger("imagegate.routes.diffusers")


@dataclass(frozen=True)
class Pipelines:
    """The loaded pipelines of one route: ``image`` is None when it serves text-to-image
    only."""

    text: Any
    image: Any | None
    device: torch.device


def load_pipelines(name: str, opts: DiffusersOptions) -> Pipelines:
    """The route's pipelines, ready to call. Raises ``ConfigError`` naming the option at fault:
    a model that is not on disk or in the cache (and may not be downloaded), a device this
    machine lacks, a family without image-to-image when the route declares it."""
    device = _device(name, opts.device)
    text = _from_pretrained(name, opts)
    try:
        text.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"routes.{name}.device: cannot use {opts.device}: {exc}") from exc
    text.set_progress_bar_config(disable=True)
    image = _image_to_image(name, text) if opts.image_to_image else None
    if image is not None:
        image.set_progress_bar_config(disable=True)
    if opts.compile:
        compile_denoiser(text, opts.compile_mode, opts.compile_cache_dir)
    log.info("route %s: loaded %s (%s) on %s in %s", name, opts.model, type(text).__name__,
             device, opts.dtype)
    return Pipelines(text, image, device)


def _device(name: str, wanted: str) -> torch.device:
    device = torch.device(wanted)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"routes.{name}.device is {wanted!r} but this machine has no CUDA "
                          "device torch can use (device = \"cpu\" runs on the CPU, slowly)")
    return device


def _from_pretrained(name: str, opts: DiffusersOptions) -> Any:
    source = str(opts.local_dir or opts.model)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, opts.dtype),
                              "local_files_only": not opts.allow_download}
    for key in ("revision", "variant", "cache_dir"):
        if getattr(opts, key) is not None:
            kwargs[key] = getattr(opts, key)
    auto: Any = AutoPipelineForText2Image  # diffusers has no type hints
    try:
        return auto.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        hint = "" if opts.allow_download or opts.local_dir else (
            "; it is not in the Hugging Face cache and allow_download is false")
        raise ConfigError(f"routes.{name}.model: cannot load a text-to-image pipeline from "
                          f"{source!r}{hint} ({type(exc).__name__}: {exc})"[:1000]) from exc


def _image_to_image(name: str, text: Any) -> Any:
    auto: Any = AutoPipelineForImage2Image
    try:
        return auto.from_pipe(text)
    except ValueError as exc:
        raise ConfigError(f"routes.{name}.image_to_image: {type(text).__name__} has no "
                          "image-to-image pipeline in diffusers; set image_to_image = false"
                          ) from exc
