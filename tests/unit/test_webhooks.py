"""Callback retry schedule, which callback URLs may be called, and what an attempt records
(webhooks.py, docs/contract.md §12)."""

from __future__ import annotations

import asyncio
import base64
from typing import cast

import httpx
import pytest

from imagegate.clock import FakeClock
from imagegate.config import Settings
from imagegate.errors import InvalidRequest
from imagegate.events import TaskEvents
from imagegate.net.netguard import AddressRefused
from imagegate.store.base import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Store,
    WebhookSecret,
)
from imagegate.webhooks import CallbackPolicy, Dispatcher, next_delay_s

SCHEDULE = (10.0, 60.0, 300.0)
PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


class FakeResolver:
    """Answers every name with fixed addresses and remembers what it was asked."""

    def __init__(self, *addresses: str, error: OSError | None = None) -> None:
        self.addresses = list(addresses)
        self.error = error
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if self.error is not None:
            raise self.error
        return self.addresses


def refusal(policy: CallbackPolicy, url: str) -> str | None:
    """Why the policy refuses to call ``url`` now, or None when it would connect."""
    try:
        asyncio.run(policy.target(url))
    except AddressRefused as exc:
        return str(exc)
    return None


# next_delay_s ---------------------------------------------------------------------------------


def test_delay_without_jitter_is_the_schedules_entry() -> None:
    assert [next_delay_s(SCHEDULE, n, rand=lambda: 0.5) for n in (1, 2, 3)] == [10, 60, 300]


def test_delay_after_the_schedule_runs_out_repeats_the_last_entry() -> None:
    assert next_delay_s(SCHEDULE, 4, rand=lambda: 0.5) == 300
    assert next_delay_s(SCHEDULE, 40, rand=lambda: 0.5) == 300


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.9), (0.25, 0.95), (0.999999, 1.1)])
def test_jitter_stays_within_ten_percent(rand: float, factor: float) -> None:
    assert next_delay_s(SCHEDULE, 2, rand=lambda: rand) == pytest.approx(60 * factor)


def test_default_jitter_stays_within_ten_percent() -> None:
    for _ in range(200):
        assert 54 <= next_delay_s(SCHEDULE, 2) <= 66


def test_default_schedule_grows_and_spans_about_a_day() -> None:
    settings = Settings()
    schedule = settings.retry_schedule_s
    delays = [next_delay_s(schedule, n, rand=lambda: 0.5)
              for n in range(1, settings.callbacks_max_attempts)]
    assert delays == sorted(delays)
    assert delays[0] < 60  # the first retry comes quickly
    assert 20 * 3600 <= sum(delays) <= 28 * 3600


# CallbackPolicy.check_url_shape ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://example.com/hook", "https://93.184.216.34/h",
                                 f"https://[{PUBLIC_V6}]:8443/h"])
def test_public_https_callback_is_accepted(url: str) -> None:
    CallbackPolicy().check_url_shape(url)


@pytest.mark.parametrize("url", ["http://example.com/hook", "ftp://example.com/h",
                                 "HTTP://example.com/h"])
def test_callback_that_is_not_https_is_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        CallbackPolicy().check_url_shape(url)
    assert caught.value.field == "callback_url"


def test_http_callback_is_accepted_when_allowed() -> None:
    CallbackPolicy(allow_http=True).check_url_shape("http://example.com/hook")
    with pytest.raises(InvalidRequest):
        CallbackPolicy(allow_http=True).check_url_shape("ftp://example.com/hook")


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.5",
                                  "169.254.169.254", "0.0.0.0", "[::1]", "[fe80::1]",
                                  "[fd00::1]", "[::ffff:127.0.0.1]", "100.64.0.1"])
