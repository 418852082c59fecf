"""Wire constants and the validation of a submit body (docs/contract.md §4 and §6).

Everything here is pure: no I/O, no clock. ``parse_submit`` turns a decoded JSON body into a
``SubmitRequest`` or raises ``InvalidRequest`` naming the field at fault.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from imagegate_client.wire_models import (
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_REFERENCES,
    MAX_SEED,
    MAX_SOURCE_CHARS,
    MAX_URL_CHARS,
    MODES,
    OUTPUT_FORMATS,
    PROVIDERS,
    RATIOS,
    REQUEST_TYPES,
    RESOLUTIONS,
)

from imagegate.errors import InvalidRequest

# The enumerations and limits are the wire models' (imagegate_client.wire_models), which the
# OpenAPI document is generated from: one source for what is taken and what the document says.
__all__ = ["CONTENT_TYPES", "MODES", "OUTPUT_FORMATS", "PROVIDERS", "RATIOS", "REQUEST_TYPES",
           "RESOLUTIONS", "SIZE_TABLES", "ModelLimits", "SubmitInput", "SubmitRequest",
           "check_url", "is_unicode", "nearest_ratio", "output_size", "parse_submit"]

# Google's published 1k sizes; each tier doubles the one below (docs/contract.md §6).
_SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "1:4": (512, 2048), "4:1": (2048, 512),
    "1:8": (384, 3072), "8:1": (3072, 384), "2:3": (848, 1264),
    "3:2": (1264, 848), "3:4": (896, 1200), "4:3": (1200, 896),
    "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672),
}
# Google's published 1k sizes for gemini-2.5-flash-image (nano-banana), which has ten ratios.
_SIZES_1K_GEMINI25: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}
SIZE_TABLES: dict[str, dict[str, tuple[int, int]]] = {
    "gemini-3": _SIZES_1K,
    "gemini-2.5": _SIZES_1K_GEMINI25,
}
_TIER_SCALE = {"1k": 1, "2k": 2, "4k": 4}

# No HTTP client sends these in a URL; a data URI may carry line breaks in its base64.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


def output_size(ratio: str, resolution: str, table: str = "gemini-3") -> tuple[int, int]:
    """Width and height in pixels for a concrete ratio (not ``auto``) and a resolution tier,
    from the named size table (``gemini-3``: docs/contract.md §6)."""
    w, h = SIZE_TABLES[table][ratio]
    k = _TIER_SCALE[resolution]
    return w * k, h * k


def nearest_ratio(width: int, height: int, ratios: tuple[str, ...] = RATIOS) -> str:
    """The ratio of ``ratios`` nearest to width/height, in log space (the ``auto`` rule)."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        a, b = (int(x) for x in ratio.split(":"))
        return abs(math.log(a / b) - target)

    return min(ratios, key=distance)


@dataclass(frozen=True)
class ModelLimits:
    """What one catalogue model accepts (docs/contract.md §4 for nano-banana-2)."""

    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_references: int = MAX_REFERENCES
    ratios: tuple[str, ...] = RATIOS
    resolutions: tuple[str, ...] = RESOLUTIONS
    max_images: int = MAX_IMAGES
    size_table: str = "gemini-3"


@dataclass(frozen=True)
class SubmitInput:
    mode: str
    prompt: str
    aspect_ratio: str  # a listed ratio or "auto"
    resolution: str  # lower case
    output_format: str  # lower case, "jpg" kept as asked
    image_urls: tuple[str, ...] = ()
    google_search: bool = False
    seed: int | None = None
    num_images: int = 1


@dataclass(frozen=True)
class SubmitRequest:
    input: SubmitInput
    request_type: str = "async"
    callback_url: str | None = None
    provider: str = "auto"
    source: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode. A JSON string may carry an unpaired surrogate escape
    (``"\\ud800"``), which no UTF-8 encoder accepts: not the database, not an HTTP client."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_unicode(text: str, name: str) -> None:
    if not is_unicode(text):
        raise InvalidRequest(f"{name} must be valid Unicode text; it holds an unpaired "
                             "surrogate escape (\\ud800 to \\udfff)", field=name)


