"""Webhook signatures, Standard Webhooks style: the service's signing side.

Verification (``verify``, ``ReplayGuard``, ``WebhookVerificationError``) and ``sign`` itself live
in the client package (``imagegate_client.webhooks``, where its docstring shows a receiver) so
that the service and its clients share one implementation; they are re-exported here.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable

from imagegate_client.webhooks import (
    SECRET_PREFIX,
    ReplayGuard,
    WebhookVerificationError,
    sign,
)
from imagegate_client.webhooks import verify_webhook as verify

__all__ = ["SECRET_PREFIX", "ReplayGuard", "WebhookVerificationError", "new_secret",
           "sign", "signature_header", "verify"]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value: one signature per secret, space-separated."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)
