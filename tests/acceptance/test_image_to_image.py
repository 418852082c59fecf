"""Image-to-image through HTTP: references fetched from a real server on loopback."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopback import Loopback, loopback_server, png_bytes
from PIL import Image
from serverproc import Server, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"


@pytest.fixture(scope="module")
def refs() -> Iterator[Loopback]:
    with loopback_server() as lb:
        lb.files["/red-portrait.png"] = (200, "image/png", png_bytes((600, 1070), (230, 20, 20)))
        lb.files["/page.html"] = (200, "text/html", b"<html>not an image</html>")
        yield lb


def i2i(urls: list[str], **extra: object) -> dict[str, object]:
    body = {"mode": "image-to-image", "prompt": "make it sunrise", "image_urls": urls,
            "aspect_ratio": "auto", "resolution": "1k", **extra}
    return {"input": body}


def result_image(data: dict[str, object]) -> Image.Image:
    url = json.loads(str(data["resultJson"]))["resultUrls"][0]
    return Image.open(io.BytesIO(httpx.get(url).content)).convert("RGB")


def test_auto_ratio_follows_the_first_reference_and_uses_it(server: Server, key: str,
                                                            refs: Loopback) -> None:
    with server.client(key) as c:
        r = c.post(SUBMIT, json=i2i([refs.base_url + "/red-portrait.png"]))
        data = wait_done(c, r.json()["data"]["taskId"])
    assert data["state"] == "success", data
    img = result_image(data)
    assert img.size == (768, 1376)  # 600x1070 is nearest to 9:16
    small = img.resize((64, 64))
    px = small.load()
    assert px is not None
    red = sum(1 for x in range(64) for y in range(64)
              if px[x, y][0] > 150 and px[x, y][1] < 100 and px[x, y][2] < 100)
    assert red > 0.3 * 64 * 64  # visibly built from the reference


@pytest.mark.parametrize("path,reason", [("/missing.png", "HTTP 404"),
                                         ("/page.html", "not an image")])
def test_bad_reference_fails_with_image_format_incorrect_naming_the_url(
        server: Server, refs: Loopback, path: str, reason: str) -> None:
    key = server.new_key("1")
    url = refs.base_url + path
    with server.client(key) as c:
        r = c.post(SUBMIT, json=i2i([refs.base_url + "/red-portrait.png", url]))
        data = wait_done(c, r.json()["data"]["taskId"])
        balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    assert data["state"] == "failed"
    assert data["failCode"] == "ImageFormatIncorrect"
    assert url in data["failMsg"] and reason in data["failMsg"]
    assert balance == 1.0


def test_private_addresses_are_refused_unless_the_operator_allows(tmp_path: Path,
                                                                  refs: Loopback) -> None:
    srv = Server(tmp_path / "d", env={"IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "false"}).start()
    try:
        key = srv.new_key("1")
        with srv.client(key) as c:
            r = c.post(SUBMIT, json=i2i([refs.base_url + "/red-portrait.png"]))
            data = wait_done(c, r.json()["data"]["taskId"])
    finally:
        srv.stop()
    assert data["failCode"] == "ImageFormatIncorrect"
    assert "127.0.0.1" in data["failMsg"] and "not public" in data["failMsg"]


def test_data_uri_reference_is_accepted(server: Server, key: str) -> None:
    import base64

    uri = "data:image/png;base64," + base64.b64encode(png_bytes((64, 64), (0, 0, 255))).decode()
    with server.client(key) as c:
        r = c.post(SUBMIT, json=i2i([uri], aspect_ratio="1:1"))
        data = wait_done(c, r.json()["data"]["taskId"])
    assert data["state"] == "success"
    assert result_image(data).size == (1024, 1024)
