"""The submit rule over a batch (``transactions.admit``): in order, a key below its limit and
an account that can pay; each admitted task counts against the ones after it."""

from __future__ import annotations

import secrets

from imagegate.contract import SubmitInput
from imagegate.errors import PaymentRequired, TooManyRequests, Unauthorized
from imagegate.money import ChargeState
from imagegate.store.transactions import Submit, admit
from imagegate.tasks import Task, TaskState, new_task_id


def submit(key: str = "k1", account: str = "a1", price: int = 100,
           limit: int = 10) -> Submit:
    task = Task(id=new_task_id(), account_id=account, key_id=key, model="m",
                input=SubmitInput(mode="text-to-image", prompt="p", aspect_ratio="1:1",
                                  resolution="1k", output_format="png"),
                state=TaskState.QUEUED, created_ms=0, price_micros=price,
                charge_state=ChargeState.HELD, result_token=secrets.token_urlsafe(8))
    return Submit(task, limit)


def kinds(outcomes: list[Exception | None]) -> list[str | None]:
    return [None if o is None else type(o).__name__ for o in outcomes]


def test_tasks_are_admitted_until_the_balance_runs_out() -> None:
    batch = [submit(price=100) for _ in range(4)]
    result = admit(batch, {"k1": 0}, {"a1": 250})
    assert kinds(result.outcomes) == [None, None, "PaymentRequired", "PaymentRequired"]
    assert result.held == {"a1": 200} and result.slots == {"k1": 2}
    assert [balance for _, balance in result.lines] == [150, 50]
    assert [t.id for t, _ in result.lines] == [s.task.id for s in batch[:2]]


def test_a_cheaper_task_after_a_refused_one_is_still_admitted() -> None:
    result = admit([submit(price=300), submit(price=50)], {"k1": 0}, {"a1": 100})
    assert kinds(result.outcomes) == ["PaymentRequired", None]
    assert result.held == {"a1": 50}


def test_the_unfinished_limit_counts_the_tasks_already_open_and_those_of_the_batch() -> None:
    result = admit([submit(limit=3) for _ in range(3)], {"k1": 1}, {"a1": 10_000})
    assert kinds(result.outcomes) == [None, None, "TooManyRequests"]
    refused = result.outcomes[2]
    assert isinstance(refused, TooManyRequests) and "3 unfinished" in refused.error


def test_the_limit_is_checked_before_the_balance() -> None:
    result = admit([submit(limit=0, price=10**9)], {"k1": 0}, {"a1": 0})
    assert isinstance(result.outcomes[0], TooManyRequests)


def test_each_key_and_account_is_held_to_its_own() -> None:
    batch = [submit("k1", "a1"), submit("k2", "a2"), submit("k1", "a1"), submit("k2", "a2")]
    result = admit(batch, {"k1": 0, "k2": 0}, {"a1": 100, "a2": 1_000})
    assert kinds(result.outcomes) == [None, None, "PaymentRequired", None]
    assert result.held == {"a1": 100, "a2": 200}
    assert result.slots == {"k1": 1, "k2": 2}


def test_an_unknown_key_is_unauthorized_and_an_unknown_account_cannot_pay() -> None:
    result = admit([submit(key="gone"), submit(account="gone")], {"k1": 0}, {"a1": 1_000})
    assert isinstance(result.outcomes[0], Unauthorized)
    assert isinstance(result.outcomes[1], PaymentRequired)
    assert result.lines == [] and result.held == {} and result.slots == {}


def test_admit_leaves_the_counts_it_was_given_unchanged() -> None:
    unfinished, balances = {"k1": 0}, {"a1": 1_000}
    admit([submit()], unfinished, balances)
    assert unfinished == {"k1": 0} and balances == {"a1": 1_000}
