"""Optional ``torch.compile`` of a pipeline's denoiser, with its artifacts kept on disk.

Inductor's FX graph and AOT autograd caches, and Triton's kernel cache, are pointed at the
route's ``compile_cache_dir`` (environment variables torch reads when it compiles), so a worker
that restarts with the same model, shapes and versions reuses the compiled code instead of
compiling again; only the cheap tracing is repeated. The denoiser (``transformer`` for DiTs
such as FLUX, else ``unet``) is the part worth compiling: it runs once per step.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["compile_denoiser", "use_compile_cache"]

log = logging.getLogger("imagegate.routes.diffusers")


def use_compile_cache(directory: str) -> Path:
    """Make torch keep its compiled artifacts under ``directory`` (created); returns it.
    Process-wide: torch's caches are configured by environment."""
    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path / "inductor")
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    os.environ["TRITON_CACHE_DIR"] = str(path / "triton")
    return path


def denoiser_of(pipeline: Any) -> Any:
    """The module a pipeline calls once per step."""
    for name in ("transformer", "unet"):
        module = getattr(pipeline, name, None)
        if module is not None:
            return module
    raise ValueError(f"{type(pipeline).__name__} has neither a transformer nor a unet")


def compile_denoiser(pipeline: Any, mode: str, cache_dir: str) -> None:
    """Compile the pipeline's denoiser in place (the first call at each shape compiles, or
    loads from the cache)."""
    path = use_compile_cache(cache_dir)
    denoiser_of(pipeline).compile(mode=mode, fullgraph=False, dynamic=False)
    log.info("compiling %s's denoiser (mode %s), artifacts kept in %s",
             type(pipeline).__name__, mode, path)
