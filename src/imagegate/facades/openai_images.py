"""OpenAI Images requests as native submit bodies, and finished tasks as OpenAI Images answers
(docs/openai-images.md has the tables this module implements).

Pure: no I/O, no clock. The parsers raise ``InvalidRequest`` naming the request field at fault
by its OpenAI name (``size``, ``n``, ``image``...); what the native validation refuses later
names native fields, which ``openai_errors.param_name`` turns into OpenAI's.

``size`` picks the ratio and the tier: ``WxH`` goes to the model's ratio nearest W/H
(``contract.nearest_ratio``) and to the model's tier whose output's long side is nearest the
longer of W and H (in log space, as the ratio); ``auto`` or no size leaves the ratio ``auto``
and takes the tier from ``quality``. Nothing is resized: the answer's ``size`` is the size made.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagegate.app.generation import Generation
from imagegate.contract import ModelLimits, nearest_ratio, output_size
from imagegate.errors import InvalidRequest, quoted

__all__ = ["DEFAULT_MODEL", "IGNORED_FIELDS", "ImagesRequest", "Upload", "answer",
           "map_size", "parse_edit_form", "parse_edit_json", "parse_generation",
           "requested_model", "sniff_image"]

# A request without ``model`` is served by the flagship (OpenAI's own default for
# images.generate, dall-e-2, is one of its aliases in the default catalogue).
DEFAULT_MODEL = "nano-banana-2"
RESPONSE_FORMATS = ("b64_json", "url")
# OpenAI answers these models in URLs unless asked otherwise, and code written for them reads
# ``url``; every other model answers in base64, as OpenAI's GPT Image models do.
URL_BY_DEFAULT = ("dall-e-2", "dall-e-3")
# OpenAI's output formats imagegate makes; webp, gif and svg are refused by name.
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg"}
# The tier a ``quality`` asks for when ``size`` is auto (an explicit size picks the tier).
QUALITY_TIERS = {"auto": "1k", "low": "1k", "medium": "1k", "standard": "1k",
                 "high": "2k", "hd": "2k", "xhigh": "4k", "max": "4k"}
BACKGROUNDS = ("auto", "opaque")
# Accepted and not used: nothing in a served model corresponds to them.
IGNORED_FIELDS = ("moderation", "output_compression", "style", "user", "safety_identifier",
                  "input_fidelity", "partial_images", "complexity")
MAX_SIDE = 16384
_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
_TIERS = ("1k", "2k", "4k")
_FORMAT_NAMES = {"image/png": "png", "image/jpeg": "jpeg"}
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
               (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


@dataclass(frozen=True)
class Upload:
    """One image file of a multipart edit: the file name its part carried, and its bytes."""

    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ImagesRequest:
    """A parsed OpenAI Images request: the native submit ``body`` (docs/contract.md §4) and
    how the images are answered (``response_format``: ``b64_json``, or ``url``, the default
    for the DALL-E model names only)."""

    body: dict[str, Any]
    response_format: str


def requested_model(fields: Mapping[str, Any]) -> str:
    """The model name ``fields`` asks for (an id or an alias), ``DEFAULT_MODEL`` without one."""
    model = fields.get("model")
    if model is None or model == "":
        return DEFAULT_MODEL
    if not isinstance(model, str):
        raise InvalidRequest("model must be a string", field="model")
    return model


def parse_generation(raw: Any, limits: ModelLimits) -> ImagesRequest:
    """A ``POST /v1/images/generations`` JSON body."""
    return _request(_object(raw), (), limits)


def parse_edit_json(raw: Any, limits: ModelLimits) -> ImagesRequest:
    """A ``POST /v1/images/edits`` JSON body: ``images`` a list of ``{"image_url": URL}``
    (http(s) or ``data:image/...;base64,``); ``file_id`` references are refused (there are no
    uploaded files to name)."""
    body = _object(raw)
    _no_mask(body)
    images = body.get("images")
    if not isinstance(images, list) or not images:
        raise InvalidRequest('images must be a non-empty list of {"image_url": URL} objects',
                             field="images")
    urls = []
    for i, image in enumerate(images):
        url = image.get("image_url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f'images[{i}] must be {{"image_url": URL}} with an http(s) or '
                                 "data:image/...;base64, URL (file_id is not supported)",
                                 field=f"images[{i}]")
        urls.append(url)
    return _request(body, tuple(urls), limits)


def parse_edit_form(fields: Mapping[str, str], uploads: Sequence[Upload], limits: ModelLimits,
                    *, max_image_bytes: int) -> ImagesRequest:
    """A ``POST /v1/images/edits`` multipart form: its text ``fields`` and its ``image`` (or
    ``image[]``) files, each a PNG, JPEG, WebP or GIF of at most ``max_image_bytes``, sent on
    as ``data:`` URIs. A ``mask`` field or file is refused."""
    _no_mask(fields)
    if not uploads:
        raise InvalidRequest("image is required: one or more image files", field="image")
    urls = tuple(_data_uri(upload, i, max_image_bytes) for i, upload in enumerate(uploads))
    typed: dict[str, Any] = dict(fields)
    for name in ("n", "output_compression", "partial_images"):
        if name in typed:
            typed[name] = _form_int(typed[name])
    if "stream" in typed:
        typed["stream"] = typed["stream"].strip().lower() == "true"
    return _request(typed, urls, limits)


def sniff_image(data: bytes) -> str | None:
    """The media type of an image file by its first bytes: PNG, JPEG, GIF or WebP; None for
    anything else."""
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def map_size(size: Any, quality: Any, limits: ModelLimits) -> tuple[str, str]:
    """The native ``aspect_ratio`` and ``resolution`` for OpenAI's ``size`` and ``quality``
    on a model with ``limits``; ``InvalidRequest`` naming ``size`` or ``quality``."""
    if quality is not None and (not isinstance(quality, str) or quality not in QUALITY_TIERS):
        raise InvalidRequest(f"quality must be one of {', '.join(QUALITY_TIERS)}",
                             field="quality")
    if size is None or size == "auto":
        wanted = QUALITY_TIERS[quality or "auto"]
        return "auto", _tier_at_most(wanted, limits.resolutions)
    width, height = _dimensions(size)
    ratio = nearest_ratio(width, height, limits.ratios)
    return ratio, _nearest_tier(ratio, max(width, height), limits)


def answer(generation: Generation, response_format: str) -> dict[str, Any]:
    """The answer of a succeeded generation: ``created`` (the task's creation, Unix seconds),
    ``data`` (one item per image, ``b64_json`` or ``url``), and the ``output_format`` and
    ``size`` of the images made. ``b64_json`` needs the images' bytes."""
    data = []
    for image in generation.images:
        if response_format == "url":
            data.append({"url": image.url})
        else:
            assert image.data is not None, "b64_json needs the generation's bytes"
            data.append({"b64_json": base64.b64encode(image.data).decode("ascii")})
    body: dict[str, Any] = {"created": generation.task.created_ms // 1000, "data": data}
    if generation.images:
        first = generation.images[0].file
        body["output_format"] = _FORMAT_NAMES.get(first.content_type, "png")
        body["size"] = f"{first.width}x{first.height}"
    return body


def _request(fields: Mapping[str, Any], image_urls: tuple[str, ...],
             limits: ModelLimits) -> ImagesRequest:
    _check_background(fields.get("background"))
    if fields.get("stream") is True:
        raise InvalidRequest("stream is not supported; leave it out or false", field="stream")
    ratio, tier = map_size(fields.get("size"), fields.get("quality"), limits)
    inp: dict[str, Any] = {
        "mode": "image-to-image" if image_urls else "text-to-image",
        "prompt": fields.get("prompt"),
        "aspect_ratio": ratio,
        "resolution": tier,
        "output_format": _output_format(fields.get("output_format")),
        "num_images": _count(fields.get("n"), limits),
    }
    if image_urls:
        inp["image_urls"] = list(image_urls)
    default = "url" if fields.get("model") in URL_BY_DEFAULT else "b64_json"
    return ImagesRequest({"input": inp}, _response_format(fields.get("response_format"), default))


def _object(raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return raw


def _no_mask(fields: Mapping[str, Any]) -> None:
    if fields.get("mask") not in (None, ""):
        raise InvalidRequest("mask is not supported: the served models edit the whole image; "
                             "say in the prompt what to change", field="mask")


def _data_uri(upload: Upload, index: int, max_bytes: int) -> str:
    name = quoted(upload.name or f"image {index + 1}")
    media_type = sniff_image(upload.data)
    if media_type is None:
        raise InvalidRequest(f"image file {name} is not a PNG, JPEG, WebP or GIF image",
                             field="image")
    if len(upload.data) > max_bytes:
        raise InvalidRequest(f"image file {name} is larger than {max_bytes} bytes",
                             field="image")
    return f"data:{media_type};base64,{base64.b64encode(upload.data).decode('ascii')}"


def _form_int(value: str) -> Any:
    """A form field's integer; a text that is none is passed on for the field's own check."""
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else value


def _count(n: Any, limits: ModelLimits) -> int:
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limits.max_images:
        raise InvalidRequest(f"n must be an integer from 1 to {limits.max_images} for this "
                             "model", field="n")
    return n


def _output_format(value: Any) -> str:
    if value is None:
        return "png"
    if isinstance(value, str) and value.lower() in OUTPUT_FORMATS:
        return OUTPUT_FORMATS[value.lower()]
    raise InvalidRequest("output_format must be png or jpeg (webp, gif and svg are not made "
                         "by the served models)", field="output_format")


def _response_format(value: Any, default: str) -> str:
    if value is None:
        return default
    if value in RESPONSE_FORMATS:
        return str(value)
    raise InvalidRequest("response_format must be b64_json or url", field="response_format")


def _check_background(value: Any) -> None:
    if value is not None and value not in BACKGROUNDS:
        raise InvalidRequest("background must be auto or opaque (the served models make no "
                             "transparent images)", field="background")


def _dimensions(size: Any) -> tuple[int, int]:
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is not None:
        width, height = int(match[1]), int(match[2])
        if 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE:
            return width, height
    raise InvalidRequest(f"size must be auto or WIDTHxHEIGHT in pixels (each 1 to {MAX_SIDE}), "
                         "such as 1024x1024 or 1536x1024", field="size")


def _tier_at_most(wanted: str, tiers: tuple[str, ...]) -> str:
    """The model's largest tier not above ``wanted``; its smallest when all are above."""
    fit = [t for t in tiers if _TIERS.index(t) <= _TIERS.index(wanted)]
    return max(fit, key=_TIERS.index) if fit else min(tiers, key=_TIERS.index)


def _nearest_tier(ratio: str, long_side: int, limits: ModelLimits) -> str:
    def distance(tier: str) -> float:
        made = max(output_size(ratio, tier, limits.size_table))
        return abs(math.log(made / long_side))

    return min(limits.resolutions, key=distance)
