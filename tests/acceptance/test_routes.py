"""Real routes behind a real server process: fake Gemini and APIXO upstreams on loopback."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
from fakes.apixo_server import Succeed, apixo_server
from fakes.gemini_server import Error, Image, ThoughtsThenImage, gemini_server
from fakes.vertex_server import vertex_server
from PIL import Image as PILImage
from serverproc import Server, cli, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"
FAST = {"IMAGEGATE_WORKER_RETRY_BACKOFF_SECONDS": "0.2", "IMAGEGATE_WORKER_POLL_SECONDS": "0.2"}


def first_image(data: dict) -> PILImage.Image:
    url = json.loads(data["resultJson"])["resultUrls"][0]
    return PILImage.open(io.BytesIO(httpx.get(url).content)).convert("RGB")


def test_one_gemini_key_setting_makes_real_images(tmp_path: Path) -> None:
    with gemini_server() as gemini:
        gemini.script([ThoughtsThenImage(color=(200, 30, 30))])
        srv = Server(tmp_path / "d", env={"IMAGEGATE_GEMINI_API_KEY": gemini.api_key,
                                          "IMAGEGATE_GEMINI_BASE_URL": gemini.base_url,
                                          "IMAGEGATE_LOG_LEVEL": "debug"}).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                r = c.post(SUBMIT, json=t2i("a red square", aspect_ratio="16:9", resolution="2k",
                                            output_format="jpeg"))
                data = wait_done(c, r.json()["data"]["taskId"])
            assert data["state"] == "success", data
            img = first_image(data)
        finally:
            srv.stop()
        request = gemini.requests[0]
    assert request.model == "gemini-nano-banana-2.1"
    assert request.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert img.size == (2752, 1536) and img.getpixel((10, 10))[0] > 150  # the final, red image
    assert gemini.api_key not in srv.log_path.read_text()


def test_rate_limit_waits_for_the_retry_delay_then_succeeds(tmp_path: Path) -> None:
    with gemini_server() as gemini:
        gemini.script([Error(429, "RESOURCE_EXHAUSTED", retry_delay="1.5s"), Image()])
        srv = Server(tmp_path / "d", env={**FAST, "IMAGEGATE_GEMINI_API_KEY": gemini.api_key,
                                          "IMAGEGATE_GEMINI_BASE_URL": gemini.base_url}).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
                data = wait_done(c, task_id)
        finally:
            srv.stop()
    assert data["state"] == "success"
    view = json.loads(cli(tmp_path / "d", "tasks", "show", task_id, "--json").stdout)
    outcomes = [(a["route"], a["upstreamModel"], a["outcome"]) for a in view["routeAttempts"]]
    assert outcomes == [("gemini", "gemini-nano-banana-2.1", "RateLimited"),
                        ("gemini", "gemini-nano-banana-2.1", "success")]
    assert data["costTime"] >= 1500  # the second try waited for RetryInfo's delay


CATALOGUE = """
[routes.primary]
type = "gemini"
model = "gemini-nano-banana-2.1"
api_key = "{gemini_key}"
base_url = "{gemini_url}"

[routes.backup]
type = "relay"
base_url = "{apixo_url}"
api_key = "{apixo_key}"
poll_interval_seconds = 0.05

[models."nano-banana-2"]
routes = ["primary", "backup"]

[router]
failure_threshold = 3
cooldown_seconds = 3
"""


def test_a_500_storm_opens_the_circuit_fails_over_and_half_opens_later(tmp_path: Path) -> None:
    with gemini_server() as gemini, apixo_server() as apixo:
        gemini.script([Error(500, "INTERNAL")] * 3)
        apixo.script([Succeed(polls=0)] * 20)
        data_dir = tmp_path / "d"
        data_dir.mkdir()
        config = data_dir / "imagegate.toml"
        config.write_text(CATALOGUE.format(gemini_key=gemini.api_key, gemini_url=gemini.base_url,
                                           apixo_url=apixo.base_url, apixo_key=apixo.api_key))
        srv = Server(data_dir, env={"IMAGEGATE_WORKER_CONCURRENCY": "1"}, config=config).start()
        try:
            key = srv.new_key("5")
            with srv.client(key) as c:
                ids = [c.post(SUBMIT, json=t2i(f"storm {i}")).json()["data"]["taskId"]
                       for i in range(6)]
                storm = [wait_done(c, t) for t in ids]
                calls_during_storm = len(gemini.requests)
                time.sleep(3.2)  # the cooldown passes; gemini answers again (script is empty)
                after = wait_done(c, c.post(SUBMIT, json=t2i("after")).json()["data"]["taskId"])
        finally:
            srv.stop()
        calls_after = len(gemini.requests)
        relayed = len(apixo.submits)
    assert [d["state"] for d in storm] == ["success"] * 6
    assert calls_during_storm == 3  # open after 3 failures: the next tasks skip it
    assert relayed == 6
    assert after["state"] == "success" and calls_after == 4  # the half-open trial went through
    views = [json.loads(cli(data_dir, "tasks", "show", t, "--json", "--config", str(config)
                            ).stdout) for t in ids]
    assert [a["route"] for a in views[0]["routeAttempts"]] == ["primary", "backup"]
    assert [a["route"] for a in views[5]["routeAttempts"]] == ["backup"]


def test_google_search_with_no_grounding_route_is_refused_at_submit(tmp_path: Path) -> None:
    with apixo_server() as apixo:
        config = tmp_path / "imagegate.toml"
        config.write_text(f"""
[routes.relay]
type = "relay"
base_url = "{apixo.base_url}"
api_key = "{apixo.api_key}"

[models."nano-banana-2"]
routes = ["relay"]
""")
        srv = Server(tmp_path / "d", config=config).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                r = c.post(SUBMIT, json=t2i(google_search=True))
                balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
        finally:
            srv.stop()
    assert r.status_code == 400
    assert r.json()["data"]["field"] == "input.google_search"
    assert "ground" in r.json()["data"]["error"]
    assert balance == 1.0


def test_vertex_ai_with_a_service_account_makes_real_images(tmp_path: Path) -> None:
    with vertex_server() as vertex:
        data_dir = tmp_path / "d"
        data_dir.mkdir()
        key_file = data_dir / "service-account.json"
        key_file.write_text(json.dumps(vertex.service_account()))
        config = data_dir / "imagegate.toml"
        config.write_text(f"""
[routes.vertex-pro]
type = "gemini"
platform = "vertex"
model = "gemini-3-pro-image"
credentials_file = "{key_file}"
base_url = "{vertex.base_url}"

[models."nano-banana-pro"]
routes = ["vertex-pro"]
""")
        srv = Server(data_dir, config=config).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                r = c.post("/api/v1/generateTask/nano-banana-pro",
                           json=t2i("a pro lighthouse", aspect_ratio="21:9", resolution="1k"))
                data = wait_done(c, r.json()["data"]["taskId"], model="nano-banana-pro")
            image = first_image(data)
            checked = cli(data_dir, "routes", "check", "--config", str(config))
        finally:
            srv.stop()
        lookups, requests = list(vertex.lookups), list(vertex.requests)
        tokens = len(vertex.token_requests)
    assert data["state"] == "success", data
    assert image.size == (1584, 672)
    assert requests[0].path.endswith("/locations/global/publishers/google/models/"
                                     "gemini-3-pro-image:generateContent")
    assert lookups[:1] == ["gemini-3-pro-image"]  # checked at start, before any task
    assert tokens >= 2  # the server's and the CLI's own
    assert "vertex-pro" in checked.stdout and "available" in checked.stdout
    assert "PRIVATE KEY" not in srv.log_path.read_text()
