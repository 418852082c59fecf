"""The table ``imagegate tasks list`` prints: one row per task, newest first, as the API gives
them. Pure: rows from records with the attributes of ``imagegate_client.TaskStatus``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from imagegate.client_cli.progress import describe

HEADER = ("TASK ID", "STATE", "CREATED", "COST", "DETAIL")
# The widest cell each column usually has (an imagegate task id, "processing", a time, cents),
# so that the pages of ``tasks list --all``, each printed as it comes, line up.
MIN_WIDTHS = (32, len("processing"), len("2026-01-01 00:00:00Z"), len("$0.00"))


class TaskLike(Protocol):
    @property
    def task_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def stage(self) -> str | None: ...

    @property
    def result_urls(self) -> tuple[str, ...]: ...

    @property
    def fail_code(self) -> str | None: ...

    @property
    def fail_msg(self) -> str | None: ...

    @property
    def create_time(self) -> int | None: ...

    @property
    def cost(self) -> Decimal | None: ...

    @property
    def source(self) -> str | None: ...


def row(task: TaskLike) -> tuple[str, str, str, str, str]:
    """The cells of one task: its id, state, creation time (UTC), cost and what to know."""
    created = "" if task.create_time is None else datetime.fromtimestamp(
        task.create_time / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    cost = "" if task.cost is None else _usd(task.cost)
    if task.state == "failed":
        detail = ": ".join(p for p in (task.fail_code, task.fail_msg) if p)
    elif task.state == "success":
        count = len(task.result_urls)
        detail = f"{count} image{'s' if count != 1 else ''}"
    else:
        detail = describe(task.state, task.stage, None)
    if task.source:
        detail += f" [{task.source}]"
    return task.task_id, task.state, created, cost, detail


def table(tasks: Iterable[TaskLike], *, width: int | None = 120) -> list[str]:
    """The header and one line per task; columns sized to their longest cell (at least
    MIN_WIDTHS), the last one cut to ``width`` (None: never cut)."""
    rows = [HEADER, *(row(t) for t in tasks)]
    widths = [max(MIN_WIDTHS[i], *(len(r[i]) for r in rows)) for i in range(len(HEADER) - 1)]
    lines = []
    for r in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False))
        line = f"{head}  {r[-1]}".rstrip()
        if width is not None and len(line) > width:
            line = line[: width - 3] + "..."
        lines.append(line)
    return lines


def _usd(amount: Decimal) -> str:
    """``$0.05``; all the digits when there are more than cents (``$0.125``)."""
    cents = amount.quantize(Decimal("0.01"))
    return f"${cents}" if cents == amount else f"${amount.normalize()}"
