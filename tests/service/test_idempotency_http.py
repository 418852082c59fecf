"""Idempotent submits over HTTP (docs/contract.md, Extension: Idempotency-Key): a repeat of a
submit under the same key answers the first task and is charged once; another request under
the key is a 409; a malformed key is a 400 naming the header."""

from __future__ import annotations

import json

from harness import Harness, scenario, t2i

from imagegate.idempotency import parse_idempotency
from imagegate.store.base import ApiKey
from imagegate.task_list import TaskQuery

MODEL = "nano-banana-2"
SUBMIT = f"/api/v1/generateTask/{MODEL}"
BODY = json.dumps(t2i()).encode()
JSON = {"content-type": "application/json"}


def keyed(key: str) -> dict[str, str]:
    return {**JSON, "idempotency-key": key}


async def tasks_of(h: Harness, key: ApiKey) -> list[str]:
    return [t.id for t in await h.store.list_tasks(TaskQuery(key_id=key.id, limit=10))]


def test_a_repeated_submit_answers_the_same_task_and_is_charged_once() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key("1")
        async with h.http(new.plain) as c:
            first = await c.post(SUBMIT, content=BODY, headers=keyed("order-17"))
            again = await c.post(SUBMIT, content=BODY, headers=keyed("order-17"))
            other = await c.post(SUBMIT, content=BODY, headers=keyed("order-18"))
        assert first.status_code == again.status_code == other.status_code == 200, again.text
        assert again.content == first.content
        task_id = first.json()["data"]["taskId"]
        assert other.json()["data"]["taskId"] != task_id
        assert sorted(await tasks_of(h, new.key)) == sorted(
            [task_id, other.json()["data"]["taskId"]])
        holds = [e.task_id for e in await h.store.ledger(new.account.id) if e.kind == "hold"]
        assert sorted(holds) == sorted([task_id, other.json()["data"]["taskId"]])


def test_a_submit_whose_answer_was_lost_is_answered_again_with_its_task() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key("1")
        # Stored and committed, its answer never reached the client (the connection was cut).
        lost = await h.api.tasks.submit(new.key, MODEL, json.loads(BODY), None,
                                        parse_idempotency("retry-me", MODEL, BODY))
        after_first = await h.balance(new.key)
        async with h.http(new.plain) as c:
            r = await c.post(SUBMIT, content=BODY, headers=keyed("retry-me"))
        assert r.status_code == 200, r.text
        assert r.json() == {"code": 200, "message": "success", "data": {"taskId": lost}}
        assert await h.balance(new.key) == after_first
        assert await tasks_of(h, new.key) == [lost]


def test_the_same_key_with_another_body_is_a_conflict() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key("1")
        async with h.http(new.plain) as c:
            first = await c.post(SUBMIT, content=BODY, headers=keyed("order-17"))
            # The same JSON, other bytes: the body is compared as it was sent.
            spaced = json.dumps(t2i(), indent=1).encode()
            r = await c.post(SUBMIT, content=spaced, headers=keyed("order-17"))
            model = await c.post("/api/v1/generateTask/nano-banana-pro", content=BODY,
                                 headers=keyed("order-17"))
        assert first.status_code == 200, first.text
        assert r.status_code == 409, r.text
        assert r.json()["data"]["field"] == "Idempotency-Key"
        assert "different request" in r.json()["data"]["error"]
        assert model.status_code == 409, model.text
        assert await tasks_of(h, new.key) == [first.json()["data"]["taskId"]]


def test_a_malformed_idempotency_key_is_refused_naming_the_header() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key("1")
        async with h.http(new.plain) as c:
            answers = [await c.post(SUBMIT, content=BODY, headers=keyed(value))
                       for value in ("", "x" * 256, "tab\there")]
            longest = await c.post(SUBMIT, content=BODY, headers=keyed("~" * 255))
        for r in answers:
            assert r.status_code == 400, r.text
            assert r.json()["data"]["field"] == "Idempotency-Key"
        assert longest.status_code == 200, longest.text
        assert await tasks_of(h, new.key) == [longest.json()["data"]["taskId"]]


def test_a_repeat_preferring_to_wait_waits_on_the_first_task() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key("1")
        async with h.http(new.plain) as c:
            first = await c.post(SUBMIT, content=BODY, headers=keyed("order-17"))
            await h.work()
            r = await c.post(SUBMIT, content=BODY,
                             headers={**keyed("order-17"), "prefer": "wait=30"})
        assert r.status_code == 200, r.text
        assert r.headers["preference-applied"] == "wait=30"
        data = r.json()["data"]
        assert (data["taskId"], data["state"]) == (first.json()["data"]["taskId"], "success")


def test_a_key_past_its_24_hours_is_swept_and_names_a_new_task() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        new = await h.new_key("1")
        async with h.http(new.plain) as c:
            first = await c.post(SUBMIT, content=BODY, headers=keyed("order-17"))
            h.clock.advance(24 * 3600)
            assert (await h.sweep()).idempotency_keys == 0  # still its last moment
            h.clock.advance(1)
            assert (await h.sweep()).idempotency_keys == 1
            later = await c.post(SUBMIT, content=BODY, headers=keyed("order-17"))
        assert later.status_code == 200, later.text
        assert later.json()["data"]["taskId"] != first.json()["data"]["taskId"]
        assert len(await tasks_of(h, new.key)) == 2
