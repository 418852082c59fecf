"""GET /api/v1/tasks and GET /api/v1/models (extensions) as a client sees them, through the ASGI
app in-process (tests/service/harness.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Harness, scenario, t2i
from openapi_schema_validator import OAS31Validator

SUBMIT = "/api/v1/generateTask/{model}"
TASKS = "/api/v1/tasks"
MODELS = "/api/v1/models"


async def submit(c: httpx.AsyncClient, model: str = "nano-banana-2", **fields: Any) -> str:
    r = await c.post(SUBMIT.format(model=model), json=t2i(**fields))
    assert r.status_code == 200, r.text
    task_id: str = r.json()["data"]["taskId"]
    return task_id


async def page(c: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await c.get(TASKS, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["code"], body["message"]) == (200, "success")
    data: dict[str, Any] = body["data"]
    return data


async def every_page(c: httpx.AsyncClient, **params: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        data = await page(c, **params, **({"cursor": cursor} if cursor else {}))
        pages.append([t["taskId"] for t in data["tasks"]])
        cursor = data["nextCursor"]
        if cursor is None:
            return pages


# GET /api/v1/tasks -------------------------------------------------------------------------------


def test_the_list_pages_through_the_keys_tasks_newest_first() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            ids = []
            for i in range(7):
                ids.append(await submit(c, prompt=f"fox {i}"))
                h.clock.advance(0.001 * (i % 2))  # some share a millisecond
            pages = await every_page(c, limit=3)
            assert [len(p) for p in pages] == [3, 3, 1]
            listed = [task_id for p in pages for task_id in p]
            assert sorted(listed) == sorted(ids)
            tasks = [await h.task(i) for i in listed]
            assert [(t.created_ms, t.id) for t in tasks] == sorted(
                ((t.created_ms, t.id) for t in tasks), reverse=True)
            # The default page holds 20; a page that holds everything has no next one.
            assert (await page(c))["nextCursor"] is None

    return None


def test_each_item_is_the_status_answer_with_its_model_and_source() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            tagged = await submit(c, source="my-app/2.0")
            failing = await submit(c, prompt="[sandbox:fail=SensitiveContent] a fox")
            queued = await submit(c)
            await h.work()
            h.clock.advance(1)
            await submit(c)  # queued, stays so
            items = {t["taskId"]: t for t in (await page(c))["tasks"]}
            for task_id in (tagged, failing, queued):
                r = await c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": task_id})
                status = r.json()["data"]
                extra = {"source": "my-app/2.0"} if task_id == tagged else {}
                assert items[task_id] == {**status, "model": "nano-banana-2", **extra}
            assert items[tagged]["state"] == "success" and "resultJson" in items[tagged]
            assert items[failing]["failCode"] == "SensitiveContent"
            assert "source" not in items[queued]

    return None


def test_each_listed_task_can_be_cancelled_under_its_listed_model() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            submitted = {await submit(c, model="nano-banana-pro"): "nano-banana-pro",
                         await submit(c): "nano-banana-2"}
            items = (await page(c))["tasks"]
            assert {t["taskId"]: t["model"] for t in items} == submitted
            for item in items:
                r = await c.post(f"/api/v1/cancelTask/{item['model']}",
                                 params={"taskId": item["taskId"]})
                assert r.json()["data"]["state"] == "canceled", r.text

    return None


def test_pages_neither_repeat_nor_skip_while_tasks_are_submitted() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            first = []
            for _ in range(9):
                first.append(await submit(c))
                h.clock.advance(0.001)
            seen: list[str] = []
            data = await page(c, limit=4)
            while True:
                seen += [t["taskId"] for t in data["tasks"]]
                if data["nextCursor"] is None:
                    break
                await submit(c)  # arrives between two pages
                h.clock.advance(0.001)
                data = await page(c, limit=4, cursor=data["nextCursor"])
            assert seen == list(reversed(first))

    return None


def test_the_list_holds_only_the_calling_keys_tasks() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        sibling = await h.new_key(account_id=made.account.id)
        stranger = await h.new_key("10")
        async with h.http(made.plain) as c, h.http(sibling.plain) as s, \
                h.http(stranger.plain) as x:
            mine = await submit(c)
            theirs = await submit(s)
            strangers = await submit(x)
            assert [t["taskId"] for t in (await page(c))["tasks"]] == [mine]
            assert [t["taskId"] for t in (await page(s))["tasks"]] == [theirs]
            assert [t["taskId"] for t in (await page(x))["tasks"]] == [strangers]

    return None


def test_the_list_filters_by_state_model_and_creation_time() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            start = h.clock.now_ms()
            ok = await submit(c)
            refused = await submit(c, prompt="[sandbox:fail=PromptInvalid] x")
            await h.work()
            h.clock.advance(1)
            middle = h.clock.now_ms()
            pro = await submit(c, model="nano-banana-pro")
            h.clock.advance(1)
            waiting = await submit(c)

            async def ids(**params: Any) -> set[str]:
                return {t["taskId"] for t in (await page(c, **params))["tasks"]}

            assert await ids(state="success") == {ok}
            assert await ids(state="failed") == {refused}
            assert await ids(state="processing") == {pro, waiting}
            assert await ids(state="success,failed") == {ok, refused}
            assert await ids(state=["success", "processing"]) == {ok, pro, waiting}
            assert await ids(model="nano-banana-pro") == {pro}
            assert await ids(model="no-such-model") == set()
            assert await ids(createdAfter=middle) == {pro, waiting}
            assert await ids(createdBefore=middle) == {ok, refused}
            assert await ids(createdAfter=start, createdBefore=middle + 1) == {ok, refused, pro}
            assert await ids(state="processing", model="nano-banana-2") == {waiting}
            # A cancelled task reads as failed, in the list as in its status.
            r = await c.post("/api/v1/cancelTask/nano-banana-2", params={"taskId": waiting})
            assert r.json()["data"]["state"] == "canceled"
            assert await ids(state="failed") == {refused, waiting}
            assert await ids(state="processing") == {pro}

    return None


@pytest.mark.parametrize("params,field", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"),
    ({"limit": ["5", "6"]}, "limit"),
    ({"state": "done"}, "state"), ({"state": ""}, "state"),
    ({"model": ""}, "model"),
    ({"createdAfter": "-5"}, "createdAfter"), ({"createdBefore": "soon"}, "createdBefore"),
    ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"), ({"cursor": "!"}, "cursor"),
])
def test_a_bad_query_parameter_answers_400_naming_it(params: dict[str, Any], field: str) -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            r = await c.get(TASKS, params=params)
        assert r.status_code == 400, r.text
        body = r.json()
        assert (body["code"], body["message"], body["data"]["field"]) == (
            400, "Invalid request", field)

    return None


def test_asking_for_cancelled_tasks_says_they_are_listed_as_failed() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            r = await c.get(TASKS, params={"state": "canceled"})
        assert r.status_code == 400
        assert "(a cancelled task is failed)" in r.json()["data"]["error"]

    return None


def test_the_list_and_the_models_need_a_key() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        async with h.http() as anyone, h.http("ig_not_a_key") as wrong:
            for path in (TASKS, MODELS):
                assert (await anyone.get(path)).status_code == 401
                assert (await wrong.get(path)).json()["code"] == 401

    return None


def test_a_pruned_task_leaves_the_list() -> None:
    @scenario(retention_days=1.0, record_retention_days=2.0)
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            task_id = await submit(c)
            await h.work()
            assert [t["taskId"] for t in (await page(c))["tasks"]] == [task_id]
            h.clock.advance(86_401)
            await h.sweep()  # results deleted
            h.clock.advance(2 * 86_400)
            await h.sweep()  # record pruned
            assert (await page(c)) == {"tasks": [], "nextCursor": None}

    return None


# GET /api/v1/models ------------------------------------------------------------------------------


CATALOGUE = """
[routes.upstream]
type = "relay"
base_url = "https://relay.example"
api_key = "secret"
model = "nano-banana-2"

