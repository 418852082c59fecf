"""Idempotent submits (docs/contract.md, Extension: Idempotency-Key): a client names a submit
with an ``Idempotency-Key`` header, and a submit of the same API key that repeats the name and
the request within ``IDEMPOTENCY_TTL_MS`` is answered with the first submit's task (stored and
charged once). The same name with another request is a ``Conflict``.

A request is identified by the SHA-256 of its model id and of its body's bytes as received.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from imagegate.errors import Conflict, InvalidRequest

__all__ = ["HEADER", "IDEMPOTENCY_TTL_MS", "Idempotency", "mismatch", "parse_idempotency"]

HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000  # a key older than this is treated as never used
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Idempotency:
    """A submit's idempotency key (``key``, as the client sent it) and the hash of its
    request (hex SHA-256 of the model id and the body's bytes)."""

    key: str
    request_hash: str


def parse_idempotency(header: str | None, model_id: str, body: bytes) -> Idempotency | None:
    """The submit's ``Idempotency``, None without the header; ``InvalidRequest`` naming the
    header unless its value is 1 to 255 printable ASCII characters."""
    if header is None:
        return None
    if not 1 <= len(header) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in header):
        raise InvalidRequest(f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII "
                             "characters", field=HEADER)
    digest = hashlib.sha256(model_id.encode() + b"\n" + body).hexdigest()
    return Idempotency(header, digest)


def mismatch() -> Conflict:
    """The error of a submit whose idempotency key was used for another request."""
    return Conflict(f"this {HEADER} was already used for a different request (another body or "
                    "model) in the last 24 hours; use a new key for a new request", field=HEADER)
