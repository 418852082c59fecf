"""A real full disk: a server whose data directory (database and results) is a small tmpfs,
filled up while it serves, then given space again. Needs root to mount; skipped elsewhere."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverproc import Server, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the file system has no space left."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_refuses_submits_with_503_and_recovers_when_space_returns(
        small_disk: Path) -> None:
    env = {"IMAGEGATE_WORKER_LEASE_SECONDS": "2", "IMAGEGATE_SWEEPER_INTERVAL_SECONDS": "0.2",
           "IMAGEGATE_WORKER_RETRY_BACKOFF_SECONDS": "0.1"}
    srv = Server(small_disk / "data", env=env).start()
    try:
        key = srv.new_key("1")
        with srv.client(key) as c:
            assert wait_done(c, c.post(SUBMIT, json=t2i()).json()["data"]["taskId"])[
                "state"] == "success"
            in_flight = c.post(SUBMIT, json=t2i("[sandbox:delay=1] running")).json()
            filler = fill(small_disk)
            answers = [c.post(SUBMIT, json=t2i(f"on a full disk {i}")) for i in range(20)]
            ready_full = httpx.get(srv.base_url + "/readyz").status_code
            filler.unlink()
            ready_again = httpx.get(srv.base_url + "/readyz").status_code
            accepted = [a.json()["data"]["taskId"] for a in answers if a.status_code == 200]
            ended = [wait_done(c, t) for t in [in_flight["data"]["taskId"], *accepted]]
            after = wait_done(c, c.post(SUBMIT, json=t2i("space again")).json()["data"]["taskId"])
            balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    finally:
        srv.stop()
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 503}, [a.text for a in answers if a.status_code not in (200, 503)]
    refused = [a for a in answers if a.status_code == 503]
    assert refused, "the full disk never refused a submit"
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert ready_full == 503 and ready_again == 200
    for task in ended:  # each accepted task ends by itself: made, or refunded as storage full
        assert task["state"] == "success" or task["failMsg"].startswith("storage full"), task
    assert after["state"] == "success"
    charged = 1 + sum(t["state"] == "success" for t in ended) + 1
    assert balance == pytest.approx(1 - 0.05 * charged)  # refused submits charged nothing
