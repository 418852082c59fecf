"""Conversion between database rows and domain records, shared by every SQL store: the
parameters of the statements that store a record (in the order ``statements.py`` lists their
columns) and the records a row reads back as."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from imagegate.contract import SubmitInput
from imagegate.money import ChargeState
from imagegate.store.base import (
    Account,
    ApiKey,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    LedgerEntry,
    NewDelivery,
    WebhookSecret,
)
from imagegate.tasks import ResultFile, RouteAttempt, Task, TaskState

Row = Mapping[str, Any]

def task_params(task: Task) -> tuple[Any, ...]:
    return (task.id, task.account_id, task.key_id, task.model,
            json.dumps(vars(task.input)), task.request_type, task.callback_url,
            task.provider, task.source, task.state.value, task.stage, task.created_ms,
            task.price_micros, task.charge_state, task.result_token)


def delivery_params(d: NewDelivery) -> tuple[Any, ...]:
    return (d.id, d.task_id, d.account_id, d.url, d.body, d.created_ms, d.created_ms)


def dump_attempts(attempts: tuple[RouteAttempt, ...]) -> str:
    return json.dumps([dataclasses.asdict(a) for a in attempts])


def dump_models(models: tuple[str, ...] | None) -> str | None:
    return None if models is None else json.dumps(list(models))


def task(row: Row) -> Task:
    raw_input = json.loads(row["input_json"])
    raw_input["image_urls"] = tuple(raw_input.get("image_urls", ()))
    return Task(
        id=row["id"], account_id=row["account_id"], key_id=row["key_id"], model=row["model"],
        input=SubmitInput(**raw_input), state=TaskState(row["state"]),
        created_ms=row["created_ms"], price_micros=row["price_micros"],
        charge_state=ChargeState(row["charge_state"]), result_token=row["result_token"],
        request_type=row["request_type"], callback_url=row["callback_url"],
        provider=row["provider"], source=row["source"], stage=row["stage"],
        attempt=row["attempt"], lease_until_ms=row["lease_until_ms"],
        not_before_ms=row["not_before_ms"], started_ms=row["started_ms"],
        complete_ms=row["complete_ms"], expire_ms=row["expire_ms"],
        fail_code=row["fail_code"], fail_msg=row["fail_msg"],
        results=tuple(ResultFile(**r) for r in json.loads(row["results_json"])),
        route_attempts=tuple(RouteAttempt(**a) for a in json.loads(row["attempts_json"])),
        notes=tuple(json.loads(row["notes_json"])),
        cancel_requested_ms=row["cancel_requested_ms"],
    )


def account(row: Row) -> Account:
    return Account(row["id"], row["name"], row["balance_micros"], row["created_ms"])


def api_key(row: Row) -> ApiKey:
    models = row["models"]
    return ApiKey(
        id=row["id"], account_id=row["account_id"], name=row["name"], prefix=row["prefix"],
        created_ms=row["created_ms"], revoked_ms=row["revoked_ms"],
        submit_rate=row["submit_rate"], submit_burst=row["submit_burst"],
        max_concurrent_tasks=row["max_concurrent_tasks"],
        models=tuple(json.loads(models)) if models else None,
    )


def ledger_entry(row: Row) -> LedgerEntry:
    return LedgerEntry(
        id=row["id"], account_id=row["account_id"], kind=row["kind"],
        amount_micros=row["amount_micros"], balance_after_micros=row["balance_after_micros"],
        created_ms=row["created_ms"], task_id=row["task_id"], note=row["note"],
    )


def delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"], task_id=row["task_id"], account_id=row["account_id"], url=row["url"],
        body=row["body"], state=DeliveryState(row["state"]), attempts=row["attempts"],
        next_attempt_ms=row["next_attempt_ms"], created_ms=row["created_ms"],
        last_error=row["last_error"], last_status=row["last_status"],
    )


def delivery_attempt(row: Row) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=row["delivery_id"], attempt=row["attempt"], started_ms=row["started_ms"],
        duration_ms=row["duration_ms"], status=row["status"], error=row["error"],
    )


def webhook_secret(row: Row) -> WebhookSecret:
    return WebhookSecret(row["account_id"], row["secret"], row["created_ms"], row["expires_ms"])
