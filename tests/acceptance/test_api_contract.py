"""The wire contract (docs/contract.md §1-8, 11, 13) through HTTP against a real server process."""

from __future__ import annotations

import io
import json
import re
import time

import httpx
import pytest
from PIL import Image
from serverproc import Server, cli, t2i, wait_done

from imagegate.contract import RATIOS, output_size

MODEL = "/api/v1/generateTask/nano-banana-2"
STATUS = "/api/v1/statusTask/nano-banana-2"


def submit(client: httpx.Client, body: dict) -> str:
    r = client.post(MODEL, json=body)
    assert r.status_code == 200, r.text
    payload = r.json()
    assert payload["code"] == 200 and payload["message"] == "success"
    return str(payload["data"]["taskId"])


def download(url: str) -> httpx.Response:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_text_to_image_task_succeeds_with_an_exact_png(server: Server, key: str) -> None:
    with server.client(key) as c:
        task_id = submit(c, t2i("a fox in watercolor", aspect_ratio="16:9", resolution="2k"))
        assert re.fullmatch(r"[0-9a-f]{32}", task_id)
        data = wait_done(c, task_id)
    assert data["state"] == "success", data
    assert isinstance(data["resultJson"], str)
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 1 and urls[0].startswith(server.base_url + "/files/")
    assert data["costTime"] == data["completeTime"] - data["createTime"]
    for absent in ("failCode", "failMsg"):
        assert absent not in data
    r = download(urls[0])
    assert r.headers["content-type"] == "image/png"
    assert int(r.headers["content-length"]) == len(r.content)
    img = Image.open(io.BytesIO(r.content))
    assert (img.format, img.size) == ("PNG", (2752, 1536))


def test_processing_answer_has_only_the_fields_it_should(server: Server, key: str) -> None:
    with server.client(key) as c:
        task_id = submit(c, t2i("slow [sandbox:delay=3]"))
        data = c.get(STATUS, params={"taskId": task_id}).json()["data"]
    assert data["state"] == "processing"
    assert {"taskId", "state", "createTime"} <= set(data)
    for absent in ("resultJson", "completeTime", "costTime", "failCode", "failMsg"):
        assert absent not in data
    assert None not in data.values()


@pytest.mark.parametrize("fmt,pil_format,ctype,ext", [
    ("jpeg", "JPEG", "image/jpeg", "jpeg"), ("JPG", "JPEG", "image/jpeg", "jpg"),
    ("png", "PNG", "image/png", "png")])
def test_output_format_decides_file_type_and_extension(server: Server, key: str, fmt: str,
                                                       pil_format: str, ctype: str,
                                                       ext: str) -> None:
    with server.client(key) as c:
        data = wait_done(c, submit(c, t2i("formats", output_format=fmt, aspect_ratio="4:5")))
    url = json.loads(data["resultJson"])["resultUrls"][0]
    assert url.endswith("." + ext)
    r = download(url)
    assert r.headers["content-type"] == ctype
    assert Image.open(io.BytesIO(r.content)).format == pil_format
    assert Image.open(io.BytesIO(r.content)).size == (928, 1152)


def test_every_ratio_at_1k_has_its_exact_size(server: Server, key: str) -> None:
    with server.client(key) as c:
        ids = {ratio: submit(c, t2i("sizes", aspect_ratio=ratio, output_format="jpeg"))
               for ratio in RATIOS}
        for ratio, task_id in ids.items():
            data = wait_done(c, task_id)
            url = json.loads(data["resultJson"])["resultUrls"][0]
            size = Image.open(io.BytesIO(download(url).content)).size
            assert size == output_size(ratio, "1k"), ratio


def test_largest_4k_output_is_exact(server: Server, key: str) -> None:
    with server.client(key) as c:
        data = wait_done(c, submit(c, t2i("very wide", aspect_ratio="8:1", resolution="4K",
                                          output_format="jpeg")))
    url = json.loads(data["resultJson"])["resultUrls"][0]
    assert Image.open(io.BytesIO(download(url).content)).size == (12288, 1536)


def test_sandbox_failure_directive_fails_the_task_and_refunds(server: Server) -> None:
    key = server.new_key("1")
    with server.client(key) as c:
        task_id = submit(c, t2i("[sandbox:fail=SensitiveContent] a thing"))
        data = wait_done(c, task_id)
        balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    assert data["state"] == "failed"
    assert data["failCode"] == "SensitiveContent" and data["failMsg"]
    assert "completeTime" in data
    for absent in ("resultJson", "costTime"):
        assert absent not in data
    assert balance == 1.0


def test_balance_is_a_bare_number_after_holds(server: Server) -> None:
    key = server.new_key("1")
    with server.client(key) as c:
        wait_done(c, submit(c, t2i("one", resolution="4k", output_format="jpeg")))
        r = c.get("/api/v1/apikeys/current-balance")
    assert r.json() == {"code": 200, "message": "success", "data": 0.88}


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer ig_nope_nope",
                                    "Bearer a b"])
