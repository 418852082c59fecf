"""A fake of Google's Gemini API (``generateContent`` for image models): a real HTTP server on
127.0.0.1, in a thread, usable from sync and async tests alike.

    with gemini_server() as gemini:
        gemini.script([Error(429, "RESOURCE_EXHAUSTED", retry_delay="1s"), Image(color=RED)])
        route = GeminiRoute("g", client, api_key=gemini.api_key, model=MODEL,
                            base_url=gemini.base_url)
        ...
        gemini.requests[0].image_config  # {"aspectRatio": "16:9", "imageSize": "2K"}

``gemini_server(api_key=..., models=None, default=Image())`` yields a ``GeminiServer``:

- ``base_url``, ``api_key``: what a route needs.
- ``script(steps)``: the answers to the next requests, consumed in order (replaces what is left
  of an earlier script); when it is empty every request gets ``default``.
- ``requests``: every ``generateContent`` request received, as ``GeminiRequest`` (decoded JSON
  body, reference images decoded back to PIL), in arrival order, including refused ones.
- ``lookups``: the model ids asked for with ``GET /v1beta/models/{model}``, in order.
- ``retire(model)``: shut a model down from now on (it is answered 404 NOT_FOUND).

Like Google, the server checks the ``x-goog-api-key`` header (missing: 403 PERMISSION_DENIED;
wrong: 400 INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID), refuses a key in the query string,
answers 404 NOT_FOUND for a path or model it does not serve (``models``: None serves any but
``retired``), and 400 INVALID_ARGUMENT for a body that is not a valid image request. Those
checks run before a scripted step is consumed. ``GET /v1beta/models/{model}`` (models.get)
answers a served model with its ``Model`` resource and any other with 404 NOT_FOUND. Steps:

    Image(size=None, color=..., mime=..., text=None, snake_case=False)  one final image; size
        None: the table size for the request's aspectRatio and imageSize (1K when absent)
    ThoughtsThenImage(thought_colors=(...), color=..., size=None)  interim thought parts first
    Blocked(reason="SAFETY")        promptFeedback.blockReason, no candidates
    Finish(reason, text=None)       a candidate with that finishReason and no image
    TextOnly(text)                  finishReason STOP, a text part, no image
    NoImage()                       finishReason NO_IMAGE
    NoCandidates()                  an answer with an empty candidates list
    Error(code, status, message=None, retry_delay=None, retry_after=None)  Google's error body
    Raw(status, body, content_type="text/plain")  any bytes
    Hang(seconds, then=None)        wait (ends early when the server stops), then answer `then`
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from loopback import QuietHandler, serve_in_thread
from PIL import Image as PILImage

from imagegate.contract import output_size

__all__ = [
    "Blocked", "Error", "Finish", "GeminiRequest", "GeminiServer", "Hang", "Image", "NoCandidates",
    "NoImage", "Raw", "Step", "TextOnly", "ThoughtsThenImage", "gemini_server",
]

RGB = tuple[int, int, int]
_PATH_PREFIX = "/v1beta/models/"
_PATH_SUFFIX = ":generateContent"
_SIZES = ("1K", "2K", "4K")
_RESPONSE_MODALITIES = {"TEXT", "IMAGE"}
_GENERATION_CONFIG = {"responseModalities", "imageConfig", "thinkingConfig"}
_THINKING_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")  # google.ai ThinkingLevel


# Steps ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    size: tuple[int, int] | None = None
    color: RGB = (40, 90, 200)
    mime: str = "image/png"
    text: str | None = None  # a text part before the image, as the models often send
    snake_case: bool = False  # inline_data / mime_type, as some proxies answer


@dataclass(frozen=True)
class ThoughtsThenImage:
    thought_colors: tuple[RGB, ...] = ((200, 30, 30), (30, 200, 30))
    color: RGB = (30, 30, 200)
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Blocked:
    reason: str = "SAFETY"


@dataclass(frozen=True)
class Finish:
    reason: str
    text: str | None = None


@dataclass(frozen=True)
class TextOnly:
    text: str


@dataclass(frozen=True)
class NoImage:
    pass


@dataclass(frozen=True)
class NoCandidates:
    pass


@dataclass(frozen=True)
class Error:
    code: int
    status: str
    message: str | None = None
    retry_delay: str | None = None  # RetryInfo.retryDelay, such as "1s"
    retry_after: str | None = None  # a Retry-After header


@dataclass(frozen=True)
class Raw:
    status: int
    body: bytes
    content_type: str = "text/plain"


@dataclass(frozen=True)
class Hang:
    seconds: float
    then: Step | None = None


Step = (Image | ThoughtsThenImage | Blocked | Finish | TextOnly | NoImage | NoCandidates | Error
        | Raw | Hang)


# Requests -------------------------------------------------------------------------------------


@dataclass
class GeminiRequest:
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    model: str | None
    body: dict[str, Any] | None  # None when it was not a JSON object
    references: list[PILImage.Image] = field(default_factory=list)
    refusal: str | None = None  # why the fake refused it before any step, if it did

    @property
    def parts(self) -> list[dict[str, Any]]:
        contents = (self.body or {}).get("contents") or [{}]
        return list(contents[0].get("parts") or [])

    @property
    def prompt(self) -> str | None:
        texts = [p["text"] for p in self.parts if "text" in p]
        return texts[0] if texts else None

    @property
    def inline_parts(self) -> list[dict[str, Any]]:
        return [p["inlineData"] for p in self.parts if "inlineData" in p]

    @property
    def generation_config(self) -> dict[str, Any]:
        return dict((self.body or {}).get("generationConfig") or {})

    @property
    def image_config(self) -> dict[str, Any]:
        return dict(self.generation_config.get("imageConfig") or {})

    @property
    def thinking_level(self) -> str | None:
        return (self.generation_config.get("thinkingConfig") or {}).get("thinkingLevel")

    @property
    def tools(self) -> list[Any]:
        return list((self.body or {}).get("tools") or [])


# Server ---------------------------------------------------------------------------------------


@dataclass
class GeminiServer:
    api_key: str
    models: frozenset[str] | None
    default: Step
    base_url: str = ""
    requests: list[GeminiRequest] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)
    _steps: list[Step] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def script(self, steps: Sequence[Step]) -> None:
        """Answer the next requests with ``steps``, in order, then with ``default``."""
        with self._lock:
            self._steps = list(steps)

    def _next_step(self) -> Step:
        with self._lock:
            return self._steps.pop(0) if self._steps else self.default

    def _record(self, request: GeminiRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def respond(self, request: GeminiRequest,
                refusal: Error | None) -> tuple[int, dict[str, str], bytes]:
        """Record ``request`` and answer it: its refusal, else the next step (after any hang)."""
        self._record(request)
        step: Step = refusal if refusal is not None else self._next_step()
        while isinstance(step, Hang):
            self._stopping.wait(step.seconds)
            step = step.then or self.default
        return _answer(step, request)

    def retire(self, model: str) -> None:
        """Shut ``model`` down: from now on it is answered 404 NOT_FOUND."""
        with self._lock:
            self.retired.add(model)

    def serves(self, model: str | None) -> bool:
        return model is not None and model not in self.retired and (
            self.models is None or model in self.models)


@contextmanager
def gemini_server(*, api_key: str = "AIza-fake-gemini-key-0123456789",
                  models: Sequence[str] | None = None, retired: Sequence[str] = (),
                  default: Step | None = None) -> Iterator[GeminiServer]:
    state = GeminiServer(api_key, frozenset(models) if models is not None else None,
                         default or Image(), retired=set(retired))
    with serve_in_thread(_handler(state), poll_s=0.02) as base_url:
        state.base_url = base_url
        try:
            yield state
        finally:
            state._stopping.set()  # hanging answers end before the server shuts down


def _handler(state: GeminiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            model = path[len(_PATH_PREFIX):] if path.startswith(_PATH_PREFIX) else None
            request = GeminiRequest(path, urlsplit(self.path).query,
                                    {k.lower(): v for k, v in self.headers.items()}, model, {})
            with state._lock:
                state.lookups.append(model or path)
            refusal = _refusal(state, request, shape=False)
            if refusal is not None:
                self.send(*_error(refusal))
            else:
                self.send(200, {"Content-Type": "application/json"},
                          json.dumps(_model_resource(str(model))).encode())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request, refusal = _check(state, self.path, dict(self.headers.items()), raw)
            self.send(*state.respond(request, refusal))


    return Handler


# Checking requests ----------------------------------------------------------------------------


def _check(state: GeminiServer, target: str, headers: dict[str, str],
           raw: bytes) -> tuple[GeminiRequest, Error | None]:
    url = urlsplit(target)
    lower = {k.lower(): v for k, v in headers.items()}
    model = None
    if url.path.startswith(_PATH_PREFIX) and url.path.endswith(_PATH_SUFFIX):
        model = url.path[len(_PATH_PREFIX):-len(_PATH_SUFFIX)]
    body = _json_object(raw)
    request = GeminiRequest(url.path, url.query, lower, model, body)
    refusal = _refusal(state, request)
    if refusal is None:
        try:
            request.references = [_decode_inline(p) for p in request.inline_parts]
        except ValueError as exc:
            refusal = Error(400, "INVALID_ARGUMENT",
                            f"Unable to process input image. ({exc})")
    request.refusal = refusal.message if refusal else None
    return request, refusal


def _refusal(state: GeminiServer, request: GeminiRequest, shape: bool = True) -> Error | None:
    key = request.headers.get("x-goog-api-key")
    if "key=" in request.query:
        return Error(400, "INVALID_ARGUMENT", "this fake refuses API keys in the URL")
    if not key:
        return Error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers "
                     "(callers without established identity). Please use API Key or other form "
                     "of API consumer identity to call this API.")
    if key != state.api_key:
        return Error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
    if not state.serves(request.model):
        return Error(404, "NOT_FOUND", f"models/{request.model} is not found for API version "
                     "v1beta, or is not supported for generateContent.")
    if not shape:
        return None
    problem = _shape_problem(request)
    if problem:
        return Error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {problem}")
    return None


def _shape_problem(request: GeminiRequest) -> str | None:
    body = request.body
    if body is None:
        return "The body must be a JSON object."
    contents = body.get("contents")
    if not isinstance(contents, list) or len(contents) != 1 or not request.parts:
        return "contents must hold one turn with parts."
    if not isinstance(request.prompt, str) or not request.prompt:
        return "The first text part must hold the prompt."
    modalities = request.generation_config.get("responseModalities")
    if not isinstance(modalities, list) or "IMAGE" not in modalities \
            or not set(modalities) <= _RESPONSE_MODALITIES:
        return "generationConfig.responseModalities must include IMAGE."
    config = request.image_config
    if not isinstance(config.get("aspectRatio"), str):
        return "generationConfig.imageConfig.aspectRatio is required by this fake."
    if "imageSize" in config and config["imageSize"] not in _SIZES:
        return f"imageConfig.imageSize must be one of {', '.join(_SIZES)}."
    if set(config) - {"aspectRatio", "imageSize"}:
        return "Unknown name in generationConfig.imageConfig."
    if set(request.generation_config) - _GENERATION_CONFIG:
        return "Unknown name in generationConfig."
    thinking = request.generation_config.get("thinkingConfig")
    if thinking is not None and (not isinstance(thinking, dict)
                                 or set(thinking) != {"thinkingLevel"}
                                 or thinking["thinkingLevel"] not in _THINKING_LEVELS):
        return ("generationConfig.thinkingConfig.thinkingLevel must be one of "
                f"{', '.join(_THINKING_LEVELS)}.")
    return None


def _model_resource(model: str) -> dict[str, Any]:
    """A ``Model`` resource as models.get answers it for an image model."""
    return {"name": f"models/{model}", "baseModelId": model, "version": "001",
            "displayName": f"Fake {model}", "description": "An image model of the fake.",
            "inputTokenLimit": 65536, "outputTokenLimit": 32768,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "thinking": True}


def _decode_inline(part: dict[str, Any]) -> PILImage.Image:
    mime, data = part.get("mimeType"), part.get("data")
    if not isinstance(mime, str) or not mime.startswith("image/") or not isinstance(data, str):
        raise ValueError("inlineData needs an image mimeType and base64 data")
    try:
        image = PILImage.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
    except (binascii.Error, OSError) as exc:
        raise ValueError("inlineData is not a decodable image") from exc
    if PILImage.MIME.get(image.format or "") != mime:
        raise ValueError(f"mimeType {mime} does not match the {image.format} data")
    return image


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# Answers --------------------------------------------------------------------------------------


def _answer(step: Step, request: GeminiRequest) -> tuple[int, dict[str, str], bytes]:
    if isinstance(step, Error):
        return _error(step)
    if isinstance(step, Raw):
        return step.status, {"Content-Type": step.content_type}, step.body
    return 200, {"Content-Type": "application/json"}, json.dumps(_success(step, request)).encode()


def _error(step: Error) -> tuple[int, dict[str, str], bytes]:
    error: dict[str, Any] = {"code": step.code, "message": step.message or _MESSAGES.get(
        step.status, "Internal error encountered."), "status": step.status}
    if step.retry_delay is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": step.retry_delay},
        ]
    elif step.message and step.message.startswith("API key not valid"):
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                             "metadata": {"service": "generativelanguage.googleapis.com"}}]
    headers = {"Content-Type": "application/json; charset=UTF-8"}
    if step.retry_after is not None:
        headers["Retry-After"] = step.retry_after
    return step.code, headers, json.dumps({"error": error}, indent=2).encode()


_MESSAGES = {
    "RESOURCE_EXHAUSTED": "Resource has been exhausted (e.g. check quota).",
    "INTERNAL": "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting",
    "UNAVAILABLE": "The model is overloaded. Please try again later.",
    "DEADLINE_EXCEEDED": "The request timed out. Please try again.",
    "INVALID_ARGUMENT": "Request contains an invalid argument.",
    "PERMISSION_DENIED": "The caller does not have permission",
}


def _success(step: Step, request: GeminiRequest) -> dict[str, Any]:
    if isinstance(step, Blocked):
        return {"promptFeedback": {"blockReason": step.reason}, "usageMetadata": _USAGE}
    if isinstance(step, NoCandidates):
        return {"candidates": [], "usageMetadata": _USAGE}
    if isinstance(step, TextOnly):
        return _candidate([{"text": step.text}], "STOP")
    if isinstance(step, NoImage):
        return _candidate([], "NO_IMAGE")
    if isinstance(step, Finish):
        return _candidate([{"text": step.text}] if step.text else [], step.reason)
    if isinstance(step, ThoughtsThenImage):
        size = step.size or _requested_size(request)
        parts: list[dict[str, Any]] = [{"text": "**Planning the composition**", "thought": True}]
        parts += [{**_inline(size, color, "image/png", False), "thought": True}
                  for color in step.thought_colors]
        parts.append({**_inline(size, step.color, "image/png", False),
                      "thoughtSignature": base64.b64encode(b"signature").decode()})
        return _candidate(parts, "STOP")
    assert isinstance(step, Image), step
    parts = [{"text": step.text}] if step.text else []
    parts.append(_inline(step.size or _requested_size(request), step.color, step.mime,
                         step.snake_case))
    return _candidate(parts, "STOP")


_USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302}


def _candidate(parts: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    candidate: dict[str, Any] = {"finishReason": reason, "index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    return {"candidates": [candidate], "usageMetadata": _USAGE,
            "modelVersion": "fake-gemini", "responseId": "fake-response"}


def _inline(size: tuple[int, int], color: RGB, mime: str, snake_case: bool) -> dict[str, Any]:
    out = io.BytesIO()
    fmt = "JPEG" if mime == "image/jpeg" else "PNG"
    PILImage.new("RGB", size, color).save(out, fmt)
    data = base64.b64encode(out.getvalue()).decode("ascii")
    if snake_case:
        return {"inline_data": {"mime_type": mime, "data": data}}
    return {"inlineData": {"mimeType": mime, "data": data}}


def _requested_size(request: GeminiRequest) -> tuple[int, int]:
    config = request.image_config
    ratio = str(config.get("aspectRatio", "1:1"))
    tier = str(config.get("imageSize", "1K")).lower()
    table = "gemini-2.5" if (request.model or "").startswith("gemini-2") else "gemini-3"
    try:
        return output_size(ratio, tier, table)
    except KeyError:
        return 1024, 1024
