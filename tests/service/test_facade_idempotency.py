"""An ``Idempotency-Key`` on a Gemini facade call, as on a native submit: the same key and
request answer the first task, billed once; the same key with another request is refused."""

from __future__ import annotations

from harness import Harness, scenario

PATH = "/v1beta/models/nano-banana-2:generateContent"


def body(prompt: str) -> dict[str, object]:
    return {"contents": [{"parts": [{"text": prompt}]}],
            "generationConfig": {"imageConfig": {"aspectRatio": "1:1"}}}


def test_a_repeated_gemini_call_answers_its_first_task_and_is_billed_once() -> None:
    @scenario(facades_wait_seconds=0.001)
    async def _(h: Harness) -> None:
        new = await h.new_key(credit="1")
        headers = {"x-goog-api-key": new.plain, "idempotency-key": "call-1"}
        async with h.http() as c:
            first = await c.post(PATH, json=body("a fox"), headers=headers)
            # The same request in another JSON layout is the same request.
            again = await c.post(PATH, content=b'{"generationConfig": {"imageConfig": '
                                 b'{"aspectRatio": "1:1"}}, "contents": [{"parts": '
                                 b'[{"text": "a fox"}]}]}',
                                 headers={**headers, "content-type": "application/json"})
            other = await c.post(PATH, json=body("a hare"), headers=headers)
        task_id = first.headers["x-imagegate-task-id"]
        assert first.status_code == 504, first.text  # the wait ran out: the task goes on
        assert again.headers["x-imagegate-task-id"] == task_id
        assert (other.status_code, other.json()["error"]["status"]) == (409, "ABORTED")
        assert "Idempotency-Key" in other.json()["error"]["message"]
        await h.work()
        assert (await h.task(task_id)).state.value == "succeeded"
        assert await h.balance(new.key) == 1_000_000 - 50_000
