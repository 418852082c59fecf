"""Result files (docs/contract.md §13): unguessable URLs that expire, then 410 and bytes deleted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from serverproc import Server, t2i, wait_done


def test_results_expire_with_410_and_the_bytes_are_deleted(tmp_path: Path) -> None:
    seconds = 2.0
    srv = Server(tmp_path / "d", env={"IMAGEGATE_RETENTION_DAYS": str(seconds / 86400)}).start()
    try:
        key = srv.new_key("1")
        with srv.client(key) as c:
            r = c.post("/api/v1/generateTask/nano-banana-2", json=t2i())
            data = wait_done(c, r.json()["data"]["taskId"])
        url = json.loads(data["resultJson"])["resultUrls"][0]
        assert data["expireTime"] - data["completeTime"] == int(seconds * 1000)
        files = list((tmp_path / "d" / "results").rglob("*.png"))
        assert len(files) == 1
        assert httpx.get(url).status_code == 200
        time.sleep(max(0.0, data["expireTime"] / 1000 - time.time()) + 1.5)
        gone = httpx.get(url)
        assert gone.status_code == 410 and gone.json()["code"] == 410
        assert not files[0].exists()
    finally:
        srv.stop()
