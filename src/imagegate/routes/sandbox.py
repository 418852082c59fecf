"""The sandbox route: the service's test mode (docs/contract.md §9).

It renders, without any model, a deterministic picture of the prompt at the exact size asked
for, after a delay. Directives in the prompt steer it, so client error handling can be tested
with ordinary requests:

    [sandbox:fail=SensitiveContent]    every attempt fails with that failCode
    [sandbox:fail=RateLimited:2]       the first 2 attempts fail, later ones succeed
    [sandbox:delay=2.5]                answer after 2.5 s instead of the configured delay

Directives are removed from the prompt before it is drawn. Unknown failCodes are refused at
run time with ``PromptInvalid`` naming the directive.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagegate.config import Settings
from imagegate.errors import FailCode, RouteError
from imagegate.routes.base import Capabilities, GeneratedImage, Job, RouteCheck
from imagegate.routes.options import RouteOptions
from imagegate.routes.sandbox_picture import render_sandbox_picture

_DIRECTIVE = re.compile(r"\[sandbox:(\w+)=([^\]]*)\]", re.IGNORECASE)
_FAIL_CODES = {code.lower(): code for code in FailCode.ALL}


@dataclass(frozen=True)
class Directives:
    prompt: str  # without the directives
    fail_code: str | None = None
    fail_attempts: int | None = None  # None: every attempt
    delay_s: float | None = None


def parse_directives(prompt: str) -> Directives:
    """Split sandbox directives out of a prompt. Raises RouteError(PromptInvalid) when bad."""
    fail_code: str | None = None
    fail_attempts: int | None = None
    delay: float | None = None
    for name, value in _DIRECTIVE.findall(prompt):
        name = name.lower()
        if name == "fail":
            fail_code, fail_attempts = _parse_fail(value)
        elif name == "delay":
            delay = _parse_delay(value)
        else:
            raise RouteError(FailCode.PROMPT_INVALID, f"unknown sandbox directive {name!r}")
    clean = _DIRECTIVE.sub("", prompt).strip() or prompt
    return Directives(clean, fail_code, fail_attempts, delay)


def _parse_fail(value: str) -> tuple[str, int | None]:
    code, _, count = value.partition(":")
    known = _FAIL_CODES.get(code.strip().lower())
    if known is None:
        raise RouteError(FailCode.PROMPT_INVALID,
                         f"sandbox fail code {code!r} is not one of {', '.join(FailCode.ALL)}")
    if not count:
        return known, None
    if not count.strip().isdigit():
        raise RouteError(FailCode.PROMPT_INVALID, f"sandbox fail count {count!r} is not a number")
    return known, int(count)


def _parse_delay(value: str) -> float:
    try:
        delay = float(value)
    except ValueError:
        delay = -1.0
    if not 0 <= delay <= 600:
        raise RouteError(FailCode.PROMPT_INVALID, "sandbox delay must be 0 to 600 seconds")
    return delay


CAPABILITIES = Capabilities(search_grounding=True, official=False)
_OPTIONS = ("delay_seconds",)


class SandboxRoute:
    """Stands in for any model; accepts every valid request, search grounding included."""

    def __init__(self, name: str = "sandbox", delay_s: float = 1.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.capabilities = CAPABILITIES
        self.upstream_model = ""

    @staticmethod
    def declared_capabilities(name: str, options: Mapping[str, Any]) -> Capabilities:
        RouteOptions("sandbox", name, options, _OPTIONS)  # refuses an unknown option
        return CAPABILITIES

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], client: object,
                     settings: Settings) -> SandboxRoute:
        """Build from a ``[routes.<name>]`` table: ``delay_seconds`` (default
        ``sandbox_delay_seconds``)."""
        opts = RouteOptions("sandbox", name, options, _OPTIONS)
        return cls(name, opts.seconds("delay_seconds", settings.sandbox_delay_seconds,
                                      zero_ok=True))

    async def generate(self, job: Job) -> Sequence[GeneratedImage]:
        directives = parse_directives(job.prompt)
        delay = self.delay_s if directives.delay_s is None else directives.delay_s
        if delay:
            await asyncio.sleep(delay)
        _maybe_fail(directives, job.attempt)
        refs = [r.image for r in job.references]
        images = []
        for index in range(job.num_images):
            image = await asyncio.to_thread(
                render_sandbox_picture, directives.prompt, job.width, job.height,
                seed=job.seed, references=refs, index=index)
            images.append(GeneratedImage(image))
        return images

    async def check(self) -> RouteCheck:
        return RouteCheck(True, "built in: needs no upstream")

    async def close(self) -> None:
        return None


def _maybe_fail(directives: Directives, attempt: int) -> None:
    if directives.fail_code is None:
        return
    if directives.fail_attempts is not None and attempt > directives.fail_attempts:
        return
    # The client's own test: its code, retried as that code is, but never a sign that the
    # sandbox is unwell, so no breaker opens and no other task waits or fails over.
    raise RouteError(directives.fail_code, f"sandbox: failing as asked ({directives.fail_code})",
                     retryable=directives.fail_code in FailCode.RETRYABLE, injected=True)
