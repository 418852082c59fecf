"""The Gemini facade as google-genai uses it: the real SDK (the version pinned in
pyproject.toml) against a real ``imagegate serve`` on loopback, sandbox route, no delay."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image
from serverproc import Server

pytestmark = pytest.mark.slow

IMAGE_ONLY = types.GenerateContentConfig(response_modalities=["IMAGE"])


def gemini(server: Server, key: str) -> genai.Client:
    return genai.Client(vertexai=False, api_key=key, http_options=types.HttpOptions(
        base_url=server.base_url, api_version="v1beta", timeout=60_000))


@pytest.fixture(scope="module")
def client(server: Server, key: str) -> Iterator[genai.Client]:
    with gemini(server, key) as sdk:
        yield sdk


def picture(response: types.GenerateContentResponse) -> Image.Image:
    [part] = response.parts or []
    assert part.inline_data is not None and part.inline_data.data is not None
    return Image.open(io.BytesIO(part.inline_data.data))


def listed(server: Server, key: str, task_id: str) -> dict[str, Any]:
    with server.client(key) as http:
        tasks = http.get("/api/v1/tasks", params={"limit": 100}).json()["data"]["tasks"]
    [task] = [t for t in tasks if t["taskId"] == task_id]
    return dict(task)


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def test_text_to_image_takes_aspect_ratio_and_size_and_is_a_billed_task(
        server: Server, client: genai.Client) -> None:
    key = server.new_key("1")
    with gemini(server, key) as sdk:
        response = sdk.models.generate_content(
            model="gemini-3.1-flash-image", contents="a red fox in the snow",
            config=types.GenerateContentConfig(
                response_modalities=["TEXT", "IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K")))
    [candidate] = response.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP
    assert response.model_version == "gemini-3.1-flash-image"
    with picture(response) as image:
        assert (image.format, image.size) == ("PNG", (2752, 1536))
    task = listed(server, key, str(response.response_id))
    assert (task["model"], task["state"], task["cost"]) == ("nano-banana-2", "success", 0.08)
    with server.client(key) as http:
        balance = http.get("/api/v1/apikeys/current-balance").json()["data"]
    assert balance == pytest.approx(0.92)


def test_an_edit_sends_two_reference_images_as_inline_bytes(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="gemini-3-pro-image",
        contents=["put the two squares side by side",
                  types.Part.from_bytes(data=png((300, 200), (200, 30, 30)),
                                        mime_type="image/png"),
                  types.Part.from_bytes(data=png((64, 64), (30, 30, 200)),
                                        mime_type="image/png")],
        config=IMAGE_ONLY)
    with picture(response) as image:
        # no aspectRatio: the ratio nearest the first reference's 3:2, so both were decoded
        assert image.size == (1264, 848)


def test_a_chats_earlier_image_is_a_reference_of_the_next_turn(client: genai.Client) -> None:
    chat = client.chats.create(model="gemini-3.1-flash-image")
    chat.send_message("a cat on a sofa", config=types.GenerateContentConfig(
        image_config=types.ImageConfig(aspect_ratio="16:9")))
    edited = chat.send_message("now make the cat blue")
    with picture(edited) as image:
        # no aspectRatio this turn: the ratio of the first turn's image, its reference
        assert image.size == (1376, 768)


def test_google_search_grounding_and_a_seed_are_taken(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="gemini-nano-banana-2.1", contents="today's weather in Paris as a poster",
        config=types.GenerateContentConfig(
            response_modalities=["IMAGE"], seed=-5,
            tools=[types.Tool(google_search=types.GoogleSearch())]))
    with picture(response) as image:
        assert image.size == (1024, 1024)


@pytest.mark.parametrize(("model", "ratio", "size", "catalogue"), [
    ("gemini-3.1-flash-image-preview", "21:9", (1584, 672), "nano-banana-2"),
    ("models/gemini-2.5-flash-image", "16:9", (1344, 768), "nano-banana"),
])
def test_retired_model_ids_name_the_model_that_serves_them(
        server: Server, key: str, client: genai.Client, model: str, ratio: str,
        size: tuple[int, int], catalogue: str) -> None:
    response = client.models.generate_content(
        model=model, contents="a lighthouse",
        config=types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio=ratio)))
    with picture(response) as image:
        assert image.size == size
    assert listed(server, key, str(response.response_id))["model"] == catalogue


def test_a_safety_block_is_an_image_safety_candidate_and_costs_nothing(
        server: Server, key: str, client: genai.Client) -> None:
    response = client.models.generate_content(
        model="gemini-3.1-flash-image", contents="[sandbox:fail=SensitiveContent] a fox",
        config=IMAGE_ONLY)
    [candidate] = response.candidates or []
    assert candidate.finish_reason == types.FinishReason.IMAGE_SAFETY
    assert candidate.content is None and response.parts is None
    task = listed(server, key, str(response.response_id))
    assert task["failCode"] == "SensitiveContent" and "cost" not in task


def test_a_bad_key_is_refused_as_google_refuses_one(server: Server) -> None:
    with gemini(server, "ig_not_a_key") as sdk, pytest.raises(errors.ClientError) as caught:
        sdk.models.generate_content(model="gemini-3.1-flash-image", contents="a fox")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_an_unknown_model_is_not_found(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-9-ultra-image", contents="a fox")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    assert "models/gemini-9-ultra-image" in str(caught.value.message)


def test_a_request_for_text_alone_is_an_invalid_argument(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(
            model="gemini-3.1-flash-image", contents="describe a fox",
            config=types.GenerateContentConfig(response_modalities=["TEXT"]))
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert "makes images" in str(caught.value.message)


def test_a_stream_answers_the_image_in_one_chunk(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(
        model="gemini-3-pro-image", contents="a cat",
        config=types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio="4:3"))))
    [chunk] = chunks
    with picture(chunk) as image:
        assert image.size == (1200, 896)


def test_a_client_set_to_api_version_v1_is_served_too(server: Server, key: str) -> None:
    with genai.Client(vertexai=False, api_key=key, http_options=types.HttpOptions(
            base_url=server.base_url, api_version="v1")) as sdk:
        response = sdk.models.generate_content(model="gemini-3.1-flash-lite-image",
                                               contents="a boat")
    with picture(response) as image:
        assert image.size == (1024, 1024)


def test_models_list_and_get_show_catalogue_ids_and_aliases(client: genai.Client) -> None:
    names = {m.name for m in client.models.list(config={"page_size": 5})}
    assert {"models/nano-banana-2", "models/gemini-3-pro-image",
            "models/gemini-2.5-flash-image"} <= names
    model = client.models.get(model="gemini-3-pro-image")
    assert model.display_name == "Nano Banana Pro"
    assert model.supported_actions == ["generateContent", "streamGenerateContent"]


def test_curl_callers_may_send_the_key_in_the_query_or_as_a_bearer(
        server: Server, key: str) -> None:
    body = {"contents": [{"parts": [{"text": "a fox"}]}]}
    path = "/v1beta/models/nano-banana-2:generateContent"
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        by_query = http.post(path, params={"key": key}, json=body)
        by_bearer = http.post("/v1/models/nano-banana-2:streamGenerateContent", json=body,
                              headers={"Authorization": f"Bearer {key}"})
        no_key = http.post(path, json=body)
    assert by_query.status_code == 200
    assert by_query.json()["responseId"] == by_query.headers["x-imagegate-task-id"]
    [answer] = by_bearer.json()  # without alt=sse, a JSON array of the chunks
    assert answer["candidates"][0]["finishReason"] == "STOP"
    assert no_key.status_code == 403
    assert no_key.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose sandbox takes longer to draw than a facade call waits."""
    srv = Server(tmp_path_factory.mktemp("slow"), env={
        "IMAGEGATE_SANDBOX_DELAY_SECONDS": "2", "IMAGEGATE_FACADES_WAIT_SECONDS": "0.5"}).start()
    yield srv
    srv.stop()


def test_a_wait_that_runs_out_names_the_task_that_goes_on(slow_server: Server) -> None:
    key = slow_server.new_key("1")
    with gemini(slow_server, key) as sdk, pytest.raises(errors.ServerError) as caught:
        sdk.models.generate_content(model="gemini-3.1-flash-image", contents="a slow fox")
    assert (caught.value.code, caught.value.status) == (504, "DEADLINE_EXCEEDED")
    task_id = caught.value.response.headers["x-imagegate-task-id"]
    assert f"task {task_id} is still running" in str(caught.value.message)
    assert listed(slow_server, key, task_id)["state"] == "processing"


def test_a_key_limited_to_one_model_sees_and_uses_only_it_and_its_aliases(
        server: Server) -> None:
    with gemini(server, server.new_key("1", models="nano-banana-pro")) as sdk:
        names = {m.name for m in sdk.models.list()}
        with pytest.raises(errors.ClientError) as caught:
            sdk.models.generate_content(model="gemini-3.1-flash-image", contents="a fox")
    assert names == {"models/nano-banana-pro", "models/gemini-3-pro-image",
                     "models/gemini-3-pro-image-preview"}
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
