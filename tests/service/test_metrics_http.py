"""/metrics through the ASGI app in-process (tests/service/harness.py): what this process
counted and what the database holds, after tasks that succeeded, failed, wait in the queue and
wait for their callback, with a clock that moves only when the test moves it."""

from __future__ import annotations

from typing import Any

import httpx
from harness import Harness, scenario, t2i
from prometheus_client.parser import text_string_to_metric_families

from imagegate.errors import FailCode, RouteError

SUBMIT = "/api/v1/generateTask/nano-banana-2"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def submit(c: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await c.post(SUBMIT, json=body)
    assert r.status_code == 200, r.text
    task_id: str = r.json()["data"]["taskId"]
    return task_id


def test_metrics_show_the_work_done_here_and_the_work_left_in_the_database() -> None:
    @scenario(callbacks_retry_schedule="60")
    async def _(h: Harness) -> None:
        h.answer = lambda request: httpx.Response(500)
        made = await h.new_key("1")
        async with h.http(made.plain) as c:
            await submit(c, t2i("a fox"))
            await submit(c, t2i("[sandbox:fail=SensitiveContent] a fox"))
            await submit(c, t2i("a hook", request_type="callback",
                                callback_url="https://app.example/hook"))
            assert await h.work() == 3  # two succeed, one fails for good
            assert await h.deliver() == 1  # answered 500: pending, retried in a minute
            h.clock.advance(5)
            await submit(c, t2i("waits"))
            h.clock.advance(7)
            refused = await c.post(SUBMIT, json=t2i(), headers={"authorization": "Bearer no"})
            assert refused.status_code == 401
        async with h.http() as anonymous:  # /metrics takes no API key
            page = await anonymous.get("/metrics")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/plain")
        m = parse(page.text)
        # fleet-wide, from the database
        assert value(m, "imagegate_database_up") == 1
        assert value(m, "imagegate_queue_depth", model="nano-banana-2") == 1
        assert value(m, "imagegate_queue_oldest_age_seconds", model="nano-banana-2") == 7.0
        assert value(m, "imagegate_queue_depth", model="nano-banana-pro") == 0  # catalogue
        assert value(m, "imagegate_tasks_unfinished", state="queued") == 1
        assert value(m, "imagegate_tasks_unfinished", state="running") == 0
        assert value(m, "imagegate_money_held_usd") == 0.05
        assert value(m, "imagegate_webhook_backlog") == 1
        assert value(m, "imagegate_webhook_oldest_pending_age_seconds") == 12.0
        # this process's own
        finished = "imagegate_tasks_finished_total"
        assert value(m, finished, model="nano-banana-2", state="succeeded", fail_code="") == 2
        assert value(m, finished, model="nano-banana-2", state="failed",
                     fail_code="SensitiveContent") == 1
        assert value(m, "imagegate_route_calls_total", route="sandbox", outcome="success") == 2
        assert value(m, "imagegate_route_calls_total", route="sandbox",
                     outcome="SensitiveContent") == 1
        assert value(m, "imagegate_route_call_seconds_count", route="sandbox") == 3
        assert value(m, "imagegate_route_circuit_state", route="sandbox", state="closed") == 1
        assert value(m, "imagegate_route_circuit_state", route="sandbox", state="open") == 0
        assert value(m, "imagegate_submits_total", outcome="accepted") == 4
        assert value(m, "imagegate_submits_total", outcome="unauthorized") == 1
        assert value(m, "imagegate_webhook_attempts_total", outcome="failed") == 1


def test_an_open_circuit_and_a_delivered_callback_show_in_the_metrics() -> None:
    @scenario(router_failure_threshold=1, worker_max_attempts=1)
    async def _(h: Harness) -> None:
        key = await h.key("1")
        await h.submit(key, prompt="[sandbox:fail=RateLimited] busy", request_type="callback",
                       callback_url="https://app.example/hook")
        await h.work()  # a failure the client asked for: it leaves the circuit alone
        await h.deliver()
        assert h.api.runtime is not None and h.api.runtime.router is not None
        h.api.runtime.router.health.failed("sandbox", RouteError.of(FailCode.TIMEOUT, "slow"))
        async with h.http() as c:
            m = parse((await c.get("/metrics")).text)
        assert value(m, "imagegate_route_circuit_state", route="sandbox", state="open") == 1
        assert value(m, "imagegate_route_failures_in_a_row", route="sandbox") == 1
        assert value(m, "imagegate_route_calls_total", route="sandbox", outcome="RateLimited") == 1
        assert value(m, "imagegate_tasks_finished_total", model="nano-banana-2", state="failed",
                     fail_code="RateLimited") == 1
        assert value(m, "imagegate_webhook_attempts_total", outcome="delivered") == 1
        assert value(m, "imagegate_webhook_backlog") == 0
        assert value(m, "imagegate_money_held_usd") == 0


def test_metrics_can_be_turned_off() -> None:
    @scenario(metrics_enabled=False)
    async def _(h: Harness) -> None:
        async with h.http() as c:
            assert (await c.get("/metrics")).status_code == 404
            assert (await c.get("/healthz")).status_code == 200
