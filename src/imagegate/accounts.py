"""Operator actions on accounts and keys, shared by the CLI and first-start bootstrap."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from imagegate.clock import Clock
from imagegate.errors import InvalidRequest, NotFound
from imagegate.keys import mint_key
from imagegate.money import MAX_MOVE_MICROS
from imagegate.store.base import Account, ApiKey, Store


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    plain: str  # shown once
    account: Account


async def create_key(store: Store, clock: Clock, *, credit_micros: int = 0, name: str = "",
                     account_id: str | None = None, submit_rate: float | None = None,
                     max_concurrent_tasks: int | None = None,
                     models: tuple[str, ...] | None = None) -> NewKey:
    """A new key, on a new account unless ``account_id`` is given; the account is credited
    ``credit_micros`` (0 to MAX_MOVE_MICROS) first, so a refused credit leaves no key behind."""
    if not 0 <= credit_micros <= MAX_MOVE_MICROS:
        raise InvalidRequest("the starting credit must be 0 to 1,000,000,000 USD")
    now = clock.now_ms()
    if account_id is None:
        account = await store.create_account("acct_" + secrets.token_hex(6), name or "", now)
    else:
        found = await store.get_account(account_id)
        if found is None:
            raise NotFound(f"no account {account_id}")
        account = found
    if credit_micros:  # before the key: a credit refused (balance too large) leaves no key
        await store.credit(account.id, credit_micros, now, "initial credit")
    minted = mint_key()
    key = ApiKey(id=minted.key_id, account_id=account.id, name=name, prefix=minted.plain[:12],
                 created_ms=now, submit_rate=submit_rate,
                 max_concurrent_tasks=max_concurrent_tasks, models=models)
    await store.create_key(key, minted.hash)
    found = await store.get_account(account.id)
    assert found is not None
    return NewKey(key, minted.plain, found)


async def resolve_account(store: Store, ref: str) -> Account:
    """An account named by its id or by the id of one of its keys."""
    account = await store.get_account(ref)
    if account is None:
        key = await store.get_key(ref)
        account = await store.get_account(key.account_id) if key else None
    if account is None:
        raise NotFound(f"no account or key with id {ref!r}")
    return account
