"""Failures a client injects through the sandbox are its own test: a real server, one key
bursting injected failures of every code while another key's plain tasks run."""

from __future__ import annotations

import json
from pathlib import Path

from serverproc import Server, cli, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"
RETRIED = ("RateLimited", "Timeout", "Unknown error")
FINAL = ("PromptInvalid", "SensitiveContent", "ImageFormatIncorrect", "MissingParameter")


def test_injected_failures_touch_no_other_task(tmp_path: Path) -> None:
    env = {"IMAGEGATE_WORKER_RETRY_BACKOFF_SECONDS": "0.05", "IMAGEGATE_WORKER_CONCURRENCY": "8",
           "IMAGEGATE_ROUTER_FAILURE_THRESHOLD": "2", "IMAGEGATE_ROUTER_COOLDOWN_SECONDS": "60"}
    srv = Server(tmp_path / "d", env=env).start()
    try:
        tester, other = srv.new_key("5"), srv.new_key("5")
        with srv.client(tester) as t, srv.client(other) as o:
            injected = {}
            plain = []
            for round_ in range(3):
                for code in (*RETRIED, *FINAL):
                    r = t.post(SUBMIT, json=t2i(f"[sandbox:fail={code}] {round_}"))
                    injected[r.json()["data"]["taskId"]] = code
                plain += [o.post(SUBMIT, json=t2i(f"plain {round_}-{i}")).json()["data"]["taskId"]
                          for i in range(3)]
            recovering = t.post(SUBMIT, json=t2i("[sandbox:fail=RateLimited:2] recovers"))
            recovering_id = recovering.json()["data"]["taskId"]
            done = {task_id: wait_done(t, task_id) for task_id in injected}
            recovered = wait_done(t, recovering_id)
            plain_done = [wait_done(o, task_id) for task_id in plain]
    finally:
        srv.stop()
    for task_id, code in injected.items():
        assert done[task_id]["state"] == "failed", done[task_id]
        assert done[task_id]["failCode"] == code, (code, done[task_id])
    assert recovered["state"] == "success", recovered
    assert [d["state"] for d in plain_done] == ["success"] * len(plain)

    def attempts(task_id: str) -> list[tuple[int, str]]:
        view = json.loads(cli(tmp_path / "d", "tasks", "show", task_id, "--json").stdout)
        return [(a["attempt"], a["outcome"]) for a in view["routeAttempts"]]

    for task_id in plain:
        assert attempts(task_id) == [(1, "success")]  # first attempt, never delayed or rested
    for task_id, code in injected.items():
        expected = 3 if code in RETRIED else 1  # worker_max_attempts, as documented
        assert attempts(task_id) == [(n, code) for n in range(1, expected + 1)]
    assert attempts(recovering_id) == [(1, "RateLimited"), (2, "RateLimited"), (3, "success")]
