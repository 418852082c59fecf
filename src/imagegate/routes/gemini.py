"""The Gemini route: the real Nano Banana models, on Google's Gemini API or on Vertex AI.

One image is one ``generateContent`` call (``google_platforms`` has each platform's URLs and
credentials): the prompt and the reference images (``inlineData``, re-encoded to fit
``max_inline_bytes``) go in one user turn, ``generationConfig.imageConfig`` carries the aspect
ratio and, for models that take it, the size tier; ``generationConfig.thinkingConfig`` carries
the route's ``thinking_level`` when it sets one. Gemini answers one image per call, so
``num_images`` calls run concurrently and any failure fails the job. Interim "thought" parts
(the thinking images of Gemini 3 image models) are skipped; the last non-thought image of the
first candidate is the result.

``check`` asks the platform for the model (``models.get``): Google answers 404 NOT_FOUND for a
model it no longer serves. The same answer to a ``generateContent`` call raises
``RouteUnavailable``, which the router takes as "skip this route until a check finds the model
again", not as a failure to retry.

Failures map to failCodes as docs/contract.md §7 says:

    promptFeedback.blockReason, or a safety finishReason        SensitiveContent (final)
    NO_IMAGE, IMAGE_OTHER, OTHER, text and no image, no candidate Unknown error (retry, failover)
    LANGUAGE finishReason                                         PromptInvalid
    429 / RESOURCE_EXHAUSTED                                      RateLimited (RetryInfo delay)
    504 / DEADLINE_EXCEEDED, client timeouts                      Timeout
    400 INVALID_ARGUMENT about the input images, 413              ImageFormatIncorrect
    other 400 INVALID_ARGUMENT                                    PromptInvalid
    5xx, 408, 409, 499, connection errors, undecodable answers    Unknown error (retry, failover)
    404 / NOT_FOUND: the model is not served                      RouteUnavailable: Unknown
                                                                  error, failover, no retry
    bad or refused key or account, FAILED_PRECONDITION, a refused Unknown error, failover to
    thinking level, other 4xx: the route itself cannot work       another route, no retry here

Credentials travel only in headers (``x-goog-api-key``, or a service account's bearer token):
never in a URL, a log line or an error message, and upstream text is scrubbed of an API key
before it is used in either.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from PIL import Image

from imagegate.concurrency import all_or_cancel
from imagegate.config import Settings
from imagegate.contract import CONTENT_TYPES
from imagegate.errors import ConfigError, FailCode, RouteError, RouteUnavailable
from imagegate.imaging import ImageDecodeError, decode_image, encode
from imagegate.routes.base import Capabilities, GeneratedImage, Job, RouteCheck
from imagegate.routes.google_answers import (
    describe,
    error_object,
    inline_blob,
    mapping,
    reason_text,
    retry_after,
    route_unusable,
    snippet,
)
from imagegate.routes.google_models import TEN_RATIOS, image_model
from imagegate.routes.google_platforms import GeminiApi, Platform, platform_from_options
from imagegate.routes.options import RouteOptions, scrub

__all__ = ["DEFAULT_BASE_URL", "TEN_RATIOS", "GeminiRoute", "default_capabilities",
           "encode_reference"]

log = logging.getLogger("imagegate.routes.gemini")

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
SAFETY_REASONS = frozenset({
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})
_MIB = 1024 * 1024
_MAX_OUTPUT_PIXELS = 100_000_000  # the largest table size (4k 8:1) is 18.9 MP: a bomb guard only
_MIN_REFERENCE_SIDE = 16
_JPEG_QUALITY = 90
# 400 INVALID_ARGUMENT messages that blame the input images rather than the prompt or config.
_IMAGE_PROBLEM = re.compile(
    r"input image|provided image|image (?:is|was) (?:not valid|invalid|too large|corrupt)"
    r"|invalid image|unsupported image|image format|inline.?data|mime|base64", re.IGNORECASE)
# gRPC codes that say "try again" whatever the HTTP status (google.rpc.Code).
_TRANSIENT = frozenset({"ABORTED", "CANCELLED", "INTERNAL", "UNAVAILABLE", "UNKNOWN"})
# A 400 about the thinking configuration is the route's set-up, not the client's prompt.
_THINKING = re.compile(r"thinking", re.IGNORECASE)
_OPTIONS = ("model", "platform", "api_key", "base_url", "project", "location",
            "credentials_file", "timeout_seconds", "thinking_level", "search_grounding",
            "official", "max_references", "resolutions", "ratios", "send_image_size",
            "max_inline_bytes", "cost")
_CHECK_TIMEOUT_S = 10.0

T = TypeVar("T")


def default_capabilities(model: str) -> Capabilities:
    """What a Google image model can do (``google_models``); options may override each."""
    facts = image_model(model)
    return Capabilities(max_references=facts.max_references, resolutions=facts.resolutions,
                        ratios=facts.ratios, search_grounding=facts.search_grounding,
                        official=True)


class GeminiRoute:
    """Generates images with one Google model. ``client`` is shared and owned by the caller;
    ``timeout_s`` bounds one ``generate`` call, reference encoding included. ``platform`` says
    where calls go (default: the Gemini API at ``base_url`` with ``api_key``)."""

    def __init__(self, name: str, client: httpx.AsyncClient, *, model: str,
                 platform: Platform | None = None, api_key: str = "",
                 base_url: str = DEFAULT_BASE_URL, timeout_s: float = 120.0,
                 capabilities: Capabilities | None = None,
                 max_inline_bytes: int = 7 * _MIB, send_image_size: bool | None = None,
                 thinking_level: str | None = None) -> None:
        if platform is None:
            if not api_key:
                raise ConfigError(f"routes.{name}.api_key: a Gemini API key is required")
            platform = GeminiApi(base_url, api_key)
        model = model.removeprefix("models/")
        facts = image_model(model)
        self.name = name
        self.model = model
        self.upstream_model = model
        self.platform = platform
        self.capabilities = capabilities or default_capabilities(model)
        self.timeout_s = timeout_s
        self.max_inline_bytes = max_inline_bytes
        self.send_image_size = facts.send_image_size if send_image_size is None \
            else send_image_size
        self.thinking_level = thinking_level
        self._client = client
        self._secrets = platform.secrets()
        self._url = platform.generate_url(model)
        self._http_timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))

    def __repr__(self) -> str:
        return f"GeminiRoute(name={self.name!r}, model={self.model!r})"

    @staticmethod
    def declared_capabilities(name: str, options: Mapping[str, Any]) -> Capabilities:
        """What the route can do, from its table alone: no credentials read, nothing built."""
        opts = RouteOptions("gemini", name, options, _OPTIONS)
        model = opts.text("model", example="gemini-nano-banana-2.1").removeprefix("models/")
        return opts.capabilities(default_capabilities(model), min_references=1)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], client: httpx.AsyncClient,
                     settings: Settings) -> GeminiRoute:
        """Build from a ``[routes.<name>]`` table; raise ``ConfigError`` naming a bad option.
        Credentials and endpoints default to ``settings``; a secret is never shown in an
        error."""
        opts = RouteOptions("gemini", name, options, _OPTIONS)
        model = opts.text("model", example="gemini-nano-banana-2.1").removeprefix("models/")
        send_image_size = opts.flag("send_image_size") if "send_image_size" in opts else None
        return cls(name, client, model=model, platform=platform_from_options(opts, settings),
                   timeout_s=opts.seconds("timeout_seconds", 120.0),
                   capabilities=cls.declared_capabilities(name, options),
                   max_inline_bytes=opts.whole("max_inline_bytes", 7 * _MIB, 4096, 100 * _MIB),
                   send_image_size=send_image_size,
                   thinking_level=_thinking_level(opts, model))

    # Checking ---------------------------------------------------------------------------------

    async def check(self) -> RouteCheck:
        """Ask the platform whether it serves this route's model; never raises."""
        where = f"{self.platform.label} model {self.model}"
        try:
            headers = await self.platform.headers()
            response = await self._client.get(self.platform.model_url(self.model),
                                              headers=headers, timeout=_CHECK_TIMEOUT_S)
        except RouteError as exc:  # no credentials to be had: no verdict on the model
            return RouteCheck(None, self._scrub(exc.message))
        except httpx.HTTPError as exc:
            return RouteCheck(None, f"could not reach {self.platform.label} to check {where} "
                                    f"({type(exc).__name__})")
        if response.status_code == 200:
            return self._served(response, where)
        status, grpc, shown = describe(response)
        if status == 404 or grpc == "NOT_FOUND":
            return RouteCheck(False, self._scrub(f"{self.platform.label} does not serve model "
                                                 f"{self.model} ({shown})"))
        if route_unusable(status, grpc, error_object(response)):
            return RouteCheck(None, self._scrub(f"{self.platform.label} refused to look up "
                                                f"model {self.model} ({shown}); check the "
                                                "route's credentials and Google project"))
        return RouteCheck(None, self._scrub(f"{self.platform.label} failed to answer about "
                                            f"{where} ({shown})"))

    def _served(self, response: httpx.Response, where: str) -> RouteCheck:
        try:
            model = response.json()
        except ValueError:
            return RouteCheck(None, f"{where}: the answer was not JSON")
        model = mapping(model)
        methods = model.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" not in methods:
            return RouteCheck(False, f"{where} does not support generateContent "
                                     f"(it supports {', '.join(map(str, methods))})")
        shown = " ".join(str(model[k]) for k in ("displayName", "version") if model.get(k))
        return RouteCheck(True, f"{where} is served" + (f" ({shown})" if shown else ""))

    # Generating -------------------------------------------------------------------------------

    async def generate(self, job: Job) -> list[GeneratedImage]:
        """``job.num_images`` images, or ``RouteError`` (see the module docstring)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                payload = await self._payload(job)
                headers = {**await self.platform.headers(), "Content-Type": "application/json"}
                if job.num_images <= 1:
                    return [await self._generate_one(payload, headers)]
                calls = [self._generate_one(payload, headers) for _ in range(job.num_images)]
                return await all_or_cancel(calls)
        except TimeoutError as exc:
            raise self._error(FailCode.TIMEOUT,
                              f"no image within {self.timeout_s:g} s") from exc

    async def close(self) -> None:
        await self.platform.close()  # the HTTP client belongs to whoever built the route

    async def _payload(self, job: Job) -> bytes:
        parts: list[dict[str, Any]] = [{"text": job.prompt}]
        parts += await asyncio.gather(*(self._reference_part(i, ref.image)
                                        for i, ref in enumerate(job.references, start=1)))
        image_config = {"aspectRatio": job.aspect_ratio}
        if self.send_image_size:
            image_config["imageSize"] = job.resolution.upper()
        body: dict[str, Any] = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {"responseModalities": ["TEXT", "IMAGE"],
                                 "imageConfig": image_config},
        }
        if self.thinking_level:
            body["generationConfig"]["thinkingConfig"] = {
                "thinkingLevel": self.thinking_level.upper()}
        if job.google_search:
            body["tools"] = [{"google_search": {}}]
        return await asyncio.to_thread(lambda: json.dumps(body).encode())

    async def _reference_part(self, index: int, image: Image.Image) -> dict[str, Any]:
        try:
            mime, data = await asyncio.to_thread(encode_reference, image, self.max_inline_bytes)
        except ValueError as exc:
            raise self._error(FailCode.IMAGE_FORMAT_INCORRECT,
                              f"reference image {index}: {exc}") from exc
        return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode("ascii")}}

    async def _generate_one(self, payload: bytes, headers: dict[str, str]) -> GeneratedImage:
        response = await self._post(payload, headers)
        if response.status_code != 200:
            raise self._http_error(response)
        try:
            answer = response.json()
        except ValueError as exc:
            raise self._error(FailCode.UNKNOWN, "the answer was not JSON") from exc
        data = self._image_bytes(answer if isinstance(answer, dict) else {})
        try:
            image = await asyncio.to_thread(decode_image, data, _MAX_OUTPUT_PIXELS)
        except ImageDecodeError as exc:
            raise self._error(FailCode.UNKNOWN, f"the returned image is unusable: {exc}") from exc
        width, height = image.size
        return GeneratedImage(image, note=f"gemini {self.model}: {width}x{height}")

    async def _post(self, payload: bytes, headers: dict[str, str]) -> httpx.Response:
        label = self.platform.label
        try:
            return await self._client.post(self._url, content=payload, headers=headers,
                                           timeout=self._http_timeout)
        except httpx.TimeoutException as exc:
            raise self._error(FailCode.TIMEOUT,
                              f"{label} did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise self._error(FailCode.UNKNOWN,
                              f"could not reach {label} ({type(exc).__name__})") from exc

    # Reading answers --------------------------------------------------------------------------

    def _image_bytes(self, answer: Mapping[str, Any]) -> bytes:
        """The final image of a 200 answer, or the RouteError its signals call for."""
        feedback = mapping(answer.get("promptFeedback"))
        if feedback.get("blockReason"):
            raise self._error(FailCode.SENSITIVE_CONTENT, "the prompt was blocked by Google's "
                              f"safety filters ({reason_text(feedback, 'blockReason')})")
        candidates = answer.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise self._error(FailCode.UNKNOWN, "the answer held no candidate")
        candidate = mapping(candidates[0])
        reason = str(candidate.get("finishReason") or "")
        if reason in SAFETY_REASONS:
            raise self._error(FailCode.SENSITIVE_CONTENT, "the output was blocked by Google's "
                              f"safety filters ({reason_text(candidate, 'finishReason')})")
        parts = [p for p in mapping(candidate.get("content")).get("parts") or []
                 if isinstance(p, dict) and not p.get("thought")]
        images = [blob for p in parts if (blob := inline_blob(p)) is not None]
        if images:
            return self._b64(images[-1])
        if reason == "LANGUAGE":
            raise self._error(FailCode.PROMPT_INVALID, "the prompt's language is not supported")
        text = snippet(" ".join(p["text"] for p in parts if isinstance(p.get("text"), str)))
        why = reason_text(candidate, "finishReason") if reason else "no finishReason"
        if text:
            raise self._error(FailCode.UNKNOWN, f"the model answered with text and no image "
                              f"({why}): {text}")
        raise self._error(FailCode.UNKNOWN, f"the model returned no image ({why})")

    def _b64(self, data: str) -> bytes:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self._error(FailCode.UNKNOWN, "the returned image is not valid base64") from exc

    def _http_error(self, response: httpx.Response) -> RouteError:
        status, grpc, shown = describe(response)
        error = error_object(response)
        message = snippet(str(error.get("message") or ""))
        if status == 429 or grpc == "RESOURCE_EXHAUSTED":
            return self._error(FailCode.RATE_LIMITED, f"rate limited ({shown})",
                               retry_after=retry_after(error, response.headers))
        if status == 504 or grpc == "DEADLINE_EXCEEDED":
            return self._error(FailCode.TIMEOUT, f"Google gave up in time ({shown})")
        if status == 404 or grpc == "NOT_FOUND":
            return self._gone(shown)
        if route_unusable(status, grpc, error) or (status == 400 and _THINKING.search(message)):
            return self._unusable(shown)
        if status == 413:
            return self._error(FailCode.IMAGE_FORMAT_INCORRECT,
                               f"the reference images are too large for the Gemini API ({shown})")
        if status == 400 or grpc == "INVALID_ARGUMENT":
            code = (FailCode.IMAGE_FORMAT_INCORRECT if _IMAGE_PROBLEM.search(message)
                    else FailCode.PROMPT_INVALID)
            return self._error(code, f"the request was refused ({shown})")
        if status >= 500 or status in (408, 409, 499) or grpc in _TRANSIENT:
            return self._error(FailCode.UNKNOWN, f"the Gemini API failed ({shown})")
        return self._unusable(shown)

    # Errors -----------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = scrub(text, secret)
        return text

    def _error(self, fail_code: str, message: str, *,
               retry_after: float | None = None) -> RouteError:
        return RouteError.of(fail_code, self._scrub(f"gemini {self.model}: {message}"),
                             retry_after=retry_after)

    def _unusable(self, shown: str) -> RouteError:
        """This route cannot work until its operator acts (key, project, options): another
        route may serve the task, but trying this one again will not help."""
        message = self._scrub(f"gemini {self.model}: the route is not usable ({shown}); check "
                              "its credentials, options and Google project")
        log.warning("route %s: %s", self.name, message, extra={"route": self.name})
        return RouteError(FailCode.UNKNOWN, message, retryable=False, failover=True)

    def _gone(self, shown: str) -> RouteUnavailable:
        """Google does not serve this model (any more): the route is skipped until a check
        finds the model again."""
        return RouteUnavailable(self._scrub(f"{self.platform.label} no longer serves model "
                                            f"{self.model} ({shown})"))


# Reference images -----------------------------------------------------------------------------


def encode_reference(image: Image.Image, max_bytes: int) -> tuple[str, bytes]:
    """``(mime type, bytes)`` of ``image`` within ``max_bytes``: PNG when it has transparency,
    else JPEG; downscaled step by step until it fits. Raises ``ValueError`` when even a tiny
    copy does not fit. CPU work: run it off the event loop."""
    fmt = "png" if _has_alpha(image) else "jpeg"
    current = image
    while True:
        data = encode(current, fmt, jpeg_quality=_JPEG_QUALITY)
        if len(data) <= max_bytes:
            return CONTENT_TYPES[fmt], data
        width, height = current.size
        if min(width, height) <= _MIN_REFERENCE_SIDE:
            raise ValueError(f"cannot be encoded within {max_bytes} bytes")
        # Encoded size follows the pixel count; aim under the budget, shrink at least 10 %.
        factor = max(0.25, min(0.9, math.sqrt(max_bytes / len(data)) * 0.9))
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        current = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _has_alpha(image: Image.Image) -> bool:
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return False
    extrema = image.convert("RGBA").getchannel("A").getextrema()
    return bool(extrema != (255, 255))  # an opaque alpha channel is no reason for PNG


def _thinking_level(opts: RouteOptions, model: str) -> str | None:
    """The ``thinking_level`` option: one of the levels the model takes (``google_models``)."""
    level = opts.optional_text("thinking_level")
    if level is None:
        return None
    levels = image_model(model).thinking_levels
    if level.lower() not in levels:
        takes = f"one of {', '.join(levels)}" if levels else "not set: its thinking is fixed"
        raise ConfigError(f"{opts.where('thinking_level')} for {model} must be {takes}, "
                          f"got {level!r}")
    return level.lower()


