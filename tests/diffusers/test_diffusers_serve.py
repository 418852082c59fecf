"""A TOML-configured diffusers route serving a catalogue model through real processes: an
``imagegate api`` that never loads torch, and an ``imagegate worker`` that loads the tiny
pipeline at start, batches the tasks and stores images at the exact table size, with each
image's seed noted on its task."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serverproc import Loops, Server, cli, wait_done

MODEL = "tiny-sd"
SUBMIT = f"/api/v1/generateTask/{MODEL}"

CONFIG = """
[models.tiny-sd]
routes = ["tiny"]
resolutions = ["1k"]
prices = {{ "1k" = "0.01" }}

[routes.tiny]
type = "diffusers"
model = "{pipeline}"
device = "cpu"
dtype = "float32"
steps = 2
render_scale = 0.0625
size_multiple = 8
max_batch_size = 4
max_wait_ms = 300
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           tiny_pipeline_dir: Path) -> Iterator[tuple[Server, Path, Loops]]:
    work = tmp_path_factory.mktemp("serve")
    config = work / "imagegate.toml"
    config.write_text(CONFIG.format(pipeline=tiny_pipeline_dir))
    shared = {"IMAGEGATE_LOCK_DATA_DIR": "false"}
    api = Server(work / "data", config=config, env=shared, command="api").start()
    worker = Loops(work / "data", "worker", "--routes", "tiny", "--concurrency", "4",
                   env=shared, config=config).start(timeout=90)
    yield api, config, worker
    assert worker.stop() == 0  # it stops cleanly, its route closed
    api.stop()


def loaded_libraries(leader: int) -> str:
    """The shared objects mapped by every process of the process group ``leader`` leads."""
    maps = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == leader:
                maps.append((stat.parent / "maps").read_text())
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    assert maps
    return "".join(maps)


def body(mode: str = "text-to-image", seed: int = 1, **extra: object) -> dict[str, object]:
    return {"input": {"mode": mode, "prompt": "a red fox on the hill", "aspect_ratio": "1:1",
                      "resolution": "1k", "seed": seed, **extra}}


def image_of(data: dict[str, object]) -> np.ndarray:
    url = json.loads(str(data["resultJson"]))["resultUrls"][0]
    image = Image.open(io.BytesIO(httpx.get(url).content)).convert("RGB")
    assert image.size == (1024, 1024)
    return np.asarray(image, dtype=np.int16)


def test_tasks_run_on_the_diffusers_route_with_their_seeds_noted(
        served: tuple[Server, Path, Loops]) -> None:
    server, config, _ = served
    key = server.new_key("1")
    with server.client(key) as c:
        ids = [c.post(SUBMIT, json=body(seed=s)).json()["data"]["taskId"] for s in (4, 5, 4)]
        done = [wait_done(c, task_id, MODEL, timeout=90) for task_id in ids]
    assert [d["state"] for d in done] == ["success"] * 3, done
    same, other, again = (image_of(d) for d in done)
    assert np.abs(same - again).max() <= 1 and np.abs(same - other).max() > 10
    shown = json.loads(cli(server.data_dir, "tasks", "show", ids[1], "--json", "--config",
                           str(config)).stdout)
    assert "image 0: seed 5" in shown["notes"]
    assert [a["route"] for a in shown["routeAttempts"]] == ["tiny"]


def test_image_to_image_is_refused_at_submit_when_no_route_declares_it(
        served: tuple[Server, Path, Loops]) -> None:
    server, _, _ = served
    key = server.new_key("1")
    with server.client(key) as c:
        r = c.post(SUBMIT, json=body("image-to-image",
                                     image_urls=["http://127.0.0.1:9/a.png"]))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 400 and "no configured route" in r.text


def test_the_api_process_never_loads_torch(served: tuple[Server, Path, Loops]) -> None:
    server, _, worker = served
    assert server.proc is not None and worker.proc is not None
    assert "libtorch" not in loaded_libraries(server.proc.pid)
    assert "libtorch" in loaded_libraries(worker.proc.pid)  # the worker runs the model
