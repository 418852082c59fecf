"""API keys: minting, hashing, parsing. Pure.

A key reads ``ig_<key id>_<secret>``. Only its SHA-256 is stored: the secret has 192 random
bits, so a fast hash is as safe as a slow one and keeps authentication a single indexed read.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

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
