"""``GET /v1/models`` in OpenAI's list shape: every name the OpenAI Images facade takes for a
model a key may use (catalogue ids and their aliases), each as an OpenAI model object.

Pure. ``created`` is 0: the catalogue records no date for its models, and OpenAI clients only
show or sort by it. ``owned_by`` names the catalogue model a name serves (``imagegate`` for
the model's own id), so a list shows which aliases are one model.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["OWNER", "model_list"]

OWNER = "imagegate"


def model_list(names: Mapping[str, str],
               allowed: Collection[str] | None) -> list[dict[str, Any]]:
    """The model objects of ``names`` (every name a facade takes -> its catalogue model id) whose
    model is in ``allowed`` (None: every model), in catalogue order."""
    return [{"id": name, "object": "model", "created": 0,
             "owned_by": OWNER if name == model_id else f"{OWNER}:{model_id}"}
            for name, model_id in names.items()
            if allowed is None or model_id in allowed]
