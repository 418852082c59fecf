"""Which routes may serve a task: pure rules over the catalogue's models and the capabilities
each route declares in configuration (``routes.registry.declared_capabilities``).

Candidates are the model's routes, in catalogue order, that can do what the task asks (mode,
reference count, resolution, ratio, search grounding) and match its ``provider`` preference:
``official`` keeps only routes marked official, ``value`` orders by cost, ``auto`` keeps the
catalogue's order. An API process checks at submit that a task has a candidate, without
building any route; the router in a worker runs the candidates it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imagegate.catalogue import ModelConfig, model_names
from imagegate.contract import SubmitInput
from imagegate.errors import InvalidRequest, NotFound, quoted
from imagegate.routes.base import Capabilities

__all__ = ["Routing", "can_serve"]


@dataclass(frozen=True)
class Routing:
    models: Mapping[str, ModelConfig]
    capabilities: Mapping[str, Capabilities]  # by route name
    names: Mapping[str, str] = field(init=False)  # model id or alias -> model id

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", model_names(self.models))

    def resolve(self, name: str) -> str:
        """The id of the model ``name`` names: its id or one of its aliases (the facades take
        both); ``NotFound`` otherwise."""
        try:
            return self.names[name]
        except KeyError:
            raise NotFound(f"unknown model {quoted(name)}") from None

    def model(self, model_id: str) -> ModelConfig:
        try:
            return self.models[model_id]
        except KeyError:
            raise NotFound(f"unknown model {quoted(model_id)}") from None

    def candidates(self, model_id: str, inp: SubmitInput, provider: str) -> list[str]:
        """The names of the routes that may serve the task, in the order to try them."""
        fit = [name for name in self.model(model_id).routes
               if can_serve(self.capabilities[name], inp)]
        if provider == "official":
            return [name for name in fit if self.capabilities[name].official]
        if provider == "value":
            return sorted(fit, key=lambda n: self.capabilities[n].cost_micros.get(
                inp.resolution, 0))
        return fit

    def check_routable(self, model_id: str, inp: SubmitInput, provider: str) -> None:
        """Raise InvalidRequest at submit when no configured route could ever serve the task."""
        if self.candidates(model_id, inp, provider):
            return
        if inp.google_search:
            raise InvalidRequest("no configured route for this model can ground on Google "
                                 "search; send google_search false", field="input.google_search")
        raise InvalidRequest(f"no configured route for this model serves provider "
                             f"{provider!r} with these inputs", field="provider")


def can_serve(caps: Capabilities, inp: SubmitInput) -> bool:
    return (inp.mode in caps.modes
            and len(inp.image_urls) <= caps.max_references
            and inp.resolution in caps.resolutions
            and (inp.aspect_ratio == "auto" or inp.aspect_ratio in caps.ratios)
            and (caps.search_grounding or not inp.google_search))
