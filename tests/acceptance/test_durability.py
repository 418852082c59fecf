"""Nothing accepted is lost, proven with a real process: kill -9 mid-flight, restart on the
same data dir, and every accepted task still succeeds with its images, charged exactly once."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from serverproc import Server, t2i, wait_done

TASKS = 12
ENV = {
    "IMAGEGATE_SANDBOX_DELAY_SECONDS": "2",
    "IMAGEGATE_WORKER_LEASE_SECONDS": "2",
    "IMAGEGATE_WORKER_CONCURRENCY": "4",
    "IMAGEGATE_LIMITS_SUBMIT_BURST": "1000",
}


def ledger(data_dir: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(data_dir / "imagegate.db") as db:
        return db.execute("SELECT task_id, kind, amount_micros FROM ledger "
                          "WHERE task_id IS NOT NULL").fetchall()


def attempts(data_dir: Path) -> dict[str, int]:
    with sqlite3.connect(data_dir / "imagegate.db") as db:
        return dict(db.execute("SELECT id, attempt FROM tasks").fetchall())


def test_kill_9_mid_flight_loses_nothing_and_charges_once(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env=ENV).start()
    key = server.new_key("1")
    try:
        with server.client(key) as c:
            ids = [c.post("/api/v1/generateTask/nano-banana-2", json=t2i(f"durable {i}")
                          ).json()["data"]["taskId"] for i in range(TASKS)]
            time.sleep(0.8)  # some tasks running, the rest queued
            states = {c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": t}
                            ).json()["data"]["stage"] for t in ids}
        assert "generating" in states  # the kill really lands mid-flight
        server.kill9()
        server = Server(tmp_path / "data", env=ENV).start()
        with server.client(key) as c:
            done = [wait_done(c, t, timeout=90) for t in ids]
            balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
        assert [d["state"] for d in done] == ["success"] * TASKS
        for d in done:
            url = json.loads(d["resultJson"])["resultUrls"][0]
            assert httpx.get(url).status_code == 200
    finally:
        server.stop()

    assert max(attempts(tmp_path / "data").values()) >= 2  # interrupted tasks ran again
    lines = ledger(tmp_path / "data")
    for task_id in ids:
        kinds = sorted(kind for t, kind, _ in lines if t == task_id)
        assert kinds == ["hold", "settle"], (task_id, kinds)
    assert balance == pytest.approx(1 - TASKS * 0.05)
