"""The OpenAI Images facade as OpenAI's own Python SDK (the ``openai`` package, pinned in the
``test`` extra) uses it, against a real ``imagegate serve`` process on loopback with the
sandbox route: generations and edits answered in base64 and URLs, refused requests and failed
tasks as the SDK's typed errors, the model list, and each call an ordinary task that is listed
and billed (docs/openai-images.md)."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import ImagesResponse
from PIL import Image
from serverproc import Server

pytestmark = pytest.mark.slow

TASK_ID = "x-imagegate-task-id"
PRICE_1K = Decimal("0.05")  # nano-banana-2 at 1k in the default catalogue
WAIT_S = "2"  # the server's facades_wait_seconds: short, for the one call that outwaits it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("openai"),
                 env={"IMAGEGATE_FACADES_WAIT_SECONDS": WAIT_S}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.new_key("100")


@pytest.fixture(scope="module")
def client(server: Server, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url + "/v1", api_key=key) as sdk:
        yield sdk


def png(width: int, height: int, color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def native(server: Server, key: str, path: str, **params: Any) -> Any:
    with server.client(key) as http:
        answer = http.get(path, params=params)
        answer.raise_for_status()
        return answer.json()["data"]


def balance(server: Server, key: str) -> Decimal:
    return Decimal(str(native(server, key, "/api/v1/apikeys/current-balance")))


def test_generate_answers_base64_images_at_the_mapped_size(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a red fox", model="gpt-image-1", size="1536x1024")
    assert result.size == "1264x848" and result.output_format == "png"
    [item] = result.data or []
    assert item.url is None and item.b64_json
    image = decoded(base64.b64decode(item.b64_json))
    assert (image.format, image.size) == ("PNG", (1264, 848))


def test_generate_answers_urls_that_serve_the_images(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="two foxes", n=2, response_format="url",
                                    size="1792x1024", output_format="jpeg")
    urls = [item.url for item in result.data or []]
    assert len(urls) == 2 and len(set(urls)) == 2
    for url in urls:
        assert url is not None
        image = decoded(httpx.get(url).raise_for_status().content)
        assert (image.format, image.size) == ("JPEG", (1376, 768))


def test_each_call_is_a_listed_task_billed_at_its_price(server: Server,
                                                        client: openai.OpenAI) -> None:
    key = server.new_key("1")
    sdk = client.with_options(api_key=key)
    raw = sdk.images.with_raw_response.generate(prompt="a billed fox", model="dall-e-2")
    task_id = raw.headers[TASK_ID]
    [item] = raw.parse().data or []
    assert item.url and task_id in item.url  # DALL-E names answer in URLs, as OpenAI does
    [task] = native(server, key, "/api/v1/tasks")["tasks"]
    assert task["taskId"] == task_id and task["state"] == "success"
    assert balance(server, key) == Decimal(1) - PRICE_1K


def test_edit_takes_two_uploaded_files(client: openai.OpenAI, tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    first.write_bytes(png(96, 64, "red"))
    second.write_bytes(png(64, 64, "blue"))
    with first.open("rb") as f1, second.open("rb") as f2:
        result = client.images.edit(image=[f1, f2], prompt="put them side by side",
                                    size="1024x1024")
    [item] = result.data or []
    assert item.b64_json and decoded(base64.b64decode(item.b64_json)).size == (1024, 1024)


def test_edit_takes_image_urls_as_json(server: Server, client: openai.OpenAI) -> None:
    made = client.images.generate(prompt="a fox", response_format="url")
    url = (made.data or [])[0].url
    data_uri = "data:image/png;base64," + base64.b64encode(png(80, 60, "green")).decode()
    # images.edit sends files only; the JSON form goes through the SDK's own post.
    result = client.post("/images/edits", cast_to=ImagesResponse, body={
        "prompt": "blend them", "model": "nano-banana-2",
        "images": [{"image_url": url}, {"image_url": data_uri}]})
    # size auto: the ratio of the first reference (a 1:1 image)
    assert result.size == "1024x1024" and len(result.data or []) == 1


def test_an_invalid_size_is_a_bad_request_naming_size(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(prompt="a fox", size="1024 by 1024")
    assert exc.value.param == "size" and exc.value.code == "invalid_value"
    assert exc.value.type == "invalid_request_error"


def test_a_mask_is_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.edit(image=("a.png", png(32, 32, "red"), "image/png"),
                           mask=("m.png", png(32, 32, "white"), "image/png"), prompt="x")
    assert exc.value.param == "mask"


def test_a_bad_key_is_an_authentication_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        client.with_options(api_key="ig_not_a_key").images.generate(prompt="a fox")
    assert exc.value.code == "invalid_api_key"


def test_a_model_the_key_may_not_use_is_refused(server: Server, client: openai.OpenAI) -> None:
    sdk = client.with_options(api_key=server.new_key("1", models="nano-banana-pro"))
    with pytest.raises(openai.PermissionDeniedError):
        sdk.images.generate(prompt="a fox", model="gpt-image-1")
    assert [m.id for m in sdk.models.list()] == [
        "nano-banana-pro", "gemini-3-pro-image", "gemini-3-pro-image-preview"]


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.images.generate(prompt="a fox", model="dall-e-9")
    assert exc.value.code == "model_not_found"


def test_a_spent_balance_is_insufficient_quota_and_not_retried(server: Server,
                                                               client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        client.with_options(api_key=server.new_key("0")).images.generate(prompt="a fox")
    assert exc.value.code == "insufficient_quota"
    assert exc.value.response.headers["x-should-retry"] == "false"


def test_a_safety_failure_is_moderation_blocked(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(prompt="a fox [sandbox:fail=SensitiveContent]")
    assert exc.value.code == "moderation_blocked"
    assert exc.value.type == "image_generation_user_error"
    assert exc.value.response.headers[TASK_ID] in exc.value.message


def test_a_wait_that_runs_out_names_the_task_and_is_not_submitted_again(
        server: Server, client: openai.OpenAI) -> None:
    key = server.new_key("1")
    with pytest.raises(openai.InternalServerError) as exc:
        client.with_options(api_key=key).images.generate(prompt="slow [sandbox:delay=4]")
    task_id = exc.value.response.headers[TASK_ID]
    assert exc.value.status_code == 504 and task_id in exc.value.message
    # the SDK's automatic retries would each store a task: there is one, and it goes on
    [task] = native(server, key, "/api/v1/tasks")["tasks"]
    assert task["taskId"] == task_id


def test_an_idempotency_key_answers_the_same_task(server: Server, client: openai.OpenAI) -> None:
    key = server.new_key("1")
    sdk = client.with_options(api_key=key)
    ids = {sdk.images.with_raw_response.generate(
        prompt="one fox", extra_headers={"Idempotency-Key": "fox-1"}).headers[TASK_ID]
        for _ in range(2)}
    assert len(ids) == 1
    assert balance(server, key) == Decimal(1) - PRICE_1K


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "nano-banana-2"
    assert {"nano-banana-pro", "gpt-image-1", "dall-e-2", "gemini-3-pro-image"} <= set(ids)
    model = client.models.retrieve("dall-e-3")
    assert (model.id, model.owned_by) == ("dall-e-3", "imagegate:nano-banana-2")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("dall-e-9")


def test_the_async_client_generates_too(server: Server, key: str) -> None:
    async def generate() -> ImagesResponse:
        async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key=key) as sdk:
            return await sdk.images.generate(prompt="an async fox", size="1024x1536",
                                             quality="high")

    result = asyncio.run(generate())
    assert result.size == "848x1264"


def test_plain_http_forms_as_curl_sends_them(server: Server, key: str) -> None:
    with server.client(key) as http:
        answer = http.post("/v1/images/edits", data={"prompt": "night", "n": "2",
                                                     "response_format": "url"},
                           files=[("image", ("a.png", png(48, 64, "red"), "image/png"))])
        assert answer.status_code == 200, answer.text
        assert [set(item) for item in answer.json()["data"]] == [{"url"}, {"url"}]
        assert answer.json()["size"] == "896x1200"  # auto: the image's 3:4
        not_a_form = http.post("/v1/images/edits", content=b"--x\r\n",
                               headers={"content-type": "multipart/form-data; boundary=x"})
        wrong_type = http.post("/v1/images/edits", content=b"x",
                               headers={"content-type": "text/plain"})
    assert not_a_form.status_code == 400
    assert not_a_form.json()["error"]["type"] == "invalid_request_error"
    assert wrong_type.status_code == 415
    assert "multipart/form-data" in wrong_type.json()["error"]["message"]
