"""The sans-I/O core, driven without a network: requests built, answers read, errors mapped,
retries decided and waits run (flows performed by a scripted shell)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from imagegate_client import errors
from imagegate_client.backoff import RetryPolicy, parse_retry_after
from imagegate_client.core import Core
from imagegate_client.effects import Flow, Notify, OpenStream, Send, Sleep, Stepper
from imagegate_client.records import Progress, TaskStatus
from imagegate_client.waiting import Waiter
from imagegate_client.wire import Reply, Request, Wire, error_for, list_params, submit_body

Answer = Reply | bytes | BaseException


class Shell:
    """Performs a flow's effects from ``answers`` (a Reply per request, bytes per stream read,
    an exception to throw in), on a clock that only sleeping moves."""

    def __init__(self, answers: Sequence[Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[Request] = []
        self.slept: list[float] = []
        self.progress: list[Progress] = []
        self.now = 0.0

    def run(self, flow: Flow[Any]) -> Any:
        stepper = Stepper(flow)
        while not stepper.done:
            effect = stepper.effect
            if isinstance(effect, Sleep):
                self.slept.append(effect.seconds)
                self.now += effect.seconds
                stepper.resolve(None)
                continue
            if isinstance(effect, Notify):
                self.progress.append(effect.progress)
                stepper.resolve(None)
                continue
            if isinstance(effect, Send | OpenStream):
                self.requests.append(effect.request)
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                stepper.fail(answer)
            else:
                stepper.resolve(answer)
        return stepper.result


def envelope(data: Any, status: int = 200, **headers: str) -> Reply:
    body = {"code": status, "message": "success" if status == 200 else "Error", "data": data}
    return Reply(status, {"content-type": "application/json", **headers},
                 json.dumps(body).encode())


def failure(status: int, error: str = "no", field: str | None = None, **headers: str) -> Reply:
    data = {"error": error, **({"field": field} if field else {})}
    return envelope(data, status, **headers)


def event_stream() -> Reply:
    return Reply(200, {"content-type": "text/event-stream; charset=utf-8"})


def sse(event: str, data: Any, id_: str) -> bytes:
    return f"event: {event}\nid: {id_}\ndata: {json.dumps(data)}\n\n".encode()


def core(**kw: Any) -> Core:
    policy = RetryPolicy(max_retries=kw.pop("max_retries", 3), base=1.0, rng=random.Random(7))
    return Core(Wire("http://api.test", "ig_key"), policy=policy, **kw)


TASK = {"taskId": "t1", "state": "processing", "createTime": 1}
DONE = {"taskId": "t1", "state": "success", "createTime": 1, "completeTime": 5, "costTime": 4,
        "resultJson": json.dumps({"resultUrls": ["http://files.test/t1/image-0.png"]}),
        "stage": "done", "cost": 0.05}
FAILED = {"taskId": "t1", "state": "failed", "failCode": "SensitiveContent",
          "failMsg": "blocked", "createTime": 1, "completeTime": 5}


# Requests -----------------------------------------------------------------------------------


def test_submit_body_is_apixo_shaped_and_mode_follows_the_images() -> None:
    args: dict[str, Any] = dict(mode=None, aspect_ratio="16:9", resolution="2k",
                                output_format="png", google_search=False, num_images=None,
                                seed=None, callback_url=None, source=None)
    text = json.loads(submit_body("a fox", images=(), **args))
    assert text == {"request_type": "async", "input": {
        "mode": "text-to-image", "prompt": "a fox", "aspect_ratio": "16:9", "resolution": "2k",
        "output_format": "png", "google_search": False}}
    image = json.loads(submit_body("sunrise", images=["https://x/a.png"],
                                   **{**args, "num_images": 2, "seed": 9, "source": "app",
                                      "callback_url": "https://hook.test/"}))
    assert image["request_type"] == "callback" and image["callback_url"] == "https://hook.test/"
    assert image["source"] == "app"
    assert image["input"]["mode"] == "image-to-image"
    assert image["input"]["image_urls"] == ["https://x/a.png"]
    assert (image["input"]["num_images"], image["input"]["seed"]) == (2, 9)


def test_requests_carry_the_key_and_the_base_url_may_end_in_api_v1() -> None:
    for base in ("https://api.apixo.ai/api/v1", "https://api.apixo.ai/api/v1/",
                 "https://api.apixo.ai"):
        request = Wire(base, "k").status("nano-banana-2", "t1")
        assert request.url == "https://api.apixo.ai/api/v1/statusTask/nano-banana-2"
        assert request.params == (("taskId", "t1"),)
        assert request.headers["Authorization"] == "Bearer k"
    submit = Wire("http://h", "k").submit("m", b"{}", "idem-1")
    assert (submit.method, submit.headers["Idempotency-Key"]) == ("POST", "idem-1")
    assert submit.headers["Content-Type"] == "application/json" and submit.repeatable
    assert not Wire("http://h", "k").cancel("m", "t1").repeatable
    stream = Wire("http://h", "k").stream("m", "t1", "ev-3")
    assert stream.url.endswith("/api/v1/streamTask/m")
    assert stream.headers["Last-Event-ID"] == "ev-3"
    assert "Authorization" not in Wire.download("http://other.test/f.png").headers


def test_list_params_name_the_contract_query() -> None:
    params = list_params(state=["success", "failed"], model="nano-banana-2",
                         created_after=1000, created_before=None, limit=50, cursor="c1")
    assert params == [("state", "success,failed"), ("model", "nano-banana-2"),
                      ("createdAfter", "1000"), ("limit", "50"), ("cursor", "c1")]


def test_a_missing_base_url_or_key_names_the_argument_and_the_variable() -> None:
    with pytest.raises(ValueError, match=r"base_url.*IMAGEGATE_BASE_URL"):
        Core.configure(None, "k", model="m", timeout=1, max_retries=0, poll_interval=1,
                       retry_base_delay=1, environ={})
    with pytest.raises(ValueError, match=r"api_key.*IMAGEGATE_API_KEY"):
        Core.configure("http://h", None, model="m", timeout=1, max_retries=0,
                       poll_interval=1, retry_base_delay=1, environ={})
    made = Core.configure(None, None, model="m", timeout=1, max_retries=0, poll_interval=1,
                          retry_base_delay=1, environ={"IMAGEGATE_BASE_URL": "http://e",
                                                       "IMAGEGATE_API_KEY": "ek"})
    assert (made.wire.base_url, made.wire.api_key) == ("http://e", "ek")


# Answers and errors -------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "cls"), [
    (400, errors.InvalidRequest), (401, errors.AuthenticationError),
    (402, errors.InsufficientBalance), (403, errors.PermissionDenied), (404, errors.NotFound),
    (409, errors.Conflict), (413, errors.InvalidRequest), (415, errors.InvalidRequest),
    (422, errors.InvalidRequest), (429, errors.RateLimited), (500, errors.ServerError),
    (503, errors.ServerError), (410, errors.APIError)])
def test_each_status_maps_to_its_error(status: int, cls: type[errors.APIError]) -> None:
    reply = failure(status, "what is wrong", "input.prompt")
    error = error_for(reply.status, reply.headers, reply.body)
    assert type(error) is cls
    assert (error.status, error.message, error.field) == (status, "what is wrong",
                                                          "input.prompt")
    assert error.body["data"]["error"] == "what is wrong"


def test_rate_limited_carries_retry_after_and_a_text_body_still_maps() -> None:
    reply = failure(429, "slow down", **{"retry-after": "2.5"})
    error = error_for(reply.status, reply.headers, reply.body)
    assert isinstance(error, errors.RateLimited) and error.retry_after == 2.5
    html = error_for(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(html, errors.ServerError) and "Bad Gateway" in html.message
    assert error_for(500, {}, b"").message == "HTTP 500"


def test_an_error_code_inside_a_200_envelope_is_an_error() -> None:
    reply = Reply(200, {}, json.dumps({"code": 402, "message": "Insufficient balance",
                                       "data": None}).encode())
    with pytest.raises(errors.InsufficientBalance, match="Insufficient balance"):
        Shell([reply]).run(core().balance())


def test_status_answers_become_task_status_records() -> None:
    task = Shell([envelope(DONE)]).run(core().status("t1"))
    assert task == TaskStatus(
        task_id="t1", state="success", stage="done",
        result_urls=("http://files.test/t1/image-0.png",), create_time=1, complete_time=5,
        cost_time=4, cost=Decimal("0.05"), model="nano-banana-2", raw=DONE)
    assert task.finished and task.succeeded
    assert Shell([envelope(3.5)]).run(core().balance()) == Decimal("3.5")


def test_answers_are_read_as_the_shared_wire_models() -> None:
    sent_nulls = {"taskId": "t1", "state": "failed", "createTime": 1, "completeTime": 2,
                  "failCode": "SensitiveContent", "failMsg": "no", "costTime": None,
                  "resultJson": None}
    task = Shell([envelope(sent_nulls)]).run(core().status("t1"))
    assert (task.fail_code, task.cost_time, task.result_urls) == ("SensitiveContent", None, ())
    with pytest.raises(errors.ServerError, match=r"task .*\$\.createTime"):
        Shell([envelope({**DONE, "createTime": "soon"})]).run(core().status("t1"))
    with pytest.raises(errors.ServerError, match=r"resultJson .*resultUrls"):
        Shell([envelope({**DONE, "resultJson": '{"urls": []}'})]).run(core().status("t1"))
    with pytest.raises(errors.ServerError, match=r"cancel answer .*`refunded`"):
        Shell([envelope({"taskId": "t1", "state": "canceled"})]).run(core().cancel("t1"))


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after("-1") is None


# Retries ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    policy = RetryPolicy(max_retries=10, base=0.5, cap=4.0, rng=random.Random(1))
    for attempt, whole in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = {policy.backoff(attempt) for _ in range(50)}
        assert all(whole / 2 <= d <= whole for d in delays)
        assert len(delays) > 1  # jittered


def test_which_answers_are_retried() -> None:
    policy = RetryPolicy(max_retries=2, rng=random.Random(1))
    for status in (429, 503):
        assert policy.delay_for_status(0, status, None, repeatable=False) is not None
    for status in (500, 502, 504):
        assert policy.delay_for_status(0, status, None, repeatable=True) is not None
        assert policy.delay_for_status(0, status, None, repeatable=False) is None
    for status in (400, 401, 402, 404, 409):
        assert policy.delay_for_status(0, status, None, repeatable=True) is None
    assert policy.delay_for_status(2, 503, None, repeatable=True) is None  # retries spent
    assert policy.delay_for_status(0, 429, 7.0, repeatable=True) == 7.0
    assert policy.delay_for_status(0, 429, 3600.0, repeatable=True) is None
    assert policy.delay_for_failure(0, sent=True, repeatable=False) is None
    assert policy.delay_for_failure(0, sent=False, repeatable=False) is not None


def test_a_submit_is_retried_with_the_same_key_and_bytes_until_it_is_answered() -> None:
    shell = Shell([failure(503, **{"retry-after": "2"}),
                   errors.APIConnectionError("read error", sent=True),
                   failure(500), envelope({"taskId": "t9"})])
    assert shell.run(core().submit("a fox", idempotency_key=None)) == "t9"
    keys = {r.headers["Idempotency-Key"] for r in shell.requests}
    assert len(shell.requests) == 4 and len(keys) == 1
    assert len({r.content for r in shell.requests}) == 1
    assert shell.slept[0] == 2.0 and 1.0 <= shell.slept[1] <= 2.0
    assert 2.0 <= shell.slept[2] <= 4.0


def test_each_submit_call_makes_its_own_key_unless_one_is_given() -> None:
    shell = Shell([envelope({"taskId": "a"}), envelope({"taskId": "b"}),
                   envelope({"taskId": "c"})])
    shell.run(core().submit("x"))
    shell.run(core().submit("x"))
    shell.run(core().submit("x", idempotency_key="mine"))
    keys = [r.headers["Idempotency-Key"] for r in shell.requests]
    assert keys[0] != keys[1] and keys[2] == "mine"


def test_retries_end_with_the_last_error() -> None:
    shell = Shell([failure(503)] * 4)
    with pytest.raises(errors.ServerError):
        shell.run(core().status("t1"))
    assert len(shell.requests) == 4
    lost = errors.APIConnectionError("refused", sent=False)
    with pytest.raises(errors.APIConnectionError):
        Shell([lost] * 4).run(core().balance())


def test_a_cancel_that_may_have_arrived_is_not_sent_again() -> None:
    shell = Shell([errors.APIConnectionError("read error", sent=True)])
    with pytest.raises(errors.APIConnectionError):
        shell.run(core().cancel("t1"))
    refused = Shell([errors.APIConnectionError("refused", sent=False),
                     envelope({"taskId": "t1", "state": "canceled", "refunded": True})])
    assert refused.run(core().cancel("t1")).refunded


# Waiting ------------------------------------------------------------------------------------


def waiter(shell: Shell, timeout: float | None = None, progress: bool = True) -> Waiter:
    c = core(poll_interval=10.0)
    return Waiter(c.wire, c.policy, "nano-banana-2", "t1", timeout,
                  (lambda p: None) if progress else None, c.poll_interval, 60.0,
                  clock=lambda: shell.now)


def test_wait_streams_status_events_until_done_reporting_each_change_once() -> None:
    queued = {**TASK, "stage": "queued"}
    shell = Shell([event_stream(),
                   b"retry: 1000\n" + sse("status", {**queued, "queuePosition": 2}, "e1"),
                   sse("status", {**queued, "queuePosition": 2}, "e1") + b": keep-alive\n\n",
                   sse("status", {**queued, "queuePosition": 1}, "e2")[:30],
                   sse("status", {**queued, "queuePosition": 1}, "e2")[30:],
                   sse("status", {**TASK, "stage": "generating"}, "e3"),
                   sse("done", {"code": 200, "message": "success", "data": DONE}, "e4")])
    task = shell.run(waiter(shell).run(first_poll_delay=0))
    assert task.succeeded and task.result_urls
    assert [(p.state, p.stage, p.queue_position) for p in shell.progress] == [
        ("processing", "queued", 2), ("processing", "queued", 1),
        ("processing", "generating", None), ("success", "done", None)]
    assert shell.requests[0].headers["Accept"] == "text/event-stream"


def test_a_cut_stream_is_opened_again_from_the_last_event_id() -> None:
    shell = Shell([event_stream(), b"retry: 250\n" + sse("status", TASK, "e1"), b"",
                   event_stream(), errors.APIConnectionError("read timed out"),
                   event_stream(), sse("done", {"code": 200, "data": DONE}, "e2")])
    assert shell.run(waiter(shell).run(first_poll_delay=0)).succeeded
    assert [r.headers.get("Last-Event-ID") for r in shell.requests] == [None, "e1", "e1"]
    assert shell.slept == [0.25, 0.25]


def test_without_a_stream_the_wait_polls_at_the_contract_cadence() -> None:
    for no_stream in (failure(404), failure(405), envelope(TASK)):
        shell = Shell([no_stream, envelope(TASK), envelope(TASK), envelope(DONE)])
        task = shell.run(waiter(shell).run(first_poll_delay=10.0))
        assert task.succeeded
        assert shell.slept == [10.0, 10.0, 10.0]
        assert [r.url.rsplit("/", 2)[-2] for r in shell.requests] == [
            "streamTask", "statusTask", "statusTask", "statusTask"]
        assert [p.state for p in shell.progress] == ["processing", "success"]


def test_a_failed_task_raises_task_failed_with_its_code() -> None:
    shell = Shell([event_stream(), sse("done", {"code": 200, "data": FAILED}, "e1")])
    with pytest.raises(errors.TaskFailed) as caught:
        shell.run(waiter(shell).run(first_poll_delay=0))
    assert (caught.value.fail_code, caught.value.fail_msg) == ("SensitiveContent", "blocked")
    polled = Shell([failure(404), envelope(FAILED)])
    with pytest.raises(errors.TaskFailed):
        polled.run(waiter(polled).run(first_poll_delay=0))


def test_the_wait_times_out_after_a_last_read_at_the_deadline() -> None:
    shell = Shell([failure(404)] + [envelope(TASK)] * 4)
    with pytest.raises(errors.WaitTimeout) as caught:
        shell.run(waiter(shell, timeout=25.0).run(first_poll_delay=0))
    assert shell.slept == [10.0, 10.0, 5.0]
    assert caught.value.task_id == "t1" and caught.value.timeout == 25.0


def test_a_stream_error_before_it_starts_is_the_status_error() -> None:
    for status, cls in ((401, errors.AuthenticationError), (400, errors.InvalidRequest)):
        shell = Shell([failure(status, field="taskId")])
        with pytest.raises(cls):
            shell.run(waiter(shell).run(first_poll_delay=0))


def test_the_pages_of_iter_tasks_follow_the_cursor_to_the_last_page() -> None:
    shell = Shell([envelope({"tasks": [TASK], "nextCursor": "c1"}),
                   envelope({"tasks": [DONE], "nextCursor": None})])
    pages = [shell.run(flow) for flow in core().task_pages(limit=1)]
    assert [[t.task_id for t in p.tasks] for p in pages] == [["t1"], ["t1"]]
    assert [dict(r.params) for r in shell.requests] == [{"limit": "1"},
                                                        {"limit": "1", "cursor": "c1"}]