def test_callback_to_a_private_address_literal_is_refused(host: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        CallbackPolicy().check_url_shape(f"https://{host}/hook")
    assert caught.value.field == "callback_url"
    assert "not public" in caught.value.error


def test_callback_to_a_private_address_is_accepted_when_allowed() -> None:
    CallbackPolicy(allow_private=True).check_url_shape("https://127.0.0.1:9000/hook")


# CallbackPolicy.check_url (at submit) ----------------------------------------------------------


def check_at_submit(policy: CallbackPolicy, url: str) -> InvalidRequest | None:
    try:
        asyncio.run(policy.check_url(url))
    except InvalidRequest as exc:
        return exc
    return None


@pytest.mark.parametrize("addresses", [("127.0.0.1",), (PUBLIC_V4, "10.0.0.7"), ("::1",)])
def test_a_name_resolving_privately_is_refused_at_submit(addresses: tuple[str, ...]) -> None:
    resolver = FakeResolver(*addresses)
    error = check_at_submit(CallbackPolicy(resolver=resolver), "https://hooks.example/x")
    assert error is not None and error.field == "callback_url"
    assert error.error == "callback_url: the host is not a public address"
    assert resolver.calls == [("hooks.example", 443)]


def test_a_name_resolving_privately_is_accepted_at_submit_when_private_networks_are_allowed(
        ) -> None:
    resolver = FakeResolver("127.0.0.1")
    policy = CallbackPolicy(allow_private=True, resolver=resolver)
    assert check_at_submit(policy, "https://hooks.example/x") is None
    assert resolver.calls == []  # no lookup at all


def test_a_name_resolving_publicly_is_accepted_at_submit() -> None:
    policy = CallbackPolicy(resolver=FakeResolver(PUBLIC_V4, PUBLIC_V6))
    assert check_at_submit(policy, "https://hooks.example/x") is None


def test_a_lookup_that_fails_at_submit_refuses_nothing() -> None:
    policy = CallbackPolicy(resolver=FakeResolver(error=OSError("Temporary failure")))
    assert check_at_submit(policy, "https://hooks.example/x") is None


def test_a_lookup_slower_than_the_submit_timeout_refuses_nothing() -> None:
    class Slow(FakeResolver):
        async def __call__(self, host: str, port: int) -> list[str]:
            await asyncio.sleep(5)
            return ["127.0.0.1"]

    policy = CallbackPolicy(resolver=Slow(), submit_resolve_timeout_s=0.05)
    assert check_at_submit(policy, "https://hooks.example/x") is None


def test_submit_still_refuses_what_the_shape_check_refuses() -> None:
    resolver = FakeResolver(PUBLIC_V4)
    for url in ("http://hooks.example/x", "https://10.0.0.1/x"):
        error = check_at_submit(CallbackPolicy(resolver=resolver), url)
        assert error is not None and error.field == "callback_url"
    assert resolver.calls == []


def test_http_allowed_at_submit_still_refuses_a_name_resolving_privately() -> None:
    policy = CallbackPolicy(allow_http=True, resolver=FakeResolver("192.168.1.20"))
    assert check_at_submit(policy, "http://printer.example/x") is not None


# CallbackPolicy.refusal -----------------------------------------------------------------------


def test_refusal_is_none_for_a_name_that_resolves_to_public_addresses() -> None:
    resolver = FakeResolver(PUBLIC_V4, PUBLIC_V6)
    assert refusal(CallbackPolicy(resolver=resolver), "https://hooks.example.com/x") is None
    assert resolver.calls == [("hooks.example.com", 443)]


def test_refusal_resolves_an_http_url_on_port_80() -> None:
    resolver = FakeResolver(PUBLIC_V4)
    refusal(CallbackPolicy(allow_http=True, resolver=resolver), "http://hooks.example.com/x")
    assert resolver.calls == [("hooks.example.com", 80)]


@pytest.mark.parametrize("addresses", [("10.0.0.7",), (PUBLIC_V4, "127.0.0.1"),
                                       ("::1",), ("fe80::1%eth0",), ("::ffff:192.168.1.1",)])
def test_refusal_of_a_name_resolving_privately_does_not_say_to_what(
        addresses: tuple[str, ...]) -> None:
    reason = refusal(CallbackPolicy(resolver=FakeResolver(*addresses)), "https://a.example/x")
    assert reason == "the host is not a public address"


def test_refusal_explains_a_name_that_does_not_resolve() -> None:
    resolver = FakeResolver(error=OSError("Name or service not known"))
    reason = refusal(CallbackPolicy(resolver=resolver), "https://nowhere.invalid/x")
    assert reason is not None
    assert "nowhere.invalid" in reason


def test_refusal_repeats_the_shape_check() -> None:
    resolver = FakeResolver(PUBLIC_V4)
    assert "https" in (refusal(CallbackPolicy(resolver=resolver), "http://a.example/x") or "")
    assert refusal(CallbackPolicy(resolver=resolver), "https://10.0.0.1/x") is not None
    assert resolver.calls == []


def test_allow_private_skips_resolution() -> None:
    resolver = FakeResolver("10.0.0.7")
    policy = CallbackPolicy(allow_private=True, resolver=resolver)
    assert refusal(policy, "https://internal.example/x") is None
    assert refusal(policy, "https://127.0.0.1/x") is None
    assert resolver.calls == []


def test_allow_http_still_refuses_private_addresses() -> None:
    policy = CallbackPolicy(allow_http=True, resolver=FakeResolver("192.168.1.20"))
    assert refusal(policy, "http://printer.example/x") is not None


# What an attempt records (the delivery log) and a test event answers --------------------------


class RecordingStore:
    """The two store calls an attempt makes: the account's secret, and recording the attempt."""

    def __init__(self) -> None:
        self.attempts: list[DeliveryAttempt] = []

    async def webhook_secrets(self, account_id: str, now_ms: int,
                              create: str | None = None) -> list[WebhookSecret]:
        return [WebhookSecret(account_id, "whsec_" + "A" * 44, now_ms)]

    async def record_delivery_attempt(self, attempt: DeliveryAttempt, state: str,
                                      next_attempt_ms: int) -> bool:
        self.attempts.append(attempt)
        return True


def dispatcher(policy: CallbackPolicy, answer: httpx.Response | None = None,
               ) -> tuple[Dispatcher, RecordingStore, list[httpx.Request]]:
    store, sent = RecordingStore(), []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer or httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return (Dispatcher(cast(Store, store), client, policy, Settings(), FakeClock(), TaskEvents()),
            store, sent)


def delivery(url: str) -> Delivery:
    return Delivery("msg_1", "task_1", "acct_1", url, '{"code":200}', DeliveryState.PENDING,
                    0, 0, 0)


def test_the_delivery_log_does_not_say_what_a_name_resolves_to() -> None:
    policy = CallbackPolicy(resolver=FakeResolver("127.0.0.1"))
    sender, store, sent = dispatcher(policy)
    attempt = asyncio.run(sender.deliver(delivery("https://user:secret@hooks.example/x")))
    assert attempt.error == "the host is not a public address"
    assert store.attempts == [attempt]
    assert sent == []


def test_a_test_event_does_not_say_what_a_name_resolves_to() -> None:
    sender, _, sent = dispatcher(CallbackPolicy(resolver=FakeResolver("10.0.0.7", "::1")))
    result = asyncio.run(sender.send_test("acct_1", "https://user:secret@hooks.example/x"))
    assert (result.delivered, result.error) == (False, "the host is not a public address")
    assert sent == []


def test_a_redirect_is_recorded_without_the_credentials_in_its_location() -> None:
    moved = httpx.Response(302, headers={"Location": "https://user:secret@elsewhere.example/y"})
    sender, _, sent = dispatcher(CallbackPolicy(resolver=FakeResolver(PUBLIC_V4)), moved)
    attempt = asyncio.run(sender.deliver(delivery("https://hooks.example/x")))
    assert attempt.error == "HTTP 302 redirect to https://elsewhere.example/y (not followed)"
    assert [str(r.url) for r in sent] == [f"https://{PUBLIC_V4}/x"]


def test_credentials_in_the_callback_url_still_reach_the_receiver() -> None:
    sender, _, sent = dispatcher(CallbackPolicy(resolver=FakeResolver(PUBLIC_V4)))
    attempt = asyncio.run(sender.deliver(delivery("https://user:secret@hooks.example/x")))
    assert attempt.error is None
    assert sent[0].headers["authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()
