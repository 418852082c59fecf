"""A Gemini ``generateContent`` request (as the google-genai SDK and Google's REST examples
send it) read as a native submit body (docs/contract.md §4). Pure functions, no I/O.

    contents[].parts[].text                 the prompt: the text of every user turn, in order,
                                            joined by a blank line; model turns' text is left out
    systemInstruction.parts[].text          put before the prompt, followed by a blank line
    contents[].parts[].inlineData           a reference image: a data:image/...;base64, URI
    contents[].parts[].fileData.fileUri     a reference image: an http(s) URL the worker fetches
    (images of every turn, user and model, in order; parts marked ``thought`` are skipped)
    generationConfig.responseModalities     must include IMAGE when given (absent: the image
                                            models' default, text and image)
    generationConfig.imageConfig.aspectRatio   input.aspect_ratio (absent: auto, which is 1:1
                                            without references, the first reference's otherwise)
    generationConfig.imageConfig.imageSize  input.resolution, "1K" "2K" "4K" (absent: 1K)
    generationConfig.imageConfig.imageOutputOptions.mimeType   input.output_format (png, jpeg)
    generationConfig.candidateCount         input.num_images, one candidate per image
    generationConfig.seed                   input.seed (a negative int32 as its unsigned value)
    tools[].googleSearch                    input.google_search true

Everything else Google defines for ``generateContent`` that changes no image is ignored:
safetySettings, toolConfig, labels, and the rest of generationConfig (temperature, topP, topK,
maxOutputTokens, stopSequences, thinkingConfig, responseMimeType...). A request that asks for
what this service cannot do (other tools, a cached content, parts that are not text or
images, a response without images) is refused with ``InvalidRequest`` naming the field in the
request's own terms; ``gemini_field`` names a native field the same way.

Both spellings the REST API accepts are read: lowerCamelCase (``inlineData``, as the SDK
sends) and snake_case (``inline_data``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagegate_client.wire_models import MAX_SEED

from imagegate.contract import ModelLimits, check_url
from imagegate.errors import InvalidRequest

__all__ = ["NATIVE_FIELDS", "GeminiPrompt", "gemini_field", "native_body", "read_contents"]

# Where the native body's fields come from in a generateContent request.
NATIVE_FIELDS = {
    "input.prompt": "contents",
    "input.image_urls": "contents",
    "input.aspect_ratio": "generationConfig.imageConfig.aspectRatio",
    "input.resolution": "generationConfig.imageConfig.imageSize",
    "input.output_format": "generationConfig.imageConfig.imageOutputOptions.mimeType",
    "input.num_images": "generationConfig.candidateCount",
    "input.seed": "generationConfig.seed",
    "input.google_search": "tools",
}
_OUTPUT_FORMATS = {"image/png": "png", "image/jpeg": "jpeg"}
_SEARCH_TOOLS = ("googleSearch", "google_search", "googleSearchRetrieval",
                 "google_search_retrieval")
_INT32 = 2**31
_UPPER = re.compile(r"([A-Z])")
# What a part may carry besides its content: none of it changes the image.
_PART_METADATA = frozenset({"thought", "thoughtSignature", "thought_signature", "partMetadata",
                            "part_metadata", "mediaResolution", "media_resolution"})


def gemini_field(native: str | None) -> str | None:
    """The request field a native field's value came from (None stays None)."""
    if native is None:
        return None
    if native.startswith("input.image_urls["):
        return "contents"
    return NATIVE_FIELDS.get(native, native)


def _get(obj: Mapping[str, Any], camel: str) -> Any:
    """``obj[camel]``, or its snake_case spelling."""
    if camel in obj:
        return obj[camel]
    return obj.get(_UPPER.sub(lambda m: "_" + m.group(1).lower(), camel))


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be an object", field=name)
    return value


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{name} must be a list", field=name)
    return value


@dataclass(frozen=True)
class GeminiPrompt:
    """What the turns of a request say: the prompt text and the reference images' URLs."""

    text: str
    image_urls: tuple[str, ...]


