"""Webhook signatures and their verification (signing.py)."""

from __future__ import annotations

import pytest

from imagegate.signing import (
    ReplayGuard,
    WebhookVerificationError,
    new_secret,
    sign,
    signature_header,
    verify,
)

# The published Standard Webhooks test vector.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature: str, stamp: int = STAMP, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"Webhook-Id": msg_id, "Webhook-Timestamp": str(stamp),
            "Webhook-Signature": signature}


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    assert sign(SECRET, MSG_ID, STAMP, BODY) == EXPECTED


def test_verify_accepts_the_vector_within_tolerance() -> None:
    verify(headers(EXPECTED), BODY, SECRET, now=STAMP + 10)


@pytest.mark.parametrize("body", [b'{"test": 2432232315}', BODY + b" "])
def test_any_change_to_the_body_is_refused(body: bytes) -> None:
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(headers(EXPECTED), body, SECRET, now=STAMP)


def test_wrong_secret_id_or_timestamp_is_refused() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(headers(EXPECTED), BODY, new_secret(), now=STAMP)
    with pytest.raises(WebhookVerificationError):
        verify(headers(EXPECTED, msg_id="msg_other"), BODY, SECRET, now=STAMP)
    with pytest.raises(WebhookVerificationError):
        verify(headers(EXPECTED, stamp=STAMP + 1), BODY, SECRET, now=STAMP)


def test_old_or_future_timestamps_are_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="from now"):
        verify(headers(EXPECTED), BODY, SECRET, now=STAMP + 301)
    with pytest.raises(WebhookVerificationError, match="from now"):
        verify(headers(EXPECTED), BODY, SECRET, now=STAMP - 301)
    verify(headers(EXPECTED), BODY, SECRET, now=STAMP + 3600, tolerance_s=3600)


def test_missing_or_malformed_headers_are_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify({}, BODY, SECRET, now=STAMP)
    with pytest.raises(WebhookVerificationError, match="Unix seconds"):
        verify({**headers(EXPECTED), "webhook-timestamp": "soon"}, BODY, SECRET, now=STAMP)


def test_during_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    both = signature_header([new, old], MSG_ID, STAMP, BODY)
    assert len(both.split()) == 2
    verify(headers(both), BODY, old, now=STAMP)
    verify(headers(both), BODY, new, now=STAMP)
    verify(headers(sign(old, MSG_ID, STAMP, BODY)), BODY, [new, old], now=STAMP)


def test_replay_guard_refuses_the_same_delivery_twice_but_accepts_a_retry() -> None:
    guard = ReplayGuard(window_s=600)
    verify(headers(EXPECTED), BODY, SECRET, now=STAMP, guard=guard)
    with pytest.raises(WebhookVerificationError, match="already seen"):
        verify(headers(EXPECTED), BODY, SECRET, now=STAMP + 1, guard=guard)
    retry = sign(SECRET, MSG_ID, STAMP + 60, BODY)
    verify(headers(retry, stamp=STAMP + 60), BODY, SECRET, now=STAMP + 60, guard=guard)


def test_new_secrets_are_distinct_and_well_formed() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50
    assert all(s.startswith("whsec_") and len(s) == 50 for s in made)