def parse_submit(body: Any, limits: ModelLimits) -> SubmitRequest:
    """Validate a decoded submit body; raise ``InvalidRequest`` naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    request_type = _enum(body, "request_type", REQUEST_TYPES, "async", fold=False)
    callback_url = body.get("callback_url")
    if request_type == "callback":
        if callback_url is None or callback_url == "":
            raise InvalidRequest("callback_url is required when request_type is callback",
                                 field="callback_url")
        check_url(callback_url, "callback_url")
    provider = _enum(body, "provider", PROVIDERS, "auto", fold=False)
    source = body.get("source")
    if source is not None and (not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS):
        raise InvalidRequest(f"source must be a string of at most {MAX_SOURCE_CHARS} characters",
                             field="source")
    if source is not None:
        _check_unicode(source, "source")
        if "\0" in source:  # the same on every store: PostgreSQL text cannot hold it
            raise InvalidRequest("source must not contain a NUL character (\\u0000)",
                                 field="source")
    raw = body.get("input")
    if not isinstance(raw, dict):
        raise InvalidRequest("input is required and must be an object", field="input")
    return SubmitRequest(
        input=_parse_input(raw, limits),
        request_type=request_type,
        callback_url=callback_url if request_type == "callback" else None,
        provider=provider,
        source=source,
    )


def _parse_input(raw: dict[str, Any], limits: ModelLimits) -> SubmitInput:
    mode = _enum(raw, "mode", MODES, None, prefix="input.", fold=False)
    prompt = raw.get("prompt")
    n = limits.max_prompt_chars
    if not isinstance(prompt, str) or not (1 <= len(prompt) <= n) or not prompt.strip():
        raise InvalidRequest(f"input.prompt must be 1 to {n} characters, not only whitespace",
                             field="input.prompt")
    _check_unicode(prompt, "input.prompt")
    image_urls = _parse_image_urls(raw.get("image_urls"), mode, limits)
    ratio = _enum(raw, "aspect_ratio", ("auto", *limits.ratios), None, prefix="input.",
                  fold=False)
    resolution = _enum(raw, "resolution", limits.resolutions, None, prefix="input.")
    output_format = _enum(raw, "output_format", OUTPUT_FORMATS, "png", prefix="input.")
    google_search = raw.get("google_search", False)
    if google_search is None:
        google_search = False
    if not isinstance(google_search, bool):
        raise InvalidRequest("input.google_search must be true or false",
                             field="input.google_search")
    seed = _parse_seed(raw)
    num_images = raw.get("num_images", 1)
    if not _is_int(num_images) or not 1 <= num_images <= limits.max_images:
        raise InvalidRequest(f"input.num_images must be an integer from 1 to {limits.max_images}",
                             field="input.num_images")
    return SubmitInput(mode=mode, prompt=prompt, aspect_ratio=ratio, resolution=resolution,
                       output_format=output_format, image_urls=image_urls,
                       google_search=google_search, seed=seed, num_images=num_images)


def _parse_seed(raw: dict[str, Any]) -> int | None:
    """``input.seed``, an extension: absent, or an integer (null is refused, not taken as absent
    as it is for APIXO's own optional fields)."""
    if "seed" not in raw:
        return None
    seed = raw["seed"]
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"input.seed must be an integer from 0 to {MAX_SEED}; leave it "
                             "out for none", field="input.seed")
    return int(seed)


def _parse_image_urls(value: Any, mode: str, limits: ModelLimits) -> tuple[str, ...]:
    name = "input.image_urls"
    if mode == "text-to-image":
        if value is None or value == []:
            return ()
        raise InvalidRequest(f"{name} must be absent or empty for text-to-image", field=name)
    k = limits.max_references
    if not isinstance(value, list) or not 1 <= len(value) <= k:
        raise InvalidRequest(f"{name} must be a list of 1 to {k} URLs for image-to-image",
                             field=name)
    for i, url in enumerate(value):
        check_url(url, f"{name}[{i}]", allow_data=True)
    return tuple(value)


def check_url(url: Any, name: str, *, allow_data: bool = False) -> None:
    """Raise ``InvalidRequest`` naming ``name`` unless ``url`` is an http or https URL that an
    HTTP client can send (or, with ``allow_data``, a base64 ``data:image/`` URI)."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{name} must be a URL string", field=name)
    _check_unicode(url, name)
    if allow_data and url.startswith("data:"):
        if not url.startswith("data:image/") or ";base64," not in url:
            raise InvalidRequest(f"{name} must be a data:image/...;base64, URI", field=name)
        return
    if len(url) > MAX_URL_CHARS:
        raise InvalidRequest(f"{name} must be at most {MAX_URL_CHARS} characters", field=name)
    if _CONTROL_CHARACTER.search(url):
        raise InvalidRequest(f"{name} must not contain control characters (tab, newline and "
                             "the like)", field=name)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise InvalidRequest(f"{name} is not a valid URL", field=name) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{name} must be an http or https URL", field=name)


def _enum(obj: dict[str, Any], key: str, allowed: tuple[str, ...], default: str | None,
          *, prefix: str = "", fold: bool = True) -> str:
    name = prefix + key
    value = obj.get(key)
    if value is None:
        if default is None:
            raise InvalidRequest(f"{name} is required; one of {', '.join(allowed)}", field=name)
        return default
    if isinstance(value, str):
        candidate = value.lower() if fold else value
        if candidate in allowed:
            return candidate
    raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}", field=name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