[models."house-model"]
routes = ["upstream"]
prices = { "1k" = "0.011", "2k" = "0.02" }
resolutions = ["1k", "2k"]
ratios = ["16:9", "1:1"]
max_prompt_chars = 100
max_references = 3
max_images = 2
"""


def test_the_models_are_the_catalogue_with_its_limits_and_prices() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            r = await c.get(MODELS)
        assert r.status_code == 200
        body = r.json()
        assert (body["code"], body["message"]) == (200, "success")
        models = {m["id"]: m for m in body["data"]["models"]}
        assert list(models) == list(h.api.settings.models)
        assert models["nano-banana-2"] == {
            "id": "nano-banana-2",
            "aspectRatios": ["1:1", "1:4", "4:1", "1:8", "8:1", "2:3", "3:2", "3:4", "4:3",
                             "4:5", "5:4", "9:16", "16:9", "21:9"],
            "resolutions": ["1k", "2k", "4k"], "outputFormats": ["png", "jpeg", "jpg"],
            "maxPromptChars": 20000, "maxReferences": 14, "maxImages": 4,
            "prices": {"1k": 0.05, "2k": 0.08, "4k": 0.12},
            "googleSearch": True, "sandbox": True}
        assert models["nano-banana"]["maxReferences"] == 10
        assert models["nano-banana-2-lite"]["prices"] == {"1k": 0.03}

    return None


def test_the_models_follow_the_operators_catalogue(tmp_path: Path) -> None:
    config = tmp_path / "imagegate.toml"
    config.write_text(CATALOGUE)

    @scenario(config_file=str(config))
    async def _(h: Harness) -> None:
        made = await h.new_key("10")
        async with h.http(made.plain) as c:
            models = {m["id"]: m for m in (await c.get(MODELS)).json()["data"]["models"]}
        assert models["house-model"] == {
            "id": "house-model", "aspectRatios": ["1:1", "16:9"], "resolutions": ["1k", "2k"],
            "outputFormats": ["png", "jpeg", "jpg"], "maxPromptChars": 100,
            "maxReferences": 3, "maxImages": 2, "prices": {"1k": 0.011, "2k": 0.02},
            "googleSearch": False, "sandbox": False}
        assert models["nano-banana-2"]["sandbox"] is True

    return None


def test_a_key_limited_to_some_models_sees_only_those() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10", models=("nano-banana-pro", "nano-banana", "gone-model"))
        async with h.http(made.plain) as c:
            models = (await c.get(MODELS)).json()["data"]["models"]
        assert [m["id"] for m in models] == ["nano-banana-pro", "nano-banana"]

    return None


def test_the_answers_match_the_served_document() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("10", models=("nano-banana-2",))
        async with h.http(made.plain) as c:
            doc = (await c.get("/openapi.json")).json()
            await submit(c, source="sdk")
            await submit(c, prompt="[sandbox:fail=Timeout] x")
            await h.settle([t["taskId"] for t in (await page(c))["tasks"]])
            await submit(c)
            answers = {"TaskListResponse": [(await c.get(TASKS, params={"limit": 2})).json(),
                                            (await c.get(TASKS)).json()],
                       "ModelsResponse": [(await c.get(MODELS)).json()],
                       "ErrorResponse": [(await c.get(TASKS, params={"limit": 0})).json()]}
        for schema, bodies in answers.items():
            validator = OAS31Validator({"$ref": f"#/components/schemas/{schema}",
                                        "components": doc["components"]})
            for body in bodies:
                validator.validate(body)

    return None
