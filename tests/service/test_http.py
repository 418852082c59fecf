"""The HTTP answers a client sees for money, limits and expired results, through the ASGI app
in-process (tests/service/harness.py): the same endpoints and error mapping a server process
runs, on the in-memory store, with a clock that moves only when the test moves it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from harness import Harness, scenario, t2i

from imagegate.money import LedgerKind

SUBMIT = "/api/v1/generateTask/nano-banana-2"
BALANCE = "/api/v1/apikeys/current-balance"


async def status(c: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    r = await c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": task_id})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def test_concurrent_submits_never_overdraw_and_each_task_is_paid_once() -> None:
    @scenario(limits_submit_rate=1000.0, limits_submit_burst=1000)
    async def _(h: Harness) -> None:
        made = await h.new_key("0.50")  # pays for exactly 10 tasks at $0.05
        async with h.http(made.plain) as c:
            answers = await asyncio.gather(*(c.post(SUBMIT, json=t2i(f"race {i}"))
                                             for i in range(40)))
            assert Counter(r.status_code for r in answers) == {200: 10, 402: 30}
            refused = next(r for r in answers if r.status_code == 402).json()
            assert refused["code"] == 402
            # What the account has and what the task costs, in dollars and cents.
            assert refused["data"]["error"] == ("the balance ($0.00) cannot pay for this task "
                                                "($0.05); add credit to the key's account")
            accepted = [r.json()["data"]["taskId"] for r in answers if r.status_code == 200]
            assert (await c.get(BALANCE)).json()["data"] == 0
            await h.settle(accepted)
            assert {(await status(c, t))["state"] for t in accepted} == {"success"}
            assert (await c.get(BALANCE)).json()["data"] == 0
        ledger = await h.store.ledger(made.account.id)
        per_task = Counter(e.kind for e in ledger if e.task_id in accepted)
        assert per_task == {LedgerKind.HOLD: 10, LedgerKind.SETTLE: 10}
        assert sum(e.amount_micros for e in ledger) == 0


def test_the_submit_rate_answers_429_with_retry_after() -> None:
    @scenario(limits_submit_rate=0.5, limits_submit_burst=3)
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            codes = [(await c.post(SUBMIT, json=t2i())).status_code for _ in range(3)]
            r = await c.post(SUBMIT, json=t2i())
        assert codes == [200, 200, 200]
        assert r.status_code == 429 and r.json()["code"] == 429
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert "rate" in r.json()["data"]["error"]


def test_the_unfinished_task_limit_answers_429_and_holds_nothing() -> None:
    @scenario(limits_max_concurrent_tasks=2)
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            codes = [(await c.post(SUBMIT, json=t2i())).status_code for _ in range(2)]
            r = await c.post(SUBMIT, json=t2i())
            assert codes == [200, 200]
            assert r.status_code == 429 and "retry-after" in r.headers
            assert "unfinished" in r.json()["data"]["error"]
            assert (await c.get(BALANCE)).json()["data"] == pytest.approx(9.9)
            await h.work()  # both finish: their slots are free again
            assert (await c.post(SUBMIT, json=t2i())).status_code == 200


def test_a_result_url_answers_until_it_expires_then_410() -> None:
    @scenario(retention_days=1.0)
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        async with h.http(made.plain) as c:
            task_id = (await c.post(SUBMIT, json=t2i())).json()["data"]["taskId"]
            await h.work()
            data = await status(c, task_id)
            assert data["expireTime"] - data["completeTime"] == 86_400_000
            [url] = json.loads(data["resultJson"])["resultUrls"]
            path = urlsplit(url).path
            async with h.http() as anyone:
                got = await anyone.get(path)  # no key: the URL itself is the secret
                assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n"
                h.clock.advance(86_401)
                await h.sweep()
                gone = await anyone.get(path)
                assert gone.status_code == 410 and gone.json()["code"] == 410
        assert h.blobs.blobs == {}
