"""Callback delivery (docs/contract.md §12): when a callback task ends, its status envelope is
POSTed to ``callback_url`` from a persisted delivery row, so a restart loses nothing
(at-least-once).

A 2xx answer within the timeout is a delivery. Anything else, a redirect included (never
followed), is recorded and retried on the configured schedule with jitter, then given up. The
body is fixed when the task ends and sent byte for byte on every attempt; ``webhook-id`` is the
delivery id, stable across attempts; every attempt is signed anew (``signing.py``) under the
account's live secrets. The address is checked again at every attempt (DNS can change between
attempts) and the connection pinned to the checked address (``net.netguard``, ``net.download``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from imagegate.clock import Clock
from imagegate.config import Settings
from imagegate.errors import InvalidRequest
from imagegate.events import TaskEvents
from imagegate.metrics import Metrics
from imagegate.net.download import open_pinned, transport_reason
from imagegate.net.netguard import (
    AddressRefused,
    Guard,
    PinnedTarget,
    Resolver,
    UnresolvedHost,
    parse_ip,
    resolve_host,
    without_userinfo,
)
from imagegate.net.netguard import is_public_address as _public
from imagegate.signing import new_secret, signature_header
from imagegate.store.base import Delivery, DeliveryAttempt, DeliveryState, Store

log = logging.getLogger("imagegate.webhooks")

# A claimed delivery is leased for the attempt's timeout plus this margin; a dispatcher that dies
# mid-attempt leaves the row to be claimed again when the lease ends (at-least-once).
LEASE_MARGIN_MS = 30_000
RESOLVE_TIMEOUT_S = 10.0
_HEADERS = {"content-type": "application/json", "user-agent": "imagegate-webhooks/1"}


def next_delay_s(schedule: Sequence[float], attempts_made: int,
                 rand: Callable[[], float] = random.random) -> float:
    """Delay after ``attempts_made`` (>= 1) failed attempts: the schedule's entry for it (the
    last entry repeats), with +-10% jitter."""
    base = schedule[min(attempts_made, len(schedule)) - 1]
    return base * (0.9 + 0.2 * rand())


@dataclass(frozen=True)
class CallbackPolicy:
    """Which callback URLs may be called: https and public addresses unless allowed.

    ``resolver`` looks host names up (tests inject one); a lookup at submit may take
    ``submit_resolve_timeout_s`` seconds, one at delivery ``RESOLVE_TIMEOUT_S``.
    """

    allow_http: bool = False
    allow_private: bool = False
    resolver: Resolver = resolve_host
    submit_resolve_timeout_s: float = 2.0

    async def check_url(self, url: str, field: str = "callback_url") -> None:
        """At submit: raise InvalidRequest naming ``field`` for a URL we will never call.

        That is ``check_url_shape``'s refusals, and, unless private networks are allowed, a host
        name with an address that is not public. A lookup that fails or takes longer than
        ``submit_resolve_timeout_s`` refuses nothing: every delivery attempt checks again.
        """
        self.check_url_shape(url, field)
        if self.allow_private:
            return
        try:
            await self._guard(self.submit_resolve_timeout_s).pin(httpx.URL(url))
        except UnresolvedHost:
            return
        except AddressRefused as exc:
            raise InvalidRequest(f"{field}: {exc}", field=field) from exc
        except httpx.InvalidURL as exc:
            raise InvalidRequest(f"{field} is not a valid URL", field=field) from exc

    def check_url_shape(self, url: str, field: str = "callback_url") -> None:
        """At submit: raise InvalidRequest naming ``field`` for a URL we will never call."""
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self.allow_http and parts.scheme == "http"):
            raise InvalidRequest(f"{field} must be an https URL", field=field)
        literal = parse_ip((parts.hostname or "").strip("[]"))
        if literal is not None and not self.allow_private and not _public(literal):
            raise InvalidRequest(f"{field} address {literal} is not public", field=field)

    async def target(self, url: str) -> PinnedTarget:
        """At each attempt: where to connect. Raises AddressRefused saying why not."""
        try:
            self.check_url_shape(url)
        except InvalidRequest as exc:
            raise AddressRefused(exc.error) from exc
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise AddressRefused("the callback URL is not a valid URL") from exc
        return await self._guard(RESOLVE_TIMEOUT_S).pin(parsed, _HEADERS)

    def _guard(self, resolve_timeout_s: float) -> Guard:
        return Guard(allow_private=self.allow_private, resolver=self.resolver,
                     resolve_timeout_s=resolve_timeout_s)


@dataclass(frozen=True)
class TestResult:
    webhook_id: str
    delivered: bool
    status: int | None
    error: str | None
    latency_ms: int


class Dispatcher:
    """Sends due deliveries; several at once, each at most once at a time (leased rows). Each
    attempt it records is counted in ``metrics`` by outcome."""

    def __init__(self, store: Store, client: httpx.AsyncClient, policy: CallbackPolicy,
                 settings: Settings, clock: Clock, events: TaskEvents,
                 concurrency: int = 16, *, metrics: Metrics | None = None) -> None:
        self.store = store
        self.client = client
        self.policy = policy
        self.settings = settings
        self.clock = clock
        self.events = events
        self.concurrency = concurrency
        self.metrics = metrics or Metrics()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep up to ``concurrency`` attempts in flight; a slow receiver holds only its own
        slot. Returns when ``stop`` is set and the attempts in flight have ended."""
        running: set[asyncio.Task[DeliveryAttempt]] = set()
        while not stop.is_set():
            free = self.concurrency - len(running)
            claimed = await self._claim(free) if free > 0 else []
            for delivery in claimed:
                task = asyncio.create_task(self.deliver(delivery))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: self.events.deliveries.set())
            if not claimed:
                await self.events.deliveries.wait(1.0, stop)
        if running:
            await asyncio.wait(running)

    async def deliver_once(self, limit: int = 100) -> int:
        """Claim the deliveries due now (up to ``limit``) and make one attempt of each; how
        many. One pass of ``run``, for tools and tests that drive time themselves."""
        claimed = await self._claim(limit)
        await asyncio.gather(*(self.deliver(d) for d in claimed))
        return len(claimed)

    async def _claim(self, limit: int) -> list[Delivery]:
        lease_ms = int(self.settings.callbacks_timeout_seconds * 1000) + LEASE_MARGIN_MS
        try:
            return await self.store.claim_deliveries(self.clock.now_ms(), lease_ms, limit)
        except Exception:
            log.exception("claiming callback deliveries failed; trying again shortly")
            return []

    async def deliver(self, delivery: Delivery, *, manual: bool = False) -> DeliveryAttempt:
        """One attempt. ``manual`` (an operator's redelivery): a failure leaves the schedule as
        it was; a success marks the delivery delivered."""
        attempt_no = delivery.attempts + 1
        started_ms = self.clock.now_ms()
        t0 = time.monotonic()
        status, error = await self._post(delivery.account_id, delivery.id, delivery.url,
                                         delivery.body.encode(), started_ms)
        attempt = DeliveryAttempt(delivery.id, attempt_no, started_ms,
                                  int((time.monotonic() - t0) * 1000), status, error)
        state, next_ms = self._next(delivery, attempt, manual)
        fields = {"delivery_id": delivery.id, "task_id": delivery.task_id}
        if not await self.store.record_delivery_attempt(attempt, state, next_ms):
            log.warning("callback %s attempt %d was recorded by another dispatcher",
                        delivery.id, attempt_no, extra=fields)
            return attempt
        log.info("callback %s for task %s attempt %d: %s", delivery.id, delivery.task_id,
                 attempt_no, error or f"delivered ({status})", extra=fields)
        self.metrics.webhook_attempted(_outcome(error, state))
        return attempt

    def _next(self, delivery: Delivery, attempt: DeliveryAttempt,
              manual: bool) -> tuple[DeliveryState, int]:
        state, next_ms = self._outcome(delivery, attempt, manual)
        if not delivery.state.can_become(state):
            raise AssertionError(f"callback {delivery.id}: {delivery.state} -> {state}")
        return state, next_ms

    def _outcome(self, delivery: Delivery, attempt: DeliveryAttempt,
                 manual: bool) -> tuple[DeliveryState, int]:
        if attempt.error is None:
            return DeliveryState.DELIVERED, attempt.started_ms
        if manual:
            return delivery.state, delivery.next_attempt_ms
        if attempt.attempt >= self.settings.callbacks_max_attempts:
            return DeliveryState.FAILED, attempt.started_ms
        delay = next_delay_s(self.settings.retry_schedule_s, attempt.attempt)
        return DeliveryState.PENDING, attempt.started_ms + int(delay * 1000)

    async def send_test(self, account_id: str, url: str, field: str = "url") -> TestResult:
        """POST a signed test event to ``url`` now; nothing is stored. InvalidRequest naming
        ``field`` for a URL that would never be called."""
        self.policy.check_url_shape(url, field)
        now = self.clock.now_ms()
        webhook_id = "msg_test_" + secrets.token_hex(8)
        data = {"taskId": "test_" + secrets.token_hex(16), "state": "success",
                "createTime": now, "test": True}
        body = json.dumps({"code": 200, "message": "success", "data": data},
                          separators=(",", ":")).encode()
        t0 = time.monotonic()
        status, error = await self._post(account_id, webhook_id, url, body, now)
        return TestResult(webhook_id, error is None, status, error,
                          int((time.monotonic() - t0) * 1000))

    async def signing_secrets(self, account_id: str) -> list[str]:
        """The account's live secrets, creating its first one when it has none (a plain read
        when it has: no write transaction per attempt)."""
        now = self.clock.now_ms()
        found = await self.store.webhook_secrets(account_id, now)
        if not found:
            found = await self.store.webhook_secrets(account_id, now, create=new_secret())
        return [s.secret for s in found]

    async def _post(self, account_id: str, webhook_id: str, url: str, body: bytes,
                    now_ms: int) -> tuple[int | None, str | None]:
        try:
            target = await self.policy.target(url)
        except AddressRefused as exc:
            return None, str(exc)
        stamp = now_ms // 1000
        signature = signature_header(await self.signing_secrets(account_id), webhook_id, stamp,
                                     body)
        signed = {"webhook-id": webhook_id, "webhook-timestamp": str(stamp),
                  "webhook-signature": signature}
        timeout = self.settings.callbacks_timeout_seconds
        try:
            # The whole attempt, answer included, within the timeout; the answer's body is
            # never read (a receiver cannot stall us or fill our memory with it).
            async with asyncio.timeout(timeout), open_pinned(
                    self.client, "POST", target, headers=signed, content=body,
                    timeout=timeout) as response:
                return response.status_code, _judge(response)
        except (TimeoutError, httpx.TimeoutException):
            return None, f"no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            return None, transport_reason(exc)[:300]


def _outcome(error: str | None, state: DeliveryState) -> str:
    """An attempt as ``imagegate_webhook_attempts_total`` counts it."""
    if error is None:
        return "delivered"
    return "given_up" if state is DeliveryState.FAILED else "failed"


def _judge(response: httpx.Response) -> str | None:
    if 200 <= response.status_code < 300:
        return None
    if response.is_redirect:
        target = without_userinfo(response.headers.get("location", "?"))
        return f"HTTP {response.status_code} redirect to {target[:200]} (not followed)"
    return f"HTTP {response.status_code}"
