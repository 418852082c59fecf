"""Separate processes on one data directory (SQLite): `imagegate api` takes tasks, `imagegate
worker` runs them, `imagegate sweeper` recovers and expires; each stops and starts on its own."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from serverproc import Loops, Server, cli, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"
SHARED = {"IMAGEGATE_LOCK_DATA_DIR": "false"}


def test_api_worker_and_sweeper_processes_run_tasks_together(tmp_path: Path) -> None:
    data = tmp_path / "d"
    api = Server(data, env=SHARED, command="api").start()
    worker = Loops(data, "worker", "--concurrency", "2", env=SHARED).start()
    sweeper = Loops(data, "sweeper", env=SHARED).start()
    try:
        assert "demo API key" not in api.first_output  # a fleet gets no demo key
        routes = httpx.get(api.base_url + "/readyz").json()["data"]["routes"]
        key = api.new_key("1")
        with api.client(key) as c:
            ids = [c.post(SUBMIT, json=t2i(f"fox {i}")).json()["data"]["taskId"]
                   for i in range(6)]
            done = [wait_done(c, t) for t in ids]
            balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    finally:
        assert worker.stop() == 0 and sweeper.stop() == 0
        api.stop()
    assert routes == {}  # the API process builds no route
    assert [d["state"] for d in done] == ["success"] * 6
    assert balance == pytest.approx(0.70)


def test_a_stopping_worker_hands_back_what_it_cannot_finish(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**SHARED, "IMAGEGATE_WORKER_SHUTDOWN_GRACE_SECONDS": "0.5"}
    api = Server(data, env=SHARED, command="api").start()
    worker = Loops(data, "worker", env=env).start()
    try:
        key = api.new_key("1")
        with api.client(key) as c:
            task_id = c.post(SUBMIT, json=t2i("[sandbox:delay=30] slow")).json()["data"]["taskId"]
            deadline = time.monotonic() + 10
            while c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": task_id}).json()[
                    "data"]["stage"] != "generating" and time.monotonic() < deadline:
                time.sleep(0.05)
            started = time.monotonic()
            assert worker.stop() == 0
            stopped_in = time.monotonic() - started
            view = json.loads(cli(data, "tasks", "show", task_id, "--json").stdout)
    finally:
        api.stop()
    assert stopped_in < 10  # the grace period, not the 30 s attempt
    assert view["state"] == "processing" and view["stage"] == "retrying"
    assert "released by a worker that stopped" in view["notes"][-1]


def test_the_sweeper_fails_a_task_no_worker_takes_in_time(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**SHARED, "IMAGEGATE_WORKER_TASK_DEADLINE_SECONDS": "1"}
    api = Server(data, env=env, command="api").start()
    sweeper = Loops(data, "sweeper", env=env).start()
    try:
        key = api.new_key("1")
        with api.client(key) as c:
            task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            data_ = wait_done(c, task_id, timeout=20)
            balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    finally:
        sweeper.stop()
        api.stop()
    assert data_["state"] == "failed" and data_["failCode"] == "Timeout"
    assert "no worker took the task" in data_["failMsg"]
    assert balance == 1.0


def test_a_worker_runs_only_the_routes_it_is_given(tmp_path: Path) -> None:
    config = tmp_path / "imagegate.toml"
    config.write_text('[routes.fast]\ntype = "sandbox"\n[models.house]\nroutes = ["fast"]\n')
    bad = cli(tmp_path / "d", "worker", "--routes", "nope", "--config", str(config),
              check=False)
    assert bad.returncode == 2 and "unknown route 'nope'" in bad.stderr
    none = cli(tmp_path / "d", "worker", "--routes", "fast", "--models", "nano-banana-2",
               "--config", str(config), check=False)
    assert none.returncode == 2 and "no model to claim" in none.stderr


def test_rate_limits_and_revocation_hold_across_api_processes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**SHARED, "IMAGEGATE_LIMITS_SUBMIT_BURST": "3"}
    apis = [Server(data, env=env, command="api").start() for _ in range(2)]
    try:
        made = json.loads(cli(data, "keys", "create", "--credit", "5", "--rate", "0.1",
                              "--json").stdout)
        answers = []
        for i in range(8):
            with apis[i % 2].client(made["key"]) as c:
                answers.append(c.post(SUBMIT, json=t2i(f"burst {i}")))
        cli(data, "keys", "revoke", made["keyId"])
        time.sleep(1.2)  # auth_cache_seconds
        refused = []
        for api in apis:
            with api.client(made["key"]) as c:
                refused.append(c.get("/api/v1/apikeys/current-balance"))
    finally:
        for api in apis:
            api.stop()
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 3, codes  # one bucket for both processes, not one each
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert [r.status_code for r in refused] == [401, 401]
