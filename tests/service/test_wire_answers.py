"""The service's answers decode, strictly, as the wire models the client shares with it
(``imagegate_client.wire_models``), through the ASGI app in-process: what the document is generated
from is what the server sends."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from harness import Harness, scenario, t2i
from imagegate_client import wire_models as wire

MODEL = "nano-banana-2"


class Answer(msgspec.Struct):
    code: int
    message: str
    data: Any


def decoded(response: httpx.Response, model: Any) -> Any:
    answer = msgspec.json.decode(response.content, type=Answer, strict=True)
    assert answer.code == response.status_code
    return msgspec.convert(answer.data, model, strict=True)


def test_every_answer_of_a_task_decodes_as_its_wire_model() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        async with h.http(made.plain) as c:
            submitted = await c.post(f"/api/v1/generateTask/{MODEL}", json=t2i(source="app"))
            task_id = decoded(submitted, wire.SubmitData).taskId
            status = f"/api/v1/statusTask/{MODEL}"
            queued = decoded(await c.get(status, params={"taskId": task_id}), wire.Task)
            assert (queued.state, queued.stage) == ("processing", "queued")
            await h.settle([task_id])
            done = decoded(await c.get(status, params={"taskId": task_id}), wire.Task)
            assert done.state == "success" and done.cost == 0.05
            urls = msgspec.json.decode(done.resultJson, type=wire.ResultJson).resultUrls
            assert len(urls) == 1
            page = decoded(await c.get("/api/v1/tasks"), wire.TaskPage)
            assert [(t.taskId, t.source) for t in page.tasks] == [(task_id, "app")]
            assert page.nextCursor is None
            models = decoded(await c.get("/api/v1/models"), wire.ModelsData).models
            assert MODEL in {m.id for m in models}
            balance = decoded(await c.get("/api/v1/apikeys/current-balance"), wire.Balance)
            assert balance == 0.95
            other = await h.submit(made.key)
            cancel = f"/api/v1/cancelTask/{MODEL}"
            canceled = decoded(await c.post(cancel, params={"taskId": other}), wire.CancelData)
            assert (canceled.state, canceled.refunded) == ("canceled", True)
            failed = decoded(await c.get(status, params={"taskId": other}), wire.Task)
            assert (failed.state, failed.failCode) == ("failed", "Canceled")


def test_a_refusal_decodes_as_the_wire_error_naming_its_field() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        async with h.http(made.plain) as c:
            refused = await c.post(f"/api/v1/generateTask/{MODEL}",
                                   json=t2i(provider="cheapest"))
            error = msgspec.json.decode(refused.content, type=wire.ErrorResponse, strict=True)
            assert (error.code, error.data.field) == (400, "provider")
            assert error.data.error == "provider must be one of auto, value, official"


def test_a_callback_is_the_documented_webhook_and_decodes_as_the_status_answer() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        task_id = await h.submit(made.key, request_type="callback",
                                 callback_url="https://app.example/hook")
        await h.settle([task_id])
        await h.deliver()
        [request] = h.callbacks
        async with h.http(made.plain) as c:
            document = (await c.get("/openapi.json")).json()
            status = await c.get(f"/api/v1/statusTask/{MODEL}", params={"taskId": task_id})
        webhook = document["webhooks"]["taskEnded"]["post"]
        body = webhook["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/StatusResponse"}
        assert {p["name"] for p in webhook["parameters"]} <= set(request.headers)
        task = decoded(httpx.Response(200, content=request.content), wire.Task)
        assert task == decoded(status, wire.Task)


async def first_message(c: httpx.AsyncClient, task_id: str) -> dict[str, str]:
    """The first message of the task's event stream, its fields as sent."""
    message: dict[str, str] = {}
    async with c.stream("GET", "/api/v1/streamTask/nano-banana-2",
                        params={"taskId": task_id}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if not line and message:
                break
            name, _, value = line.partition(":")
            if name:
                message[name] = value.removeprefix(" ")
    return message


def test_stream_events_carry_the_documented_wire_models() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        made = await h.new_key("1")
        async with h.http(made.plain, streaming=True) as c:
            document = (await c.get("/openapi.json")).json()
            op = document["paths"]["/api/v1/streamTask/{model}"]["get"]
            event = op["responses"]["200"]["content"]["text/event-stream"]["schema"]
            assert [(b["if"]["properties"]["event"]["const"],
                     b["then"]["properties"]["data"]["contentSchema"]["$ref"].split("/")[-1])
                    for b in event["allOf"]] == [("status", "Task"), ("done", "StatusResponse")]
            task_id = await h.submit(made.key)
            status = await first_message(c, task_id)
            assert set(event["required"]) <= status.keys() <= set(event["properties"])
            queued = msgspec.json.decode(status["data"], type=wire.Task, strict=True)
            assert (status["event"], queued.stage, queued.queuePosition) == (
                "status", "queued", 1)
            await h.settle([task_id])
            done = await first_message(c, task_id)
            answer = msgspec.json.decode(done["data"], type=Answer, strict=True)
            task = msgspec.convert(answer.data, wire.Task, strict=True)
            assert (done["event"], task.state, task.queuePosition) == (
                "done", "success", wire.UNSET)