def test_missing_or_bad_key_is_401_with_envelope(server: Server, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    r = httpx.post(server.base_url + MODEL, json=t2i(), headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == 401 and body["data"]["error"]


def test_revoked_key_is_401_within_the_auth_cache_time(server: Server) -> None:
    key = server.new_key("1")
    key_id = key.split("_")[1]
    with server.client(key) as c:
        assert c.get("/api/v1/apikeys/current-balance").status_code == 200
        cli(server.data_dir, "keys", "revoke", key_id)
        time.sleep(1.1)  # auth_cache_seconds: 1 by default
        assert c.get("/api/v1/apikeys/current-balance").status_code == 401


def test_unknown_model_is_404(server: Server, key: str) -> None:
    with server.client(key) as c:
        r = c.post("/api/v1/generateTask/no-such-model", json=t2i())
    assert r.status_code == 404 and r.json()["code"] == 404


def test_a_huge_task_id_or_model_is_not_echoed_back_whole(server: Server, key: str) -> None:
    with server.client(key) as c:
        status = c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": "\x00" + "a" * 9000})
        model = c.post("/api/v1/generateTask/" + "m" * 5000, json=t2i())
    assert status.status_code == 404 and model.status_code == 404
    for r in (status, model):
        assert len(r.json()["data"]["error"]) < 200, r.text[:300]
    assert "\\x00" in status.json()["data"]["error"]  # a control character is shown escaped


def test_task_of_another_account_or_model_is_404(server: Server, key: str) -> None:
    other = server.new_key("1")
    with server.client(key) as c:
        task_id = submit(c, t2i())
        assert c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": "0" * 32}
                     ).status_code == 404
        assert c.get("/api/v1/statusTask/other-model", params={"taskId": task_id}
                     ).status_code == 404
    with server.client(other) as c:
        r = c.get(STATUS, params={"taskId": task_id})
    assert r.status_code == 404
    assert task_id not in r.text or "no task" in r.json()["data"]["error"]


@pytest.mark.parametrize("body,field", [
    ({"input": {"mode": "text-to-image", "aspect_ratio": "1:1", "resolution": "1k"}},
     "input.prompt"),
    (t2i("   "), "input.prompt"),
    (t2i("x" * 20001), "input.prompt"),
    (t2i(aspect_ratio="1:2"), "input.aspect_ratio"),
    (t2i(resolution="8k"), "input.resolution"),
    (t2i(output_format="gif"), "input.output_format"),
    (t2i(image_urls=["https://example.com/a.png"]), "input.image_urls"),
    ({"input": {"mode": "image-to-image", "prompt": "x", "aspect_ratio": "1:1",
                "resolution": "1k"}}, "input.image_urls"),
    ({"input": {"mode": "image-to-image", "prompt": "x", "aspect_ratio": "1:1",
                "resolution": "1k", "image_urls": ["https://e.com/a.png"] * 15}},
     "input.image_urls"),
    ({"request_type": "callback", "input": t2i()["input"]}, "callback_url"),
    ({"request_type": "sometimes", "input": t2i()["input"]}, "request_type"),
    (t2i(google_search="yes"), "input.google_search"),
    ({"input": "text"}, "input"),
])
def test_invalid_body_is_400_naming_the_field_and_charges_nothing(
        server: Server, body: dict, field: str) -> None:
    key = server.new_key("1")
    with server.client(key) as c:
        r = c.post(MODEL, json=body)
        balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    assert r.status_code == 400, r.text
    payload = r.json()
    assert payload["code"] == 400 and payload["message"] == "Invalid request"
    assert payload["data"]["field"] == field
    assert field.split(".")[-1] in payload["data"]["error"]
    assert balance == 1.0


def test_malformed_json_is_400(server: Server, key: str) -> None:
    with server.client(key) as c:
        r = c.post(MODEL, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["data"]["error"]


def test_non_json_content_type_is_415(server: Server, key: str) -> None:
    with server.client(key) as c:
        r = c.post(MODEL, content=b"prompt=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["code"] == 415


def test_wrong_method_is_405_with_envelope(server: Server, key: str) -> None:
    with server.client(key) as c:
        r = c.delete(MODEL)
    assert r.status_code == 405 and r.json()["code"] == 405


def test_unknown_fields_and_case_insensitive_values_are_accepted(server: Server,
                                                                  key: str) -> None:
    body = t2i("extras", resolution="1K", output_format="PNG", colour="blue")
    body.update(source="my-app", provider="auto", unexpected={"a": 1})
    with server.client(key) as c:
        assert wait_done(c, submit(c, body))["state"] == "success"


def test_balance_too_small_is_402_and_stores_nothing(server: Server) -> None:
    key = server.new_key("0.04")
    with server.client(key) as c:
        r = c.post(MODEL, json=t2i())
        balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    assert r.status_code == 402 and r.json()["code"] == 402
    assert balance == 0.04


def test_num_images_extension_bills_per_image(server: Server) -> None:
    key = server.new_key("1")
    with server.client(key) as c:
        data = wait_done(c, submit(c, t2i("three", num_images=3, output_format="jpeg")))
        balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 3 and len(set(urls)) == 3
    assert balance == pytest.approx(0.85)
    assert data["cost"] == pytest.approx(0.15)


def test_result_url_with_wrong_token_is_404(server: Server, key: str) -> None:
    with server.client(key) as c:
        data = wait_done(c, submit(c, t2i()))
    url = json.loads(data["resultJson"])["resultUrls"][0]
    parts = url.split("/")
    parts[-2] = "x" * len(parts[-2])
    assert httpx.get("/".join(parts)).status_code == 404


def test_health_ready_and_openapi(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json()["data"] == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        doc = c.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/generateTask/{model}" in doc["paths"]


def test_unknown_path_is_404_with_envelope(server: Server) -> None:
    r = httpx.get(server.base_url + "/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == 404

