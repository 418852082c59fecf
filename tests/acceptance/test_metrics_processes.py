"""Metrics and JSON logs from real processes: a worker serves its own route metrics on
``--metrics-port``, and two API processes on one PostgreSQL database report the same
fleet-wide values while each counts only its own submits."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
from postgres_db import fresh_database
from prometheus_client.parser import text_string_to_metric_families
from serverproc import Loops, Server, cli, free_port, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"
SHARED = {"IMAGEGATE_LOCK_DATA_DIR": "false"}
JSON_LOGS = {"IMAGEGATE_LOG_FORMAT": "json", "IMAGEGATE_LOG_LEVEL": "info"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON lines (the lines a process prints for people are not logs)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_a_worker_serves_its_route_metrics_on_its_metrics_port(tmp_path: Path) -> None:
    data, port = tmp_path / "d", free_port()
    api = Server(data, env=SHARED, command="api").start()
    worker = Loops(data, "worker", "--metrics-port", str(port),
                   env={**SHARED, **JSON_LOGS}).start()
    try:
        key = api.new_key("1")
        with api.client(key) as c:
            task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            assert wait_done(c, task_id)["state"] == "success"
        metrics = scrape(f"http://127.0.0.1:{port}/metrics")
        elsewhere = httpx.get(f"http://127.0.0.1:{port}/api/v1/generateTask/nano-banana-2")
    finally:
        assert worker.stop() == 0
        api.stop()
    assert value(metrics, "imagegate_route_calls_total", route="sandbox", outcome="success") == 1
    assert value(metrics, "imagegate_route_call_seconds_count", route="sandbox") == 1
    assert value(metrics, "imagegate_route_circuit_state", route="sandbox", state="closed") == 1
    assert value(metrics, "imagegate_queue_depth", model="nano-banana-2") == 0  # the database's
    assert elsewhere.status_code == 404
    about = [(line["logger"], line["message"]) for line in json_lines(worker.log_path)
             if line.get("task_id") == task_id]
    assert ("imagegate.tasks", f"task {task_id} succeeded") in about, about


def test_two_api_processes_on_one_database_report_the_same_queue(tmp_path: Path) -> None:
    with fresh_database() as url:
        env = {**SHARED, **JSON_LOGS, "IMAGEGATE_DATABASE_URL": url}
        apis = [Server(tmp_path / f"d{i}", env=env, command="api").start() for i in range(2)]
        try:
            made = json.loads(cli(tmp_path / "d0", "keys", "create", "--credit", "1", "--json",
                                  env=env).stdout)
            for i in range(3):
                with apis[i % 2].client(made["key"]) as c:
                    assert c.post(SUBMIT, json=t2i(f"waits {i}")).status_code == 200
            pages = [scrape(api.base_url + "/metrics") for api in apis]
        finally:
            for api in apis:
                api.stop()
    assert [value(p, "imagegate_queue_depth", model="nano-banana-2") for p in pages] == [3, 3]
    assert [value(p, "imagegate_tasks_unfinished", state="queued") for p in pages] == [3, 3]
    assert [value(p, "imagegate_money_held_usd") for p in pages] == [0.15, 0.15]
    assert [value(p, "imagegate_submits_total", outcome="accepted") for p in pages] == [2, 1]
    granian = [line for line in json_lines(apis[0].log_path) if line["logger"] == "_granian"]
    assert granian, apis[0].log_path.read_text()  # the ASGI server's own lines, as JSON too


def test_a_metrics_port_that_cannot_be_served_stops_the_worker_with_its_name(
        tmp_path: Path) -> None:
    bad = cli(tmp_path / "d", "worker", "--metrics-port", "70000", check=False)
    assert bad.returncode == 2 and "'70000' is not a port number" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = cli(tmp_path / "d", "worker", "--metrics-port", str(port), check=False)
    assert busy.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1 port {port} (metrics_port)" in busy.stderr
