"""A fleet on the real PostgreSQL: two API processes, three workers and a sweeper, 500 tasks
submitted through both APIs (half with callbacks), one worker killed with SIGKILL and one API
process restarted mid-run. Every task succeeds once, every result downloads, the ledger balances
to the micro-dollar and every callback arrives once per webhook-id.

The same fleet runs twice: with its results in the shared data directory, and in S3 (moto's
server on loopback). A smaller fleet in S3 has one API process proxying result bytes and the
other redirecting to presigned URLs, and downloads every result through both."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from loopback import loopback_server
from postgres_db import fresh_database
from s3server import TEST_CREDENTIALS, MotoS3
from serverproc import Loops, Server, cli, t2i

SUBMIT = "/api/v1/generateTask/nano-banana-2"
STATUS = "/api/v1/statusTask/nano-banana-2"
TASKS = 500
PRICE = 50_000

pytestmark = pytest.mark.slow


def fleet_env(url: str) -> dict[str, str]:
    return {"IMAGEGATE_DATABASE_URL": url, "IMAGEGATE_LOCK_DATA_DIR": "false",
            "IMAGEGATE_SANDBOX_DELAY_SECONDS": "0.05", "IMAGEGATE_WORKER_LEASE_SECONDS": "2",
            "IMAGEGATE_WORKER_CONCURRENCY": "8", "IMAGEGATE_WORKER_POLL_SECONDS": "1",
            "IMAGEGATE_SWEEPER_INTERVAL_SECONDS": "0.3",
            "IMAGEGATE_CALLBACKS_RETRY_SCHEDULE": "1",
            "IMAGEGATE_LIMITS_SUBMIT_RATE": "10000", "IMAGEGATE_LIMITS_SUBMIT_BURST": "10000",
            "IMAGEGATE_LIMITS_MAX_CONCURRENT_TASKS": "10000"}


def submit_all(apis: list[Server], key: str, hook: str, restart: threading.Event,
               ) -> list[tuple[str, bool]]:
    """Submit the tasks, alternating the APIs (and falling back to the other while one is
    restarting); half of them call ``hook`` back."""
    ids: list[tuple[str, bool]] = []
    for i in range(TASKS):
        callback = i % 2 == 0
        body = t2i(f"fleet {i}")
        if callback:
            body.update(request_type="callback", callback_url=hook)
        for attempt in range(2):
            api = apis[(i + attempt) % 2]
            try:
                with api.client(key) as c:
                    r = c.post(SUBMIT, json=body)
                r.raise_for_status()
                break
            except httpx.HTTPError:
                if attempt:
                    raise
        ids.append((r.json()["data"]["taskId"], callback))
        if i == TASKS // 2:
            restart.set()
    return ids


def busy_every_worker(api: Server, key: str, slots: int = 3 * 8) -> list[str]:
    """Fill every worker slot with a slow task (so a worker killed now has attempts in
    flight); their ids once all are running."""
    with api.client(key) as c:
        ids = [c.post(SUBMIT, json=t2i(f"[sandbox:delay=3] slow {i}")).json()["data"]["taskId"]
               for i in range(slots)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stages = [c.get(STATUS, params={"taskId": t}).json()["data"]["stage"] for t in ids]
            if all(stage not in ("queued", "retrying") for stage in stages):
                break
            time.sleep(0.1)
    return ids


def wait_all(api: Server, key: str, ids: list[str], timeout: float = 240.0,
             ) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with api.client(key) as c:
        while len(done) < len(ids) and time.monotonic() < deadline:
            for task_id in ids:
                if task_id in done:
                    continue
                data = c.get(STATUS, params={"taskId": task_id}).json()["data"]
                if data["state"] != "processing":
                    done[task_id] = data
            time.sleep(0.2)
    assert len(done) == len(ids), f"{len(ids) - len(done)} tasks never finished"
    return done


@pytest.mark.parametrize("results", ["local disk", "s3"])
def test_a_fleet_loses_nothing_and_charges_once(tmp_path: Path, request: pytest.FixtureRequest,
                                                results: str) -> None:
    data = tmp_path / "shared"
    moto: MotoS3 | None = request.getfixturevalue("moto") if results == "s3" else None
    bucket = moto.new_bucket() if moto else ""
    with fresh_database() as url, loopback_server() as receiver:
        env = {**fleet_env(url), **(s3_env(moto, bucket) if moto else {})}
        cli(data, "migrate", env=env)
        key = cli(data, "keys", "create", "--credit", "100", env=env).stdout.split()[-1]
        apis = [Server(data, env=env, command="api").start() for _ in range(2)]
        workers = [Loops(data, "worker", env=env).start() for _ in range(3)]
        sweeper = Loops(data, "sweeper", env=env).start()
        restart = threading.Event()
        try:
            with ThreadPoolExecutor(1) as pool:
                submitting = pool.submit(submit_all, apis, key, receiver.base_url + "/hook",
                                         restart)
                restart.wait(120)
                slow = busy_every_worker(apis[0], key)
                workers[0].kill9()  # mid-run, with attempts in flight
                apis[1].stop()
                apis[1] = Server(data, env=env, command="api").start()
                submitted = submitting.result(timeout=240)
            ids = [task_id for task_id, _ in submitted] + slow
            finished = wait_all(apis[0], key, ids)
            downloads = check_downloads(apis, finished)
            receiver.wait_for(TASKS // 2, timeout=60)
            time.sleep(1.0)  # a duplicate, if any, would arrive now
            balance = cli(data, "keys", "list", "--json", env=env).stdout
            views = [json.loads(cli(data, "tasks", "show", t, "--json", env=env).stdout)
                     for t in ids[:: TASKS // 20]]
        finally:
            for process in (*workers[1:], sweeper):
                process.stop()
            for api in apis:
                api.stop()
        hooks = Counter(r.headers["webhook-id"] for r in receiver.received)
        bodies = {json.loads(r.body)["data"]["taskId"] for r in receiver.received}
        ledger = ledger_check(url)
    total = TASKS + len(slow)
    assert ledger == {"balance": 100_000_000 - total * PRICE, "sum": 100_000_000 - total * PRICE,
                      "holds": total, "settles": total, "refunds": 0, "tasks_charged_twice": 0,
                      "run_again": ledger["run_again"]}
    assert ledger["run_again"] >= 1  # the killed worker's attempts ran again elsewhere
    assert {d["state"] for d in finished.values()} == {"success"}
    assert downloads == TASKS + len(slow)
    assert json.loads(balance)["balanceUsd"] == pytest.approx(100 - total * PRICE / 1e6)
    assert all(v["charge"] == "settled" for v in views)
    assert len(hooks) == TASKS // 2 and set(hooks.values()) == {1}  # once per webhook-id
    assert bodies == {task_id for task_id, callback in submitted if callback}
    if moto:  # every task's result in the bucket, none on the shared disk
        assert {k.split("/")[2] for k in moto.keys(bucket)} == set(ids)
        assert not (data / "results").exists()


def ledger_check(url: str) -> dict[str, int]:
    """The account's balance and what its ledger says, read from the database itself."""
    with psycopg.connect(url) as conn:
        (balance,) = conn.execute("SELECT balance_micros FROM accounts").fetchone() or (None,)
        (total, holds, settles, refunds) = conn.execute(
            "SELECT SUM(amount_micros), COUNT(*) FILTER (WHERE kind = 'hold'), "
            "COUNT(*) FILTER (WHERE kind = 'settle'), COUNT(*) FILTER (WHERE kind = 'refund') "
            "FROM ledger").fetchone() or (None, None, None, None)
        (rerun,) = conn.execute("SELECT COUNT(*) FROM tasks WHERE attempt > 1").fetchone() or (0,)
        (twice,) = conn.execute(
            "SELECT COUNT(*) FROM (SELECT task_id FROM ledger WHERE kind = 'settle' "
            "GROUP BY task_id HAVING COUNT(*) > 1) AS t").fetchone() or (None,)
    return {"balance": balance, "sum": total, "holds": holds, "settles": settles,
            "refunds": refunds, "tasks_charged_twice": twice, "run_again": rerun}


