"""The catalogue as a client sees it (``GET /api/v1/models``, an extension; docs/contract.md §9):
each model a key may use, with what its submit accepts (ratios, resolutions, formats, limits),
its price per image by resolution, whether it can ground on Google Search, and whether only the
sandbox serves it (test mode: pictures of the prompt, no model).

The catalogue is fixed for the life of a process, so each model is described once."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from imagegate.catalogue import ModelConfig
from imagegate.contract import OUTPUT_FORMATS
from imagegate.money import micros_to_usd
from imagegate.routing import Routing
from imagegate.store.base import ApiKey


class Models:
    """``sandbox_routes``: the names of the configured routes of the sandbox type."""

    def __init__(self, routing: Routing, sandbox_routes: Collection[str]) -> None:
        self._described = [describe(model, routing, sandbox_routes)
                           for model in routing.models.values()]

    def for_key(self, key: ApiKey) -> list[dict[str, Any]]:
        """The models ``key`` may use, in catalogue order: every one, or those it is limited
        to. The caller must not change them (they are shared)."""
        if key.models is None:
            return self._described
        return [m for m in self._described if m["id"] in key.models]


def describe(model: ModelConfig, routing: Routing,
             sandbox_routes: Collection[str]) -> dict[str, Any]:
    """A model as the list shows it: camelCase names, prices in USD per output image."""
    limits = model.limits
    return {
        "id": model.id,
        "aspectRatios": list(limits.ratios),
        "resolutions": list(limits.resolutions),
        "outputFormats": list(OUTPUT_FORMATS),
        "maxPromptChars": limits.max_prompt_chars,
        "maxReferences": limits.max_references,
        "maxImages": limits.max_images,
        "prices": {res: micros_to_usd(model.prices[res]) for res in limits.resolutions},
        "googleSearch": any(routing.capabilities[r].search_grounding for r in model.routes),
        "sandbox": all(r in sandbox_routes for r in model.routes),
    }
