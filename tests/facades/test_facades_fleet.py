"""Both facades in a fleet: the real openai and google-genai SDKs call an ``imagegate api``
process on PostgreSQL, whose tasks a separate ``imagegate worker`` makes. Each call waits on
the API for a task another process ends (LISTEN/NOTIFY), reads its picture from the shared
result storage, and is billed once."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai
from google.genai import types
from openai import OpenAI
from PIL import Image
from postgres_db import fresh_database
from serverproc import Loops, Server, cli

pytestmark = pytest.mark.slow

PRICE_1K, PRICE_2K = 0.05, 0.08


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    with fresh_database() as url:
        env = {"IMAGEGATE_DATABASE_URL": url, "IMAGEGATE_LOCK_DATA_DIR": "false",
               "IMAGEGATE_SANDBOX_DELAY_SECONDS": "0.05"}
        data = tmp_path / "d"
        cli(data, "migrate", env=env)
        key = cli(data, "keys", "create", "--credit", "1", env=env).stdout.split()[-1]
        api = Server(data, env=env, command="api").start()
        worker = Loops(data, "worker", env=env)
        worker.start()
        try:
            yield api, key
        finally:
            worker.stop()
            api.stop()


def test_each_facade_call_waits_on_the_api_for_a_task_a_worker_process_makes(
        fleet: tuple[Server, str]) -> None:
    api, key = fleet
    with OpenAI(base_url=api.base_url + "/v1", api_key=key, max_retries=0) as openai:
        made = openai.images.generate(model="gpt-image-1", prompt="a fox", size="1536x1024")
    assert made.data is not None and made.data[0].b64_json is not None
    assert Image.open(io.BytesIO(base64.b64decode(made.data[0].b64_json))).size == (1264, 848)
    with genai.Client(api_key=key, http_options=types.HttpOptions(
            base_url=api.base_url, api_version="v1beta", timeout=60_000)) as gemini:
        answer = gemini.models.generate_content(
            model="gemini-3.1-flash-image", contents="a hare",
            config=types.GenerateContentConfig(
                response_modalities=["IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="9:16", image_size="2K")))
    [part] = answer.parts or []
    assert part.inline_data is not None and part.inline_data.data is not None
    assert Image.open(io.BytesIO(part.inline_data.data)).size == (1536, 2752)
    with api.client(key) as http:
        tasks = http.get("/api/v1/tasks").json()["data"]["tasks"]
        balance = http.get("/api/v1/apikeys/current-balance").json()["data"]
    assert sorted(t["state"] for t in tasks) == ["success", "success"]
    assert answer.response_id in {t["taskId"] for t in tasks}
    assert balance == pytest.approx(1 - PRICE_1K - PRICE_2K)
