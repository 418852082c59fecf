"""A TOML catalogue: models with their own limits and prices; keys limited to some models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serverproc import Server, t2i, wait_done

CONFIG = """
[limits]
max_body_bytes = 100000

[routes.slow-sandbox]
type = "sandbox"
delay_seconds = 0.1

[models."house-model"]
routes = ["slow-sandbox"]
prices = { "1k" = "0.01", "2k" = "0.02" }
resolutions = ["1k", "2k"]
ratios = ["1:1", "16:9"]
max_prompt_chars = 100
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("data")
    (data / "imagegate.toml").write_text(CONFIG)
    srv = Server(data, config=data / "imagegate.toml").start()
    yield srv
    srv.stop()


def test_second_model_uses_its_own_prices(server: Server) -> None:
    key = server.new_key("1")
    with server.client(key) as c:
        r = c.post("/api/v1/generateTask/house-model", json=t2i(resolution="2k"))
        data = wait_done(c, r.json()["data"]["taskId"], model="house-model")
        balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    assert data["state"] == "success"
    assert balance == pytest.approx(0.98)


@pytest.mark.parametrize("fields,field", [({"resolution": "4k"}, "input.resolution"),
                                          ({"aspect_ratio": "9:16"}, "input.aspect_ratio"),
                                          ({"prompt": "x" * 101}, "input.prompt")])
def test_model_limits_are_validated(server: Server, key: str, fields: dict[str, str],
                                    field: str) -> None:
    with server.client(key) as c:
        r = c.post("/api/v1/generateTask/house-model", json=t2i(**fields))
    assert r.status_code == 400 and r.json()["data"]["field"] == field


def test_key_limited_to_one_model_gets_403_on_another(server: Server) -> None:
    key = server.new_key("1", models="house-model")
    with server.client(key) as c:
        assert c.post("/api/v1/generateTask/house-model", json=t2i()).status_code == 200
        r = c.post("/api/v1/generateTask/nano-banana-2", json=t2i())
    assert r.status_code == 403 and r.json()["code"] == 403


def test_body_over_the_configured_limit_is_413(server: Server, key: str) -> None:
    with server.client(key) as c:
        r = c.post("/api/v1/generateTask/nano-banana-2",
                   json=t2i(image_urls=None, padding="x" * 150_000))
    assert r.status_code == 413 and r.json()["code"] == 413


def test_task_of_one_model_is_404_on_the_other_path(server: Server, key: str) -> None:
    with server.client(key) as c:
        task_id = c.post("/api/v1/generateTask/house-model", json=t2i()).json()["data"]["taskId"]
        r = c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": task_id})
    assert r.status_code == 404
