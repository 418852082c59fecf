"""The openai-images route: any server of OpenAI's Images API. The serving engines for open-weight
diffusion models speak it (SGLang Diffusion, vLLM-Omni), and so do OpenAI, LiteLLM and others.

Text-to-image is ``POST {base}/v1/images/generations`` (JSON); image-to-image is
``POST {base}/v1/images/edits`` (multipart), the task's fetched references sent as PNG files in
the ``image`` field (repeated; ``image[]`` when the route says ``image_field = "image[]"``, as
OpenAI's own models take several). The body says ``model``, ``prompt``, ``n``, ``size`` (the
native size nearest to the task's table size: ``openai_sizes``), ``response_format``, and, when
the route asks for them, ``output_format`` and ``seed``; ``extra_body`` adds the server's own
parameters (``num_inference_steps``, ``guidance_scale``, ``negative_prompt``...). ``n`` is the
task's ``num_images``, split over several concurrent calls when the route's ``max_n`` is
smaller. The picture that comes back is cropped and resized to the exact table size here, and
its note says so ("resized and cropped from 1536x1024 to 1584x672").

Seeds: OpenAI's API has none, so the task's seed is sent (as ``seed``) only when the route sets
``send_seed`` (SGLang Diffusion and vLLM-Omni take it); the n-th call of a split task gets
seed + the number of images asked for before it, so split calls do not repeat one picture.

Answers: a ``b64_json`` picture already at the job's exact size, a whole PNG or JPEG that
``picture_headers.probe`` accepts, is handed over undecoded (the worker stores its bytes as they
came when its format is the task's: no decoding and encoding again); other ``b64_json``
pictures are decoded; ``url`` pictures are downloaded. A URL on the
route's own server (a relative one, as SGLang Diffusion answers, or one of ``base_url``'s origin)
is the operator's server: fetched with the route's key, private addresses allowed. Any other URL
comes from the upstream and goes through the guarded download (``routes.results``): a
non-public address is refused unless the server allows private networks or the route sets
``private_results``.

Error mapping (``openai_answers.classify``; docs/routes-openai-images.md has the table):

    400/422 code content_policy_violation or moderation_blocked, SensitiveContent (final)
        or a message about the safety system
    400/422 about an input image (param image/mask, invalid_image*), 413 ImageFormatIncorrect
    other 400/422 about the prompt (param prompt or none)         PromptInvalid
    400/422 about another parameter (size, n, an extra_body one),  Unknown error, failover to
        401, 402, 403, 429 insufficient_quota, other 4xx           another route, no retry
    404 naming the model, code model_not_found                     RouteUnavailable
    429                                                            RateLimited (Retry-After)
    408, 504, client timeouts                                      Timeout
    other 5xx, connection errors, undecodable answers              Unknown error (retry,
                                                                   failover)

A set-up error counts against the route's health like a timeout (its circuit opens after
``failure_threshold`` of them), so a route with a revoked key stops being tried. The API key goes
only to the route's own server, and is scrubbed from every upstream text we repeat.

``check`` asks ``GET {base}/v1/models`` and looks for the model id: a listing without it marks
the route unavailable; no listing (unreachable, refused, not offered) is no verdict.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from imagegate.concurrency import all_or_cancel
from imagegate.config import Settings
from imagegate.errors import FailCode, RouteError, RouteUnavailable
from imagegate.imaging import ImageDecodeError, decode_image, encode
from imagegate.net.netguard import Guard, Resolver, resolve_host
from imagegate.picture_headers import probe
from imagegate.routes.base import Capabilities, GeneratedImage, Job, RouteCheck
from imagegate.routes.openai_answers import (
    Kind,
    Problem,
    classify,
    image_items,
    read_problem,
    retry_after,
    snippet,
)
from imagegate.routes.openai_options import RouteSettings, declared, route_settings
from imagegate.routes.openai_sizes import fit, nearest_size
from imagegate.routes.options import scrub
from imagegate.routes.results import MAX_RESULT_PIXELS, ResultDownloader, reason

__all__ = ["OpenAIImagesRoute"]

log = logging.getLogger("imagegate.routes.openai_images")

_CHECK_TIMEOUT_S = 10.0
# A picture's structure is checked on the event loop up to this size (CRC-32 runs at well over
# a byte per nanosecond), in a thread above it.
_PROBE_INLINE_BYTES = 1 << 20
_CODES = {Kind.SAFETY: FailCode.SENSITIVE_CONTENT, Kind.IMAGE: FailCode.IMAGE_FORMAT_INCORRECT,
          Kind.PROMPT: FailCode.PROMPT_INVALID, Kind.RATE_LIMITED: FailCode.RATE_LIMITED,
          Kind.TIMEOUT: FailCode.TIMEOUT, Kind.TRANSIENT: FailCode.UNKNOWN}


@dataclass(frozen=True)
class _Call:
    """One request of a job: how many pictures, and the seed it carries (None: none)."""

    n: int
    seed: int | None


class OpenAIImagesRoute:
    """Produces images through a server of OpenAI's Images API; see the module docstring.
    ``client`` is the service's shared client (it does not follow redirects), never closed
    here; ``resolver`` resolves result hosts for the address guard (tests inject one)."""

    def __init__(self, name: str, client: httpx.AsyncClient, config: RouteSettings,
                 capabilities: Capabilities | None = None,
                 resolver: Resolver | None = None) -> None:
        self.name = name
        self.config = config
        self.capabilities = capabilities or Capabilities(max_references=1)
        self.model = config.model
        self.upstream_model = config.model
        self._client = client
        self._key = config.api_key
        self._who = f"openai-images {config.model}"
        self._timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        resolver = resolver or resolve_host
        upstream = Guard(allow_private=config.private_results, resolver=resolver,
                         resolve_timeout_s=config.connect_timeout_s)
        own = Guard(allow_private=True, resolver=resolver,
                    resolve_timeout_s=config.connect_timeout_s)
        self._upstream_results = ResultDownloader(client, upstream, log=log,
                                                  max_bytes=config.max_result_bytes,
                                                  timeout_s=config.timeout_s)
        self._own_results = ResultDownloader(client, own, log=log,
                                             max_bytes=config.max_result_bytes,
                                             timeout_s=config.timeout_s)

    def __repr__(self) -> str:  # never shows the key
        return (f"OpenAIImagesRoute(name={self.name!r}, base_url={self.config.base_url!r}, "
                f"model={self.model!r})")

    @staticmethod
    def declared_capabilities(name: str, options: Mapping[str, Any]) -> Capabilities:
        """What the route can do, from its table alone: no credentials read, nothing built."""
        return declared(name, options)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], client: httpx.AsyncClient,
                     settings: Settings) -> OpenAIImagesRoute:
        """Build from a ``[routes.<name>]`` table; ``ConfigError`` names a bad option.
        Upstream result URLs may be private when ``settings.allow_private_networks`` is set or
        the table says ``private_results = true``."""
        config = route_settings(name, options, settings.allow_private_networks)
        return cls(name, client, config, declared(name, options))

    async def close(self) -> None:
        return None  # the shared client belongs to the service

    # Checking ---------------------------------------------------------------------------------

    async def check(self) -> RouteCheck:
        """Whether ``GET /v1/models`` lists the model; never raises."""
        where = f"{self.config.base_url}/v1/models"
        try:
            response = await self._client.get(where, headers=self._headers(),
                                              timeout=_CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            return RouteCheck(None, f"could not reach {where} to check model {self.model} "
                                    f"({type(exc).__name__})")
        if response.status_code != 200:
            shown = self._scrub(read_problem(response).shown())
            return RouteCheck(None, f"{where} did not list models ({shown}); model "
                                    f"{self.model} not checked")
        ids = _model_ids(response)
        if ids is None:
            return RouteCheck(None, f"{where} answered without a model list")
        if self.model in ids:
            return RouteCheck(True, f"{self.config.base_url} serves model {self.model}")
        served = ", ".join(sorted(ids)[:10]) or "none"
        return RouteCheck(False, self._scrub(snippet(
            f"{self.config.base_url} does not serve model {self.model} (it serves: {served})")))

    # Generating -------------------------------------------------------------------------------

    async def generate(self, job: Job) -> list[GeneratedImage]:
        """``job.num_images`` pictures at exactly ``job.width`` x ``job.height``, or
        ``RouteError`` (see the module docstring)."""
        size = nearest_size(self.config.sizes, job.width, job.height)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                files = await self._files(job) if job.mode == "image-to-image" else []
                calls = [self._call(job, call, size, files) for call in self._calls(job)]
                batches = await all_or_cancel(calls)
        except TimeoutError as exc:
            raise self._error(FailCode.TIMEOUT, f"no answer within "
                              f"{self.config.timeout_s:g} s") from exc
        return [image for batch in batches for image in batch][: job.num_images]

    def _calls(self, job: Job) -> list[_Call]:
        """The requests of ``job``: ``num_images`` split into calls of at most ``max_n``."""
        calls, asked = [], 0
        while asked < job.num_images:
            n = min(self.config.max_n, job.num_images - asked)
            seed = job.seed + asked if job.seed is not None and self.config.send_seed else None
            calls.append(_Call(n, seed))
            asked += n
        return calls

    def fields(self, job: Job, call: _Call, size: tuple[int, int]) -> dict[str, Any]:
        """The request's parameters (the JSON body of a generation; the form of an edit)."""
        body: dict[str, Any] = dict(self.config.extra_body)
        if self.config.send_model:
            body["model"] = self.model
        body.update(prompt=job.prompt, n=call.n, size=f"{size[0]}x{size[1]}")
        if self.config.response_format:
            body["response_format"] = self.config.response_format
        output_format = self.config.output_format
        if output_format == "task":
            output_format = "jpeg" if job.output_format.lower() in ("jpg", "jpeg") else "png"
        if output_format:
            body["output_format"] = output_format
        if call.seed is not None:
            body["seed"] = call.seed
        return body

    async def _files(self, job: Job) -> list[tuple[str, tuple[str, bytes, str]]]:
        """The references as PNG files of the edit form (at most ``max_references``)."""
        refs = job.references[: self.capabilities.max_references]
        encoded = await asyncio.gather(*(asyncio.to_thread(encode, ref.image, "png")
                                         for ref in refs))
        return [(self.config.image_field, (f"reference-{i}.png", data, "image/png"))
                for i, data in enumerate(encoded, start=1)]

    async def _call(self, job: Job, call: _Call, size: tuple[int, int],
                    files: list[tuple[str, tuple[str, bytes, str]]]) -> list[GeneratedImage]:
        body = self.fields(job, call, size)
        if files:
            response = await self._post("edits", data=_form(body), files=files)
        else:
            response = await self._post("generations", json=body)
        if response.status_code != 200:
            raise self._refused(read_problem(response), response.headers)
        try:
            items = image_items(response.json())
        except ValueError as exc:
            raise self._error(FailCode.UNKNOWN, "the answer was not JSON") from exc
        if len(items) < call.n:
            raise self._error(FailCode.UNKNOWN, f"the answer held {len(items)} pictures, "
                              f"{call.n} were asked for")
        pictures = await asyncio.gather(*(self._picture(item) for item in items[: call.n]))
        return await asyncio.gather(*(self._fitted(job, p, size, call.seed, i)
                                      for i, p in enumerate(pictures)))

    async def _post(self, endpoint: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.config.base_url}/v1/images/{endpoint}"
        try:
            return await self._client.post(url, headers=self._headers(), timeout=self._timeout,
                                           **kwargs)
        except httpx.TimeoutException as exc:
            raise self._error(FailCode.TIMEOUT, f"{endpoint} did not answer in time "
                              f"({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise self._error(FailCode.UNKNOWN, f"{endpoint} failed: {reason(exc)}") from exc

    async def _picture(self, item: Mapping[str, Any]) -> Image.Image | bytes:
        """A ``b64_json`` picture's bytes (not decoded yet), or a ``url`` picture decoded."""
        data = item.get("b64_json")
        if isinstance(data, str) and data:
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise self._error(FailCode.UNKNOWN, "the picture is not valid base64") from exc
        return await self._download(str(item.get("url")))

    async def _decoded(self, raw: bytes) -> Image.Image:
        try:
            return await asyncio.to_thread(decode_image, raw, MAX_RESULT_PIXELS)
        except ImageDecodeError as exc:
            raise self._error(FailCode.UNKNOWN, f"the picture is unusable: {exc}") from exc

    async def _download(self, url: str) -> Image.Image:
        """A picture answered as a URL: the route's own server's with its key, any other
        through the address guard."""
        base = httpx.URL(self.config.base_url + "/")
        try:
            target = base.join(url)
        except httpx.InvalidURL as exc:
            raise self._error(FailCode.UNKNOWN, "the picture's URL is invalid") from exc
        where = f"{self._who}: picture"
        if (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port):
            return await self._own_results.image(where, str(target), headers=self._headers())
        return await self._upstream_results.image(where, str(target))

    async def _fitted(self, job: Job, picture: Image.Image | bytes, size: tuple[int, int],
                      seed: int | None, index: int) -> GeneratedImage:
        """The picture at exactly the job's size. Bytes of a whole PNG or JPEG already that
        size are handed over undecoded (``picture_headers.probe``: the worker stores them as
        they are when the format is the task's); any other picture is decoded and fitted."""
        notes = [f"{self._who}: asked for {size[0]}x{size[1]}"]
        if seed is not None:
            notes.append(f"seed {seed} (picture {index + 1} of its request)")
        if isinstance(picture, bytes):
            kept = (probe(picture) if len(picture) <= _PROBE_INLINE_BYTES
                    else await asyncio.to_thread(probe, picture))
            if kept is not None and kept.size == (job.width, job.height):
                return GeneratedImage(kept, note="; ".join(notes))
            picture = await self._decoded(picture)
        image, done = await asyncio.to_thread(fit, picture, job.width, job.height)
        if done:
            notes.insert(1, done)
        return GeneratedImage(image, note="; ".join(notes))

    # Errors -----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _scrub(self, text: str) -> str:
        return scrub(text, self._key)

    def _error(self, fail_code: str, message: str, *,
               retry_after: float | None = None) -> RouteError:
        return RouteError.of(fail_code, self._scrub(f"{self._who}: {message}"),
                             retry_after=retry_after)

    def _refused(self, problem: Problem, headers: httpx.Headers) -> RouteError:
        kind, shown = classify(problem), problem.shown()
        if kind is Kind.MODEL_GONE:
            return RouteUnavailable(self._scrub(f"{self.config.base_url} does not serve model "
                                                f"{self.model} ({shown})"))
        if kind is Kind.SET_UP:
            message = self._scrub(f"{self._who}: the route is not usable as configured "
                                  f"({shown}); check its key, model and options")
            log.warning("route %s: %s", self.name, message, extra={"route": self.name})
            return RouteError(FailCode.UNKNOWN, message, retryable=False, failover=True)
        wait = retry_after(headers) if kind is Kind.RATE_LIMITED else None
        return self._error(_CODES[kind], f"the server refused the request ({shown})",
                           retry_after=wait)


def _form(body: Mapping[str, Any]) -> dict[str, str]:
    """The multipart form fields of ``body`` (scalars as text; true and false in lower case)."""
    return {key: (str(value).lower() if isinstance(value, bool) else str(value))
            for key, value in body.items()}


def _model_ids(response: httpx.Response) -> set[str] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return {str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")}

