"""Failures a client injects through the sandbox are its own test: one key bursting injected
failures of every code while another key's plain tasks run, through the worker in-process."""

from __future__ import annotations

from harness import Harness, scenario

RETRIED = ("RateLimited", "Timeout", "Unknown error")
FINAL = ("PromptInvalid", "SensitiveContent", "ImageFormatIncorrect", "MissingParameter")


def test_injected_failures_touch_no_other_task() -> None:
    @scenario(worker_retry_backoff_seconds=0.5, worker_concurrency=8,
              router_failure_threshold=2, router_cooldown_seconds=60.0)
    async def _(h: Harness) -> None:
        tester, other = await h.key("5"), await h.key("5")
        injected: dict[str, str] = {}
        plain: list[str] = []
        for round_ in range(3):
            for code in (*RETRIED, *FINAL):
                task_id = await h.submit(tester, prompt=f"[sandbox:fail={code}] {round_}")
                injected[task_id] = code
            plain += [await h.submit(other, prompt=f"plain {round_}-{i}") for i in range(3)]
        recovering = await h.submit(tester, prompt="[sandbox:fail=RateLimited:2] recovers")
        await h.settle([*injected, *plain, recovering])

        for task_id, code in injected.items():
            data = await h.status(tester, task_id)
            assert (data["state"], data["failCode"]) == ("failed", code), data
        assert (await h.status(tester, recovering))["state"] == "success"
        assert {(await h.status(other, t))["state"] for t in plain} == {"success"}

        async def attempts(task_id: str) -> list[tuple[int, str]]:
            return [(a.attempt, a.outcome) for a in (await h.task(task_id)).route_attempts]

        for task_id in plain:  # first attempt, never delayed or rested
            assert await attempts(task_id) == [(1, "success")]
        for task_id, code in injected.items():
            expected = 3 if code in RETRIED else 1  # worker_max_attempts, as documented
            assert await attempts(task_id) == [(n, code) for n in range(1, expected + 1)]
        assert await attempts(recovering) == [
            (1, "RateLimited"), (2, "RateLimited"), (3, "success")]
