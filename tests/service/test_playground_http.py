"""The playground's page and assets as a browser gets them, through the ASGI app in-process:
content types, caching, the Content-Security-Policy, and that the files ship in the package.
What the page does is tested in a real browser (tests/browser)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from harness import Harness, scenario

from imagegate.api import playground_site
from imagegate.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "src" / "imagegate" / "api" / "playground"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml"}


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (d.split() for d in policy.split(";"))}


def test_the_page_is_served_at_the_root_with_a_strict_policy() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        async with h.http() as c:
            r = await c.get("/")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-content-type-options"] == "nosniff"
        policy = directives(r.headers["content-security-policy"])
        assert policy["default-src"] == ["'none'"]
        assert policy["script-src"] == ["'self'"]  # no inline script, no other site
        assert policy["style-src"] == ["'self'"]
        assert policy["connect-src"] == ["'self'"]
        assert policy["img-src"] == ["'self'", "data:", "blob:", h.api.settings.base_url]
        assert policy["frame-ancestors"] == ["'none'"]
        assert "<script>" not in r.text and " style=" not in r.text  # nothing inline
        assert "{{version}}" not in r.text


def test_every_asset_the_page_and_its_modules_name_is_served_with_its_type() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        async with h.http() as c:
            page = (await c.get("/")).text
            named = set(re.findall(r'"(/playground/[0-9a-f]{16}/[\w.-]+)"', page))
            assert {p.rsplit("/", 1)[1] for p in named} >= {"app.js", "style.css", "icon.svg"}
            seen: set[str] = set()
            while named - seen:
                path = sorted(named - seen)[0]
                seen.add(path)
                r = await c.get(path)
                assert r.status_code == 200, path
                assert r.headers["content-type"] == TYPES[Path(path).suffix], path
                assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
                assert "content-security-policy" in r.headers
                folder = path.rsplit("/", 1)[0]
                # Module imports are relative, so they stay under the page's version.
                named |= {f"{folder}/{name}" for name in
                          re.findall(r'from "\./([\w.-]+\.js)"', r.text)}
        assert {p.rsplit("/", 1)[1] for p in seen} == {p.name for p in FOLDER.iterdir()} - {
            "index.html"}


def test_an_asset_of_another_version_is_served_uncached() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        async with h.http() as c:
            current = (await c.get(f"/playground/{playground_site.site().version}/app.js"))
            other = await c.get("/playground/0000000000000000/app.js")
        assert other.status_code == 200 and other.content == current.content
        assert other.headers["cache-control"] == "no-cache"


def test_an_unchanged_file_is_answered_304() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        async with h.http() as c:
            first = await c.get("/")
            again = await c.get("/", headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == first.headers["etag"]


def test_if_none_match_is_read_as_a_list_of_entity_tags() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        async with h.http() as c:
            etag = (await c.get("/")).headers["etag"]
            inner = etag.strip('"')
            answers = {value: (await c.get("/", headers={"if-none-match": value})).status_code
                       for value in ("*", f'"other", W/{etag}', f'"other",{etag}',
                                     f'"x{inner}"', f'"{inner}x"', inner, '"other"')}
        assert answers == {"*": 304, f'"other", W/{etag}': 304, f'"other",{etag}': 304,
                           f'"x{inner}"': 200, f'"{inner}x"': 200, inner: 200, '"other"': 200}


def test_unknown_playground_files_and_api_paths_answer_as_before() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        version = playground_site.site().version
        async with h.http() as c:
            missing = await c.get(f"/playground/{version}/secrets.txt")
            parent = await c.get(f"/playground/{version}/..%2Fplayground_site.py")
            models = await c.get("/api/v1/models")
            unknown = await c.get("/api/v1/nothing")
            health = await c.get("/healthz")
        assert missing.status_code == 404 and missing.json()["code"] == 404
        assert parent.status_code == 404
        assert models.status_code == 401  # the API still wants its key
        assert unknown.status_code == 404 and unknown.json()["code"] == 404
        assert health.status_code == 200


def test_results_redirected_to_s3_may_be_shown_from_the_bucket() -> None:
    settings = Settings.load(env={}, public_url="https://images.example.com/",
                             s3_bucket="results", s3_region="eu-west-1",
                             results_delivery="redirect")
    assert playground_site.image_origins(settings) == [
        "https://images.example.com", "https://results.s3.eu-west-1.amazonaws.com"]
    path_style = Settings.load(env={}, s3_bucket="results", s3_addressing_style="path",
                               s3_endpoint_url="http://minio.local:9000",
                               results_delivery="redirect", port=8000)
    assert playground_site.image_origins(path_style) == ["http://127.0.0.1:8000",
                                                         "http://minio.local:9000"]
    proxied = Settings.load(env={}, s3_bucket="results", port=8000)
    assert playground_site.image_origins(proxied) == ["http://127.0.0.1:8000"]


def test_the_package_ships_every_file_of_the_playground() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["imagegate.api"]
    files = [p.name for p in FOLDER.iterdir()]
    assert "index.html" in files
    for name in files:
        assert any(fnmatch(f"playground/{name}", pattern) for pattern in patterns), name
    site = playground_site.load_site()  # read as the installed package holds it
    assert set(site.assets) == set(files) - {"index.html"}
