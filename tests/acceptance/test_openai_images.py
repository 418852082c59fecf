"""openai-images routes behind a real server process: fake serving engines (OpenAI's Images API,
tests/fakes/openai_images_server.py) on loopback, one model each, configured in TOML."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
from fakes.openai_images_server import Error, Hang, Pictures, Raw, openai_images_server
from loopback import loopback_server, png_bytes
from PIL import Image, PngImagePlugin
from serverproc import Server, cli, t2i, wait_done

FLUX = "black-forest-labs/FLUX.1-dev"
QWEN_EDIT = "Qwen/Qwen-Image-Edit"
FAST = {"IMAGEGATE_WORKER_RETRY_BACKOFF_SECONDS": "0.2", "IMAGEGATE_WORKER_POLL_SECONDS": "0.1"}


def write_config(tmp_path: Path, text: str) -> Path:
    data_dir = tmp_path / "d"
    data_dir.mkdir(exist_ok=True)
    path = data_dir / "imagegate.toml"
    path.write_text(text)
    return path


def result(data: dict[str, object]) -> Image.Image:
    url = json.loads(str(data["resultJson"]))["resultUrls"][0]
    return Image.open(io.BytesIO(httpx.get(url).content)).convert("RGB")


def show(tmp_path: Path, config: Path, task_id: str) -> dict[str, object]:
    out = cli(tmp_path / "d", "tasks", "show", task_id, "--json", "--config", str(config))
    view: dict[str, object] = json.loads(out.stdout)
    return view


TWO_ENGINES = """
[routes.sglang-flux]
type = "openai-images"
base_url = "{flux_url}"
api_key = "{flux_key}"
model = "{flux}"
modes = ["text-to-image"]
extra_body = {{ num_inference_steps = 28, guidance_scale = 3.5 }}

[routes.vllm-qwen-edit]
type = "openai-images"
base_url = "{edit_url}/v1"
model = "{qwen}"
max_references = 2
sizes = ["1024x1024", "1664x928", "928x1664"]

[models."flux-dev"]
routes = ["sglang-flux"]
prices = {{ "1k" = "0.01", "2k" = "0.02", "4k" = "0.04" }}

[models."qwen-image-edit"]
routes = ["vllm-qwen-edit"]
max_references = 2
prices = {{ "1k" = "0.01", "2k" = "0.02", "4k" = "0.04" }}
"""


def test_flux_on_one_engine_and_an_edit_model_on_another_deliver_table_sizes(
        tmp_path: Path) -> None:
    with openai_images_server(models=[FLUX]) as flux, \
            openai_images_server(api_key=None, models=[QWEN_EDIT]) as edit, \
            loopback_server() as refs:
        refs.files["/a.png"] = (200, "image/png", png_bytes((640, 480), (230, 20, 20)))
        refs.files["/b.png"] = (200, "image/png", png_bytes((300, 500), (20, 230, 20)))
        flux.script([Pictures(color=(200, 30, 30))])
        config = write_config(tmp_path, TWO_ENGINES.format(
            flux_url=flux.base_url, flux_key=flux.api_key, flux=FLUX, edit_url=edit.base_url,
            qwen=QWEN_EDIT))
        srv = Server(tmp_path / "d", config=config).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                made = c.post("/api/v1/generateTask/flux-dev",
                              json=t2i("a red barn", aspect_ratio="16:9", resolution="2k"))
                made_data = wait_done(c, made.json()["data"]["taskId"], model="flux-dev")
                edited = c.post("/api/v1/generateTask/qwen-image-edit", json={"input": {
                    "mode": "image-to-image", "prompt": "put them together",
                    "image_urls": [refs.base_url + "/a.png", refs.base_url + "/b.png"],
                    "aspect_ratio": "16:9", "resolution": "1k"}})
                edited_data = wait_done(c, edited.json()["data"]["taskId"],
                                        model="qwen-image-edit")
                i2i_on_flux = c.post("/api/v1/generateTask/flux-dev", json={"input": {
                    "mode": "image-to-image", "prompt": "x",
                    "image_urls": [refs.base_url + "/a.png"]}})
            made_image, edited_image = result(made_data), result(edited_data)
            made_view = show(tmp_path, config, made.json()["data"]["taskId"])
        finally:
            srv.stop()
    assert made_data["state"] == "success", made_data
    assert made_image.size == (2752, 1536) and made_image.getpixel((9, 9))[0] > 150
    [generation] = flux.requests
    assert generation.fields == {"num_inference_steps": 28, "guidance_scale": 3.5,
                                 "model": FLUX, "prompt": "a red barn", "n": 1,
                                 "size": "1536x1024", "response_format": "b64_json"}
    assert any("resized and cropped from 1536x1024 to 2752x1536" in note
               for note in made_view["notes"])  # type: ignore[attr-defined]
    assert edited_data["state"] == "success", edited_data
    assert edited_image.size == (1376, 768)
    [edit_request] = edit.requests
    assert edit_request.endpoint == "edits" and edit_request.size == "1664x928"
    assert [(f, img.size) for f, _, img in edit_request.files] == [("image", (640, 480)),
                                                                  ("image", (300, 500))]
    assert "authorization" not in edit_request.headers
    assert i2i_on_flux.status_code == 400  # the route declared text-to-image only


FAILOVER = """
[routes.primary]
type = "openai-images"
base_url = "{a_url}"
api_key = "{a_key}"
model = "{flux}"

