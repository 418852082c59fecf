"""Where a Gemini route sends its calls: Google's Gemini API or Vertex AI.

Both serve the same image models under the same ids and speak the same ``generateContent``
request and answer; they differ in URLs and credentials:

    Gemini API   {base}/v1beta/models/{model}:generateContent         x-goog-api-key
                 {base}/v1beta/models/{model}                          (models.get)
    Vertex AI    {base}/v1/projects/{project}/locations/{location}/publishers/google/models/
                 {model}:generateContent                               Bearer token of a service
                                                                       account, or an API key
                 {base}/v1/publishers/google/models/{model}:generateContent   API key alone
                 (express mode, no project)
                 {base}/v1beta1/publishers/google/models/{model}       (publisher model get)

Vertex's ``base`` is ``https://aiplatform.googleapis.com`` for the ``global`` location and
``https://{location}-aiplatform.googleapis.com`` for a region. A service account's access token
comes from google-auth (an RS256-signed JWT assertion exchanged at the account's ``token_uri``),
is refreshed off the event loop shortly before it expires, and is never logged.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
from google.auth import exceptions as google_exceptions
from google.auth import transport as google_transport
from google.oauth2 import service_account

from imagegate.config import Settings
from imagegate.errors import ConfigError, FailCode, RouteError
from imagegate.routes.options import RouteOptions

__all__ = ["GeminiApi", "Platform", "ServiceAccountToken", "VertexAi", "platform_from_options",
           "read_service_account"]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:-]{2,62}$")


class Platform(Protocol):
    """The URLs and credentials of one Google platform. ``label`` names it in messages."""

    label: str

    def generate_url(self, model: str) -> str: ...

    def model_url(self, model: str) -> str: ...

    async def headers(self) -> dict[str, str]:
        """Credentials for one call; raises ``RouteError`` when none can be had."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Values to scrub from any upstream text that is repeated."""
        ...

    async def close(self) -> None: ...


class GeminiApi:
    """Google's Gemini API (Google AI Studio keys)."""

    label = "the Gemini API"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key

    def generate_url(self, model: str) -> str:
        return f"{self.base_url}/v1beta/models/{model}:generateContent"

    def model_url(self, model: str) -> str:
        return f"{self.base_url}/v1beta/models/{model}"

    async def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key}

    def secrets(self) -> tuple[str, ...]:
        return (self._api_key,)

    async def close(self) -> None:
        return None


class VertexAi:
    """Vertex AI's publisher models, with a service account (``token``) or an API key."""

    label = "Vertex AI"

    def __init__(self, *, project: str, location: str = "global", base_url: str = "",
                 token: ServiceAccountToken | None = None, api_key: str = "") -> None:
        if token is None and not api_key:
            raise ValueError("Vertex AI needs a service account or an API key")
        self.project = project
        self.location = location
        self.base_url = (base_url or vertex_base_url(location)).rstrip("/")
        self._token = token
        self._api_key = api_key

    def generate_url(self, model: str) -> str:
        if not self.project:  # express mode: an API key, no project
            return f"{self.base_url}/v1/publishers/google/models/{model}:generateContent"
        return (f"{self.base_url}/v1/projects/{self.project}/locations/{self.location}"
                f"/publishers/google/models/{model}:generateContent")

    def model_url(self, model: str) -> str:
        return f"{self.base_url}/v1beta1/publishers/google/models/{model}"

    async def headers(self) -> dict[str, str]:
        if self._token is None:
            return {"x-goog-api-key": self._api_key}
        return {"Authorization": f"Bearer {await self._token.get()}"}

    def secrets(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key else ()

    async def close(self) -> None:
        if self._token is not None:
            self._token.close()


def platform_from_options(opts: RouteOptions, settings: Settings) -> Platform:
    """The platform a ``[routes.<name>]`` table of a gemini route asks for, its credentials and
    endpoint defaulting to ``settings``. Raises ``ConfigError`` naming the option."""
    platform = opts.text("platform", "gemini")
    if platform == "gemini":
        for key in ("project", "location", "credentials_file"):
            if key in opts:
                raise ConfigError(f"{opts.where(key)} is a Vertex AI option; set "
                                  f'{opts.where("platform")} = "vertex" to use it')
        return GeminiApi(_base_url(opts, settings.gemini_base_url),
                         _api_key(opts, settings.gemini_api_key, "IMAGEGATE_GEMINI_API_KEY"))
    if platform == "vertex":
        return _vertex(opts, settings)
    raise ConfigError(f'{opts.where("platform")} must be "gemini" (the Gemini API) or "vertex" '
                      f"(Vertex AI), got {platform!r}")


def _vertex(opts: RouteOptions, settings: Settings) -> VertexAi:
    location = check_location(opts.text("location", settings.vertex_location),
                              opts.where("location"))
    project = check_project(opts.optional_text("project") or settings.vertex_project,
                            opts.where("project"))
    base_url = _base_url(opts, vertex_base_url(location))
    path = opts.optional_text("credentials_file") or settings.vertex_credentials_file
    if path:
        where = opts.where("credentials_file") if "credentials_file" in opts \
            else "IMAGEGATE_VERTEX_CREDENTIALS_FILE"
        info = read_service_account(path, where)
        project = project or check_project(str(info.get("project_id") or ""), where)
        if not project:
            raise ConfigError(f"{opts.where('project')} is not set, and neither is "
                              "IMAGEGATE_VERTEX_PROJECT nor the key file's project_id")
        return VertexAi(project=project, location=location, base_url=base_url,
                        token=ServiceAccountToken(info))
    api_key = _api_key(opts, settings.vertex_api_key, "IMAGEGATE_VERTEX_API_KEY",
                       also=f"{opts.where('credentials_file')} nor "
                            "IMAGEGATE_VERTEX_CREDENTIALS_FILE")
    return VertexAi(project=project, location=location, base_url=base_url, api_key=api_key)


def _base_url(opts: RouteOptions, default: str) -> str:
    base_url = opts.optional_text("base_url") or default
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{opts.where('base_url')} must be an http(s) URL, got {base_url!r}")
    return base_url


def _api_key(opts: RouteOptions, default: str, env: str, also: str = "") -> str:
    api_key = opts.optional_text("api_key", secret=True) or default
    if not api_key:
        others = f", {also}" if also else ""
        raise ConfigError(f"{opts.where('api_key')} is not set, and neither is {env}{others}")
    return api_key


def vertex_base_url(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def check_location(location: str, where: str) -> str:
    if not _LOCATION.match(location):
        raise ConfigError(f"{where} must be a Vertex AI location such as global or "
                          f"us-central1, got {location!r}")
    return location


def check_project(project: str, where: str) -> str:
    if project and not _PROJECT.match(project):
        raise ConfigError(f"{where} must be a Google Cloud project id, got {project!r}")
    return project


# Service accounts -----------------------------------------------------------------------------


def read_service_account(path: str, where: str) -> dict[str, Any]:
    """The JSON key file of a service account; ``ConfigError`` naming ``where`` when it cannot
    be used. Never repeats the file's contents."""
    try:
        info = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: no file {path}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{where}: {path} is not a readable JSON key file "
                          f"({type(exc).__name__})") from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f"{where}: {path} is not a service-account key file "
                          '(its "type" must be "service_account")')
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise ConfigError(f"{where}: {path} lacks {', '.join(missing)}")
    return info


