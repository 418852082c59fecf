"""Upstream models are checked, not assumed: a real server process against a fake Gemini API
that has shut some models down, at start, at run time and with ``imagegate routes check``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from fakes.gemini_server import gemini_server
from serverproc import Server, cli, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"
RETIRED = "gemini-3.1-flash-image-preview"
SERVED = "gemini-nano-banana-2.1"

CATALOGUE = """
[routes.primary]
type = "gemini"
model = "{model}"
api_key = "{key}"
base_url = "{url}"

[routes.backup]
type = "sandbox"

[models."nano-banana-2"]
routes = ["primary", "backup"]
"""


def catalogue(tmp_path: Path, url: str, key: str, model: str = RETIRED) -> Path:
    path = tmp_path / "imagegate.toml"
    path.write_text(CATALOGUE.format(model=model, key=key, url=url))
    return path


def unavailable_lines(srv: Server) -> list[str]:
    return [line for line in srv.log_path.read_text().splitlines() if "unavailable:" in line]


def test_a_shut_down_model_is_reported_at_start_skipped_and_failed_over(tmp_path: Path) -> None:
    with gemini_server(retired=[RETIRED]) as gemini:
        config = catalogue(tmp_path, gemini.base_url, gemini.api_key)
        srv = Server(tmp_path / "d", config=config).start()
        try:
            ready = httpx.get(srv.base_url + "/readyz").json()
            key = srv.new_key("1")
            with srv.client(key) as c:
                task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
                data = wait_done(c, task_id)
            lines = unavailable_lines(srv)
        finally:
            srv.stop()
        assert gemini.lookups == [RETIRED] and gemini.requests == []
    assert len(lines) == 1
    assert "route primary is unavailable" in lines[0]
    assert f"does not serve model {RETIRED}" in lines[0]
    assert "set routes.primary.model to a model" in lines[0]
    assert ready["data"]["status"] == "ready"
    primary = ready["data"]["routes"]["primary"]
    assert primary["circuit"] == "unavailable" and RETIRED in primary["reason"]
    assert ready["data"]["routes"]["backup"]["circuit"] == "closed"
    assert data["state"] == "success"
    view = json.loads(cli(tmp_path / "d", "tasks", "show", task_id, "--json", "--config",
                          str(config)).stdout)
    assert [a["route"] for a in view["routeAttempts"]] == ["backup"]


def test_a_model_shut_down_while_running_is_marked_after_one_not_found(tmp_path: Path) -> None:
    env = {"IMAGEGATE_WORKER_RETRY_BACKOFF_SECONDS": "0.1"}
    with gemini_server() as gemini:
        srv = Server(tmp_path / "d", env={**env, "IMAGEGATE_GEMINI_API_KEY": gemini.api_key,
                                          "IMAGEGATE_GEMINI_BASE_URL": gemini.base_url}).start()
        try:
            key = srv.new_key("1")
            with srv.client(key) as c:
                before = wait_done(c, c.post(SUBMIT, json=t2i()).json()["data"]["taskId"])
                gemini.retire(SERVED)
                failed_id = c.post(SUBMIT, json=t2i("after")).json()["data"]["taskId"]
                failed = wait_done(c, failed_id)
                calls_after_first = len(gemini.requests)
                again = wait_done(c, c.post(SUBMIT, json=t2i("again")).json()["data"]["taskId"])
                balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
            routes = httpx.get(srv.base_url + "/readyz").json()["data"]["routes"]
            lines = unavailable_lines(srv)
        finally:
            srv.stop()
    assert before["state"] == "success"
    assert failed["state"] == "failed" and failed["failCode"] == "Unknown error"
    assert "cannot be served" in failed["failMsg"]
    assert f"no longer serves model {SERVED}" in failed["failMsg"]
    assert calls_after_first == 2  # one NOT_FOUND, no retry
    assert again["state"] == "failed" and len(gemini.requests) == 2  # Google not asked again
    assert balance == 0.95  # the two failed tasks were refunded
    assert routes["gemini"]["circuit"] == "unavailable"
    assert len([line for line in lines if "route gemini is unavailable" in line]) == 1
    assert "set models.nano-banana-2.google_model to a model" in lines[0]
    view = json.loads(cli(tmp_path / "d", "tasks", "show", failed_id, "--json").stdout)
    assert [(a["route"], a["upstreamModel"]) for a in view["routeAttempts"]] == [
        ("gemini", SERVED)]


def test_a_model_back_in_service_is_found_by_the_recheck(tmp_path: Path) -> None:
    with gemini_server(retired=[RETIRED]) as gemini:
        config = catalogue(tmp_path, gemini.base_url, gemini.api_key)
        srv = Server(tmp_path / "d", config=config,
                     env={"IMAGEGATE_ROUTER_RECHECK_SECONDS": "0.3"}).start()
        try:
            gemini.retired.clear()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                routes = httpx.get(srv.base_url + "/readyz").json()["data"]["routes"]
                if routes["primary"]["circuit"] == "closed":
                    break
                time.sleep(0.1)
            key = srv.new_key("1")
            with srv.client(key) as c:
                task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
                wait_done(c, task_id)
            back = [line for line in srv.log_path.read_text().splitlines()
                    if "available again" in line]
        finally:
            srv.stop()
    assert routes["primary"]["circuit"] == "closed"
    assert len(back) == 1 and len(gemini.requests) == 1


def test_routes_check_names_each_route_and_exits_1_when_one_is_gone(tmp_path: Path) -> None:
    with gemini_server(retired=[RETIRED]) as gemini:
        config = catalogue(tmp_path, gemini.base_url, gemini.api_key)
        gone = cli(tmp_path / "d", "routes", "check", "--config", str(config), check=False)
        config = catalogue(tmp_path, gemini.base_url, gemini.api_key, model=SERVED)
        fine = cli(tmp_path / "d", "routes", "check", "--config", str(config), "--json",
                   check=False)
    assert gone.returncode == 1
    rows = {line.split()[0]: line for line in gone.stdout.splitlines()}
    assert set(rows) == {"primary", "backup", "sandbox"}  # the other models are on the sandbox
    assert "UNAVAILABLE" in rows["primary"] and "set routes.primary.model" in rows["primary"]
    assert "available" in rows["backup"]
    assert fine.returncode == 0, fine.stdout + fine.stderr
    states = {row["route"]: row["state"] for row in map(json.loads, fine.stdout.splitlines())}
    assert states == {"primary": "available", "backup": "available", "sandbox": "available"}


def test_checks_can_be_turned_off(tmp_path: Path) -> None:
    with gemini_server(retired=[RETIRED]) as gemini:
        config = catalogue(tmp_path, gemini.base_url, gemini.api_key)
        srv = Server(tmp_path / "d", config=config,
                     env={"IMAGEGATE_ROUTER_CHECK_MODELS": "false"}).start()
        try:
            routes = httpx.get(srv.base_url + "/readyz").json()["data"]["routes"]
        finally:
            srv.stop()
        assert gemini.lookups == []
    assert routes["primary"]["circuit"] == "closed"
