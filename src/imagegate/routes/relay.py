"""The relay route: any APIXO-style upstream (APIXO itself, or another imagegate).

One upstream task per image: submit ``POST {base}/api/v1/generateTask/{model}``, poll
``GET {base}/api/v1/statusTask/{model}?taskId=`` until ``success`` or ``failed``, then copy the
result bytes at once (upstream URLs expire; the worker stores what we return). The whole call is
bounded by ``timeout_s``.

Error translation (docs/routes-relay.md has the table):

- a failed upstream task: its ``failCode`` (either APIXO spelling, any case) becomes ours and
  ``RouteError.of`` sets retry and failover as docs/contract.md §7 says;
- a refused submit: 400 is a limit of this upstream that our own validation let through, so it
  fails over to the next route and is not retried here (``ImageFormatIncorrect`` when it names
  ``image_urls``, ``PromptInvalid`` when it names the prompt, else ``MissingParameter``);
  401/402/403/404 are this route's set-up (key, balance, model), so the same: failover, no retry;
  429 is ``RateLimited`` honouring ``Retry-After``; 504 and client timeouts are ``Timeout``;
  other 5xx and connection errors are ``Unknown error`` (retry and failover);
- status reads that fail transiently (5xx, 429, timeouts, connection errors, garbled bodies) are
  tolerated ``MAX_POLL_ERRORS`` times in a row, then ``Unknown error``.

The upstream API key goes only to ``base_url`` (never to result URLs) and is scrubbed from every
upstream text we repeat, so it appears in no error and no log line.

Result URLs come from the upstream, not from the operator, so they are fetched through
``routes.results`` (``net.download``), which checks every hop (the first URL and each
redirect): a host with a loopback, private, link-local or otherwise non-public address is
refused before any connection, and the connection goes to the address that was checked. A
refusal names neither the address nor the port (a compromised upstream must not get a port
scanner out of our failMsg). The guard is off when the server allows private networks
(``allow_private_networks``) or the route sets ``private_results``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx
from PIL import Image

from imagegate.concurrency import all_or_cancel
from imagegate.config import Settings
from imagegate.errors import ConfigError, FailCode, RouteError
from imagegate.net.netguard import Guard, Resolver, resolve_host
from imagegate.routes.base import Capabilities, GeneratedImage, Job, RouteCheck
from imagegate.routes.options import RouteOptions, retry_after_seconds, scrub
from imagegate.routes.results import ResultDownloader, reason

__all__ = ["RelayRoute", "map_fail_code", "parse_result_urls"]

log = logging.getLogger("imagegate.routes.relay")

DEFAULT_MODEL = "nano-banana-2"
MAX_POLL_ERRORS = 5  # consecutive transient status-read failures tolerated
_SHORT = 200  # characters of upstream text we repeat

# Upstream failCode, lower case without spaces, "_" or "-" -> ours. Anything else: Unknown error.
_FAIL_CODES: dict[str, str] = {
    "sensitivecontent": FailCode.SENSITIVE_CONTENT,
    "contentviolation": FailCode.SENSITIVE_CONTENT,
    "nsfw": FailCode.SENSITIVE_CONTENT,
    "promptinvalid": FailCode.PROMPT_INVALID,
    "invalidprompt": FailCode.PROMPT_INVALID,
    "imageformatincorrect": FailCode.IMAGE_FORMAT_INCORRECT,
    "invalidimage": FailCode.IMAGE_FORMAT_INCORRECT,
    "missingparameter": FailCode.MISSING_PARAMETER,
    "ratelimited": FailCode.RATE_LIMITED,
    "timeout": FailCode.TIMEOUT,
}
_SET_UP_ERRORS = {
    401: "upstream refused the relay's API key",
    402: "upstream account balance is too low",
    403: "upstream API key may not use model {model}",
    404: "upstream does not serve model {model} at this base_url",
}


def map_fail_code(code: object) -> str:
    """Our failCode for an upstream one: case, spaces, ``_`` and ``-`` are ignored."""
    if not isinstance(code, str):
        return FailCode.UNKNOWN
    return _FAIL_CODES.get(re.sub(r"[\s_\-]", "", code).lower(), FailCode.UNKNOWN)


def parse_result_urls(data: Mapping[str, Any]) -> list[str]:
    """The result URLs of a successful task read: ``resultJson`` as the documented JSON string,
    or as an object; ``resultUrls`` at the task level as a fallback. May be empty."""
    raw = data.get("resultJson")
    payload: Any = raw
    if isinstance(raw, str):
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
    urls = payload.get("resultUrls") if isinstance(payload, dict) else None
    if not urls:
        urls = data.get("resultUrls")
    if not isinstance(urls, list):
        return []
    return [url for url in urls if isinstance(url, str) and url]


class _TransientPollError(Exception):
    """A status read that may work next time."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RelayRoute:
    """Produces images through an APIXO-style task API; see the module docstring.

    ``client`` is the service's shared client (it does not follow redirects); this route never
    closes it. Times are seconds; ``max_result_bytes`` caps one downloaded result.
    ``allow_private_results`` turns off the address guard on result downloads; ``resolver``
    resolves result hosts for that guard (tests inject one).
    """

    def __init__(self, name: str, client: httpx.AsyncClient, *, base_url: str, api_key: str,
                 model: str = DEFAULT_MODEL, poll_interval_s: float = 3.0,
                 first_poll_s: float | None = None, timeout_s: float = 600.0,
                 request_timeout_s: float = 30.0, max_result_bytes: int = 50 * 1024 * 1024,
                 capabilities: Capabilities | None = None,
                 allow_private_results: bool = False, resolver: Resolver | None = None) -> None:
        self.name = name
        self.capabilities = capabilities or Capabilities()
        self.base_url = _api_root(base_url)
        self.model = model
        self.upstream_model = model
        self.poll_interval_s = poll_interval_s
        self.first_poll_s = poll_interval_s if first_poll_s is None else first_poll_s
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_result_bytes = max_result_bytes
        self.allow_private_results = allow_private_results
        guard = Guard(allow_private=allow_private_results, resolver=resolver or resolve_host,
                      resolve_timeout_s=request_timeout_s)
        self._results = ResultDownloader(client, guard, max_bytes=max_result_bytes,
                                         timeout_s=request_timeout_s, log=log)
        self._client = client
        self._api_key = api_key
        self._who = f"relay {name}"

    def __repr__(self) -> str:  # never shows the key
        return f"RelayRoute(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r})"

    @staticmethod
    def declared_capabilities(name: str, options: Mapping[str, Any]) -> Capabilities:
        """What the route can do, from its table alone: no credentials read, nothing built."""
        return RouteOptions("relay", name, options, _OPTIONS).capabilities(Capabilities())

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], client: httpx.AsyncClient,
                     settings: Settings) -> RelayRoute:
        """Build from a ``[routes.<name>]`` table (``type`` may be present; it is ignored).

        Raises ``ConfigError`` naming ``routes.<name>.<option>`` for a missing, unknown or
        invalid option. Result URLs may be private when ``settings.allow_private_networks`` is
        set or the table says ``private_results = true``.
        """
        return _from_options(cls, RouteOptions("relay", name, options, _OPTIONS), client,
                             settings.allow_private_networks)

    async def check(self) -> RouteCheck:
        # APIXO-style APIs list no models: a model it does not serve shows as a refused submit.
        return RouteCheck(True, f"not checked: an APIXO-style upstream lists no models "
                                f"(model {self.model})")

    async def close(self) -> None:
        return None  # the shared client belongs to the service

    async def generate(self, job: Job) -> list[GeneratedImage]:
        """One upstream task per image, concurrently. Raises ``RouteError`` only."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await all_or_cancel([self._one(job) for _ in range(job.num_images)])
        except TimeoutError as exc:
            raise RouteError.of(FailCode.TIMEOUT, f"{self._who}: upstream did not finish within "
                                f"{self.timeout_s:g} s") from exc

    async def _one(self, job: Job) -> GeneratedImage:
        task_id = await self._submit(job)
        log.debug("%s: task %s is upstream task %s", self._who, job.task_id, task_id,
                  extra={"task_id": job.task_id, "route": self.name})
        urls = await self._wait(task_id)
        image = await self._download(task_id, urls[0])
        return GeneratedImage(image, note=f"{self._who}: upstream task {task_id}")

    # Submit -----------------------------------------------------------------------------------

    def submit_body(self, job: Job) -> dict[str, Any]:
        """The APIXO submit body for ``job`` (``image_urls`` only for image-to-image)."""
        inp: dict[str, Any] = {"mode": job.mode, "prompt": job.prompt}
        if job.mode == "image-to-image":
            inp["image_urls"] = list(job.image_urls)
        inp.update(aspect_ratio=job.aspect_ratio, resolution=job.resolution,
                   output_format=job.output_format, google_search=job.google_search)
        return {"request_type": "async", "input": inp}

    async def _submit(self, job: Job) -> str:
        url = f"{self.base_url}/api/v1/generateTask/{self.model}"
        response = await self._call("POST", url, "submit", json=self.submit_body(job))
        envelope = _envelope(response)
        status = _effective_status(response, envelope)
        if status != 200:
            raise self._submit_error(status, envelope, response.headers)
        data = envelope.get("data") if envelope else None
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise RouteError.of(FailCode.UNKNOWN, f"{self._who}: upstream accepted the submit "
                                "but sent no taskId")
        return task_id

    def _submit_error(self, status: int, envelope: dict[str, Any] | None,
                      headers: httpx.Headers) -> RouteError:
        detail = self._detail(envelope, status)
        if status == 400:
            code = _bad_request_code(envelope)
            return RouteError(code, f"{self._who}: upstream refused the request: {detail}",
                              failover=True)
        if status == 429:
            return RouteError.of(FailCode.RATE_LIMITED, f"{self._who}: upstream rate limit: "
                                 f"{detail}",
                                 retry_after=retry_after_seconds(headers.get("retry-after")))
        if status == 504:
            return RouteError.of(FailCode.TIMEOUT, f"{self._who}: upstream timed out: {detail}")
        if status >= 500:
            return RouteError.of(FailCode.UNKNOWN, f"{self._who}: upstream error: {detail}")
        return self._set_up_error(status, detail)

    def _set_up_error(self, status: int, detail: str) -> RouteError:
        """This route cannot work as configured: let the router try another, do not retry."""
        what = _SET_UP_ERRORS.get(status, "upstream answered unexpectedly").format(
            model=self.model)
        return RouteError(FailCode.UNKNOWN, f"{self._who}: {what}: {detail}", failover=True)

    # Poll -------------------------------------------------------------------------------------

    async def _wait(self, task_id: str) -> list[str]:
        """Poll until the task ends; its result URLs, or the RouteError its failure maps to."""
        await asyncio.sleep(self.first_poll_s)
        errors = 0
        while True:
            try:
                data = await self._read(task_id)
            except _TransientPollError as exc:
                errors += 1
                if errors > MAX_POLL_ERRORS:
                    raise RouteError.of(FailCode.UNKNOWN, f"{self._who}: status reads of upstream "
                                        f"task {task_id} failed {errors} times in a row; last: "
                                        f"{exc.reason}") from exc
                await asyncio.sleep(max(self.poll_interval_s, exc.retry_after or 0.0))
                continue
            errors = 0
            state = data.get("state")
            if state == "success":
                return self._result_urls(task_id, data)
            if state == "failed":
                raise self._task_failed(task_id, data)
            await asyncio.sleep(self.poll_interval_s)

    async def _read(self, task_id: str) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/statusTask/{self.model}"
        try:
            response = await self._call("GET", url, "status read", params={"taskId": task_id})
        except RouteError as exc:
            raise _TransientPollError(exc.message) from exc
        envelope = _envelope(response)
        status = _effective_status(response, envelope)
        if status == 429 or status >= 500:
            raise _TransientPollError(f"HTTP {status}",
                                      retry_after_seconds(response.headers.get("retry-after")))
        if status == 404:
            raise RouteError.of(FailCode.UNKNOWN, f"{self._who}: upstream no longer knows task "
                                f"{task_id}: {self._detail(envelope, status)}")
        if status != 200:
            raise self._set_up_error(status, self._detail(envelope, status))
        data = envelope.get("data") if envelope else None
        if not isinstance(data, dict):
            raise _TransientPollError("the status answer carried no task")
        return data

    def _result_urls(self, task_id: str, data: Mapping[str, Any]) -> list[str]:
        urls = parse_result_urls(data)
        if not urls:
            raise RouteError.of(FailCode.UNKNOWN, f"{self._who}: upstream task {task_id} "
                                "succeeded without result URLs")
        return urls

    def _task_failed(self, task_id: str, data: Mapping[str, Any]) -> RouteError:
        their_code, their_msg = data.get("failCode"), data.get("failMsg")
        code = map_fail_code(their_code)
        text = their_msg if isinstance(their_msg, str) and their_msg.strip() else (
            f"task failed with failCode {their_code!r}")
        message = f"upstream: {self._scrub(text)}"
        log.info("%s: upstream task %s failed: %s (%s)", self._who, task_id,
                 self._scrub(str(their_code)), message, extra={"route": self.name})
        return RouteError.of(code, message)

    # Download ---------------------------------------------------------------------------------

    async def _download(self, task_id: str, url: str) -> Image.Image:
        """The decoded result image (``routes.results`` guards the download)."""
        return await self._results.image(f"{self._who}: result of upstream task {task_id}", url)

    # Plumbing ---------------------------------------------------------------------------------

    async def _call(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request to the upstream API; transport failures become RouteError."""
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        try:
            return await self._client.request(method, url, headers=headers,
                                              timeout=self.request_timeout_s, **kwargs)
        except httpx.TimeoutException as exc:
            raise RouteError.of(FailCode.TIMEOUT, f"{self._who}: {what} timed out after "
                                f"{self.request_timeout_s:g} s") from exc
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            raise RouteError.of(FailCode.UNKNOWN, f"{self._who}: {what} failed: "
                                f"{self._scrub(reason(exc))}") from exc

    def _detail(self, envelope: dict[str, Any] | None, status: int) -> str:
        """``HTTP <status>`` and what the upstream said, short and without our key."""
        said = ""
        if envelope:
            data = envelope.get("data")
            error = data.get("error") if isinstance(data, dict) else None
            said = str(error or envelope.get("message") or "")
        return f"HTTP {status}" + (f", {self._scrub(said)}" if said else "")

    def _scrub(self, text: str) -> str:
        text = scrub(text, self._api_key)
        return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def _api_root(base_url: str) -> str:
    """``https://api.apixo.ai`` from that or from ``https://api.apixo.ai/api/v1/``."""
    root = base_url.strip().rstrip("/")
    return root[: -len("/api/v1")] if root.endswith("/api/v1") else root