[routes.backup]
type = "openai-images"
base_url = "{b_url}"
api_key = "{b_key}"
model = "{flux}"

[models."flux-dev"]
routes = ["primary", "backup"]

[router]
failure_threshold = 10
"""


def test_a_rate_limit_or_an_engine_error_fails_over_but_a_safety_block_does_not(
        tmp_path: Path) -> None:
    with openai_images_server() as a, openai_images_server() as b:
        a.script([Error(429, "Rate limit reached for images per minute."),
                  Error(500, "The server had an error while processing your request."),
                  Error(400, "Your request was rejected as a result of our safety system.",
                        code="moderation_blocked")])
        config = write_config(tmp_path, FAILOVER.format(a_url=a.base_url, a_key=a.api_key,
                                                        b_url=b.base_url, b_key=b.api_key,
                                                        flux=FLUX))
        srv = Server(tmp_path / "d", env={**FAST, "IMAGEGATE_WORKER_CONCURRENCY": "1"},
                     config=config).start()
        try:
            key = srv.new_key("1")
            ids, ends = [], []
            with srv.client(key) as c:
                for prompt in ("one", "two", "three"):
                    task_id = c.post("/api/v1/generateTask/flux-dev",
                                     json=t2i(prompt)).json()["data"]["taskId"]
                    ids.append(task_id)
                    ends.append(wait_done(c, task_id, model="flux-dev"))
            views = [show(tmp_path, config, task_id) for task_id in ids]
        finally:
            srv.stop()
    assert [e["state"] for e in ends] == ["success", "success", "failed"], ends
    assert ends[2]["failCode"] == "SensitiveContent"
    outcomes = [[(x["route"], x["outcome"]) for x in v["routeAttempts"]]  # type: ignore[attr-defined]
                for v in views]
    assert outcomes == [[("primary", "RateLimited"), ("backup", "success")],
                        [("primary", "Unknown error"), ("backup", "success")],
                        [("primary", "SensitiveContent")]]
    assert [r.fields["prompt"] for r in b.requests] == ["one", "two"]


LIMITED = """
[routes.engine]
type = "openai-images"
base_url = "{url}"
api_key = "{key}"
model = "{flux}"
max_in_flight = 2

