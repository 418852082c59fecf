"""The submit rule over a batch (``admit`` in store/admission.py): in order, a token of the
key's shared bucket (when asked), a key below its limit and an account that can pay; each
admitted task counts against the ones after it."""

from __future__ import annotations

import secrets

from imagegate.contract import SubmitInput
from imagegate.errors import PaymentRequired, TooManyRequests, Unauthorized
from imagegate.money import ChargeState
from imagegate.store.admission import KeyCounts, Submit, admit
from imagegate.store.base import RateRequest
from imagegate.tasks import Task, TaskState, new_task_id


def submit(key: str = "k1", account: str = "a1", price: int = 100, limit: int = 10,
           rate: RateRequest | None = None) -> Submit:
    task = Task(id=new_task_id(), account_id=account, key_id=key, model="m",
                input=SubmitInput(mode="text-to-image", prompt="p", aspect_ratio="1:1",
                                  resolution="1k", output_format="png"),
                state=TaskState.QUEUED, created_ms=0, price_micros=price,
                charge_state=ChargeState.HELD, result_token=secrets.token_urlsafe(8))
    return Submit(task, limit, rate)


def open_keys(**unfinished: int) -> dict[str, KeyCounts]:
    return {key: KeyCounts(n) for key, n in unfinished.items()}


def kinds(outcomes: list[Exception | None]) -> list[str | None]:
    return [None if o is None else type(o).__name__ for o in outcomes]


def test_tasks_are_admitted_until_the_balance_runs_out() -> None:
    batch = [submit(price=100) for _ in range(4)]
    result = admit(batch, open_keys(k1=0), {"a1": 250})
    assert kinds(result.outcomes) == [None, None, "PaymentRequired", "PaymentRequired"]
    assert result.held == {"a1": 200} and result.keys == open_keys(k1=2)
    assert [balance for _, balance in result.lines] == [150, 50]
    assert [t.id for t, _ in result.lines] == [s.task.id for s in batch[:2]]


def test_a_cheaper_task_after_a_refused_one_is_still_admitted() -> None:
    result = admit([submit(price=300), submit(price=50)], open_keys(k1=0), {"a1": 100})
    assert kinds(result.outcomes) == ["PaymentRequired", None]
    assert result.held == {"a1": 50}


def test_the_unfinished_limit_counts_the_tasks_already_open_and_those_of_the_batch() -> None:
    result = admit([submit(limit=3) for _ in range(3)], open_keys(k1=1), {"a1": 10_000})
    assert kinds(result.outcomes) == [None, None, "TooManyRequests"]
    refused = result.outcomes[2]
    assert isinstance(refused, TooManyRequests) and "3 unfinished" in refused.error


def test_the_limit_is_checked_before_the_balance() -> None:
    result = admit([submit(limit=0, price=10**9)], open_keys(k1=0), {"a1": 0})
    assert isinstance(result.outcomes[0], TooManyRequests)


def test_each_key_and_account_is_held_to_its_own() -> None:
    batch = [submit("k1", "a1"), submit("k2", "a2"), submit("k1", "a1"), submit("k2", "a2")]
    result = admit(batch, open_keys(k1=0, k2=0), {"a1": 100, "a2": 1_000})
    assert kinds(result.outcomes) == [None, None, "PaymentRequired", None]
    assert result.held == {"a1": 100, "a2": 200}
    assert (result.keys["k1"].unfinished, result.keys["k2"].unfinished) == (1, 2)


def test_an_unknown_key_is_unauthorized_and_an_unknown_account_cannot_pay() -> None:
    result = admit([submit(key="gone"), submit(account="gone")], open_keys(k1=0), {"a1": 1_000})
    assert isinstance(result.outcomes[0], Unauthorized)
    assert isinstance(result.outcomes[1], PaymentRequired)
    assert result.lines == [] and result.held == {}
    assert result.keys == open_keys(k1=0)


def test_admit_leaves_the_counts_it_was_given_unchanged() -> None:
    keys, balances = open_keys(k1=0), {"a1": 1_000}
    admit([submit(rate=RateRequest(1.0, 5, 0))], keys, balances)
    assert keys == open_keys(k1=0) and balances == {"a1": 1_000}


def test_a_fresh_bucket_gives_its_burst_then_says_the_wait() -> None:
    batch = [submit(rate=RateRequest(2.0, 3, 1_000)) for _ in range(4)]
    result = admit(batch, open_keys(k1=0), {"a1": 10_000})
    assert kinds(result.outcomes) == [None, None, None, "TooManyRequests"]
    refused = result.outcomes[3]
    assert isinstance(refused, TooManyRequests) and "rate limit of 2/s" in refused.error
    assert refused.retry_after == 0.5
    assert result.keys["k1"] == KeyCounts(3, 0.0, 1_000)


def test_the_bucket_refills_from_when_it_was_last_used() -> None:
    keys = {"k1": KeyCounts(0, 0.0, 1_000)}
    result = admit([submit(rate=RateRequest(2.0, 3, 2_000)) for _ in range(3)], keys,
                   {"a1": 10_000})
    assert kinds(result.outcomes) == [None, None, "TooManyRequests"]  # 2 tokens in a second


def test_a_token_taken_stays_taken_when_the_task_is_refused() -> None:
    result = admit([submit(price=500, rate=RateRequest(1.0, 1, 0)),
                    submit(price=1, rate=RateRequest(1.0, 1, 0))], open_keys(k1=0), {"a1": 100})
    assert kinds(result.outcomes) == ["PaymentRequired", "TooManyRequests"]
    assert result.keys["k1"].tokens == 0.0 and result.held == {}


def test_the_rate_is_checked_before_the_unfinished_limit() -> None:
    keys = {"k1": KeyCounts(10, 0.0, 0)}
    result = admit([submit(rate=RateRequest(1.0, 1, 0))], keys, {"a1": 100})
    refused = result.outcomes[0]
    assert isinstance(refused, TooManyRequests) and "rate limit" in refused.error


def test_submits_without_a_rate_leave_the_bucket_alone() -> None:
    keys = {"k1": KeyCounts(0, 0.0, 0)}
    result = admit([submit(), submit()], keys, {"a1": 1_000})
    assert kinds(result.outcomes) == [None, None]
    assert result.keys["k1"] == KeyCounts(2, 0.0, 0)
