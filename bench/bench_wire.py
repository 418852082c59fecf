"""CPU time of the two hot wire paths, as the service does them and with a typed-model library:
validating a typical submit body (from the raw bytes, as the endpoint gets them) and rendering
a status answer (a processing task, read on every poll, and a finished one, rendered once and
then kept as bytes) to the bytes of its JSON envelope.

Each cell is the median over ``--repeat`` runs of ``time.process_time`` over ``--iterations``
calls, in microseconds per call: CPU time, not wall time, so other processes on the machine
count little. The candidates decode and render the same fields as the service; what a library
cannot say (each model's own limits, the messages naming the field, the rules between fields)
is left out of its figure, which flatters it.

    .venv/bin/python bench/bench_wire.py [--iterations 20000] [--repeat 7]

Prints a Markdown table and appends it, dated, to ``bench/results/wire.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pydantic
from harness import source_version
from imagegate_client import wire_models as wire

from imagegate.api.endpoints import parse_json
from imagegate.app.tasks import StatusAnswer
from imagegate.contract import ModelLimits, SubmitInput, parse_submit
from imagegate.money import ChargeState
from imagegate.tasks import ResultFile, Task, TaskState, envelope, render_status, result_url

RESULTS = Path(__file__).parent / "results" / "wire.md"
BASE_URL = "https://imagegate.example"
SUBMIT = json.dumps({
    "request_type": "async", "source": "my-app",
    "input": {"mode": "text-to-image", "prompt": "a lighthouse at dusk, watercolor, " * 4,
              "aspect_ratio": "16:9", "resolution": "2k", "output_format": "png",
              "google_search": False}}).encode()

Ratio = Literal["auto", "1:1", "1:4", "4:1", "1:8", "8:1", "2:3", "3:2", "3:4", "4:3", "4:5",
                "5:4", "9:16", "16:9", "21:9"]


# pydantic ----------------------------------------------------------------------------------------

class PInput(pydantic.BaseModel):
    mode: Literal["text-to-image", "image-to-image"]
    prompt: str = pydantic.Field(min_length=1, max_length=20000)
    image_urls: list[str] | None = pydantic.Field(default=None, max_length=14)
    aspect_ratio: Ratio
    resolution: Literal["1k", "2k", "4k"]
    output_format: Literal["png", "jpeg", "jpg"] | None = "png"
    google_search: bool | None = False
    seed: int = pydantic.Field(default=0, ge=0, le=2**63 - 1)
    num_images: int = pydantic.Field(default=1, ge=1, le=4)


class PSubmit(pydantic.BaseModel):
    request_type: Literal["async", "callback"] | None = "async"
    callback_url: Any = None
    provider: Literal["auto", "value", "official"] | None = "auto"
    source: str | None = pydantic.Field(default=None, max_length=128)
    input: PInput


class PStatus(pydantic.BaseModel):
    taskId: str
    state: Literal["processing", "success", "failed"]
    createTime: int
    resultJson: str | None = None
    completeTime: int | None = None
    costTime: int | None = None
    failCode: str | None = None
    failMsg: str | None = None
    stage: str | None = None
    expireTime: int | None = None
    cost: float | None = None


class PEnvelope(pydantic.BaseModel):
    code: int = 200
    message: str = "success"
    data: PStatus


# msgspec -----------------------------------------------------------------------------------------

class MInput(msgspec.Struct):
    mode: Literal["text-to-image", "image-to-image"]
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=20000)]
    aspect_ratio: Ratio
    resolution: Literal["1k", "2k", "4k"]
    image_urls: Annotated[list[str], msgspec.Meta(max_length=14)] | None = None
    output_format: Literal["png", "jpeg", "jpg"] | None = "png"
    google_search: bool | None = False
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0
    num_images: Annotated[int, msgspec.Meta(ge=1, le=4)] = 1


class MSubmit(msgspec.Struct):
    input: MInput
    request_type: Literal["async", "callback"] | None = "async"
    callback_url: Any = None
    provider: Literal["auto", "value", "official"] | None = "auto"
    source: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class MEnvelope(msgspec.Struct):
    data: wire.Task
    code: int = 200
    message: str = "success"


_ENCODER = msgspec.json.Encoder()


# The status answer, three ways -------------------------------------------------------------------

def _fields(task: Task) -> dict[str, Any]:
    """The status fields of ``task`` as keyword arguments (what a model's constructor takes)."""
    done = task.state.terminal
    ok = task.state is TaskState.SUCCEEDED
    urls = [result_url(BASE_URL, task, r) for r in task.results] if ok else None
    return {
        "taskId": task.id, "state": task.state.wire, "createTime": task.created_ms,
        "resultJson": json.dumps({"resultUrls": urls}, separators=(",", ":")) if ok else None,
        "completeTime": task.complete_ms if done else None,
        "costTime": task.complete_ms - task.created_ms if ok and task.complete_ms else None,
        "failCode": (task.fail_code or "Unknown error") if done and not ok else None,
        "failMsg": (task.fail_msg or "") if done and not ok else None,
        "stage": task.stage,
        "expireTime": task.expire_ms if ok else None,
        "cost": task.price_micros / 1e6 if task.charge_state is ChargeState.SETTLED else None,
    }


def status_before(task: Task) -> bytes:
    """As the service did before the wire models: the dict, encoded by json.dumps."""
    return json.dumps(envelope(render_status(task, BASE_URL)), ensure_ascii=False,
                      allow_nan=False, separators=(",", ":")).encode()


def status_now(task: Task) -> bytes:
    """As the service does: the same dict, encoded by msgspec (``StatusAnswer.body``)."""
    return StatusAnswer(render_status(task, BASE_URL)).body


def status_pydantic(task: Task) -> bytes:
    return PEnvelope(data=PStatus(**_fields(task))).model_dump_json(exclude_none=True).encode()


def status_msgspec(task: Task) -> bytes:
    fields = {k: v for k, v in _fields(task).items() if v is not None}
    return _ENCODER.encode(MEnvelope(data=wire.Task(**fields)))


def tasks() -> dict[str, Task]:
    request = SubmitInput(mode="text-to-image", prompt="a cat", aspect_ratio="1:1",
                          resolution="1k", output_format="png")
    processing = Task(id="0f8e4c1b2a3d4e5f60718293a4b5c6d7", account_id="a", key_id="k",
                      model="nano-banana-2", input=request, state=TaskState.RUNNING,
                      created_ms=1767225600000, price_micros=50_000,
                      charge_state=ChargeState.HELD, result_token="tok" * 8, stage="generating")
    result = ResultFile(key="k/0.png", name="0.png", content_type="image/png", size=1,
                        width=1024, height=1024)
    finished = Task(**{**processing.__dict__, "state": TaskState.SUCCEEDED, "stage": "done",
                       "complete_ms": 1767225612000, "expire_ms": 1768521612000,
                       "charge_state": ChargeState.SETTLED, "results": (result,)})
    return {"processing": processing, "finished": finished}


# Measuring ---------------------------------------------------------------------------------------

def per_call_us(call: Callable[[], object], iterations: int, repeat: int) -> float:
    for _ in range(iterations // 10):  # warm up
        call()
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(iterations):
            call()
        runs.append((time.process_time() - start) / iterations * 1e6)
    return statistics.median(runs)


def check_equal_answers() -> None:
    """The candidates render the same JSON as the service (key order aside)."""
    for task in tasks().values():
        before = json.loads(status_before(task))
        for render in (status_now, status_pydantic, status_msgspec):
            assert json.loads(render(task)) == before, render.__name__
        assert status_now(task) == status_before(task)


Row = tuple[str, float, float, float, float]


def measure(iterations: int, repeat: int) -> list[Row]:
    limits = ModelLimits()
    body = json.loads(SUBMIT)
    def timed(call: Callable[[], object]) -> float:
        return per_call_us(call, iterations, repeat)

    # The submit keeps the contract's validator: the adopted cell is the one before it.
    from_bytes = timed(lambda: parse_submit(parse_json(SUBMIT), limits))
    from_dict = timed(lambda: parse_submit(body, limits))
    rows: list[Row] = [
        ("submit body: bytes to validated request", from_bytes,
         timed(lambda: PSubmit.model_validate_json(SUBMIT)),
         timed(lambda: msgspec.json.decode(SUBMIT, type=MSubmit)), from_bytes),
        ("submit body: decoded dict to validated request", from_dict,
         timed(lambda: PSubmit.model_validate(body)),
         timed(lambda: msgspec.convert(body, MSubmit)), from_dict)]
    for name, task in tasks().items():
        def each(render: Callable[[Task], bytes], t: Task = task) -> float:
            return per_call_us(lambda: render(t), iterations, repeat)

        rows.append((f"status answer, {name}: task to JSON bytes", each(status_before),
                     each(status_pydantic), each(status_msgspec), each(status_now)))
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| path | json (before) | pydantic models | msgspec models | adopted: the dict, "
             "msgspec encoder |",
             "|---|---|---|---|---|"]
    for name, *cells in rows:
        text = [f"{c:.2f}" for c in cells]
        lines.append(f"| {name} | {' | '.join(text)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    check_equal_answers()
    rows = measure(args.iterations, args.repeat)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"## {stamp}\n\n{source_version()} · {platform.machine()}, Python "
              f"{platform.python_version()}, pydantic {pydantic.VERSION}, msgspec "
              f"{msgspec.__version__} · median of {args.repeat} runs of {args.iterations} "
              "calls, CPU microseconds per call\n\nCommand: `python bench/bench_wire.py`\n")
    report = f"{header}\n{table(rows)}\n"
    print(report)
    if not RESULTS.exists():
        RESULTS.write_text("# Wire models benchmark\n")
    with RESULTS.open("a") as out:
        out.write("\n" + report)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