def check_downloads(apis: list[Server], finished: dict[str, dict[str, Any]]) -> int:
    """Download every result, half through each API process; how many were whole PNGs."""
    count = 0
    urls = [json.loads(d["resultJson"])["resultUrls"][0] for d in finished.values()]
    for i, url in enumerate(urls):
        path = url.split("/files/", 1)[1]
        r = httpx.get(f"{apis[i % 2].base_url}/files/{path}", timeout=30)
        count += r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    return count


S3_TASKS = 100


def s3_env(moto: MotoS3, bucket: str) -> dict[str, str]:
    return {"IMAGEGATE_S3_BUCKET": bucket, "IMAGEGATE_S3_ENDPOINT_URL": moto.endpoint,
            "IMAGEGATE_S3_ADDRESSING_STYLE": "path", "IMAGEGATE_S3_PREFIX": "fleet",
            "IMAGEGATE_S3_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key_id,
            "IMAGEGATE_S3_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_access_key}


def test_a_fleet_keeps_results_in_s3_and_serves_them_through_every_api(
        tmp_path: Path, moto: MotoS3) -> None:
    """Two API processes, one proxying result bytes and one redirecting to presigned URLs,
    two workers and a sweeper, on one database and one bucket: every result downloads whole
    through both APIs, and the bucket holds exactly the results' files."""
    data, bucket = tmp_path / "shared", moto.new_bucket()
    with fresh_database() as url:
        env = {**fleet_env(url), **s3_env(moto, bucket)}
        cli(data, "migrate", env=env)
        key = cli(data, "keys", "create", "--credit", "100", env=env).stdout.split()[-1]
        apis = [Server(data, env=env, command="api").start(),
                Server(data, env={**env, "IMAGEGATE_RESULTS_DELIVERY": "redirect"},
                       command="api").start()]
        loops = [Loops(data, "worker", env=env).start(), Loops(data, "worker", env=env).start(),
                 Loops(data, "sweeper", env=env).start()]
        try:
            ids = []
            for i in range(S3_TASKS):
                with apis[i % 2].client(key) as c:
                    r = c.post(SUBMIT, json=t2i(f"fleet on s3 {i}"))
                ids.append(r.json()["data"]["taskId"])
            finished = wait_all(apis[0], key, ids)
            proxied, redirected = download_through_each(apis, finished)
        finally:
            for process in loops:
                process.stop()
            for api in apis:
                api.stop()
    assert {d["state"] for d in finished.values()} == {"success"}
    assert proxied == redirected  # the same bytes, whichever way they came
    assert all(body[:8] == b"\x89PNG\r\n\x1a\n" for body in proxied.values())
    assert len(proxied) == S3_TASKS
    assert [k.split("/")[2] for k in moto.keys(bucket)] == sorted(ids)  # one file per task
    assert all(k.startswith("fleet/results/") for k in moto.keys(bucket))
    assert not (data / "results").exists()  # nothing went to local disk


def download_through_each(apis: list[Server], finished: dict[str, dict[str, Any]],
                          ) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Every result through the proxying API and through the redirecting one (following its
    307 to the bucket): task id -> bytes, for each."""
    proxied, redirected = {}, {}
    for task_id, d in finished.items():
        path = json.loads(d["resultJson"])["resultUrls"][0].split("/files/", 1)[1]
        direct = httpx.get(f"{apis[0].base_url}/files/{path}", timeout=30)
        assert direct.status_code == 200, direct.text
        moved = httpx.get(f"{apis[1].base_url}/files/{path}", timeout=30,
                          follow_redirects=True)
        assert [r.status_code for r in moved.history] == [307] and moved.status_code == 200
        proxied[task_id], redirected[task_id] = direct.content, moved.content
    return proxied, redirected