def read_contents(body: Mapping[str, Any]) -> GeminiPrompt:
    """The prompt and the reference images of ``contents`` and ``systemInstruction``."""
    contents = body.get("contents")
    if isinstance(contents, dict):  # the REST API takes a single Content as well
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest("contents must be a non-empty list of turns", field="contents")
    texts: list[str] = []
    images: list[str] = []
    for i, turn in enumerate(contents):
        turn = _object(turn, f"contents[{i}]")
        role = turn.get("role") or "user"
        if role not in ("user", "model"):
            raise InvalidRequest(f"contents[{i}].role must be user or model",
                                 field=f"contents[{i}].role")
        turn_texts, turn_images = _read_parts(turn.get("parts"), f"contents[{i}].parts")
        if role == "user":
            texts.extend(turn_texts)
        images.extend(turn_images)
    system = _system_text(_get(body, "systemInstruction"))
    prompt = "\n\n".join(t for t in texts if t.strip())
    if not prompt:
        raise InvalidRequest("contents must hold a text part saying what image to make",
                             field="contents")
    return GeminiPrompt(f"{system}\n\n{prompt}" if system else prompt, tuple(images))


def _system_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    instruction = _object(value, "systemInstruction")
    texts, images = _read_parts(instruction.get("parts"), "systemInstruction.parts")
    if images:
        raise InvalidRequest("systemInstruction may hold only text parts",
                             field="systemInstruction")
    return "\n\n".join(t.strip() for t in texts if t.strip())


def _read_parts(value: Any, name: str) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(_list(value, name)):
        where = f"{name}[{j}]"
        part = _object(part, where)
        if part.get("thought") is True:
            continue  # the model's interim thinking: neither prompt nor reference
        if "text" in part:
            if not isinstance(part["text"], str):
                raise InvalidRequest(f"{where}.text must be a string", field=f"{where}.text")
            texts.append(part["text"])
        elif (blob := _get(part, "inlineData")) is not None:
            images.append(_inline_image(_object(blob, f"{where}.inlineData"), where))
        elif (file := _get(part, "fileData")) is not None:
            images.append(_file_image(_object(file, f"{where}.fileData"), where))
        elif not set(part) <= _PART_METADATA:
            kinds = ", ".join(sorted(k for k in part if k not in _PART_METADATA))
            raise InvalidRequest(f"{where} is a {kinds} part; this service takes only text "
                                 "and image parts", field=where)
    return texts, images


def _inline_image(blob: Mapping[str, Any], where: str) -> str:
    mime = _get(blob, "mimeType")
    data = blob.get("data")
    if not isinstance(mime, str) or not mime.lower().startswith("image/"):
        raise InvalidRequest(f"{where}.inlineData.mimeType must be an image type "
                             "(image/png, image/jpeg, image/webp...)",
                             field=f"{where}.inlineData.mimeType")
    if not isinstance(data, str) or not data:
        raise InvalidRequest(f"{where}.inlineData.data must be the image's bytes in base64",
                             field=f"{where}.inlineData.data")
    # The REST API takes URL-safe base64 too; a data URI holds the standard alphabet.
    return f"data:{mime.lower()};base64,{data.replace('-', '+').replace('_', '/')}"


def _file_image(file: Mapping[str, Any], where: str) -> str:
    uri = _get(file, "fileUri")
    mime = _get(file, "mimeType")
    if isinstance(mime, str) and mime and not mime.lower().startswith("image/"):
        raise InvalidRequest(f"{where}.fileData.mimeType must be an image type",
                             field=f"{where}.fileData.mimeType")
    name = f"{where}.fileData.fileUri"
    if not isinstance(uri, str) or not uri.lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{name} must be an http or https URL of an image this service "
                             "can fetch (not a gs:// or Files API URI)", field=name)
    check_url(uri, name)
    return uri