def _envelope(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _effective_status(response: httpx.Response, envelope: dict[str, Any] | None) -> int:
    """The HTTP status, or the envelope's ``code`` when an HTTP 200 carries an error code."""
    code = envelope.get("code") if envelope else None
    if response.status_code == 200 and isinstance(code, int) and not isinstance(code, bool):
        return code if 100 <= code <= 599 else 500
    return response.status_code


def _bad_request_code(envelope: dict[str, Any] | None) -> str:
    data = envelope.get("data") if envelope else None
    field = data.get("field") if isinstance(data, dict) else None
    error = data.get("error") if isinstance(data, dict) else None
    text = str(field or error or (envelope or {}).get("message") or "").lower()
    if "image_url" in text:
        return FailCode.IMAGE_FORMAT_INCORRECT
    if "prompt" in text:
        return FailCode.PROMPT_INVALID
    return FailCode.MISSING_PARAMETER


# Options ------------------------------------------------------------------------------------

_OPTIONS = ("base_url", "api_key", "model", "poll_interval_seconds", "first_poll_seconds",
            "timeout_seconds", "request_timeout_seconds", "max_result_bytes", "official",
            "search_grounding", "max_references", "resolutions", "ratios", "cost",
            "private_results")


def _from_options(cls: type[RelayRoute], opts: RouteOptions, client: httpx.AsyncClient,
                  allow_private_networks: bool) -> RelayRoute:
    base_url = opts.text("base_url")
    if not re.match(r"https?://[^/\s]+", base_url, re.IGNORECASE):
        raise ConfigError(f"{opts.where('base_url')} must be an http(s) URL such as "
                          f"https://api.apixo.ai, got {base_url!r}")
    poll = opts.seconds("poll_interval_seconds", 3.0)
    first_poll = (opts.seconds("first_poll_seconds", poll, zero_ok=True)
                  if "first_poll_seconds" in opts else None)
    caps = opts.capabilities(Capabilities())
    return cls(
        opts.name, client, base_url=base_url, api_key=opts.text("api_key", secret=True),
        model=opts.text("model", DEFAULT_MODEL), poll_interval_s=poll,
        first_poll_s=first_poll, timeout_s=opts.seconds("timeout_seconds", 600.0),
        request_timeout_s=opts.seconds("request_timeout_seconds", 30.0),
        max_result_bytes=opts.whole("max_result_bytes", 50 * 1024 * 1024, 1, 2**40),
        capabilities=caps,
        allow_private_results=opts.flag("private_results") or allow_private_networks)
