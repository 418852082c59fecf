"""The submit rule, pure: which submits of a batch are stored, and what each is answered.

``idempotent`` sorts out the submits whose idempotency key names a request already stored (or
an earlier submit of the same batch); ``admit`` decides the others in order against their keys'
limits and buckets and their accounts' balances; ``answers_of`` puts the two together.
``transactions.insert_tasks`` reads what they need under lock and writes what they decide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from imagegate.errors import PaymentRequired, TooManyRequests, Unauthorized
from imagegate.idempotency import IDEMPOTENCY_TTL_MS, Idempotency, mismatch
from imagegate.limits import rate_limited, take_token
from imagegate.money import format_usd
from imagegate.store.base import RateRequest
from imagegate.store.sql import Row
from imagegate.tasks import Task

__all__ = ["Admission", "Decided", "KeyCounts", "SameAs", "Submit", "admit", "answers_of",
           "idempotent"]


@dataclasses.dataclass(frozen=True)
class Submit:
    """A task to store, held to its key's limit of ``max_unfinished`` unfinished tasks and, with
    a ``rate``, to a token of the key's shared bucket; with ``idem``, once per idempotency
    key."""

    task: Task
    max_unfinished: int
    rate: RateRequest | None = None
    idem: Idempotency | None = None


@dataclasses.dataclass(frozen=True)
class KeyCounts:
    """What the submit rule reads of a key: its unfinished tasks and its shared rate bucket
    (``tokens`` left at ``updated_ms``; a bucket never used is full)."""

    unfinished: int
    tokens: float = float("inf")
    updated_ms: int = 0


@dataclasses.dataclass
class Admission:
    """What ``admit`` decided for a batch of submits, in their order: for each, None when it is
    admitted or the error that refuses it; and what the batch changes."""

    outcomes: list[Exception | None]
    keys: dict[str, KeyCounts]  # every key of the batch, as the batch leaves it
    held: dict[str, int]  # account id -> micro-dollars held
    lines: list[tuple[Task, int]]  # each admitted task with its account's balance after its hold


def admit(submits: Sequence[Submit], keys: dict[str, KeyCounts],
          balances: dict[str, int]) -> Admission:
    """The submit rule, over the keys and the accounts' balances as they stand. In order, a
    submit takes a token of its key's bucket when it has a ``rate`` (else ``TooManyRequests``
    with the wait: a token once taken stays taken), then its task is admitted when the key is
    below its unfinished-task limit (else ``TooManyRequests``) and the account can pay its
    price (else ``PaymentRequired``); an unknown key is ``Unauthorized``. Each admitted task
    counts against the ones after it."""
    counts = {key_id: [c.unfinished, c.tokens, c.updated_ms] for key_id, c in keys.items()}
    balances = dict(balances)
    outcomes: list[Exception | None] = []
    held: dict[str, int] = {}
    lines: list[tuple[Task, int]] = []
    for submit in submits:
        task, rate = submit.task, submit.rate
        key = counts.get(task.key_id)
        if key is None:
            outcomes.append(Unauthorized(f"no API key {task.key_id!r} to submit a task for"))
            continue
        if rate is not None:
            key[1], wait = take_token(key[1], (rate.now_ms - key[2]) / 1000, rate.rate,
                                      rate.burst)
            key[2] = max(key[2], rate.now_ms)
            if wait > 0:
                outcomes.append(rate_limited(rate.rate, wait))
                continue
        balance = balances.get(task.account_id, -1)
        if key[0] >= submit.max_unfinished:
            outcomes.append(TooManyRequests(
                f"this API key already has {key[0]} unfinished tasks, the limit", retry_after=5,
                reason="unfinished_limit"))
        elif balance < task.price_micros:
            outcomes.append(PaymentRequired(
                f"the balance ({format_usd(max(balance, 0))}) cannot pay for this task "
                f"({format_usd(task.price_micros)}); add credit to the key's account"))
        else:
            key[0] += 1
            balance = balances[task.account_id] = balance - task.price_micros
            held[task.account_id] = held.get(task.account_id, 0) + task.price_micros
            lines.append((task, balance))
            outcomes.append(None)
    after = {key_id: KeyCounts(int(c[0]), c[1], int(c[2])) for key_id, c in counts.items()}
    return Admission(outcomes, after, held, lines)


@dataclasses.dataclass(frozen=True)
class SameAs:
    """A submit that repeats an earlier submit of its batch (same key, idempotency key and
    request): answered as that one is."""

    index: int


Decided = str | Exception | SameAs | None


def idempotent(submits: Sequence[Submit], found: Sequence[Row]) -> list[Decided]:
    """For each submit, in order, what its idempotency key decides: None (no key, or a key
    unused: the submit goes on to ``admit``), the id of the task stored for the same request,
    ``SameAs`` an earlier submit of the batch, or the ``Conflict`` of a key that names another
    request. ``found``: the stored rows of the batch's keys; a row stored more than
    ``IDEMPOTENCY_TTL_MS`` before the submit counts as unused."""
    stored = {(r["key_id"], r["idem_key"]): r for r in found}
    first: dict[tuple[str, str], int] = {}
    answers: list[Decided] = []
    for i, submit in enumerate(submits):
        idem = submit.idem
        if idem is None:
            answers.append(None)
            continue
        name = (submit.task.key_id, idem.key)
        row = stored.get(name)
        if row is not None and int(row["created_ms"]) >= submit.task.created_ms - \
                IDEMPOTENCY_TTL_MS:
            same = row["request_hash"] == idem.request_hash
            answers.append(str(row["task_id"]) if same else mismatch())
        elif name in first:
            earlier = submits[first[name]].idem
            same = earlier is not None and earlier.request_hash == idem.request_hash
            answers.append(SameAs(first[name]) if same else mismatch())
        else:
            first[name] = i
            answers.append(None)
    return answers


def answers_of(submits: Sequence[Submit], answers: Sequence[Decided],
             admitted: Iterator[Exception | None]) -> list[str | Exception]:
    """Each submit's answer: its replay, or what ``admit`` decided (``admitted``, in the order
    of the submits that went to it), or that of the earlier submit it repeats."""
    out: list[str | Exception] = []
    for submit, answer in zip(submits, answers, strict=True):
        if answer is None:
            refused = next(admitted)
            out.append(submit.task.id if refused is None else refused)
        elif isinstance(answer, SameAs):
            out.append(out[answer.index])
        else:
            out.append(answer)
    return out
