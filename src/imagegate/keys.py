"""API keys: minting, hashing, parsing. Pure.

A key reads ``ig_<key id>_<secret>``. Only its SHA-256 is stored: the secret has 192 random
bits, so a fast hash is as safe as a slow one and keeps authentication a single indexed read.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")

PREFIX = "ig_"


@dataclass(frozen=True)
class MintedKey:
    key_id: str  # public, shown in listings
    plain: str  # shown once, never stored
    hash: str  # stored


def mint_key() -> MintedKey:
    key_id = secrets.token_hex(6)
    plain = f"{PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
    return MintedKey(key_id, plain, hash_key(plain))


def hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class KeyCache(Generic[K]):
    """Keys recently found active, by hash, for ``ttl_s`` seconds: most requests then skip the
    database. A revoked key keeps working in this process for at most ``ttl_s``; unknown keys
    are never cached, so a new key works at once. ``ttl_s`` 0 turns the cache off."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[K, float]] = {}

    def get(self, key_hash: str, now: float) -> K | None:
        found = self._entries.get(key_hash)
        if found is None or found[1] <= now:
            return None
        return found[0]

    def put(self, key_hash: str, value: K, now: float) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {h: e for h, e in self._entries.items() if e[1] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key_hash] = (value, now + self.ttl_s)