def native_body(body: Any, limits: ModelLimits) -> dict[str, Any]:
    """The native submit body of a generateContent request to a model with ``limits``;
    ``InvalidRequest`` naming the request's field when it cannot be one."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if _get(body, "cachedContent"):
        raise InvalidRequest("cachedContent is not supported; send the turns in contents",
                             field="cachedContent")
    prompt = read_contents(body)
    config = _object(_get(body, "generationConfig"), "generationConfig")
    _check_modalities(_get(config, "responseModalities"))
    image = _object(_get(config, "imageConfig"), "generationConfig.imageConfig")
    _check_prompt(prompt, limits)
    native: dict[str, Any] = {
        "mode": "image-to-image" if prompt.image_urls else "text-to-image",
        "prompt": prompt.text,
        "aspect_ratio": _ratio(_get(image, "aspectRatio"), limits),
        "resolution": _resolution(_get(image, "imageSize"), limits),
        "output_format": _output_format(image),
        "num_images": _candidates(_get(config, "candidateCount"), limits),
        "google_search": _google_search(_get(body, "tools")),
    }
    if prompt.image_urls:
        native["image_urls"] = list(prompt.image_urls)
    seed = _seed(_get(config, "seed"))
    if seed is not None:
        native["seed"] = seed
    return {"input": native}


def _check_modalities(value: Any) -> None:
    name = "generationConfig.responseModalities"
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise InvalidRequest(f"{name} must be a list such as [\"IMAGE\"] or "
                             "[\"TEXT\", \"IMAGE\"]", field=name)
    if "IMAGE" not in (m.upper() for m in value):
        raise InvalidRequest(f"{name} must include IMAGE: this service makes images and "
                             "answers no text alone", field=name)


def _check_prompt(prompt: GeminiPrompt, limits: ModelLimits) -> None:
    if len(prompt.text) > limits.max_prompt_chars:
        raise InvalidRequest(f"the prompt (the user turns' text with the systemInstruction) "
                             f"is {len(prompt.text)} characters; this model takes at most "
                             f"{limits.max_prompt_chars}", field="contents")
    if len(prompt.image_urls) > limits.max_references:
        raise InvalidRequest(f"contents hold {len(prompt.image_urls)} images; this model "
                             f"takes at most {limits.max_references} reference images",
                             field="contents")


def _ratio(value: Any, limits: ModelLimits) -> str:
    name = NATIVE_FIELDS["input.aspect_ratio"]
    if value is None or value == "":
        return "auto"
    if value not in limits.ratios:
        raise InvalidRequest(f"{name} must be one of {', '.join(limits.ratios)}", field=name)
    return str(value)


def _resolution(value: Any, limits: ModelLimits) -> str:
    name = NATIVE_FIELDS["input.resolution"]
    if value is None or value == "":
        return "1k"
    tier = value.lower() if isinstance(value, str) else None
    if tier not in limits.resolutions:
        sizes = ", ".join(r.upper() for r in limits.resolutions)
        raise InvalidRequest(f"{name} must be one of {sizes} for this model", field=name)
    return tier


def _output_format(image: Mapping[str, Any]) -> str:
    name = NATIVE_FIELDS["input.output_format"]
    options = _object(_get(image, "imageOutputOptions"), "generationConfig.imageConfig."
                      "imageOutputOptions")
    mime = _get(options, "mimeType") or _get(image, "outputMimeType")
    if mime is None:
        return "png"
    if not isinstance(mime, str) or mime.lower() not in _OUTPUT_FORMATS:
        raise InvalidRequest(f"{name} must be image/png or image/jpeg", field=name)
    return _OUTPUT_FORMATS[mime.lower()]


def _candidates(value: Any, limits: ModelLimits) -> int:
    name = NATIVE_FIELDS["input.num_images"]
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 1 <= value <= limits.max_images:
        raise InvalidRequest(f"{name} must be an integer from 1 to {limits.max_images} (one "
                             "image a candidate)", field=name)
    return value


def _seed(value: Any) -> int | None:
    name = NATIVE_FIELDS["input.seed"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or \
            not -_INT32 <= value <= MAX_SEED:
        raise InvalidRequest(f"{name} must be an integer", field=name)
    return value + 2 * _INT32 if value < 0 else value


def _google_search(value: Any) -> bool:
    search = False
    for i, tool in enumerate(_list(value, "tools")):
        tool = _object(tool, f"tools[{i}]")
        for kind in tool:
            if kind not in _SEARCH_TOOLS:
                raise InvalidRequest(f"tools[{i}] is a {kind} tool; this service takes only "
                                     "googleSearch (grounding on Google search)",
                                     field=f"tools[{i}]")
            search = True
    return search
