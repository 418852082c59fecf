"""The built-in ``diffusers`` route (optional extra ``imagegate[diffusers]``).

Importing this package imports neither torch nor diffusers: the route's options and
capabilities are read from configuration alone, and the pipeline is loaded only by ``start``
in a worker process.

    options     the [routes.<name>] table and the capabilities it declares
    batcher     groups compatible jobs into one pipeline call (asyncio; no torch)
    memory      the out-of-memory guard: split and retry smaller, fail only the job that
                cannot fit
    loading     from_pretrained from a directory or the Hugging Face cache (torch)
    compiling   torch.compile of the denoiser with its caches on disk (torch)
    engine      the pipelines and the blocking work on them, on one thread (torch)
    route       the Route: start, generate, check, close; recycling between batches
"""

from __future__ import annotations

from imagegate.routes.diffusers.route import DiffusersRoute

__all__ = ["DiffusersRoute"]
