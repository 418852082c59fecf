"""What Google's image models take, as Google's own pages said on ``CHECKED``.

A Gemini route (on the Gemini API or on Vertex AI) takes its default capabilities from here:
ratios, size tiers, reference images, search grounding, the thinking levels it may send, and
whether ``imageSize`` is sent at all. These facts age (Google renames, retires and replaces
models several times a year), so they are only defaults: every route option can override them,
and every route asks Google for its model at start (``imagegate routes check``) instead of
assuming it is still served. docs/routes-gemini.md lists the sources of each row.

A model id not listed here is judged from its name the way Google has named its image models
so far: ``gemini-2*`` as the first generation (1k only, ten ratios, no ``imageSize``), ``*lite*``
as 1k only without search grounding, ``*pro*`` with ten ratios, anything else as the Nano
Banana 2 family (all 14 ratios, 1k/2k/4k, search grounding).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from imagegate.contract import RATIOS, RESOLUTIONS

__all__ = [
    "CHECKED",
    "KNOWN_MODELS",
    "TEN_RATIOS",
    "THINKING_LEVELS",
    "GoogleImageModel",
    "image_model",
]

CHECKED = "2026-11-29"
TEN_RATIOS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9",
                               "21:9")
# Every level Gemini 3 models take in generationConfig.thinkingConfig.thinkingLevel.
THINKING_LEVELS: tuple[str, ...] = ("minimal", "low", "medium", "high")


@dataclass(frozen=True)
class GoogleImageModel:
    """One Google image model. ``thinking_levels`` empty: the model's thinking is not
    configurable and no level may be sent. ``status`` is what Google's pages said on
    ``CHECKED`` (for people; the service checks availability itself)."""

    id: str
    name: str
    ratios: tuple[str, ...] = RATIOS
    resolutions: tuple[str, ...] = RESOLUTIONS
    max_references: int = 14
    search_grounding: bool = True
    thinking_levels: tuple[str, ...] = THINKING_LEVELS
    send_image_size: bool = True
    status: str = "not listed on Google's pages when last checked"


# Templates by family; each listed model is one of these with its own id, name and status.
_FAMILY_2 = GoogleImageModel("", "")
_PRO = GoogleImageModel("", "", ratios=TEN_RATIOS, thinking_levels=())
_LITE = GoogleImageModel("", "", ratios=TEN_RATIOS, resolutions=("1k",), search_grounding=False,
                         thinking_levels=("minimal", "high"))
_FIRST = GoogleImageModel("", "", ratios=TEN_RATIOS, resolutions=("1k",), search_grounding=False,
                          thinking_levels=(), send_image_size=False)


def _model(template: GoogleImageModel, model_id: str, name: str, status: str,
           thinking_levels: tuple[str, ...] | None = None) -> GoogleImageModel:
    levels = template.thinking_levels if thinking_levels is None else thinking_levels
    return replace(template, id=model_id, name=name, status=status, thinking_levels=levels)


KNOWN_MODELS: dict[str, GoogleImageModel] = {m.id: m for m in (
    _model(_FAMILY_2, "gemini-nano-banana-2.1", "Nano Banana 2.1",
           "GA since 2026-10-06; Google's recommended Nano Banana 2 model",
           thinking_levels=("minimal", "medium", "high")),
    _model(_FAMILY_2, "gemini-3.1-flash-image", "Nano Banana 2",
           "GA since 2026-05-28; deprecated on 2026-10-06 for gemini-nano-banana-2.1",
           thinking_levels=("minimal", "high")),
    _model(_FAMILY_2, "gemini-3.1-flash-image-preview", "Nano Banana 2 (preview)",
           "shut down 2026-06-25; replaced by gemini-3.1-flash-image",
           thinking_levels=("minimal", "high")),
    _model(_PRO, "gemini-3-pro-image", "Nano Banana Pro", "GA since 2026-05-28"),
    _model(_PRO, "gemini-3-pro-image-preview", "Nano Banana Pro (preview)",
           "shut down 2026-06-25; replaced by gemini-3-pro-image"),
    _model(_LITE, "gemini-3.1-flash-lite-image", "Nano Banana 2 Lite", "GA since 2026-06-30"),
    _model(_FIRST, "gemini-2.5-flash-image", "Nano Banana",
           "earliest shutdown 2026-10-02; since 2026-09-18 open only to projects that used "
           "it before"),
)}


def image_model(model_id: str) -> GoogleImageModel:
    """What ``model_id`` takes: the listed facts, or a judgement from its name."""
    model_id = model_id.removeprefix("models/")
    known = KNOWN_MODELS.get(model_id)
    if known is not None:
        return known
    # An unlisted model may take any level; Google refuses one it does not take.
    if model_id.startswith("gemini-2"):
        template = _FIRST
    elif "lite" in model_id:
        template = replace(_LITE, thinking_levels=THINKING_LEVELS)
    elif "pro" in model_id:
        template = replace(_PRO, thinking_levels=THINKING_LEVELS)
    else:
        template = _FAMILY_2
    return replace(template, id=model_id, name=model_id)