[models."flux-dev"]
routes = ["engine"]
"""


def test_max_in_flight_bounds_the_requests_the_engine_gets(tmp_path: Path) -> None:
    with openai_images_server(default=Hang(0.4, Pictures())) as engine:
        config = write_config(tmp_path, LIMITED.format(url=engine.base_url, key=engine.api_key,
                                                       flux=FLUX))
        srv = Server(tmp_path / "d", env={**FAST, "IMAGEGATE_WORKER_CONCURRENCY": "6"},
                     config=config).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                ids = [c.post("/api/v1/generateTask/flux-dev",
                              json=t2i(f"task {i}")).json()["data"]["taskId"] for i in range(6)]
                ends = [wait_done(c, task_id, model="flux-dev") for task_id in ids]
        finally:
            srv.stop()
    assert [e["state"] for e in ends] == ["success"] * 6
    assert len(engine.requests) == 6
    assert engine.most_at_once == 2


UNLISTED = """
[routes.engine]
type = "openai-images"
base_url = "{url}"
api_key = "{key}"
model = "{flux}"

[routes.backup]
type = "sandbox"

[models."flux-dev"]
routes = ["engine", "backup"]
"""


def test_a_model_the_engine_does_not_list_is_unavailable_and_skipped(tmp_path: Path) -> None:
    with openai_images_server(models=[QWEN_EDIT]) as engine:
        config = write_config(tmp_path, UNLISTED.format(url=engine.base_url,
                                                        key=engine.api_key, flux=FLUX))
        srv = Server(tmp_path / "d", config=config).start()
        try:
            ready = httpx.get(srv.base_url + "/readyz").json()
            key = srv.new_key("1")
            with srv.client(key) as c:
                task_id = c.post("/api/v1/generateTask/flux-dev",
                                 json=t2i()).json()["data"]["taskId"]
                data = wait_done(c, task_id, model="flux-dev")
            checked = cli(tmp_path / "d", "routes", "check", "--config", str(config),
                          check=False)
        finally:
            srv.stop()
        view = show(tmp_path, config, task_id)
    route = ready["data"]["routes"]["engine"]
    assert route["circuit"] == "unavailable" and f"does not serve model {FLUX}" in \
        route["reason"]
    assert data["state"] == "success"
    assert [a["route"] for a in view["routeAttempts"]] == ["backup"]  # type: ignore[attr-defined]
    assert engine.requests == [] and engine.model_lists >= 2  # at start, and by the CLI
    assert "engine" in checked.stdout and "unavailable" in checked.stdout


ONE_ENGINE = """
[routes.engine]
type = "openai-images"
base_url = "{url}"
api_key = "{key}"
model = "{flux}"

[models."flux-dev"]
routes = ["engine"]
"""


def answer_of(picture: bytes) -> Raw:
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(picture).decode()}]}
    return Raw(200, json.dumps(body).encode(), "application/json")


def test_a_picture_at_the_table_size_in_the_tasks_format_is_stored_as_it_came(
        tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "the engine's own encoder")  # dropped by any encoding here
    out = io.BytesIO()
    Image.new("RGB", (1024, 1024), (200, 30, 30)).save(out, "PNG", pnginfo=info)
    png = out.getvalue()
    with openai_images_server() as engine:
        engine.script([answer_of(png), answer_of(png), answer_of(png[:-30])])
        config = write_config(tmp_path, ONE_ENGINE.format(url=engine.base_url,
                                                          key=engine.api_key, flux=FLUX))
        srv = Server(tmp_path / "d", env={**FAST, "IMAGEGATE_WORKER_MAX_ATTEMPTS": "1"},
                     config=config).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                ends = []
                for fields in ({}, {"output_format": "jpeg"}, {}):
                    task_id = c.post("/api/v1/generateTask/flux-dev",
                                     json=t2i(**fields)).json()["data"]["taskId"]
                    ends.append(wait_done(c, task_id, model="flux-dev"))
            kept = httpx.get(json.loads(ends[0]["resultJson"])["resultUrls"][0]).content
            jpeg = httpx.get(json.loads(ends[1]["resultJson"])["resultUrls"][0]).content
        finally:
            srv.stop()
    assert kept == png  # byte for byte: not decoded, not encoded again
    as_jpeg = Image.open(io.BytesIO(jpeg))
    assert (as_jpeg.format, as_jpeg.size) == ("JPEG", (1024, 1024))
    assert ends[2]["state"] == "failed" and ends[2]["failCode"] == "Unknown error"
    assert "unusable" in ends[2]["failMsg"]
