"""The Gemini route on Vertex AI (routes/google_platforms.py) against a fake Vertex endpoint and
a fake OAuth token endpoint on loopback: URL shapes, a service account's signed JWT exchanged for
a bearer token, express-mode API keys, availability checks, and configuration errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.gemini_server import Error, Image
from fakes.vertex_server import GOOGLE_TOKEN_AUDIENCE, VertexServer, vertex_server

from imagegate.config import Settings
from imagegate.contract import output_size
from imagegate.errors import ConfigError, FailCode, RouteError, RouteUnavailable
from imagegate.routes.base import GeneratedImage, Job, RouteCheck
from imagegate.routes.gemini import GeminiRoute
from imagegate.routes.google_platforms import ServiceAccountToken, VertexAi, vertex_base_url

MODEL = "gemini-3-pro-image"
GREEN = (20, 200, 20)


@pytest.fixture(scope="module")
def vertex() -> Iterator[VertexServer]:
    with vertex_server() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(vertex: VertexServer) -> None:
    vertex.requests.clear()
    vertex.lookups.clear()
    vertex.token_requests.clear()
    vertex.retired.clear()
    vertex.script([])


def make_job(**changes: Any) -> Job:
    width, height = output_size("16:9", "2k")
    job = Job(task_id="t1", model="nano-banana-pro", mode="text-to-image",
              prompt="a lighthouse at dusk", aspect_ratio="16:9", resolution="2k",
              width=width, height=height, output_format="png")
    return dataclasses.replace(job, **changes)


def platform(server: VertexServer, **changes: Any) -> VertexAi:
    options: dict[str, Any] = {"project": server.project, "location": server.location,
                               "base_url": server.base_url}
    if "api_key" not in changes:
        options["token"] = ServiceAccountToken(server.service_account())
    return VertexAi(**{**options, **changes})


async def _run(server: VertexServer, calls: int = 1, model: str = MODEL,
               **changes: Any) -> tuple[list[list[GeneratedImage]], RouteCheck]:
    async with httpx.AsyncClient(trust_env=False) as client:
        route = GeminiRoute("vertex", client, model=model, platform=platform(server, **changes))
        try:
            results = [await route.generate(make_job()) for _ in range(calls)]
            return results, await route.check()
        finally:
            await route.close()


def run(server: VertexServer, calls: int = 1, **changes: Any,
        ) -> tuple[list[list[GeneratedImage]], RouteCheck]:
    return asyncio.run(_run(server, calls, **changes))


def failure(server: VertexServer, **changes: Any) -> RouteError:
    with pytest.raises(RouteError) as caught:
        run(server, **changes)
    return caught.value


def test_a_service_account_token_calls_the_project_scoped_publisher_model(
        vertex: VertexServer) -> None:
    vertex.script([Image(size=(64, 36), color=GREEN)])
    [[image]], checked = run(vertex)
    assert image.image.getpixel((3, 3)) == GREEN
    [sent] = vertex.requests
    assert sent.path == (f"/v1/projects/{vertex.project}/locations/global/publishers/google/"
                         f"models/{MODEL}:generateContent")
    assert sent.headers["authorization"].startswith("Bearer ya29.fake-")
    assert "x-goog-api-key" not in sent.headers and sent.query == ""
    assert sent.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}
    [claims] = vertex.token_requests
    assert claims["iss"] == vertex.client_email and claims["aud"] == GOOGLE_TOKEN_AUDIENCE
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert checked.available is True and vertex.lookups == [MODEL]


def test_a_token_is_reused_until_it_is_about_to_expire(vertex: VertexServer) -> None:
    run(vertex, calls=3)
    assert len(vertex.token_requests) == 1
    with vertex_server(expires_in=60) as short:  # google-auth refreshes minutes before the end
        run(short, calls=2)
        assert len(short.token_requests) == 3  # two generate calls and the check


def test_a_refused_service_account_fails_over_without_retry(vertex: VertexServer) -> None:
    with vertex_server() as other:  # an account whose key the fake does not know
        account = other.service_account(token_uri=f"{vertex.base_url}/token",
                                        client_email=vertex.client_email)
    error = failure(vertex, token=ServiceAccountToken(account))
    assert error.fail_code == FailCode.UNKNOWN and not error.retryable and error.failover
    assert "refused service account" in error.message and vertex.client_email in error.message
    assert "PRIVATE KEY" not in error.message and vertex.requests == []


def test_an_unreachable_token_endpoint_is_retryable(vertex: VertexServer) -> None:
    account = vertex.service_account(token_uri="http://127.0.0.1:9/token")
    error = failure(vertex, token=ServiceAccountToken(account, timeout_s=2))
    assert error.fail_code == FailCode.UNKNOWN and error.retryable and error.failover


def test_express_mode_sends_the_api_key_to_the_project_free_path(vertex: VertexServer) -> None:
    run(vertex, project="", api_key=vertex.api_key)
    [sent] = vertex.requests
    assert sent.path == f"/v1/publishers/google/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == vertex.api_key
    assert "authorization" not in sent.headers and vertex.token_requests == []


def test_a_wrong_api_key_is_never_shown(vertex: VertexServer) -> None:
    secret = "AQ.a-wrong-secret-vertex-key"
    error = failure(vertex, project="", api_key=secret)
    assert not error.retryable and error.failover and secret not in str(error)


def test_a_regional_location_is_in_the_path_and_the_default_host() -> None:
    assert vertex_base_url("global") == "https://aiplatform.googleapis.com"
    assert vertex_base_url("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"
    with vertex_server(location="europe-west4") as regional:
        run(regional, location="europe-west4")
        assert "/locations/europe-west4/publishers/" in regional.requests[0].path


def test_another_project_is_refused_as_the_routes_set_up(vertex: VertexServer) -> None:
    error = failure(vertex, project="someone-else")
    assert not error.retryable and error.failover and "PERMISSION_DENIED" in error.message


def test_a_shut_down_model_is_gone_for_the_check_and_at_run_time(vertex: VertexServer) -> None:
    vertex.retire(MODEL)
    error = failure(vertex)
    assert isinstance(error, RouteUnavailable)
    assert f"Vertex AI no longer serves model {MODEL}" in error.message

    async def check() -> RouteCheck:
        async with httpx.AsyncClient(trust_env=False) as client:
            route = GeminiRoute("v", client, model=MODEL, platform=platform(vertex))
            try:
                return await route.check()
            finally:
                await route.close()

    result = asyncio.run(check())
    assert result.available is False
    assert f"Vertex AI does not serve model {MODEL}" in result.detail


# Configuration --------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(trust_env=False)
    yield client
    asyncio.run(client.aclose())


def key_file(tmp_path: Path, server: VertexServer, **changes: str) -> str:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(server.service_account(**changes)))
    return str(path)


def build(client: httpx.AsyncClient, settings: Settings | None = None,
          **options: Any) -> GeminiRoute:
    return GeminiRoute.from_options("v", {"model": MODEL, "platform": "vertex", **options},
                                    client, settings or Settings())


def test_a_key_file_gives_the_project_and_the_token(tmp_path: Path,
                                                    vertex: VertexServer) -> None:
    async def go() -> GeminiRoute:
        async with httpx.AsyncClient(trust_env=False) as client:
            route = build(client, credentials_file=key_file(tmp_path, vertex),
                          base_url=vertex.base_url)
            await route.generate(make_job())
            await route.close()
            return route

    route = asyncio.run(go())
    assert isinstance(route.platform, VertexAi)
    assert route.platform.project == vertex.project and route.platform.location == "global"
    assert len(vertex.token_requests) == 1 and len(vertex.requests) == 1


def test_settings_supply_what_the_table_leaves_out(tmp_path: Path, vertex: VertexServer,
                                                   client: httpx.AsyncClient) -> None:
    settings = Settings(vertex_credentials_file=key_file(tmp_path, vertex, project_id=""),
                        vertex_project="from-settings", vertex_location="us-east5")
    route = build(client, settings)
    assert isinstance(route.platform, VertexAi)
    assert route.platform.project == "from-settings" and route.platform.location == "us-east5"
    assert route.platform.base_url == "https://us-east5-aiplatform.googleapis.com"
    express = build(client, Settings(vertex_api_key="AQ.settings-key"))
    assert express.platform.generate_url(MODEL) == (
        f"https://aiplatform.googleapis.com/v1/publishers/google/models/{MODEL}:generateContent")


@pytest.mark.parametrize("options,named", [
    ({}, "routes.v.api_key"),
    ({"credentials_file": "/nonexistent/sa.json"}, "routes.v.credentials_file"),
    ({"location": "Mars Base"}, "routes.v.location"),
    ({"platform": "azure"}, "routes.v.platform"),
    ({"platform": "gemini", "api_key": "k", "project": "p"}, "routes.v.project"),
], ids=lambda v: str(v)[:40])
def test_bad_vertex_options_are_named(client: httpx.AsyncClient, options: dict[str, Any],
                                      named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        build(client, **options)


@pytest.mark.parametrize("contents,says", [
    ("not json", "not a readable JSON key file"),
    ('{"type": "authorized_user"}', "not a service-account key file"),
    ('{"type": "service_account", "client_email": "a@b"}', "lacks private_key, token_uri"),
])
def test_an_unusable_key_file_is_refused_without_showing_it(
        tmp_path: Path, client: httpx.AsyncClient, contents: str, says: str) -> None:
    path = tmp_path / "sa.json"
    path.write_text(contents)
    with pytest.raises(ConfigError, match=r"routes\.v\.credentials_file") as caught:
        build(client, credentials_file=str(path))
    assert says in str(caught.value) and contents not in str(caught.value)


def test_a_key_file_without_a_project_needs_one(tmp_path: Path, vertex: VertexServer,
                                                client: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigError, match=r"routes\.v\.project is not set"):
        build(client, credentials_file=key_file(tmp_path, vertex, project_id=""))


def test_a_broken_private_key_is_a_config_error(tmp_path: Path, vertex: VertexServer,
                                                client: httpx.AsyncClient) -> None:
    path = key_file(tmp_path, vertex, private_key="-----BEGIN PRIVATE KEY-----\nnope\n")
    with pytest.raises(ConfigError, match="cannot be used") as caught:
        build(client, credentials_file=path)
    assert "nope" not in str(caught.value)


def test_an_error_answer_of_vertex_maps_like_the_gemini_apis(vertex: VertexServer) -> None:
    vertex.script([Error(429, "RESOURCE_EXHAUSTED", retry_delay="2s")])
    error = failure(vertex)
    assert error.fail_code == FailCode.RATE_LIMITED and error.retry_after == 2.0
