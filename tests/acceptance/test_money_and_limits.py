"""Money moves exactly once under concurrency; per-key submit rate and concurrency limits."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serverproc import Server, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("data"), env={
        "IMAGEGATE_LIMITS_SUBMIT_BURST": "1000",
        "IMAGEGATE_LIMITS_SUBMIT_RATE": "1000",
        "IMAGEGATE_SANDBOX_DELAY_SECONDS": "0.2",
    }).start()
    yield srv
    srv.stop()


def test_concurrent_submits_never_overdraw_and_each_task_is_paid_once(server: Server) -> None:
    key = server.new_key("0.50")  # pays for exactly 10 tasks at $0.05

    def one(i: int) -> tuple[int, str | None]:
        with server.client(key) as c:
            r = c.post(SUBMIT, json=t2i(f"race {i}"))
            return r.status_code, r.json()["data"].get("taskId")

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(one, range(40)))
    codes = Counter(code for code, _ in results)
    assert codes == {200: 10, 402: 30}
    accepted = [task_id for code, task_id in results if code == 200]
    with server.client(key) as c:
        assert c.get("/api/v1/apikeys/current-balance").json()["data"] == 0
        assert all(wait_done(c, t)["state"] == "success" for t in accepted)
        assert c.get("/api/v1/apikeys/current-balance").json()["data"] == 0
    with sqlite3.connect(server.data_dir / "imagegate.db") as db:
        rows = db.execute("SELECT task_id, kind, amount_micros FROM ledger WHERE task_id IN "
                          f"({','.join('?' * len(accepted))})", accepted).fetchall()
        (account_balance,) = db.execute(
            "SELECT balance_micros FROM accounts WHERE id = "
            "(SELECT account_id FROM tasks WHERE id = ?)", (accepted[0],)).fetchone()
        (ledger_sum,) = db.execute(
            "SELECT SUM(amount_micros) FROM ledger WHERE account_id = "
            "(SELECT account_id FROM tasks WHERE id = ?)", (accepted[0],)).fetchone()
    assert Counter(kind for _, kind, _ in rows) == {"hold": 10, "settle": 10}
    assert account_balance == 0 == ledger_sum


def test_failed_tasks_are_refunded_exactly_once(server: Server) -> None:
    key = server.new_key("0.20")
    with server.client(key) as c:
        ids = [c.post(SUBMIT, json=t2i(f"[sandbox:fail=PromptInvalid] {i}")).json()["data"]
               ["taskId"] for i in range(4)]
        assert c.get("/api/v1/apikeys/current-balance").json()["data"] == 0
        assert all(wait_done(c, t)["failCode"] == "PromptInvalid" for t in ids)
        assert c.get("/api/v1/apikeys/current-balance").json()["data"] == 0.2
    with sqlite3.connect(server.data_dir / "imagegate.db") as db:
        kinds = Counter(k for (k,) in db.execute(
            f"SELECT kind FROM ledger WHERE task_id IN ({','.join('?' * 4)})", ids))
    assert kinds == {"hold": 4, "refund": 4}


def test_submit_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    srv = Server(tmp_path / "d", env={"IMAGEGATE_LIMITS_SUBMIT_RATE": "0.5",
                                      "IMAGEGATE_LIMITS_SUBMIT_BURST": "3"}).start()
    try:
        key = srv.new_key("10")
        with srv.client(key) as c:
            codes = [c.post(SUBMIT, json=t2i()).status_code for _ in range(3)]
            r = c.post(SUBMIT, json=t2i())
    finally:
        srv.stop()
    assert codes == [200, 200, 200]
    assert r.status_code == 429 and r.json()["code"] == 429
    assert 1 <= int(r.headers["retry-after"]) <= 2
    assert "rate" in r.json()["data"]["error"]


def test_unfinished_task_limit_answers_429(tmp_path: Path) -> None:
    srv = Server(tmp_path / "d", env={"IMAGEGATE_LIMITS_MAX_CONCURRENT_TASKS": "2",
                                      "IMAGEGATE_SANDBOX_DELAY_SECONDS": "5"}).start()
    try:
        key = srv.new_key("10")
        with srv.client(key) as c:
            codes = [c.post(SUBMIT, json=t2i()).status_code for _ in range(2)]
            r = c.post(SUBMIT, json=t2i())
            balance = c.get("/api/v1/apikeys/current-balance").json()["data"]
    finally:
        srv.stop()
    assert codes == [200, 200]
    assert r.status_code == 429 and "retry-after" in r.headers
    assert "unfinished" in r.json()["data"]["error"]
    assert balance == pytest.approx(9.9)  # the refused submit held nothing
