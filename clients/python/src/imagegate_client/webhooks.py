"""Verifying imagegate's webhook deliveries, Standard Webhooks style; the standard library only.

Every callback carries three headers:

    webhook-id          msg_...: the event's id, the same on every retry of one event
    webhook-timestamp   Unix seconds of this attempt
    webhook-signature   v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

The HMAC key is the account's secret: ``whsec_`` followed by base64 of 32 random bytes, the key
being those bytes. While a secret is being rotated, each delivery is signed with the old and the
new secret, space-separated (``v1,AAA v1,BBB``); a receiver accepts a delivery when any
signature matches any secret it knows.

A receiver verifies::

    from imagegate_client import ReplayGuard, WebhookVerificationError, verify_webhook

    guard = ReplayGuard()  # remembers ids for the tolerance window

    def handle(headers, raw_body: bytes):
        try:
            verify_webhook(headers, raw_body, "whsec_...", guard=guard)
        except WebhookVerificationError as exc:
            return 400, str(exc)
        event = json.loads(raw_body)   # the status envelope, as the status endpoint gives it
        ...
        return 204, ""

``verify_webhook`` checks the signature over the exact bytes received (parse JSON only
afterwards), that the timestamp is within ``tolerance_s`` of now (default 5 minutes: an old
captured delivery cannot be replayed later), and, with a ``ReplayGuard``, that the same
webhook-id and timestamp were not accepted before within that window. The service signs with
this module's ``sign`` (imagegate.signing), so both sides share one implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

from .errors import ImagegateError

__all__ = ["SECRET_PREFIX", "ReplayGuard", "WebhookVerificationError", "sign", "verify_webhook"]

SECRET_PREFIX = "whsec_"


class WebhookVerificationError(ImagegateError):
    """The delivery is not authentic, too old, or already seen; the message says which."""


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise WebhookVerificationError("the secret is not a whsec_ base64 secret") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{msg_id}.{timestamp}.{body}`` under ``secret``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class ReplayGuard:
    """Remembers (webhook-id, timestamp) pairs already accepted, for ``window_s`` seconds.

    A retry of one event has the same id and a new timestamp, and is accepted; the same bytes
    sent twice are refused. In-memory: a receiver with several processes shares a store instead.
    """

    def __init__(self, window_s: float = 600.0) -> None:
        self.window_s = window_s
        self._seen: dict[tuple[str, int], float] = {}

    def check_and_remember(self, msg_id: str, timestamp: int, now: float) -> None:
        for key, at in list(self._seen.items()):
            if now - at > self.window_s:
                del self._seen[key]
        if (msg_id, timestamp) in self._seen:
            raise WebhookVerificationError(f"delivery {msg_id} at {timestamp} was already seen")
        self._seen[(msg_id, timestamp)] = now


def verify_webhook(headers: Mapping[str, str], body: bytes, secret: str | Iterable[str], *,
                   tolerance_s: float = 300.0, now: float | None = None,
                   guard: ReplayGuard | None = None) -> None:
    """Raise ``WebhookVerificationError`` unless the delivery is authentic and fresh.

    ``headers``: any mapping; names are matched case-insensitively. ``secret``: one secret or
    several (during a rotation, the receiver may know both).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, given = (lower.get(n) for n in ("webhook-id", "webhook-timestamp",
                                                   "webhook-signature"))
    if not msg_id or not stamp or not given:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or "
                                       "webhook-signature header")
    if not stamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not Unix seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance_s:g} s "
                                       "from now")
    keys = [secret] if isinstance(secret, str) else list(secret)
    expected = {sign(s, msg_id, timestamp, body) for s in keys}
    offered = given.split()
    if not any(hmac.compare_digest(e, o) for e in expected for o in offered):
        raise WebhookVerificationError("no signature matches")
    if guard is not None:
        guard.check_and_remember(msg_id, timestamp, current)