class ServiceAccountToken:
    """OAuth access tokens of one service account, for the cloud-platform scope.

    google-auth signs the JWT assertion and reads the token endpoint's answer; its HTTP calls go
    through a small adapter over an ``httpx.Client`` and run in a thread, one refresh at a time.
    A token is reused until google-auth counts it expired (a few minutes before its end).
    ``get`` raises ``RouteError``: not retryable when the account is refused (the route cannot
    work until its operator acts), retryable when the token endpoint could not be reached."""

    def __init__(self, info: Mapping[str, Any], *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        try:
            self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                dict(info), scopes=[CLOUD_PLATFORM_SCOPE])
        except (ValueError, google_exceptions.GoogleAuthError) as exc:
            raise ConfigError(f"the service account key cannot be used ({type(exc).__name__}: "
                              "check private_key and client_email)") from exc
        self.email = str(info.get("client_email"))
        self._client = httpx.Client(transport=transport, trust_env=False,
                                    follow_redirects=False, timeout=timeout_s)
        self._request = _HttpxRequest(self._client)
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if not self._credentials.valid:
            async with self._lock:
                if not self._credentials.valid:
                    await self._refresh()
        return str(self._credentials.token)

    async def _refresh(self) -> None:
        try:
            await asyncio.to_thread(self._credentials.refresh, self._request)
        except google_exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise RouteError(FailCode.UNKNOWN, f"the token endpoint failed for service "
                                 f"account {self.email}: {_short(exc)}", retryable=True,
                                 failover=True) from exc
            raise RouteError(FailCode.UNKNOWN, f"Google refused service account {self.email}: "
                             f"{_short(exc)}", retryable=False, failover=True) from exc
        except google_exceptions.TransportError as exc:
            raise RouteError(FailCode.UNKNOWN, f"could not reach the token endpoint for service "
                             f"account {self.email} ({_short(exc)})", retryable=True,
                             failover=True) from exc

    def close(self) -> None:
        self._client.close()


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


class _Response(google_transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _HttpxRequest(google_transport.Request):
    """google-auth's transport interface over an ``httpx.Client``."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 **kwargs: Any) -> _Response:
        limit = timeout if timeout else httpx.USE_CLIENT_DEFAULT
        try:
            response = self._client.request(method, url, content=body, headers=headers,
                                            timeout=limit)
        except httpx.HTTPError as exc:
            raise google_exceptions.TransportError(  # type: ignore[no-untyped-call]
                type(exc).__name__) from exc
        return _Response(response)
