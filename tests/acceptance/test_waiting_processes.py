"""Waiting for a task across processes (contract §15): a client waits on `imagegate api`, the
task is finished by a separate `imagegate worker`, and the wait ends when it does: through
PostgreSQL's LISTEN/NOTIFY, and on a shared SQLite file through the API's re-read every 2 s.

Each client asks to wait 60 s and the test gives it at most ``WOKEN_S``: an answer that comes
in time was woken by the task's end, not by its own wait running out."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from postgres_db import fresh_database
from serverproc import Loops, Server, cli, t2i

SUBMIT = "/api/v1/generateTask/nano-banana-2"
STATUS = "/api/v1/statusTask/nano-banana-2"
WOKEN_S = 30.0  # half the wait asked for
SHARED = {"IMAGEGATE_LOCK_DATA_DIR": "false", "IMAGEGATE_WORKER_POLL_SECONDS": "0.2"}


@pytest.fixture(params=["postgres", "sqlite"])
def env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield SHARED
        return
    with fresh_database() as url:
        yield {**SHARED, "IMAGEGATE_DATABASE_URL": url}


def test_a_client_waiting_on_the_api_wakes_when_a_worker_process_ends_the_task(
        tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "d"
    cli(data, "migrate", env=env)
    key = cli(data, "keys", "create", "--credit", "10", env=env).stdout.split()[-1]
    api = Server(data, env=env, command="api").start()
    worker = Loops(data, "worker", env=env)
    try:
        with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {key}"},
                          timeout=90) as c, ThreadPoolExecutor(2) as pool:
            task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            polled = pool.submit(c.get, STATUS, params={"taskId": task_id, "wait": 60})
            submitted = pool.submit(c.post, SUBMIT, json=t2i("a hare"),
                                    headers={"Prefer": "wait=60"})
            assert not polled.done() and not submitted.done()  # no worker yet
            worker.start()
            status, submit = polled.result(WOKEN_S), submitted.result(WOKEN_S)
    finally:
        if worker.proc is not None:
            worker.stop()
        api.stop()
    assert status.json()["data"]["state"] == "success", status.text
    assert submit.headers["preference-applied"] == "wait=60"
    assert submit.json()["data"]["state"] == "success", submit.text


def waiting_clients(api: Server) -> float:
    page = httpx.get(api.base_url + "/metrics").text
    return sum(float(line.split()[-1]) for line in page.splitlines()
               if line.startswith("imagegate_waiting_clients"))


@pytest.mark.slow
def test_waiting_clients_are_answered_at_once_when_the_api_is_stopped(tmp_path: Path) -> None:
    data = tmp_path / "d"
    cli(data, "migrate", env=SHARED)
    key = cli(data, "keys", "create", "--credit", "10", env=SHARED).stdout.split()[-1]
    api = Server(data, env=SHARED, command="api").start()  # no worker: the tasks stay queued
    try:
        with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {key}"},
                          timeout=90) as c, ThreadPoolExecutor(2) as pool:
            task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            polled = pool.submit(c.get, STATUS, params={"taskId": task_id, "wait": 60})
            submitted = pool.submit(c.post, SUBMIT, json=t2i("a hare"),
                                    headers={"Prefer": "wait=60"})
            while waiting_clients(api) < 2:
                assert not polled.done() and not submitted.done()
            assert api.proc is not None
            api.proc.send_signal(signal.SIGTERM)  # to the server alone, as a container's stop
            status, submit = polled.result(WOKEN_S), submitted.result(WOKEN_S)
            assert api.proc.wait(WOKEN_S) == 0
    finally:
        api.stop()
    assert status.json()["data"]["state"] == "processing", status.text
    assert submit.headers["preference-applied"] == "wait=60"
    assert set(submit.json()["data"]) == {"taskId"}, submit.text
