"""The playground: a page at ``/`` for trying the API from a browser (docs/playground.md).

Its files are plain HTML, CSS and JavaScript modules in ``api/playground/``, shipped as package
data and read once per process; nothing is built at run time and nothing comes from another
site, so the page works offline. The page calls the ordinary ``/api/v1`` endpoints with the key
the user types in; the server keeps nothing of it.

    GET /                              the page (``index.html``), revalidated on every load
    GET /playground/{version}/{name}   its assets; ``version`` is a digest of all the files, so
                                       an asset under the current version never changes and is
                                       cached for a year; under another version (a page from
                                       before an upgrade) it is served as it is now, uncached

Module imports inside the page are relative (``./api.js``), so they stay under the version of
the page that loaded them. Every answer carries a strict Content-Security-Policy: scripts,
styles and connections only from this origin (no inline script), images also from the origins
result URLs point at: the service's public URL and, when results are redirected to S3, the
bucket's origin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imagegate.config import Settings

PACKAGE_DIR = "playground"  # beside this module; pyproject.toml ships it as package data
INDEX = "index.html"
VERSION_MARK = "{{version}}"  # in index.html, where the asset paths take the version

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Site:
    """The page and its assets by file name, with the version that names this set of files."""

    version: str
    index: Asset
    assets: dict[str, Asset]


def load_site() -> Site:
    """Read every file of the playground; the page gets the version filled in."""
    folder = resources.files("imagegate.api").joinpath(PACKAGE_DIR)
    files = {entry.name: entry.read_bytes() for entry in folder.iterdir()
             if entry.is_file() and _suffix(entry.name) in CONTENT_TYPES}
    if INDEX not in files:
        raise RuntimeError(f"the playground's {INDEX} is missing from the installed package")
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    version = digest.hexdigest()[:16]
    page = files.pop(INDEX).replace(VERSION_MARK.encode(), version.encode())
    return Site(version, _asset(INDEX, page),
                {name: _asset(name, body) for name, body in files.items()})


@cache
def site() -> Site:
    return load_site()


def _suffix(name: str) -> str:
    return name[name.rfind("."):] if "." in name else ""


def _asset(name: str, body: bytes) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, CONTENT_TYPES[_suffix(name)], etag)


def image_origins(settings: Settings) -> list[str]:
    """Where result images load from besides the page's own origin: the public URL's origin
    (result URLs are built on it, and a browser may have reached the page by another name),
    and the bucket's when result URLs redirect to presigned S3 URLs."""
    parts = urlsplit(settings.base_url)
    origins = [f"{parts.scheme}://{parts.netloc}"]
    if settings.results_delivery == "redirect" and settings.s3_bucket:
        from imagegate.blobs.s3 import Addressing, bucket_origin

        style: Addressing = "path" if settings.s3_addressing_style == "path" else "virtual"
        origins.append(bucket_origin(settings.s3_bucket, settings.s3_endpoint_url,
                                     settings.s3_region, style))
    return origins


def content_security_policy(images_from: list[str]) -> str:
    images = " ".join(["'self'", "data:", "blob:", *images_from])
    return ("default-src 'none'; script-src 'self'; style-src 'self'; "
            f"img-src {images}; connect-src 'self'; font-src 'self'; manifest-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'")


def security_headers(settings: Settings) -> dict[str, str]:
    return {"content-security-policy": content_security_policy(image_origins(settings)),
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "cross-origin-opener-policy": "same-origin"}


class Playground:
    """The endpoints, with the headers that ``settings`` make."""

    def __init__(self, settings: Settings) -> None:
        self.headers = security_headers(settings)

    async def index(self, request: Request) -> Response:
        return self._answer(request, site().index, REVALIDATE)

    async def asset(self, request: Request) -> Response:
        found = site()
        asset = found.assets.get(request.path_params["name"])
        if asset is None:
            raise HTTPException(404)
        current = request.path_params["version"] == found.version
        return self._answer(request, asset, IMMUTABLE if current else REVALIDATE)

    def _answer(self, request: Request, asset: Asset, cache_control: str) -> Response:
        headers = {**self.headers, "etag": asset.etag, "cache-control": cache_control}
        if _matches(request.headers.get("if-none-match", ""), asset.etag):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag``: ``*``, or a comma-separated list of
    entity tags compared weakly (``W/"x"`` matches ``"x"``), as RFC 9110 reads it."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def routes(settings: Settings) -> list[Route]:
    playground = Playground(settings)
    return [Route("/", playground.index, methods=["GET"]),
            Route("/playground/{version}/{name}", playground.asset, methods=["GET"])]
